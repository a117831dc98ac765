"""Feast objects for a dataset: one entity (the record id), one feature view, one service.

Built from the spec at run time, so a new dataset needs no new Feast code. The feature
view reads the Parquet files (one per ingestion day) exported from the dbt `features` view.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from mlops_platform.datasets.spec import DatasetSpec

ENTITY_KEY = "record_id"
TIMESTAMP_FIELD = "event_timestamp"
# How far back a point-in-time join looks for a record's features (the feature view's ttl).
FEATURE_TTL = timedelta(days=3650)


def feature_view_name(spec: DatasetSpec) -> str:
    return f"{spec.name}_features"


def feature_service_name(spec: DatasetSpec) -> str:
    return f"{spec.name}_model_inputs"


def feature_references(spec: DatasetSpec) -> list[str]:
    """`view:feature` references in the spec's feature order."""
    return [f"{feature_view_name(spec)}:{name}" for name in spec.features.all]


def build_feature_repo(spec: DatasetSpec, features_dir: Path) -> list[Any]:
    """The Feast objects to `apply`: entity, file source, feature view and feature service."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, String

    record = Entity(
        name="record",
        join_keys=[ENTITY_KEY],
        value_type=ValueType.STRING,
        description=f"One landed record of dataset {spec.name}",
    )
    source = FileSource(
        name=f"{spec.name}_features_source",
        path=str(features_dir),
        timestamp_field=TIMESTAMP_FIELD,
    )
    view = FeatureView(
        name=feature_view_name(spec),
        entities=[record],
        ttl=FEATURE_TTL,
        schema=[Field(name=n, dtype=Float64) for n in spec.features.numeric]
        + [Field(name=n, dtype=String) for n in spec.features.categorical],
        source=source,
        online=True,
        tags={"dataset": spec.name, "owner": "mlops_platform"},
    )
    service = FeatureService(name=feature_service_name(spec), features=[view])
    return [record, view, service]
