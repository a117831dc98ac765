"""`training_set`: a point-in-time correct join of labels and features, with held-out splits,
built in DuckDB (an ASOF join with the semantics of Feast's `get_historical_features`)."""

import hashlib
import json
from typing import TYPE_CHECKING

import dagster as dg

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.ingestion.checks import RAW_DATA_GATES
from mlops_platform.feature_repo.definitions import (
    ENTITY_KEY,
    FEATURE_TTL,
    TIMESTAMP_FIELD,
    feature_service_name,
)
from mlops_platform.lib import feature_lake, warehouse
from mlops_platform.lib.ingestion import landing_records
from mlops_platform.lib.splits import SPLITS, split_sql
from mlops_platform.settings import Settings

if TYPE_CHECKING:
    import duckdb

GROUP = "features"
TABLE = "training_set"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def gated_labels_sql() -> tuple[str, list[object]]:
    """The labels of records whose landing day passes its gates now, with parameters.

    `stg_records` changes only when dbt runs, which a failed gate blocks: a day that passed
    once and then failed on re-landing is still there until the next dbt run.
    """
    days, params = warehouse.passed_days_sql("raw_data", RAW_DATA_GATES)
    return (
        f"SELECT {ENTITY_KEY}, {TIMESTAMP_FIELD}, label FROM labels "
        f"WHERE CAST(ingestion_date AS DATE) IN ({days})",
        params,
    )


def point_in_time_sql(spec: DatasetSpec, labels_sql: str, features_source: str) -> str:
    """Each label joined to the latest feature row of its record at or before the label's
    time and not older than the feature view's ttl (Feast's point-in-time rule), with its split."""
    features = ", ".join(
        f"CASE WHEN f.{TIMESTAMP_FIELD} >= l.{TIMESTAMP_FIELD} - INTERVAL '{FEATURE_TTL.days} days' "
        f"THEN f.{_quote(name)} END AS {_quote(name)}"
        for name in spec.features.all
    )
    return (
        f"SELECT l.{ENTITY_KEY}, l.{TIMESTAMP_FIELD}, {split_sql(f'l.{ENTITY_KEY}', spec.split)} AS split, "
        f"CAST(l.label AS BIGINT) AS label, {features} "
        f"FROM ({labels_sql}) AS l ASOF LEFT JOIN {features_source} AS f "
        f"ON l.{ENTITY_KEY} = f.{ENTITY_KEY} AND l.{TIMESTAMP_FIELD} >= f.{TIMESTAMP_FIELD}"
    )


def build_training_set_asset(
    settings: Settings, spec: DatasetSpec
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    lake_files = f"read_parquet('{feature_lake.features_dir(settings.lake_dir) / '*.parquet'!s}')"
    columns = [ENTITY_KEY, TIMESTAMP_FIELD, "split", "label", *spec.features.all]
    select = ", ".join(_quote(c) for c in columns)

    def current_inputs() -> tuple[str, dict[str, str]]:
        """The build rule (a digest of the SQL: split, ttl, features) and the state of every
        gated day in `stg_records` (rows and verdict time), which is what each day's rows are
        built from."""
        labels_sql, _ = gated_labels_sql()
        days_sql, params = warehouse.passed_days_sql("raw_data", RAW_DATA_GATES)
        gated_sql = f"SELECT strftime(ingestion_date, '%Y-%m-%d') AS day FROM ({days_sql})"
        gated = set(warehouse.query(settings.warehouse_path, gated_sql, params)["day"])
        states = feature_lake.day_states(settings.warehouse_path)
        rule = hashlib.sha256(point_in_time_sql(spec, labels_sql, lake_files).encode()).hexdigest()[:16]
        return rule, {day: state for day, state in states.items() if day in gated}

    def summary() -> dict[str, dict[str, float]]:
        rows = warehouse.query(
            settings.warehouse_path,
            f"SELECT split, count(*) AS n, avg(label) AS positive_rate FROM {TABLE} GROUP BY split",
        ).set_index("split")
        return {
            name: {
                "rows": int(rows.loc[name, "n"]) if name in rows.index else 0,
                "positive_rate": round(float(rows.loc[name, "positive_rate"]), 4)
                if name in rows.index
                else 0.0,
            }
            for name in SPLITS
        }

    def build_whole(con: "duckdb.DuckDBPyConnection") -> None:
        """The whole table from every gated label and the whole lake."""
        labels_sql, params = gated_labels_sql()
        con.execute(
            f"CREATE OR REPLACE TABLE {TABLE} AS SELECT {select} FROM "
            f"({point_in_time_sql(spec, labels_sql, lake_files)}) ORDER BY {ENTITY_KEY}",
            params,
        )

    def update_days(con: "duckdb.DuckDBPyConnection", rebuilt: list[str], dropped: list[str]) -> None:
        """Replace the rows of the days whose state changed and drop those of days that left.

        A record is one row of `stg_records`, and its label and its feature row come from that
        row's day: its training row depends on that day alone. So the rows of a changed day
        are joined against that day's lake file only.
        """
        if rebuilt:
            con.execute(
                f"DELETE FROM {TABLE} WHERE {ENTITY_KEY} IN (SELECT {ENTITY_KEY} FROM stg_records "
                "WHERE strftime(ingestion_date, '%Y-%m-%d') IN (SELECT unnest(?::VARCHAR[])))",
                [rebuilt],
            )
        if dropped:  # their records may be gone from stg_records: keep only gated labels' rows
            labels_sql, params = gated_labels_sql()
            con.execute(
                f"DELETE FROM {TABLE} WHERE {ENTITY_KEY} NOT IN (SELECT {ENTITY_KEY} FROM ({labels_sql}))",
                params,
            )
        if rebuilt:
            labels_sql, params = gated_labels_sql()
            labels_sql += " AND strftime(ingestion_date, '%Y-%m-%d') IN (SELECT unnest(?::VARCHAR[]))"
            files = [str(feature_lake.day_file(settings.lake_dir, d)) for d in rebuilt]
            con.execute(
                f"INSERT INTO {TABLE} SELECT {select} FROM "
                f"({point_in_time_sql(spec, labels_sql, 'read_parquet(?)')})",
                [*params, rebuilt, files],
            )

    @dg.asset(
        key=TABLE,
        group_name=GROUP,
        deps=[dg.AssetKey("feature_store"), dg.AssetKey("labels")],
        kinds={"feast", "duckdb"},
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=(
            "Labels joined to the features as of each label's event time (an ASOF join in DuckDB "
            "over the Feast offline source, with the semantics of get_historical_features), with a "
            "stable train/validation/test split. Only the ingestion days whose records changed are "
            "joined again; reused as it is when nothing changed."
        ),
    )
    def training_set(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        rule, days = current_inputs()
        inputs = hashlib.sha256(json.dumps([rule, days], sort_keys=True).encode()).hexdigest()[:16]
        record = warehouse.table_record(settings.warehouse_path, TABLE)
        # the days the table was built from, when it was built by the same rule
        built = (
            record.get("days")
            if record.get("rule") == rule and isinstance(record.get("days"), dict)
            else None
        )
        reused = record.get("inputs") == inputs
        if reused:
            rebuilt: list[str] = []
            context.log.info("training_set is up to date with its inputs: reused, not rebuilt")
            if "landed_days" not in record:  # built before the landing files were recorded with it
                with warehouse.connect(settings.warehouse_path) as con:
                    con.execute("BEGIN TRANSACTION")
                    details = {k: v for k, v in record.items() if k not in ("version", "inputs")}
                    details["landed_days"] = landing_records(con, sorted(days))
                    warehouse.set_table_version(con, TABLE, str(record["version"]), inputs, details)
                    con.execute("COMMIT")
        else:
            rebuilt = sorted(d for d in days if built is None or built.get(d) != days[d])
            dropped = sorted(set(built or {}) - set(days))
            with warehouse.connect(settings.warehouse_path) as con:
                con.execute("BEGIN TRANSACTION")
                if built is None:
                    build_whole(con)
                else:
                    update_days(con, rebuilt, dropped)
                digest = ", ".join(_quote(c) for c in columns)
                (rows, content) = con.execute(
                    f"SELECT count(*), coalesce(bit_xor(hash({digest})), 0) FROM {TABLE}"
                ).fetchone()
                version = hashlib.sha256(f"{rows}:{content}".encode()).hexdigest()[:16]
                # the landing files of the days it holds, recorded with its content
                landed = landing_records(con, sorted(days))
                warehouse.set_table_version(
                    con, TABLE, version, inputs, {"rule": rule, "days": days, "landed_days": landed}
                )
                con.execute("COMMIT")
            context.log.info(
                f"training_set {'built whole' if built is None else 'updated'}: {len(rebuilt)} day(s) "
                f"joined, {len(dropped)} day(s) dropped"
            )
        record = warehouse.table_record(settings.warehouse_path, TABLE)
        version = str(record["version"])
        splits = summary()
        rows = sum(int(s["rows"]) for s in splits.values())
        context.log.info(f"training set of {rows} rows: {splits}")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={
                "rows": dg.MetadataValue.int(rows),
                "dagster/row_count": dg.MetadataValue.int(rows),
                "reused": dg.MetadataValue.bool(reused),
                "days_joined": dg.MetadataValue.json(rebuilt),
                "splits": dg.MetadataValue.json(splits),
                "split_fractions": dg.MetadataValue.json(spec.split.model_dump()),
                "positive_class": dg.MetadataValue.text(
                    f"{spec.label.column} == {spec.label.positive_class!r}"
                ),
                "features": dg.MetadataValue.json(spec.features.all),
                "feature_service": dg.MetadataValue.text(feature_service_name(spec)),
                "warehouse_table": dg.MetadataValue.text(f"{settings.warehouse_path}::{TABLE}"),
                "data_version": dg.MetadataValue.text(version),
                # per day: landing file, its sha256 and size, the ingesting run, the raw version
                "landed_days": dg.MetadataValue.json(record.get("landed_days") or {}),
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
    def training_set_is_sound() -> dg.AssetCheckResult:
        labels_sql, params = gated_labels_sql()
        any_feature = " OR ".join(f"{_quote(c)} IS NOT NULL" for c in spec.features.all)
        with warehouse.connect(settings.warehouse_path, read_only=True) as con:
            (labelled,) = con.execute(f"SELECT count(*) FROM ({labels_sql})", params).fetchone()
            rows, duplicates, unlabelled = con.execute(
                f"SELECT count(*), count(*) - count(DISTINCT {ENTITY_KEY}), count(*) - count(label) "
                f"FROM {TABLE}"
            ).fetchone()
            present = con.execute(
                "SELECT " + ", ".join(f"count({_quote(c)})" for c in spec.features.all) + f" FROM {TABLE}"
            ).fetchone()
            classes = dict(
                con.execute(f"SELECT split, count(DISTINCT label) FROM {TABLE} GROUP BY split").fetchall()
            )
            without_features = con.execute(
                f"SELECT count(*) FROM {TABLE} WHERE NOT ({any_feature})"
            ).fetchone()[0]
        problems = []
        if rows != labelled:
            problems.append(f"{rows} rows for {labelled} labelled records")
        if duplicates:
            problems.append(f"{duplicates} duplicate record ids")
        if unlabelled:
            problems.append(f"{unlabelled} rows without a label")
        empty = [c for c, n in zip(spec.features.all, present, strict=True) if rows and not n]
        if empty:
            problems.append(f"features with no value at all (join failed?): {empty}")
        if without_features:
            problems.append(f"{without_features} rows without any feature (join failed?)")
        for name in SPLITS:
            if classes.get(name, 0) < 2:
                problems.append(f"split {name!r} holds {classes.get(name, 0)} class(es), needs 2")
        return dg.AssetCheckResult(
            passed=not problems,
            description="; ".join(problems) if problems else f"{rows} rows, all splits usable",
            metadata={
                "rows": rows,
                "labelled_records": labelled,
                "problems": dg.MetadataValue.json(problems),
            },
        )

    return training_set, training_set_is_sound
