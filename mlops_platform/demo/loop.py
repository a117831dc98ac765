"""The demo's stages, in order (see the package docstring); each one fails loudly with its reason."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import dagster as dg

from mlops_platform.datasets.simulation import Shift
from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.jobs import DATA_PIPELINE, DEPLOY_MODEL, RETRAIN_MODEL
from mlops_platform.demo import (
    AUTO_DEPLOY_SENSOR,
    DRIFT_SENSOR,
    NEW_DATA_SENSOR,
    DemoFailed,
    DemoOptions,
    Progress,
)
from mlops_platform.demo.first_model import land_demo_data, run_data_pipeline, run_model_half, summarize
from mlops_platform.demo.summary import DemoRecord, summary_text
from mlops_platform.demo.watch import InstanceWatch, WaitTimedOut
from mlops_platform.lib.landing import simulate_batches
from mlops_platform.lib.traffic import TrafficSender, held_out_instances
from mlops_platform.local_processes import LocalProcess, start_dagster_daemon, start_model_server
from mlops_platform.resources.serving import LocalGateway
from mlops_platform.settings import Settings

HELD_OUT_ROWS = 5000
T = TypeVar("T")


class DemoLoop:
    def __init__(
        self,
        settings: Settings,
        spec: DatasetSpec,
        instance: dg.DagsterInstance,
        dagster_home: Path,
        port: int,
        options: DemoOptions,
        progress: Progress,
    ) -> None:
        from mlops_platform.definitions import build_definitions

        self.settings, self.spec, self.instance = settings, spec, instance
        self.dagster_home, self.port, self.options, self.progress = dagster_home, port, options, progress
        self.defs = build_definitions(settings)
        self.gateway = LocalGateway(url=settings.serving_url, serving_dir=str(settings.serving_dir))
        self.record = DemoRecord()
        self.server: LocalProcess | None = None
        self.daemon: LocalProcess | None = None
        self.watch: InstanceWatch | None = None
        self.sender: TrafficSender | None = None

    def run(self) -> None:
        self.first_model()
        try:
            self.serve_and_roll_out_v1()
            self.calm_traffic_and_drifted_data()
            self.drifted_traffic()
        finally:
            self.stop_processes()
        self.monitoring_assets()
        self.progress.show(
            summary_text(self.settings, self.spec, self.record, time.monotonic() - self.progress.started)
        )

    # 1. data and the first model, in this process
    def first_model(self) -> None:
        settings, progress = self.settings, self.progress
        progress.stage(f"landing the demo data in {settings.landing_dir}")
        days = land_demo_data(settings, self.options.batches)
        progress.say(f"{len(days)} daily landing files, {days[0]} .. {days[-1]}")
        progress.stage(
            f"data pipeline over {days[0]} .. {days[-1]}: ingest, validate, dbt, Feast, training set"
        )
        data = run_data_pipeline(self.defs, self.instance, days[0], days[-1])
        progress.show("\n".join(summarize(data)))
        if not data.success:
            raise DemoFailed(
                f"the data pipeline failed (run {data.run_id}); the Dagster UI has the step logs"
            )
        progress.stage("model half: train (torch, tracked in MLflow), evaluate, fairness, gates, register")
        model = run_model_half(self.defs, self.instance)
        progress.show("\n".join(summarize(model)))
        if not model.success:
            raise DemoFailed(f"a gate stopped the first model (run {model.run_id}): nothing was registered")

    # 2. the server, and v1 everywhere
    def serve_and_roll_out_v1(self) -> None:
        self.progress.stage(f"model server on {self.settings.serving_url} (2 workers), first rollout")
        self.server = start_model_server(self.settings, self.port, workers=2)
        self.progress.say(f"server up; log {self.server.log_path}")
        deployed = self.defs.resolve_job_def(DEPLOY_MODEL).execute_in_process(
            instance=self.instance, tags={"mlops/trigger": "mlops demo"}, raise_on_error=False
        )
        if not deployed.success:
            raise DemoFailed(f"the first rollout failed (run {deployed.run_id})")
        outcome = deployed.output_for_node("canary_rollout")
        self.progress.say(f"deploy_model: {outcome['outcome']}: {outcome['reason']}")
        self.progress.say(f"serving {self.gateway.status().shares()}")

    # 3 and 4. calm traffic, and data that has moved lands; the daemon ingests it, and its drift
    # sensor judges the (still calm) traffic: no retrain
    def calm_traffic_and_drifted_data(self) -> None:
        monitoring, rate = self.spec.monitoring, self.options.rate
        drift = self.spec.simulation.demo_drift
        self.progress.stage(
            f"traffic without drift ({rate:g} requests/s from held-out rows); {self.options.drifted_days} "
            f"new days land whose data has moved ({', '.join(drift)}); the Dagster daemon starts"
        )
        calm = held_out_instances(self.spec, HELD_OUT_ROWS)
        self.sender = TrafficSender(self.settings.serving_url, self.spec.registered_model_name, calm, rate)
        self.sender.start()
        written = simulate_batches(
            self.spec,
            self.settings.landing_dir,
            days=self.options.drifted_days,
            shifts=[Shift.parse(text) for text in drift],
        )
        self.progress.say(f"landed {', '.join(p.stem for p in written)}")
        time.sleep(max(0.0, monitoring.min_window_rows / rate + 1 - self.sender.phase_seconds))
        self.daemon = start_dagster_daemon(self.settings, self.dagster_home)
        self.progress.say(
            f"dagster-daemon started (log {self.daemon.log_path}); {NEW_DATA_SENSOR} ingests the new days, "
            f"{DRIFT_SENSOR} looks at the traffic every {monitoring.sensor_interval_seconds} s"
        )
        self.watch = InstanceWatch(
            self.instance,
            sensors=[DRIFT_SENSOR, NEW_DATA_SENSOR, AUTO_DEPLOY_SENSOR],
            explained=[DRIFT_SENSOR],
            say=self.progress.say,
            idle=self._alive,
        )

        def judged() -> list:
            return [
                t
                for t in self.watch.ticks(DRIFT_SENSOR)
                if t.run_ids or (t.skip_reason or "").startswith("no drift")
            ]

        first = self._wait(f"{DRIFT_SENSOR} to judge a full window of calm traffic", judged)[0]
        if first.run_ids:
            raise DemoFailed(f"{DRIFT_SENSOR} requested a retrain on traffic without drift")
        self.record.calm_verdict = first.skip_reason
        self._wait_for_run(DATA_PIPELINE)
        if self.watch.runs(RETRAIN_MODEL):
            raise DemoFailed(
                f"a retrain started while the traffic was calm: {self.watch.runs(RETRAIN_MODEL)}"
            )

    # 5. now the traffic moves too: drift, retrain, gates, registration, canary
    def drifted_traffic(self) -> None:
        drift = [Shift.parse(text) for text in self.spec.simulation.demo_drift]
        self.progress.stage(f"the traffic moves the same way; {DRIFT_SENSOR} should notice")
        self.record.calm_traffic = self.sender.switch(held_out_instances(self.spec, HELD_OUT_ROWS, drift))
        retrain = self._wait_for_run(RETRAIN_MODEL)
        self.record.retrain_run = retrain
        self.progress.stage("v2 registered; auto_deploy_sensor starts the canary rollout")
        deploy = self._wait_for_run(DEPLOY_MODEL)
        self.record.deploy_run = deploy
        time.sleep(3)  # a moment of traffic on the promoted version
        self.watch.poll()
        self.record.drifted_traffic = self.sender.stop()
        self.record.drift_ticks = self.watch.ticks(DRIFT_SENSOR)
        self.record.retrain_runs = len(self.watch.runs(RETRAIN_MODEL))
        self.record.shares = self.gateway.status().shares()

    def stop_processes(self) -> None:
        if self.sender is not None:
            self.sender.stop()
        for process in (self.daemon, self.server):
            if process is not None:
                process.stop()
        if self.daemon is not None or self.server is not None:
            self.progress.say("stopped the traffic, the Dagster daemon and the model server")

    # 6. labels arrive; the monitoring assets are materialized
    def monitoring_assets(self) -> None:
        from mlops_platform.lib.ground_truth import deliver_labels
        from mlops_platform.lib.inference_records import read_new_records

        self.progress.stage(
            "labels for the served requests arrive; inference_log, drift_report, live_performance"
        )
        logged, _ = read_new_records(self.settings.inference_log_dir, {})
        deliver_labels(self.spec, logged["request_id"].tolist(), self.settings.ground_truth_dir)
        job = self.defs.resolve_implicit_global_asset_job_def()
        days = sorted({d.name.removeprefix("date=") for d in self.settings.inference_log_dir.glob("date=*")})
        for day in days:
            self._materialize(job, ["inference_log"], partition_key=day)
        self.record.drift_report = self._materialize(job, ["drift_report"])["drift_report"]
        self.record.live_performance = self._materialize(job, ["live_performance"])["live_performance"]

    def _materialize(
        self, job: dg.JobDefinition, assets: list[str], partition_key: str | None = None
    ) -> dict:
        result = job.execute_in_process(
            asset_selection=[dg.AssetKey(a) for a in assets],
            partition_key=partition_key,
            instance=self.instance,
            tags={"mlops/trigger": "mlops demo"},
            raise_on_error=False,
        )
        if not result.success:
            raise DemoFailed(f"materializing {assets} failed (run {result.run_id})")
        for check in result.get_asset_check_evaluations():
            verdict = "passed" if check.passed else "did not pass"
            self.progress.say(f"check {check.check_name} {verdict}: {check.description}")
        return {a: result.output_for_node(a) for a in assets if a != "inference_log"}

    def _alive(self) -> None:
        for process in (self.daemon, self.server):
            if process is not None and not process.running():
                raise DemoFailed(f"the {process.name} exited:\n{process.log_tail()}")

    def _wait(self, what: str, found: Callable[[], T | None]) -> T:
        try:
            return self.watch.wait_for(what, found, self.options.wait_seconds)
        except WaitTimedOut as exc:
            raise DemoFailed(f"{exc}; daemon log {self.daemon.log_path}") from None

    def _wait_for_run(self, job_name: str) -> dg.DagsterRun:
        run = self._wait(f"a {job_name} run to finish", lambda: self.watch.finished_run(job_name))
        if run.status != dg.DagsterRunStatus.SUCCESS:
            raise DemoFailed(
                f"{job_name} run {run.run_id} ended {run.status.value}: "
                f"{self._failure(run.run_id)} (Dagster UI: /runs/{run.run_id})"
            )
        return run

    def _failure(self, run_id: str) -> str:
        """The first step failure or failed check of a run, in words."""
        records = self.instance.get_records_for_run(run_id).records
        for record in records:
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                evaluation = event.event_specific_data
                if not evaluation.passed:
                    return f"check {evaluation.check_name} failed: {evaluation.description}"
            if event.event_type == dg.DagsterEventType.STEP_FAILURE:
                error = event.event_specific_data.error
                return f"step {event.step_key} failed: {error.message.strip() if error else '?'}"
        return "no step failed (see the run's logs)"
