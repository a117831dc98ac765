"""The whole data half on a slice of Adult: landing to training set, every check real."""

import dagster as dg
import pandas as pd

from mlops_platform.feature_repo.definitions import feature_references
from mlops_platform.resources.feast import FeastResource
from mlops_platform_tests.pipeline import DATA_HALF, checks, land_reference, materialized, run_pipeline, table


def test_the_data_half_materializes_with_every_check_passing(adult_settings, instance):
    days = land_reference(adult_settings)
    spec = adult_settings.load_spec()
    result = run_pipeline(adult_settings, instance, days[0], days[-1])
    assert result.success
    assert materialized(result) == DATA_HALF
    evaluations = checks(result)
    assert len(evaluations) == 10
    assert [name for name, e in evaluations.items() if not e.passed] == []

    training = table(adult_settings, "training_set")
    labels = table(adult_settings, "labels")
    assert len(training) == len(labels) == 600
    assert list(training.columns) == ["record_id", "event_timestamp", "split", "label", *spec.features.all]
    assert set(training["split"]) == {"train", "validation", "test"}
    test_share = (training["split"] == "test").mean()
    assert 0.08 < test_share < 0.22  # 15% by a hash of the id, on 600 rows

    # the label is the spec's positive class, as 0/1, for exactly the landed records
    staged = table(adult_settings, "stg_records").set_index("record_id")
    expected = (staged[spec.label.column] == spec.label.positive_class).astype(int)
    assert (training.set_index("record_id")["label"] == expected.loc[training["record_id"]]).all()

    # features in the training set are the ones in the offline table (point-in-time join)
    offline = pd.read_parquet(adult_settings.lake_dir / "features").set_index("record_id")
    joined = training.set_index("record_id")
    numeric = spec.features.numeric[0]
    assert (joined[numeric] == offline.loc[joined.index, numeric]).all()

    # the online store serves the same record
    store = FeastResource(project=spec.name, repo_dir=str(adult_settings.feast_dir)).store()
    record = training["record_id"].iloc[0]
    online = store.get_online_features(feature_references(spec), [{"record_id": record}]).to_dict()
    assert online[numeric] == [offline.loc[record, numeric]]

    # lineage: raw_data and training_set carry data versions
    for key in ("raw_data", "training_set"):
        latest = instance.fetch_materializations(dg.AssetKey(key), limit=1).records[0]
        assert latest.asset_materialization.tags["dagster/data_version"]
