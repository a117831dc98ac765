"""The model half for real: torch training tracked in MLflow, evaluation and fairness gates,
registration only when every gate passed, and links between the Dagster and MLflow UIs."""

from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from mlops_platform.definitions import build_definitions
from mlops_platform.defs.jobs import RETRAIN_MODEL
from mlops_platform.lib import warehouse
from mlops_platform.lib.model_artifact import load_artifact
from mlops_platform.settings import Settings
from mlops_platform_tests.pipeline import checks, copy_landed, materialized

MLFLOW_UI, DAGSTER_UI = "http://mlflow.test:5000", "http://dagster.test:3000"
MODEL_HALF = {
    "training_set",
    "hyperparameter_search",
    "trained_model",
    "model_evaluation",
    "fairness_report",
    "registered_model_version",
}


def _settings(landed_home: Path, tmp_path: Path, **spec_overrides) -> Settings:
    return copy_landed(landed_home, tmp_path, **spec_overrides)


def _retrain(
    settings: Settings, instance: dg.DagsterInstance, config: dict | None = None
) -> dg.ExecuteInProcessResult:
    run_config = {"ops": {"trained_model": {"config": config}}} if config else None
    return (
        build_definitions(settings)
        .resolve_job_def(RETRAIN_MODEL)
        .execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)
    )


def _client(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def _links(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, str]:
    """The URL entries of an asset's materialization metadata."""
    (materialization,) = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in materialization.metadata.items() if isinstance(v, dg.UrlMetadataValue)}


def test_retraining_registers_a_challenger_with_its_evidence(landed_home, tmp_path, instance, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = _settings(landed_home, tmp_path).model_copy(
        update={"mlflow_ui_url": MLFLOW_UI, "dagster_ui_url": DAGSTER_UI}
    )
    spec = settings.load_spec()
    result = _retrain(settings, instance)
    assert result.success
    assert materialized(result) == MODEL_HALF
    gates = checks(result)
    assert all(e.passed for e in gates.values())
    # judged against the logistic baseline trained in the same run
    assert gates["beats_baseline"].metadata["evaluated"].value is True
    # race's smallest groups have a few test rows here: the small-data gates warn instead of failing
    fairness = gates["fairness_gaps_within_limits"]
    assert "warning (on_unmeasurable: warn): race: group" in fairness.description
    assert "sex equalized_odds_difference" in fairness.description  # still judged

    client = _client(settings)
    version = client.get_model_version_by_alias(spec.registered_model_name, "challenger")
    assert str(version.version) == "1"
    for tag in ("metric.roc_auc", "fairness", "training_set_version", "dagster_run_id", "git_commit"):
        assert version.tags[tag]
    assert version.tags["dagster_run_id"] == result.run_id
    assert version.description.startswith(f"# Model card: {spec.registered_model_name} v1")

    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"  # the MLflow run ended with the step that opened it
    assert run.data.tags["dagster.run_id"] == result.run_id
    assert run.data.params["seed"] == "0"
    # chosen from the ~1,400 train rows (lib/training_params.py: at least 16 steps an epoch)
    assert (run.data.params["batch_size"], run.data.params["epochs"]) == ("64", "30")
    assert run.data.params["streamed"] == "False"  # a small train split trains in memory
    assert run.data.params["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # recorded
    history = client.get_metric_history(version.run_id, "validation_loss")
    patience = int(run.data.params["patience"])
    assert len(history) == int(run.data.metrics["best_epoch"]) + patience or len(history) == 30
    for name in (
        "rows_per_second",
        "test_roc_auc",
        "test_expected_calibration_error",
        "validation_f1",
        "test_roc_auc_ci_low",
        "test_roc_auc_ci_high",
        "baseline_validation_roc_auc",
        "baseline_test_roc_auc",
        "fairness_sex_equalized_odds_difference",
    ):
        assert name in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "evaluation")}
    assert {"evaluation/roc.png", "evaluation/calibration.png", "evaluation/fairness.png"} <= artifacts
    assert run.info.artifact_uri.startswith(settings.home.as_uri())
    assert not (tmp_path / "mlruns").exists()

    # the registered pyfunc scores like the TorchScript file it wraps
    training = warehouse.read_table(settings.warehouse_path, "training_set")
    test = training[training["split"] == "test"]
    mlflow.set_tracking_uri(settings.tracking_uri)
    scored = mlflow.pyfunc.load_model(f"models:/{spec.registered_model_name}@challenger").predict(
        test[spec.features.all]
    )
    artifact = load_artifact(Path(result.output_for_node("trained_model").artifact_path))
    assert np.allclose(scored["probability"], artifact.predict_proba(test), atol=1e-6)
    evaluation = result.output_for_node("model_evaluation")["metrics"]
    assert abs(evaluation["roc_auc"] - run.data.metrics["test_roc_auc"]) < 1e-9

    # each asset links to the MLflow page it wrote; the run and the version link back to Dagster
    run_page = f"{MLFLOW_UI}/#/experiments/{run.info.experiment_id}/runs/{version.run_id}"
    for asset in ("trained_model", "model_evaluation", "fairness_report"):
        assert _links(result, asset) == {"mlflow_run": run_page}, asset
    assert _links(result, "registered_model_version") == {
        "mlflow_model_version": f"{MLFLOW_UI}/#/models/{spec.registered_model_name}/versions/1",
        "mlflow_run": run_page,
    }
    dagster_page = f"{DAGSTER_UI}/runs/{result.run_id}"
    assert run.data.tags["dagster.run_url"] == version.tags["dagster_run_url"] == dagster_page

    # the registration run starts the canary rollout of the new challenger, once
    defs = build_definitions(settings)
    sensor = next(s for s in defs.sensors if s.name == "auto_deploy_sensor")

    def evaluate(run_result: dg.ExecuteInProcessResult):
        return sensor(
            dg.build_run_status_sensor_context(
                sensor_name=sensor.name,
                dagster_instance=instance,
                dagster_run=run_result.dagster_run,
                dagster_event=run_result.get_run_success_event(),
            )
        )

    request = evaluate(result)
    assert isinstance(request, dg.RunRequest) and request.run_key == f"deploy-after-{result.run_id}"
    assert request.tags["mlops/version"] == "1"
    unrelated = dg.materialize([dg.asset(name="unrelated")(lambda: 1)], instance=instance)
    assert isinstance(evaluate(unrelated), dg.SkipReason)


@pytest.mark.parametrize(
    ("overrides", "failing_check", "message"),
    [
        ({"gates": {"min_metrics": {"roc_auc": 0.999}}}, "meets_metric_thresholds", "roc_auc"),
        (
            {
                "sensitive_attributes": [
                    {"column": "sex", "max_gaps": {"demographic_parity_difference": 0.001}}
                ]
            },
            "fairness_gaps_within_limits",
            "sex demographic_parity_difference",
        ),
    ],
)
def test_a_failing_gate_leaves_the_registry_untouched(
    landed_home, tmp_path, instance, overrides, failing_check, message
):
    settings = _settings(landed_home, tmp_path, **overrides)
    result = _retrain(settings, instance)
    assert not result.success
    assert "registered_model_version" not in materialized(result)
    failed = checks(result)[failing_check]
    assert not failed.passed and message in failed.description and "limit" in failed.description
    assert _client(settings).search_registered_models() == []


def test_the_weekly_schedule_runs_the_same_gates(landed_home, tmp_path, instance):
    settings = _settings(landed_home, tmp_path, gates={"min_metrics": {"roc_auc": 0.999}})
    defs = build_definitions(settings)
    schedule = defs.get_schedule_def("weekly_retrain_schedule")
    request = schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests[0]
    result = defs.resolve_job_def(RETRAIN_MODEL).execute_in_process(
        instance=instance, tags=request.tags, raise_on_error=False
    )
    assert not result.success and "registered_model_version" not in materialized(result)
    assert _client(settings).search_registered_models() == []


def test_a_challenger_worse_than_the_champion_is_not_registered(landed_home, tmp_path, instance):
    settings = _settings(landed_home, tmp_path)
    name = settings.load_spec().registered_model_name
    assert _retrain(settings, instance).success
    # a registered model without a champion yet: nothing to regress from
    second = _retrain(settings, instance, {"seed": 5})
    assert second.success
    nothing = checks(second)["no_regression_vs_champion"]
    assert nothing.description.startswith("no champion yet") and nothing.metadata["evaluated"].value is False
    client = _client(settings)
    client.set_registered_model_alias(name, "champion", "1")

    weak = {"hidden_sizes": [2], "epochs": 1, "learning_rate": 0.0005, "seed": 3}
    result = _retrain(settings, instance, weak)
    assert not result.success
    regression = checks(result)["no_regression_vs_champion"]
    assert not regression.passed and "vs champion" in regression.description
    assert regression.metadata["evaluated"].value is True
    assert sorted(str(v.version) for v in client.search_model_versions(f"name='{name}'")) == ["1", "2"]

    # the same recipe as the champion does not regress: it is registered as v3
    again = _retrain(settings, instance)
    assert again.success and checks(again)["no_regression_vs_champion"].passed
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "3"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
