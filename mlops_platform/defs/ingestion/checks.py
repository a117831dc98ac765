"""Blocking data-quality gates on `raw_data`: a failed gate stops everything downstream.

Each gate also records its verdict per day in the warehouse (`raw_data_gates`), and
`stg_records` keeps only the days that every gate in `RAW_DATA_GATES` passed, so a day
that failed stays out of every later run until it is re-landed and passes.

Both gates read what ingestion recorded with each day's rows (`raw_data_validations`) and
query the tables in DuckDB; neither reads a landing file or loads a table into pandas.
"""

import dagster as dg

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib import warehouse
from mlops_platform.lib.expectations import outcomes_markdown
from mlops_platform.lib.ingestion import (
    QUARANTINED_ROWS,
    RAW_DATA,
    DayAccount,
    day_accounting,
    recorded_validations,
)
from mlops_platform.settings import Settings

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
            f"{1 - limit:.0%} of each day's rows. Judged from the validation ingestion recorded "
            "with the day's rows; a day without one, or whose landing file or spec changed since, fails."
        ),
    )
    def great_expectations_suite(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        failures: list[str] = []
        report = []
        verdicts = {}
        recorded = recorded_validations(settings.warehouse_path, context.partition_keys)
        for day in context.partition_keys:
            validation = recorded.get(day)
            if validation is None:
                stale = f"no validation is recorded with raw_data: materialize raw_data for {day}"
            else:
                stale = validation.stale(settings.landing_dir, spec)
            if stale:
                failed = [f"{day}: {stale}"]
            else:
                report.append(f"### {day}\n\n{outcomes_markdown(validation.outcomes)}")
                failed = [
                    f"{day}: {o.expectation}({o.column or 'table'}) unexpected "
                    f"{o.unexpected_count}/{o.element_count} {o.observed}".strip()
                    for o in validation.outcomes
                    if not o.success
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
        additional_deps=[QUARANTINED_ROWS],
        description=(
            "Quarantine accounting: every landed record is in raw_data or quarantined_rows, never "
            f"both, and at most {limit:.0%} of each day's rows are quarantined."
        ),
    )
    def quarantine_rate(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        problems: list[str] = []
        per_day = {}
        verdicts = {}
        for account in day_accounting(settings.warehouse_path, context.partition_keys):
            day = account.day
            found = _accounting_problems(account, limit)
            fraction = account.quarantined_fraction
            if account.landed is not None:
                per_day[day] = {
                    "landed": account.landed,
                    "raw": account.raw,
                    "quarantined": account.quarantined,
                    "fraction": round(fraction, 4),
                }
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


def _accounting_problems(account: DayAccount, limit: float) -> list[str]:
    """What is wrong with a day's account: records lost, duplicated or kept and quarantined
    both, or too many quarantined."""
    day = account.day
    if account.landed is None:
        return [f"{day}: no landed count is recorded with raw_data: materialize raw_data for {day}"]
    found = []
    if account.both:
        found.append(f"{day}: {account.both} records are both kept and quarantined")
    if account.raw + account.quarantined != account.landed or not account.ids_add_up:
        found.append(
            f"{day}: raw {account.raw} + quarantined {account.quarantined} != landed {account.landed}"
        )
    if account.quarantined_fraction > limit:
        found.append(
            f"{day}: quarantined fraction {account.quarantined_fraction:.2%} exceeds the limit {limit:.2%}"
        )
    return found
