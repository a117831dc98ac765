"""Registry: the MLflow model version that passed every gate, and the retraining job."""
