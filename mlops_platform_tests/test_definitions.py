"""The public interface: asset keys, groups, checks, jobs, sensors and schedules."""

import pytest

from mlops_platform.definitions import build_definitions
from mlops_platform.resources.kserve import KServeInferenceService
from mlops_platform.resources.serving import LocalGateway
from mlops_platform.settings import Settings

GATES = {
    ("model_evaluation", "meets_metric_thresholds"),
    ("model_evaluation", "no_regression_vs_champion"),
    ("model_evaluation", "beats_baseline"),
    ("fairness_report", "fairness_gaps_within_limits"),
    ("raw_data", "great_expectations_suite"),
    ("raw_data", "quarantine_rate"),
    ("feature_store", "online_matches_offline"),
    ("training_set", "training_set_is_sound"),
}


def test_the_graph_exposes_the_documented_assets_checks_and_automation(adult_settings):
    defs = build_definitions(adult_settings)
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    # the documented keys, in their groups (a new asset joins them without an edit here)
    assert (
        groups.items()
        >= {
            "raw_data": "ingestion",
            "quarantined_rows": "ingestion",
            "stg_records": "features",
            "features": "features",
            "labels": "features",
            "feature_store": "features",
            "training_set": "features",
            "hyperparameter_search": "training",
            "trained_model": "training",
            "model_evaluation": "training",
            "fairness_report": "training",
            "registered_model_version": "registry",
            "inference_log": "monitoring",
            "drift_report": "monitoring",
            "live_performance": "monitoring",
        }.items()
    )
    check_keys = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert check_keys >= GATES | {
        ("drift_report", "drift_within_limits"),
        ("live_performance", "live_performance_holds"),
    }
    # dbt tests surface as checks on the dbt models
    assert {
        ("stg_records", "unique_stg_records_record_id"),
        ("labels", "both_classes_present_labels_label"),
    } <= check_keys
    blocking = {
        (key.asset_key.to_user_string(), key.name)
        for key in graph.asset_check_keys
        if graph.get_check_spec(key).blocking
    }
    assert blocking >= GATES
    assert {s.name for s in defs.sensors} >= {
        "new_data_sensor",
        "auto_deploy_sensor",
        "drift_sensor",
        "failed_run_cleanup_sensor",
        "monitoring_automation",
    }
    assert [n.name for n in defs.resolve_job_def("deploy_model").nodes] == ["canary_rollout"]
    assert {s.name for s in defs.schedules} == {"daily_ingestion_schedule", "weekly_retrain_schedule"}
    assert defs.resolve_job_def("data_pipeline") is not None
    retrain = {
        k.to_user_string() for k in defs.resolve_job_def("retrain_model").asset_layer.selected_asset_keys
    }
    assert retrain == {
        "training_set",
        "hyperparameter_search",
        "trained_model",
        "model_evaluation",
        "fairness_report",
        "registered_model_version",
    }


def test_the_serving_backend_is_chosen_by_configuration(adult_settings):
    local = build_definitions(adult_settings).resources["serving"]
    assert isinstance(local, LocalGateway) and local.url == "http://127.0.0.1:8080"

    env = {
        "MLOPS_HOME": str(adult_settings.home),
        "MLOPS_DATASET_SPEC": str(adult_settings.dataset_spec_path),
        "MLOPS_SERVING_BACKEND": "kserve",
        "MLOPS_KSERVE_NAME": "adult",
        "MLOPS_KSERVE_NAMESPACE": "ml",
        "MLOPS_KSERVE_IMAGE": "registry.example/mlops-platform:1",
        "MLOPS_KSERVE_METRICS_URL": "http://prometheus:9090/federate",
    }
    kserve = build_definitions(Settings.from_env(env)).resources["serving"]
    assert isinstance(kserve, KServeInferenceService)
    assert (kserve.name, kserve.namespace, kserve.model_name) == ("adult", "ml", "adult_income_classifier")
    with pytest.raises(ValueError, match="MLOPS_KSERVE_IMAGE"):
        build_definitions(Settings.from_env({k: v for k, v in env.items() if k != "MLOPS_KSERVE_IMAGE"}))
