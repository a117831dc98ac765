"""Typed Dagster resources: the warehouse IO manager and the Feast feature store."""
