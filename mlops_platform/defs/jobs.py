"""The jobs' names and the tags they share, for the stages that define them and those that start them."""

DATA_PIPELINE = "data_pipeline"  # defs/ingestion: land, validate, features, feature store, training set
RETRAIN_MODEL = "retrain_model"  # defs/training: training set down to registered_model_version
DEPLOY_MODEL = "deploy_model"  # defs/deployment: the canary rollout
# Both jobs write the warehouse (a retrain rebuilds a stale training_set): the run queue
# (dagster.yaml, tag_concurrency_limits) runs one of them at a time, so a retrain requested
# while new days are being ingested starts after them and trains on them.
WAREHOUSE_WRITER = {"mlops/writes": "warehouse"}
