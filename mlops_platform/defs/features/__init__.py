"""Features: dbt transforms, the Feast feature store and the point-in-time training set."""
