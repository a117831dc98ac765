"""Monitoring: the inference log in the warehouse, drift reports, and the sensor that retrains."""
