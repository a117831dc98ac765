"""Blocking data-quality gates on `raw_data`: a failed gate stops everything downstream.

Each gate also records its verdict per day in the warehouse (`raw_data_gates`), and
`stg_records` keeps only the days that every gate in `RAW_DATA_GATES` passed, so a day
that failed stays out of every later run until it is re-landed and passes.
"""

import dagster as dg
import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib import warehouse
from mlops_platform.lib.ingestion import ingest_day, read_day
from mlops_platform.settings import Settings

RAW_DATA = "raw_data"
RAW_DATA_GATES = ("great_expectations_suite", "quarantine_rate")


def build_ingestion_checks(settings: Settings, spec: DatasetSpec) -> list[dg.AssetChecksDefinition]:
    limit = spec.quality.max_quarantine_fraction

    def record(
        context: dg.AssetCheckExecutionContext, gate: str, verdicts: dict[str, tuple[bool, str]]
    ) -> None:
        warehouse.record_gate_verdicts(settings.warehouse_path, RAW_DATA, gate, verdicts, context.run.run_id)

    @dg.asset_check(
        asset=RAW_DATA,
        blocking=True,
        description=(
            "Great Expectations suites built from the dataset spec (column set, non-empty batch, "
            "types, null rules, ranges, domains); row-level expectations must hold for at least "
            f"{1 - limit:.0%} of each day's rows."
        ),
    )
    def great_expectations_suite(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        failures: list[str] = []
        report = []
        verdicts = {}
        for day in context.partition_keys:
            validation = ingest_day(settings.landing_dir, spec, day, settings.validations_dir).validation
            report.append(f"### {day}\n\n{validation.as_markdown()}")
            failed = [
                f"{day}: {o.expectation}({o.column or 'table'}) unexpected "
                f"{o.unexpected_count}/{o.element_count} {o.observed}".strip()
                for o in validation.failed()
            ]
            verdicts[day] = (not failed, "; ".join(failed) or "every expectation passed")
            failures += failed
        record(context, "great_expectations_suite", verdicts)
        return dg.AssetCheckResult(
            passed=not failures,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(failures[:5]) if failures else "every expectation passed",
            metadata={
                "failed_expectations": dg.MetadataValue.int(len(failures)),
                "failures": dg.MetadataValue.json(failures),
                "results": dg.MetadataValue.md("\n\n".join(report[-3:])),
            },
        )

    @dg.asset_check(
        asset=RAW_DATA,
        blocking=True,
        additional_ins={"quarantined_rows": dg.AssetIn("quarantined_rows")},
        description=(
            "Quarantine accounting: every landed record is in raw_data or quarantined_rows, never "
            f"both, and at most {limit:.0%} of each day's rows are quarantined."
        ),
    )
    def quarantine_rate(
        context: dg.AssetCheckExecutionContext, raw_data: pd.DataFrame, quarantined_rows: pd.DataFrame
    ) -> dg.AssetCheckResult:
        problems: list[str] = []
        per_day = {}
        verdicts = {}
        for day in context.partition_keys:
            landed_ids = read_day(settings.landing_dir, spec, day)[1]["record_id"]
            kept = raw_data.loc[raw_data["ingestion_date"].dt.strftime("%Y-%m-%d") == day, "record_id"]
            held = quarantined_rows.loc[
                quarantined_rows["ingestion_date"].dt.strftime("%Y-%m-%d") == day, "record_id"
            ]
            fraction = len(held) / len(landed_ids) if len(landed_ids) else 0.0
            per_day[day] = {
                "landed": len(landed_ids),
                "raw": len(kept),
                "quarantined": len(held),
                "fraction": round(fraction, 4),
            }
            found = []
            both = set(kept) & set(held)
            if both:
                found.append(f"{day}: {len(both)} records are both kept and quarantined")
            if len(kept) + len(held) != len(landed_ids) or set(kept) | set(held) != set(landed_ids):
                found.append(f"{day}: raw {len(kept)} + quarantined {len(held)} != landed {len(landed_ids)}")
            if fraction > limit:
                found.append(f"{day}: quarantined fraction {fraction:.2%} exceeds the limit {limit:.2%}")
            verdicts[day] = (not found, "; ".join(found) or f"{fraction:.2%} quarantined")
            problems += found
        record(context, "quarantine_rate", verdicts)
        worst = max((v["fraction"] for v in per_day.values()), default=0.0)
        return dg.AssetCheckResult(
            passed=not problems,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(problems[:5])
            if problems
            else f"worst day {worst:.2%} <= limit {limit:.2%}",
            metadata={
                "max_quarantine_fraction": dg.MetadataValue.float(limit),
                "worst_day_fraction": dg.MetadataValue.float(worst),
                "days": dg.MetadataValue.json(per_day),
            },
        )

    return [great_expectations_suite, quarantine_rate]
