"""`feature_store`: apply the Feast repository and keep the offline lake and the online window
in step with dbt, one ingestion day at a time."""

import hashlib
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.feature_repo import online as feast_online
from mlops_platform.feature_repo.definitions import (
    ENTITY_KEY,
    TIMESTAMP_FIELD,
    build_feature_repo,
    feature_references,
    feature_service_name,
    feature_view_name,
)
from mlops_platform.feature_repo.store import online_store_config
from mlops_platform.lib import feature_lake, warehouse
from mlops_platform.lib.uris import redact_uri
from mlops_platform.resources.feast import FeastResource
from mlops_platform.settings import Settings

GROUP = "features"
ONLINE_SAMPLE = 200


def build_feature_store_asset(
    settings: Settings, spec: DatasetSpec
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    lake = settings.lake_dir
    columns = [ENTITY_KEY, TIMESTAMP_FIELD, *spec.features.all]

    @dg.asset(
        key="feature_store",
        group_name=GROUP,
        deps=[dg.AssetKey("features")],
        kinds={"feast"},
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=(
            "Feast repository (entity = record_id, one feature view over the dbt `features` "
            "view exported as one Parquet file per ingestion day, one feature service) applied "
            "to the registry; the online store holds the records of the last "
            "`features.online_ttl_days` days. Only the days that changed are exported and loaded."
        ),
    )
    def feature_store(context: dg.AssetExecutionContext, feast: FeastResource) -> dg.MaterializeResult:
        states = feature_lake.day_states(settings.warehouse_path)
        if not states:
            raise dg.Failure("stg_records holds no gated record: no day has passed its gates yet")
        manifest_file = feature_lake.manifest_path(lake)
        manifest = feature_lake.LakeManifest.read(manifest_file)
        store = feast.store()
        store.apply(build_feature_repo(spec, feature_lake.features_dir(lake)))
        view = feature_view_name(spec)
        wanted_online = feature_lake.online_days(list(states), spec.features.online_ttl_days)
        changed = sorted(d for d, state in states.items() if manifest.days.get(d) != state)
        removed = sorted(set(manifest.days) - set(states))

        # The manifest is written after every day, so a crash leaves it true: a day is marked
        # offline before its rows leave the online store, and online only once they are in.
        evicted = 0
        leaving = (set(changed) | set(removed) | (manifest.online - wanted_online)) & manifest.online
        if feast_online.can_clear(store) and _rows(lake, manifest.online - leaving) < _rows(lake, leaving):
            # Cheaper to empty the view and write the staying days again than to delete by key.
            evicted = _rows(lake, leaving)
            manifest.online.clear()
            manifest.write(manifest_file)
            leaving = set()
        if feast_online.can_clear(store) and not manifest.online:
            feast_online.clear(store, view)  # also what an interrupted clear or a lost manifest left
        for day in sorted(leaving):
            ids = feast_online.record_ids(feature_lake.day_file(lake, day))
            evicted += feast_online.delete_records(store, view, ids)
            manifest.online.discard(day)
            manifest.write(manifest_file)
        for day in removed:
            feature_lake.day_file(lake, day).unlink(missing_ok=True)
            del manifest.days[day]
            manifest.write(manifest_file)
        exported = 0
        for day in changed:
            exported += feature_lake.export_day(settings.warehouse_path, lake, day, columns)
            manifest.days[day] = states[day]
            manifest.write(manifest_file)
        written = 0
        for day in sorted(wanted_online - manifest.online):
            written += feast_online.write_day(
                store, view, feature_lake.day_file(lake, day), spec.features.online_write_batch_size
            )
            manifest.online.add(day)
            manifest.write(manifest_file)
        context.log.info(
            f"{len(changed)} day(s) exported ({exported} rows), {len(removed)} removed; online store: "
            f"{written} rows written, {evicted} records deleted, {len(manifest.online)} day(s) held"
        )
        version = hashlib.sha256(
            json.dumps({"days": manifest.days, "online": sorted(manifest.online)}, sort_keys=True).encode()
        ).hexdigest()[:16]
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={
                "feature_view": dg.MetadataValue.text(view),
                "feature_service": dg.MetadataValue.text(feature_service_name(spec)),
                "features": dg.MetadataValue.json(spec.features.all),
                "days_exported": dg.MetadataValue.json(changed),
                "days_removed": dg.MetadataValue.json(removed),
                "rows_exported": dg.MetadataValue.int(exported),
                "online_rows_written": dg.MetadataValue.int(written),
                "online_records_deleted": dg.MetadataValue.int(evicted),
                "online_days": dg.MetadataValue.json(sorted(manifest.online)),
                "online_ttl_days": dg.MetadataValue.text(str(spec.features.online_ttl_days or "unbounded")),
                "online_store": dg.MetadataValue.json(
                    {
                        key: redact_uri(value)
                        for key, value in online_store_config(
                            Path(feast.repo_dir), feast.online_store, feast.redis_url
                        ).items()
                    }
                ),
                "offline_source": dg.MetadataValue.path(str(feature_lake.features_dir(lake))),
            },
        )

    @dg.asset_check(
        asset=feature_store,
        blocking=True,
        description=(
            f"Online features of {ONLINE_SAMPLE} records sampled from the online days equal the "
            f"offline values, and {ONLINE_SAMPLE} records of offline-only days are absent online."
        ),
    )
    def online_matches_offline(feast: FeastResource) -> dg.AssetCheckResult:
        manifest = feature_lake.LakeManifest.read(feature_lake.manifest_path(lake))
        store = feast.store()

        def sample(days: set[str]) -> pd.DataFrame:
            if not days:
                return pd.DataFrame(columns=columns).set_index(ENTITY_KEY)
            files = [str(feature_lake.day_file(lake, d)) for d in sorted(days)]
            with warehouse.connect(settings.warehouse_path, read_only=True) as con:
                con.execute("SET threads = 1")  # a repeatable sample
                return (
                    con.execute(
                        "SELECT * FROM (SELECT * FROM read_parquet(?)) "
                        f"USING SAMPLE reservoir({ONLINE_SAMPLE} ROWS) REPEATABLE (0)",
                        [files],
                    )
                    .df()
                    .set_index(ENTITY_KEY)
                )

        def online(ids: pd.Index) -> pd.DataFrame:
            if ids.empty:
                return pd.DataFrame(columns=spec.features.all)
            found = store.get_online_features(
                features=feature_references(spec), entity_rows=[{ENTITY_KEY: rid} for rid in ids]
            ).to_df()
            return found.set_index(ENTITY_KEY).loc[ids]

        held = sample(manifest.online)
        served = online(held.index)
        mismatched = {}
        for name in spec.features.numeric:
            a = pd.to_numeric(held[name]).to_numpy(dtype=float)
            b = pd.to_numeric(served[name]).to_numpy(dtype=float)
            bad = ~(np.isclose(a, b) | (np.isnan(a) & np.isnan(b)))
            if bad.any():
                mismatched[name] = int(bad.sum())
        for name in spec.features.categorical:
            bad = held[name].astype(str).to_numpy() != served[name].astype(str).to_numpy()
            if bad.any():
                mismatched[name] = int(bad.sum())
        offline_only = sample(set(manifest.days) - manifest.online)
        leaked = int(online(offline_only.index)[spec.features.all].notna().any(axis=1).sum())
        problems = []
        if mismatched:
            problems.append(f"online store disagrees with the offline table: {mismatched}")
        if leaked:
            problems.append(f"{leaked} of {len(offline_only)} records outside the online window are online")
        return dg.AssetCheckResult(
            passed=not problems,
            description="; ".join(problems)
            or f"{len(held)} records identical online and offline, {len(offline_only)} offline-only absent",
            metadata={
                "sampled_records": len(held),
                "sampled_offline_only": len(offline_only),
                "mismatched_values": dg.MetadataValue.json(mismatched),
                "offline_only_found_online": leaked,
            },
        )

    return feature_store, online_matches_offline


def _rows(lake: Path, days: set[str]) -> int:
    """Rows in the exported Parquet files of these days (from the files' footers)."""
    import pyarrow.parquet as pq

    files = [feature_lake.day_file(lake, d) for d in days]
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files if f.is_file())
