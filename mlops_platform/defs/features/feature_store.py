"""`feature_store`: apply the Feast repository and load the online store."""

import hashlib
from datetime import timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.feature_repo.definitions import (
    ENTITY_KEY,
    build_feature_repo,
    feature_references,
    feature_service_name,
    feature_view_name,
)
from mlops_platform.feature_repo.store import online_store_config
from mlops_platform.lib.uris import redact_uri
from mlops_platform.resources.feast import FeastResource
from mlops_platform.settings import Settings

GROUP = "features"
ONLINE_SAMPLE = 200


def features_parquet(settings: Settings):
    return settings.lake_dir / "features.parquet"


def build_feature_store_asset(
    settings: Settings, spec: DatasetSpec
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    @dg.asset(
        key="feature_store",
        group_name=GROUP,
        deps=[dg.AssetKey("features")],
        kinds={"feast"},
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=(
            "Feast repository (entity = record_id, one feature view over the dbt `features` "
            "table, one feature service) applied to the registry, and the online store loaded."
        ),
    )
    def feature_store(context: dg.AssetExecutionContext, feast: FeastResource) -> dg.MaterializeResult:
        path = features_parquet(settings)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: materialize the dbt model `features` first")
        store = feast.store()
        store.apply(build_feature_repo(spec, path))
        timestamps = pd.read_parquet(path, columns=["event_timestamp"])["event_timestamp"]
        start = timestamps.min().to_pydatetime()
        end = (timestamps.max() + pd.Timedelta(seconds=1)).to_pydatetime()
        store.materialize(start_date=start - timedelta(seconds=1), end_date=end)
        context.log.info(f"materialized {len(timestamps)} rows into the {feast.online_store} online store")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(hashlib.sha256(path.read_bytes()).hexdigest()[:16]),
            metadata={
                "feature_view": dg.MetadataValue.text(feature_view_name(spec)),
                "feature_service": dg.MetadataValue.text(feature_service_name(spec)),
                "features": dg.MetadataValue.json(spec.features.all),
                "entities_materialized": dg.MetadataValue.int(len(timestamps)),
                "online_store": dg.MetadataValue.json(
                    {
                        key: redact_uri(value)
                        for key, value in online_store_config(
                            Path(feast.repo_dir), feast.online_store, feast.redis_url
                        ).items()
                    }
                ),
                "offline_source": dg.MetadataValue.path(str(path)),
                "window": dg.MetadataValue.text(f"{start.isoformat()} .. {end.isoformat()}"),
            },
        )

    @dg.asset_check(
        asset=feature_store,
        blocking=True,
        description=f"Online features of {ONLINE_SAMPLE} sampled records equal the offline values.",
    )
    def online_matches_offline(feast: FeastResource) -> dg.AssetCheckResult:
        offline = pd.read_parquet(features_parquet(settings))
        sample = offline.sample(n=min(ONLINE_SAMPLE, len(offline)), random_state=0).set_index(ENTITY_KEY)
        online = (
            feast.store()
            .get_online_features(
                features=feature_references(spec),
                entity_rows=[{ENTITY_KEY: rid} for rid in sample.index],
            )
            .to_df()
            .set_index(ENTITY_KEY)
            .loc[sample.index]
        )
        mismatched = {}
        for name in spec.features.numeric:
            a = pd.to_numeric(sample[name]).to_numpy(dtype=float)
            b = pd.to_numeric(online[name]).to_numpy(dtype=float)
            bad = ~(np.isclose(a, b) | (np.isnan(a) & np.isnan(b)))
            if bad.any():
                mismatched[name] = int(bad.sum())
        for name in spec.features.categorical:
            bad = sample[name].astype(str).to_numpy() != online[name].astype(str).to_numpy()
            if bad.any():
                mismatched[name] = int(bad.sum())
        return dg.AssetCheckResult(
            passed=not mismatched,
            description=(
                f"online store disagrees with the offline table: {mismatched}"
                if mismatched
                else f"{len(sample)} records identical online and offline"
            ),
            metadata={"sampled_records": len(sample), "mismatched_values": dg.MetadataValue.json(mismatched)},
        )

    return feature_store, online_matches_offline
