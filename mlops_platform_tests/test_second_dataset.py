"""A second, generated dataset with other columns runs through the same graph: no code change."""

from mlops_platform_tests.pipeline import DATA_HALF, checks, land_reference, materialized, run_pipeline, table


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
