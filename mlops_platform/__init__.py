"""mlops_platform: the whole life of an ML model as Dagster software-defined assets.

The Dagster code location is `mlops_platform.definitions`; importing this package loads
nothing else, so the model server's workers never import Dagster.
"""
