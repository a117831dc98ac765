"""An unreachable MLflow fails fast, naming the store without its password, before any work."""

import socket
import time

import dagster as dg
import pytest

from mlops_platform.definitions import build_definitions
from mlops_platform.defs.jobs import RETRAIN_MODEL
from mlops_platform.lib.tracking_store import RegistryUnavailable
from mlops_platform.resources.mlflow import MlflowTracking
from mlops_platform.settings import Settings
from mlops_platform_tests.serving import free_port

PASSWORD = "hunter2-secret"


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:{port}",
        f"postgresql://mlops:{PASSWORD}@127.0.0.1:{{port}}/mlflow",
    ],
)
def test_an_unreachable_store_fails_in_seconds_naming_it_redacted(uri):
    uri = uri.format(port=free_port())  # nothing listens there
    resource = MlflowTracking(tracking_uri=uri, artifact_root="/tmp/unused", experiment="x")
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable) as failure:
        resource.check_reachable()
    assert time.monotonic() - started < 30
    message = str(failure.value)
    assert PASSWORD not in message
    assert uri.replace(PASSWORD, "***") in message
    assert "MLOPS_MLFLOW_TRACKING_URI" in message


def test_a_store_that_answers_passes_and_an_uncreatable_sqlite_folder_fails(tmp_path):
    with socket.socket() as listening:  # a server that accepts connections, with credentials in its URI
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        MlflowTracking(
            tracking_uri=f"http://user:{PASSWORD}@127.0.0.1:{port}",
            artifact_root="/tmp/unused",
            experiment="x",
        ).check_reachable()
    MlflowTracking(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
        artifact_root="/tmp/unused",
        experiment="x",
    ).check_reachable()
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(RegistryUnavailable, match="sqlite:///"):
        MlflowTracking(
            tracking_uri=f"sqlite:///{tmp_path / 'a_file' / 'mlflow.db'}",
            artifact_root="/tmp/unused",
            experiment="x",
            probe_attempts=1,
        ).check_reachable()


def test_retrain_fails_before_rebuilding_the_training_set(adult_settings: Settings, instance):
    port = free_port()
    settings = adult_settings.model_copy(
        update={"mlflow_tracking_uri": f"postgresql://mlops:{PASSWORD}@127.0.0.1:{port}/mlflow"}
    )
    started = time.monotonic()
    result = (
        build_definitions(settings)
        .resolve_job_def(RETRAIN_MODEL)
        .execute_in_process(instance=instance, raise_on_error=False)
    )
    elapsed = time.monotonic() - started
    assert not result.success
    assert elapsed < 30, f"took {elapsed:.0f} s to fail"
    assert result.get_asset_materialization_events() == []  # training_set was not rebuilt
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    errors = " ".join(str(e.event_specific_data) for e in result.all_events if e.is_failure)
    assert "did not answer" in errors + (failure.message or "")
    assert PASSWORD not in errors + (failure.message or "")
