"""The `deploy_model` job against the real local gateway (`mlops serve`, 2 workers) under real
traffic: a good challenger is promoted step by step; a failing, a slow or an unobserved one is
rolled back with `champion` unchanged. After each, every version's aliases and `deployment.*`
tags in the registry, and the observation of registered_model_version, say what happened."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import dagster as dg
import httpx
import numpy as np
import pytest
from mlflow import MlflowClient

from mlops_platform.defs.deployment.canary import build_deploy_job
from mlops_platform.resources.mlflow import MlflowTracking
from mlops_platform.resources.serving import LocalGateway
from mlops_platform.settings import Settings
from mlops_platform_tests.registry import adult_rows
from mlops_platform_tests.serving import RunningServer, start_server

MODEL = "adult_income_classifier"
# short dwell, small sample; a latency margin wide enough for a loaded 2-core CI machine (the
# slow version burns ~50 ms per request, far beyond it)
FAST_STEPS = {"dwell_seconds": 1.0, "min_samples": 100, "max_wait_seconds": 60.0, "latency_margin_ms": 10.0}
MLFLOW_UI, DAGSTER_UI = "http://mlflow.test:5000", "http://dagster.test:3000"


@pytest.fixture(scope="module")
def gateway(model_registry: Settings, tmp_path_factory) -> Iterator[tuple[Settings, RunningServer]]:
    settings = Settings(
        home=tmp_path_factory.mktemp("deploy") / "home",
        dataset_spec_path=model_registry.dataset_spec_path,
        mlflow_tracking_uri=model_registry.tracking_uri,
    )
    server = start_server(settings, 2)
    yield settings, server
    server.stop()


@pytest.fixture
def traffic(gateway, model_registry: Settings) -> Iterator[list[int]]:
    """Four clients sending real Adult rows, one per request, until the test ends."""
    _, server = gateway
    spec = model_registry.load_spec()
    rows = adult_rows(spec, 300, seed=11)[spec.features.all]
    instances = [
        {k: (int(v) if isinstance(v, np.integer) else (None if v != v else v)) for k, v in r.items()}
        for r in rows.astype(object).to_dict("records")
    ]
    codes: list[int] = []
    stop = threading.Event()

    def send(offset: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            i = offset
            while not stop.is_set():
                answer = client.post(
                    f"/v1/models/{MODEL}:predict", json={"instances": [instances[i % len(instances)]]}
                )
                codes.append(answer.status_code)
                i += 4

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    yield codes
    stop.set()
    for thread in threads:
        thread.join()


def _client(settings: Settings) -> MlflowClient:
    return MlflowClient(settings.tracking_uri, settings.tracking_uri)


def _deploy(
    instance: dg.DagsterInstance, settings: Settings, server: RunningServer, challenger: str | None, **config
) -> dg.ExecuteInProcessResult:
    spec = settings.load_spec()
    if challenger is not None:
        _client(settings).set_registered_model_alias(MODEL, "challenger", challenger)
    job = build_deploy_job(spec)
    return job.execute_in_process(
        run_config={"ops": {"canary_rollout": {"config": {**FAST_STEPS, **config}}}},
        resources={
            "serving": LocalGateway(url=server.url, serving_dir=str(settings.serving_dir)),
            "mlflow": MlflowTracking(
                tracking_uri=settings.tracking_uri,
                artifact_root=settings.artifact_root,
                experiment=spec.name,
                ui_url=MLFLOW_UI,
                dagster_ui_url=DAGSTER_UI,
            ),
        },
        instance=instance,
        raise_on_error=False,
    )


def _shares(server: RunningServer) -> dict[str, int]:
    report = httpx.get(f"{server.url}/admin/traffic", headers=server.admin()).json()
    return {t["version"]: t["percent"] for t in report["status"]["traffic"]}


def _registry(settings: Settings) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Every version of the model: its aliases and its tags."""
    client = _client(settings)
    versions = (
        client.get_model_version(MODEL, v.version) for v in client.search_model_versions(f"name='{MODEL}'")
    )
    return {str(v.version): (sorted(v.aliases), v.tags) for v in versions}


def _registry_observation(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> dict:
    """What the rollout reported on registered_model_version at its end: aliases and status (from
    the instance: a failed step's observations are not in its result)."""
    reports = [
        entry.asset_observation.metadata
        for entry in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION)
        if "deployment_status" in entry.asset_observation.metadata
    ]
    assert len(reports) == 1
    return {key: value.value for key, value in reports[0].items()}


def _failure(result: dg.ExecuteInProcessResult) -> str:
    failure = next(e.step_failure_data for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return failure.user_failure_data.description if failure.user_failure_data else str(failure.error)


def test_a_good_challenger_is_promoted_step_by_step(gateway, traffic, instance):
    settings, server = gateway
    server.set_traffic("1", 100)
    _client(settings).set_registered_model_alias(MODEL, "champion", "1")
    result = _deploy(instance, settings, server, "2")
    assert result.success, _failure(result)
    outcome = result.output_for_node("canary_rollout")
    assert outcome["outcome"] == "promoted" and outcome["previous"] == "1"
    assert [s["percent"] for s in outcome["steps"]] == [10, 50, 100]
    for step in outcome["steps"][:2]:
        assert step["passed"] and step["facts"]["canary_requests"] >= 100
        assert step["facts"]["canary_error_rate"] == 0.0
    assert str(_client(settings).get_model_version_by_alias(MODEL, "champion").version) == "2"
    promoted = _client(settings).get_model_version(MODEL, "2")
    assert promoted.tags["deployment.status"] == "promoted"
    attempt = json.loads(promoted.tags[f"deployment.attempt.{promoted.tags['deployment.attempts']}"])
    assert attempt["outcome"] == "promoted" and attempt["run_id"] == result.run_id and attempt["ended_at"]
    assert attempt["run_url"] == promoted.tags["deployment.run_url"] == f"{DAGSTER_UI}/runs/{result.run_id}"
    registry = _registry(settings)
    # the champion carries `champion` alone; the one it replaced is retired, naming it
    assert {v: aliases for v, (aliases, _) in registry.items()} == {
        "1": [],
        "2": ["champion"],
        "3": [],
        "4": [],
    }
    retired = registry["1"][1]
    assert retired["deployment.status"] == "retired" and retired["deployment.retired_by"] == "2"
    assert retired["deployment.reason"] == f"replaced by v2, promoted by Dagster run {result.run_id}"
    assert [v for v, (_, tags) in registry.items() if tags.get("deployment.status") == "promoted"] == ["2"]
    assert outcome["aliases"] == ["champion"] and outcome["retired"] == ["1"]
    assert outcome["reason"] == "passed every step; retired v1"
    assert _shares(server) == {"2": 100}
    steps = [
        o for o in result.asset_observations_for_node("canary_rollout") if "canary_step_percent" in o.metadata
    ]
    assert [o.metadata["canary_step_percent"].value for o in steps] == [10, 50]
    version_page = f"{MLFLOW_UI}/#/models/{MODEL}/versions/2"
    assert _registry_observation(instance, result) == {
        "version": "2",
        "aliases": "champion",
        "deployment_status": "promoted",
        "reason": "passed every step; retired v1",
        "retired_versions": "1",
        "mlflow_model_version": version_page,
    }
    output = next(e.step_output_data for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
    assert output.metadata["mlflow_model_version"].value == version_page
    assert set(traffic) == {200}  # no request failed during the rollout
    again = _deploy(instance, settings, server, None)  # nothing new registered since
    assert again.success and again.output_for_node("canary_rollout")["outcome"] == "nothing_to_deploy"
    assert _shares(server) == {"2": 100}


@pytest.mark.parametrize(
    ("challenger", "reason"),
    [("3", "error rate 100.00% vs stable 0.00%"), ("4", "ms exceeds")],  # a latency criterion
    ids=["failing", "slow"],
)
def test_a_broken_challenger_is_rolled_back_and_champion_stays(
    gateway, traffic, instance, challenger, reason
):
    settings, server = gateway
    server.set_traffic("2", 100)
    _client(settings).set_registered_model_alias(MODEL, "champion", "2")
    result = _deploy(instance, settings, server, challenger)
    assert not result.success
    message = _failure(result)
    assert message.startswith("rolled back at 10 %") and reason in message
    registry = _registry(settings)
    assert registry["2"][0] == ["champion"]  # untouched
    aliases, tags = registry[challenger]
    assert aliases == []  # judged worse: no later deploy rolls it out again
    assert tags["deployment.status"] == "rolled_back" and tags["deployment.reason"] == message
    attempt = json.loads(tags[f"deployment.attempt.{tags['deployment.attempts']}"])
    assert attempt["outcome"] == "rolled_back" and attempt["reason"] == message
    observed = _registry_observation(instance, result)
    assert (observed["version"], observed["aliases"], observed["deployment_status"]) == (
        challenger,
        "-",
        "rolled_back",
    )
    assert observed["reason"] == message
    assert _shares(server) == {"2": 100, challenger: 0}  # KServe's rollback: the canary keeps 0 %


def test_a_canary_nobody_calls_is_not_promoted(gateway, instance):
    settings, server = gateway
    server.set_traffic("1", 100)
    _client(settings).set_registered_model_alias(MODEL, "champion", "1")
    result = _deploy(instance, settings, server, "2", max_wait_seconds=2.0)
    assert not result.success
    assert "too few requests to judge" in _failure(result) and "minimum 100" in _failure(result)
    registry = _registry(settings)
    assert registry["1"][0] == ["champion"]
    # never judged: it keeps `challenger`, and the next deploy_model tries it again
    assert registry["2"][0] == ["challenger"] and registry["2"][1]["deployment.status"] == "rolled_back"
    assert "keeps the alias 'challenger'" in _failure(result)
    assert _registry_observation(instance, result)["aliases"] == "challenger"
    assert _shares(server) == {"1": 100, "2": 0}


def test_a_gateway_that_is_not_running_fails_with_what_to_do(model_registry, tmp_path, instance):
    settings = Settings(
        home=tmp_path,
        dataset_spec_path=model_registry.dataset_spec_path,
        mlflow_tracking_uri=model_registry.tracking_uri,
    )
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "admin_token").write_text("t")
    server = RunningServer("http://127.0.0.1:9", None, settings)  # type: ignore[arg-type]
    result = _deploy(instance, settings, server, "2")
    assert not result.success
    assert "does not answer" in _failure(result) and "mlops serve" in _failure(result)


def test_an_attempt_whose_run_died_is_marked_interrupted(model_registry):
    """What `failed_run_cleanup_sensor` does for a deploy run that was killed mid-rollout."""
    from mlops_platform.lib.deployment_record import interrupt_attempts_of_run, start_attempt

    client = _client(model_registry)
    attempt = start_attempt(client, MODEL, "4", "dead-run")
    assert client.get_model_version(MODEL, "4").tags["deployment.status"] == "in_progress"
    assert interrupt_attempts_of_run(client, MODEL, "other-run", "x") == []
    assert interrupt_attempts_of_run(client, MODEL, "dead-run", "the run worker died") == ["4"]
    tags = client.get_model_version(MODEL, "4").tags
    assert tags["deployment.status"] == "interrupted"
    assert json.loads(tags[f"deployment.attempt.{attempt}"])["reason"] == "the run worker died"


@pytest.fixture
def approval_settings(gateway, tmp_path) -> Settings:
    """The gateway's settings with a spec that requires an approval before any traffic."""
    import yaml

    settings, _ = gateway
    raw = yaml.safe_load(settings.dataset_spec_path.read_text())
    raw["deployment"] = {**raw.get("deployment", {}), "require_approval": True}
    spec = tmp_path / "approval.yaml"
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    # what registration records of the gates a version passed (register_version runs no gates)
    passed = [{"gate": "model_evaluation:meets_metric_thresholds", "passed": True, "blocking": True}]
    _client(settings).set_model_version_tag(MODEL, "3", "gates", json.dumps(passed))
    return settings.model_copy(update={"dataset_spec_path": spec})


def test_an_unapproved_version_takes_no_traffic_and_times_out_keeping_its_alias(
    approval_settings, gateway, instance
):
    _, server = gateway
    before = _shares(server)
    result = _deploy(instance, approval_settings, server, "3", approval_timeout_seconds=1.0)
    assert not result.success
    message = _failure(result)
    assert message.startswith("v3 was not approved within 1 s") and "mlops approve 3 --by NAME" in message
    aliases, tags = _registry(approval_settings)["3"]
    assert aliases == ["challenger"]  # approve it and launch deploy_model again
    assert tags["approval.status"] == "pending" and tags["approval.requested_by_run"] == result.run_id
    assert tags["deployment.status"] == "approval_timed_out"
    assert _shares(server) == before  # no traffic moved
    observed = [
        e.asset_observation.metadata["approval_status"].value
        for e in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION)
        if "approval_status" in e.asset_observation.metadata
    ]
    assert observed == ["pending", "timed_out"]


def test_a_rejection_while_the_deploy_waits_fails_it_and_takes_the_alias(
    approval_settings, gateway, instance
):
    from mlops_platform.lib.approval import decide

    _, server = gateway
    before = _shares(server)
    client = _client(approval_settings)
    if "approval.status" in client.get_model_version(MODEL, "3").tags:  # a timed-out request's
        client.delete_model_version_tag(MODEL, "3", "approval.status")

    def reject_once_pending() -> None:
        deadline = time.monotonic() + 60
        while client.get_model_version(MODEL, "3").tags.get("approval.status") != "pending":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        decide(client, MODEL, "3", "rejected", "bob", "the model card shows a gap on race")

    rejecter = threading.Thread(target=reject_once_pending)
    rejecter.start()
    result = _deploy(instance, approval_settings, server, "3", approval_timeout_seconds=60.0)
    rejecter.join()
    assert not result.success
    message = _failure(result)
    assert (
        message.startswith("v3 was rejected by bob at ") and "the model card shows a gap on race" in message
    )
    assert "model_evaluation:meets_metric_thresholds" in message  # what was rejected: the gates it passed
    aliases, tags = _registry(approval_settings)["3"]
    assert aliases == [] and tags["deployment.status"] == "rejected"
    assert _shares(server) == before
    again = _deploy(instance, approval_settings, server, "3", approval_timeout_seconds=60.0)
    assert not again.success and _failure(again).startswith("v3 was rejected by bob")  # decided: no wait


def test_a_decision_names_a_person_a_reason_and_a_version_that_passed_its_gates(approval_settings):
    from mlops_platform.lib.approval import decide, decisions_of

    client = _client(approval_settings)
    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    refused = {
        ("3", "", "why"): "--by is empty",
        ("3", "   ", "why"): "--by is empty",
        ("3", "eve", ""): "--reason is empty",
        ("3", "eve\nmallory", "why"): "--by holds a control character",
        ("3", "eve", "fine\r\napproved by admin"): "--reason holds a control character",
        ("3", "x" * 101, "why"): "--by is 101 characters long; at most 100",
        ("3", "eve", "y" * 2001): "--reason is 2001 characters long; at most 2000",
        ("abc", "eve", "why"): "version 'abc': a registered version number",
        ("-1", "eve", "why"): "version '-1'",
        ("99", "eve", "why"): f"{MODEL} has no version 99 (versions: 1, 2, 3, 4)",
        (champion, "eve", "why"): f"v{champion} is {MODEL}'s champion",
        ("4", "eve", "why"): "v4 has no record of passing its gates",
    }
    for (version, by, reason), expected in refused.items():
        with pytest.raises((ValueError, LookupError)) as caught:
            decide(client, MODEL, version, "approved", by, reason)
        assert expected in str(caught.value), (version, by, reason)
    with pytest.raises(ValueError, match="decision 'maybe'"):
        decide(client, MODEL, "3", "maybe", "eve", "why")
    count = len(decisions_of(client.get_model_version(MODEL, "3").tags))
    made = decide(client, MODEL, "3", "approved", "  carol  ", "re-reviewed: the gap is within the limit")
    assert made.by == "carol" and made.gates == ["model_evaluation:meets_metric_thresholds"]
    history = decisions_of(client.get_model_version(MODEL, "3").tags)
    assert len(history) == count + 1 and history[-1] == made  # earlier decisions are kept
