"""Features: dbt models over `raw_data`, the Feast feature store, and the training set."""

import dagster as dg

from mlops_platform.defs.features.dbt import build_dbt_assets
from mlops_platform.defs.features.feature_store import build_feature_store_asset
from mlops_platform.defs.features.training_set import build_training_set_asset
from mlops_platform.defs.project import Project


def build(project: Project) -> dg.Definitions:
    settings, spec = project.settings, project.spec
    feature_store, online_matches_offline = build_feature_store_asset(settings, spec)
    training_set, training_set_is_sound = build_training_set_asset(settings, spec)
    return dg.Definitions(
        assets=[build_dbt_assets(settings, spec, project.dbt_project), feature_store, training_set],
        asset_checks=[online_matches_offline, training_set_is_sound],
    )
