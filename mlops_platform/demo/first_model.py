"""The demo's first half, in this process: land the demo data, run the data pipeline and the
model half on the instance in `$DAGSTER_HOME`, and say what each run did."""

import dagster as dg

from mlops_platform.defs.job_logs import job_run_config
from mlops_platform.defs.jobs import DATA_PIPELINE, RETRAIN_MODEL
from mlops_platform.lib.landing import landed_days, simulate_batches
from mlops_platform.settings import Settings


def land_demo_data(settings: Settings, batches: int) -> list[str]:
    """Land the reference period and `batches` daily batches, unless already there."""
    spec = settings.load_spec()
    wanted = spec.simulation.reference_days + batches
    if not landed_days(settings.landing_dir):
        simulate_batches(spec, settings.landing_dir, days=0, reference=True)
    missing = wanted - len(landed_days(settings.landing_dir))
    if missing > 0:
        simulate_batches(spec, settings.landing_dir, days=missing)
    return landed_days(settings.landing_dir)


def run_data_pipeline(
    defs: dg.Definitions, instance: dg.DagsterInstance, first: str, last: str
) -> dg.ExecuteInProcessResult:
    """One run of the data pipeline over the landed days `first..last`."""
    return defs.resolve_job_def(DATA_PIPELINE).execute_in_process(
        run_config=job_run_config(),  # a range run gets no job default config
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
            "mlops/trigger": "mlops demo",
        },
        raise_on_error=False,
    )


def run_model_half(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """`retrain_model`: training set, training, evaluation, fairness, gates, registration."""
    return defs.resolve_job_def(RETRAIN_MODEL).execute_in_process(
        instance=instance, tags={"mlops/trigger": "mlops demo"}, raise_on_error=False
    )


def summarize(result: dg.ExecuteInProcessResult) -> list[str]:
    """Lines a person reads: what materialized, which checks passed, the training set."""
    by_asset: dict[str, list] = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        by_asset.setdefault(mat.asset_key.to_user_string(), []).append(mat)
    lines = []
    for key, mats in by_asset.items():
        meta = mats[0].metadata
        rows = meta.get("dagster/row_count") or meta.get("rows") or meta.get("entities_materialized")
        partitions = f" ({len(mats)} partitions)" if len(mats) > 1 else ""
        lines.append(f"  materialized {key:<18}" + (f" {rows.value} rows" if rows else "") + partitions)
        if key == "raw_data":
            lines.append(
                f"      landed {meta['landed_rows'].value}, kept {meta['raw_rows'].value}, "
                f"quarantined {meta['quarantined_rows'].value}"
            )
        if key == "training_set":
            lines.append(f"      splits {meta['splits'].value}")
        if key == "trained_model":
            lines.append(
                f"      on {meta['device'].value}, best epoch {meta['best_epoch'].value} of "
                f"{meta['epochs_run'].value}, threshold {meta['decision_threshold'].value:.3f}"
            )
        if key == "model_evaluation":
            shown = ("roc_auc", "pr_auc", "accuracy", "f1", "expected_calibration_error")
            lines.append("      test " + ", ".join(f"{m} {meta[f'test_{m}'].value:.4f}" for m in shown))
        if key == "registered_model_version":
            lines.append(
                f"      {meta['model_name'].value} v{meta['version'].value}, alias {meta['alias'].value}"
            )
    evaluations = result.get_asset_check_evaluations()
    failed = [e for e in evaluations if not e.passed]
    lines.append(f"  checks: {len(evaluations) - len(failed)} of {len(evaluations)} passed")
    for e in evaluations:
        if e.check_name == "fairness_gaps_within_limits":
            for r in e.metadata["results"].value:
                lines.append(
                    f"      {r['attribute']} {r['gap']} {r['value']:.3f} "
                    f"[95% CI {r['ci_low']:.3f}, {r['ci_high']:.3f}] limit {r['limit']}"
                )
    for e in failed:
        lines.append(f"    FAILED {e.asset_key.to_user_string()}:{e.check_name}: {e.description}")
    return lines
