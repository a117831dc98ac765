"""`training_set`: a point-in-time correct join of labels and features, with held-out splits."""

import dagster as dg
import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.ingestion.checks import RAW_DATA_GATES
from mlops_platform.feature_repo.definitions import ENTITY_KEY, TIMESTAMP_FIELD, feature_service_name
from mlops_platform.lib import warehouse
from mlops_platform.lib.batches import content_hash
from mlops_platform.lib.splits import SPLITS, assign_splits, split_summary
from mlops_platform.resources.feast import FeastResource
from mlops_platform.settings import Settings

GROUP = "features"


def gated_labels(settings: Settings) -> pd.DataFrame:
    """The labels of records whose landing day passes its gates now.

    `labels` is rebuilt only when dbt runs, which a failed gate blocks: a day that passed
    once and then failed on re-landing still has rows there until the next dbt run.
    """
    days, params = warehouse.passed_days_sql("raw_data", RAW_DATA_GATES)
    return warehouse.query(
        settings.warehouse_path,
        f"SELECT labels.{ENTITY_KEY}, labels.{TIMESTAMP_FIELD}, labels.label FROM labels "
        f"JOIN stg_records USING ({ENTITY_KEY}) "
        f"WHERE CAST(stg_records.ingestion_date AS DATE) IN ({days}) ORDER BY labels.{ENTITY_KEY}",
        params,
    )


def build_training_set_asset(
    settings: Settings, spec: DatasetSpec
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    @dg.asset(
        key="training_set",
        group_name=GROUP,
        deps=[dg.AssetKey("feature_store"), dg.AssetKey("labels")],
        io_manager_key="warehouse_io_manager",
        kinds={"feast", "duckdb"},
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=(
            "Labels joined to the features as of each label's event time (Feast "
            "get_historical_features), with a stable train/validation/test split."
        ),
    )
    def training_set(context: dg.AssetExecutionContext, feast: FeastResource) -> dg.Output[pd.DataFrame]:
        labels = gated_labels(settings)
        store = feast.store()
        joined = store.get_historical_features(
            entity_df=labels, features=store.get_feature_service(feature_service_name(spec))
        ).to_df()
        joined["split"] = assign_splits(joined[ENTITY_KEY], spec.split)
        frame = joined[[ENTITY_KEY, TIMESTAMP_FIELD, "split", "label", *spec.features.all]]
        frame = frame.sort_values(ENTITY_KEY).reset_index(drop=True)
        version = content_hash(frame)
        summary = split_summary(frame)
        context.log.info(f"training set of {len(frame)} rows: {summary}")
        return dg.Output(
            frame,
            data_version=dg.DataVersion(version),
            metadata={
                "rows": dg.MetadataValue.int(len(frame)),
                "splits": dg.MetadataValue.json(summary),
                "split_fractions": dg.MetadataValue.json(spec.split.model_dump()),
                "positive_class": dg.MetadataValue.text(
                    f"{spec.label.column} == {spec.label.positive_class!r}"
                ),
                "features": dg.MetadataValue.json(spec.features.all),
                "feature_service": dg.MetadataValue.text(feature_service_name(spec)),
                "data_version": dg.MetadataValue.text(version),
            },
        )

    @dg.asset_check(
        asset=training_set,
        blocking=True,
        description=(
            "Every labelled record is in the training set once, with a label and its features, "
            "and every split holds both classes."
        ),
    )
    def training_set_is_sound(training_set: pd.DataFrame) -> dg.AssetCheckResult:
        labelled = len(gated_labels(settings))
        problems = []
        if len(training_set) != labelled:
            problems.append(f"{len(training_set)} rows for {labelled} labelled records")
        if training_set[ENTITY_KEY].duplicated().any():
            problems.append(f"{int(training_set[ENTITY_KEY].duplicated().sum())} duplicate record ids")
        if training_set["label"].isna().any():
            problems.append(f"{int(training_set['label'].isna().sum())} rows without a label")
        empty = [c for c in spec.features.all if training_set[c].isna().all()]
        if empty:
            problems.append(f"features with no value at all (join failed?): {empty}")
        for name in SPLITS:
            classes = training_set.loc[training_set["split"] == name, "label"].nunique()
            if classes < 2:
                problems.append(f"split {name!r} holds {classes} class(es), needs 2")
        return dg.AssetCheckResult(
            passed=not problems,
            description="; ".join(problems) if problems else f"{len(training_set)} rows, all splits usable",
            metadata={
                "rows": len(training_set),
                "labelled_records": labelled,
                "problems": dg.MetadataValue.json(problems),
            },
        )

    return training_set, training_set_is_sound
