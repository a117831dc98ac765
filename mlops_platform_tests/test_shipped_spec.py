"""`make demo`'s first model: the shipped Adult spec, its reference period and its three daily
batches, through the data pipeline and `retrain_model` with the spec's own gates, registers v1.

The other tests use looser gates on small slices; this one holds the shipped gates to the demo's
real data, so a spec or gate change that would stop the demo fails here."""

import dagster as dg
import pytest

from mlops_platform.datasets.spec import shipped_spec_path
from mlops_platform.definitions import build_definitions
from mlops_platform.demo.first_model import land_demo_data, run_data_pipeline, run_model_half
from mlops_platform.settings import Settings


@pytest.mark.slow
def test_the_demo_data_passes_every_shipped_gate_and_registers_v1(tmp_path):
    settings = Settings(home=tmp_path / "home", dataset_spec_path=shipped_spec_path())
    days = land_demo_data(settings, batches=3)
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        data = run_data_pipeline(defs, instance, days[0], days[-1])
        assert data.success
        model = run_model_half(defs, instance)
        failed = [
            f"{e.check_name}: {e.description}" for e in model.get_asset_check_evaluations() if not e.passed
        ]
        assert failed == [] and model.success
        registered = instance.get_latest_materialization_event(dg.AssetKey("registered_model_version"))
        assert registered.asset_materialization.metadata["version"].value == "1"
