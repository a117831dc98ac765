"""A second, generated dataset with other columns runs through the whole graph with no code
change and no run config: data half, search, training, gates, registration, a served prediction."""

import httpx
from mlflow import MlflowClient

from mlops_platform_tests.pipeline import (
    DATA_HALF,
    checks,
    deploy,
    land_reference,
    materialized,
    retrain,
    run_pipeline,
    table,
)
from mlops_platform_tests.serving import start_server


def test_a_generated_dataset_with_its_own_ids_and_timestamps_runs_through_the_graph(
    sensor_settings, instance
):
    spec = sensor_settings.load_spec()
    assert not set(spec.columns) & {"age", "income", "sex", "race"}
    days = land_reference(sensor_settings)
    result = run_pipeline(sensor_settings, instance, days[0], days[-1])
    assert result.success
    assert materialized(result) == DATA_HALF
    assert all(e.passed for e in checks(result).values())

    training = table(sensor_settings, "training_set")
    assert list(training.columns) == ["record_id", "event_timestamp", "split", "label", *spec.features.all]
    assert len(training) == 600
    # ids and event times come from the source's own columns
    assert training["record_id"].str.startswith("dev-").all()
    staged = table(sensor_settings, "stg_records").set_index("record_id")
    assert (staged["measured_at"] == staged["event_timestamp"]).all()
    assert training["label"].isin([0, 1]).all() and training["label"].nunique() == 2
    # the nullable numeric feature keeps its missing values for the model to handle
    assert training[spec.features.numeric[0]].isna().any()

    trained = retrain(sensor_settings, instance)
    gates = checks(trained)
    assert trained.success, {name: e.description for name, e in gates.items() if not e.passed}
    assert {"hyperparameter_search", "trained_model", "registered_model_version"} <= materialized(trained)
    assert trained.output_for_node("hyperparameter_search")["trials"] == 4
    assert all(e.passed for e in gates.values())
    client = MlflowClient(sensor_settings.tracking_uri, sensor_settings.tracking_uri)
    version = client.get_model_version_by_alias(spec.registered_model_name, "challenger")
    assert str(version.version) == "1"

    server = start_server(sensor_settings, 1)
    try:
        deployed = deploy(sensor_settings, instance, server.url)
        assert deployed.success
        assert deployed.output_for_node("canary_rollout")["outcome"] == "promoted"
        answer = httpx.post(
            server.predict_url(spec.registered_model_name),
            json={"instances": [{"temperature": 95.5, "pressure": 1010, "region": "east", "firmware": "v2"}]},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-model-version"] == "1"
        assert 0.0 <= answer.json()["predictions"][0]["probability"] <= 1.0
    finally:
        server.stop()
