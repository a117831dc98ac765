"""A run whose worker is killed: the daemon marks it failed, frees its slot, retries it, and
its MLflow run ends as KILLED. A real `dagster-daemon`, code server and run workers."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
from mlflow import MlflowClient

from mlops_platform.definitions import build_definitions
from mlops_platform.local_processes import start_dagster_daemon
from mlops_platform.run_launcher import MonitoredRunLauncher, process_alive, run_worker
from mlops_platform_tests.pipeline import land_reference, run_pipeline, wait_for

pytestmark = pytest.mark.slow

LONG_TRAINING = {"ops": {"trained_model": {"config": {"epochs": 100000, "patience": 100000}}}}


def _launch(cli_env: dict, job: str, config: dict | None = None) -> None:
    """`dagster job launch` on the daemon's workspace: the queued run names the location the
    daemon knows (`start_dagster_daemon` writes the file)."""
    workspace = Path(cli_env["MLOPS_HOME"]) / "workspace.yaml"
    argv = ["dagster", "job", "launch", "-w", str(workspace), "-j", job]
    if config:
        argv += ["--config-json", json.dumps(config)]
    subprocess.run(argv, env=cli_env, check=True, capture_output=True, timeout=120)


def test_process_alive_tells_a_live_process_from_a_dead_or_reused_pid():
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert process_alive(child.pid, time.time())
        assert not process_alive(child.pid, time.time() - 3600)  # started after the record: reused pid
    finally:
        child.kill()
        child.wait()
    assert not process_alive(child.pid, time.time())


def test_a_killed_run_is_failed_retried_and_frees_its_slot(adult_settings, cli_env, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", cli_env["DAGSTER_HOME"])
    instance = dg.DagsterInstance.get()
    assert isinstance(instance.run_launcher, MonitoredRunLauncher)
    days = land_reference(adult_settings)
    # the data half on the daemon's own instance, so its new_data_sensor has nothing to start
    assert run_pipeline(
        adult_settings, instance, days[0], days[-1], defs=build_definitions(adult_settings)
    ).success

    daemon = start_dagster_daemon(adult_settings, Path(cli_env["DAGSTER_HOME"]))
    client = MlflowClient(tracking_uri=adult_settings.tracking_uri)
    try:
        _launch(cli_env, "retrain_model", LONG_TRAINING)
        first = wait_for(
            "the long retrain did not start",
            lambda: instance.get_runs(dg.RunsFilter(job_name="retrain_model"), limit=1),
            120,
            daemon,
        )[0]
        _launch(cli_env, "retrain_model")  # the next run for the same warehouse slot: queued behind it

        def training_run():
            experiment = client.get_experiment_by_name(adult_settings.load_spec().name)
            if experiment is None:
                return None
            runs = client.search_runs(
                [experiment.experiment_id], filter_string=f"tags.`dagster.run_id` = '{first.run_id}'"
            )
            return runs[0] if runs and runs[0].info.status == "RUNNING" else None

        mlflow_run = wait_for("training never started in MLflow", training_run, 180, daemon)
        second = instance.get_runs(dg.RunsFilter(job_name="retrain_model"), limit=1)[0]
        assert second.run_id != first.run_id
        assert instance.get_run_by_id(second.run_id).status == dg.DagsterRunStatus.QUEUED

        # Kill the run worker while the code server that started it is frozen (the code server
        # would notice its child's death itself; a crashed or hung one would not): only run
        # monitoring can see the run died.
        pid, _ = run_worker(instance, first.run_id)
        code_server = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        os.kill(code_server, signal.SIGSTOP)
        try:
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            wait_for(
                "run monitoring did not fail the killed run",
                lambda: instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.FAILURE,
                90,
                daemon,
            )
            assert time.monotonic() - killed_at < 90
        finally:
            os.kill(code_server, signal.SIGCONT)
        messages = " ".join(
            f"{e.user_message} {e.dagster_event.message if e.dagster_event else ''}"
            for e in instance.all_logs(first.run_id)
        )
        assert f"run worker process {pid} is gone" in messages

        wait_for(
            "the queued run did not take the freed slot",
            lambda: (
                instance.get_run_by_id(second.run_id).status
                in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.SUCCESS)
            ),
            120,
            daemon,
        )
        try:
            retry = wait_for(
                "the killed run was not retried",
                lambda: [
                    r for r in instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": first.run_id}))
                ],
                120,
                daemon,
            )
        except AssertionError as failure:  # say what the retry daemon had to go on
            events = [e.dagster_event.message for e in instance.all_logs(first.run_id) if e.dagster_event]
            tags = instance.get_run_by_id(first.run_id).tags
            raise AssertionError(f"{failure}\nrun tags: {tags}\nrun events: {events}") from None
        assert retry[0].job_name == "retrain_model"
        wait_for(
            "its MLflow run is still RUNNING",
            lambda: client.get_run(mlflow_run.info.run_id).info.status == "KILLED",
            90,
            daemon,
        )
    finally:
        daemon.stop(timeout=20)


def test_the_cleanup_sensor_ends_what_a_failed_run_left_running(tmp_path, instance):
    """`failed_run_cleanup_sensor` evaluated on a real failed run and a real MLflow store."""
    from mlops_platform.datasets.spec import load_spec, shipped_spec_path
    from mlops_platform.defs.registry.sensors import build_failed_run_cleanup_sensor
    from mlops_platform.resources.mlflow import MlflowTracking

    @dg.op
    def crashes() -> None:
        raise RuntimeError("the step died")

    @dg.job
    def doomed() -> None:
        crashes()

    result = doomed.execute_in_process(instance=instance, raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    spec = load_spec(shipped_spec_path())
    mlflow = MlflowTracking(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path), experiment=spec.name
    )
    client = mlflow.client()
    experiment = mlflow.experiment_id()
    left = client.create_run(experiment, tags={"dagster.run_id": result.run_id}).info.run_id
    other = client.create_run(experiment, tags={"dagster.run_id": "another-run"}).info.run_id

    sensor = build_failed_run_cleanup_sensor(spec)
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"mlflow": mlflow},
    ).for_run_failure()
    sensor(context)
    assert client.get_run(left).info.status == "KILLED"
    assert client.get_run(other).info.status == "RUNNING"  # another run's: untouched
