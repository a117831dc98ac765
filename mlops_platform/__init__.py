"""mlops_platform: the whole life of an ML model as Dagster software-defined assets."""

from mlops_platform.definitions import defs

__all__ = ["defs"]
