"""Links between the Dagster and MLflow UIs: hyperparameter_search links its parent run and every
run it opens links back; no address, no link. The other assets' links are pinned in
test_model_half.py, the deploy job's in test_deploy.py."""

import dagster as dg
from mlflow import MlflowClient

from mlops_platform.defs.training.hyperparameter_search import build_hyperparameter_search_asset
from mlops_platform.resources.mlflow import MlflowTracking, url_metadata
from mlops_platform_tests.pipeline import copy_landed

MLFLOW_UI, DAGSTER_UI = "http://mlflow.test:5000/", "http://dagster.test:3000"


def test_the_search_links_its_parent_run_and_each_of_its_runs_links_back(landed_home, tmp_path, instance):
    search = {"trials": 1, "timeout_minutes": None, "parameters": ["learning_rate"]}
    settings = copy_landed(
        landed_home, tmp_path, training={"hidden_sizes": [8], "epochs": 1, "search": search}
    )
    spec = settings.load_spec()
    mlflow = MlflowTracking(
        tracking_uri=settings.tracking_uri,
        artifact_root=settings.artifact_root,
        experiment=spec.name,
        ui_url=MLFLOW_UI,
        dagster_ui_url=DAGSTER_UI,
    )
    result = dg.materialize(
        [build_hyperparameter_search_asset(settings, spec)], instance=instance, resources={"mlflow": mlflow}
    )
    parent_id = result.output_for_node("hyperparameter_search")["mlflow_run_id"]
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    parent = client.get_run(parent_id)
    (materialization,) = result.asset_materializations_for_node("hyperparameter_search")
    assert materialization.metadata["mlflow_run"] == dg.MetadataValue.url(
        f"http://mlflow.test:5000/#/experiments/{parent.info.experiment_id}/runs/{parent_id}"
    )
    trials = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(trials) == 1
    for run in [parent, *trials]:
        assert run.data.tags["dagster.run_id"] == result.run_id
        assert run.data.tags["dagster.run_url"] == f"{DAGSTER_UI}/runs/{result.run_id}"


def test_a_ui_without_an_address_gets_no_link(tmp_path):
    tracking = MlflowTracking(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path), experiment="x"
    )
    assert tracking.run_url("0123") is None
    assert tracking.model_version_url("model", "1") is None
    assert tracking.dagster_run_url("0123") is None
    assert url_metadata(mlflow_run=None, elsewhere="http://x/1") == {
        "elsewhere": dg.MetadataValue.url("http://x/1")
    }
