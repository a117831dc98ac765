"""`deploy_model`: roll the `challenger` out behind a canary, analyse each step, promote or roll back."""

import time

import dagster as dg
from pydantic import Field

from mlops_platform.datasets.simulation import AnalysisPolicy
from mlops_platform.datasets.spec import DatasetSpec, DeploymentSpec
from mlops_platform.defs.job_logs import job_loggers_config
from mlops_platform.defs.jobs import DEPLOY_MODEL
from mlops_platform.lib.approval import request_decision, wait_for_decision
from mlops_platform.lib.canary_analysis import (
    Verdict,
    VersionWindow,
    compare,
    has_enough_samples,
    parse_metrics,
)
from mlops_platform.lib.deployment_record import finish_attempt, retire, start_attempt
from mlops_platform.lib.model_registry import CHALLENGER, CHAMPION
from mlops_platform.resources.mlflow import MlflowTracking, url_metadata
from mlops_platform.resources.serving import LEASE_RENEW_SECONDS, ServingBackend, deploy_owner

REGISTERED = dg.AssetKey("registered_model_version")
_ROLLOUT = DeploymentSpec()  # the defaults of a spec without a `deployment` section


class CanaryConfig(dg.Config):
    """Steps, dwell and the analysis thresholds (see `lib/canary_analysis.py`). The job's default
    run config comes from the dataset spec's `deployment` section."""

    alias: str = CHALLENGER
    steps: list[int] = Field(default_factory=lambda: list(_ROLLOUT.canary_steps))
    dwell_seconds: float = _ROLLOUT.dwell_seconds
    max_wait_seconds: float = _ROLLOUT.max_wait_seconds  # per step, for `min_samples`
    # with the spec's `require_approval`: the longest wait for `mlops approve` (the requirement
    # itself is the spec's alone: no run config waives it)
    approval_timeout_seconds: float = Field(_ROLLOUT.approval_timeout_seconds, gt=0.0)
    min_samples: int = AnalysisPolicy.min_samples
    max_error_rate_increase: float = AnalysisPolicy.max_error_rate_increase
    max_latency_ratio: float = AnalysisPolicy.max_latency_ratio
    latency_margin_ms: float = AnalysisPolicy.latency_margin_ms
    max_prediction_psi: float = AnalysisPolicy.max_prediction_psi
    prediction_alpha: float = AnalysisPolicy.prediction_alpha

    def policy(self) -> AnalysisPolicy:
        return AnalysisPolicy(**self.model_dump(include=set(AnalysisPolicy.__dataclass_fields__)))

    def checked_steps(self) -> list[int]:
        try:
            return DeploymentSpec(canary_steps=self.steps).canary_steps
        except ValueError as exc:
            raise dg.Failure(str(exc).splitlines()[-1].strip()) from None


def _steps_markdown(steps: list[dict]) -> str:
    lines = [
        "| step | canary % | canary req | stable req | errors canary / stable "
        "| p95 ms canary / stable | PSI | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, step in enumerate(steps, start=1):
        f = step.get("facts", {})
        verdict = "pass" if step["passed"] else "FAIL: " + "; ".join(step["reasons"])
        lines.append(
            f"| {i} | {step['percent']} | {f.get('canary_requests', 0):.0f} "
            f"| {f.get('stable_requests', 0):.0f} | "
            f"{f.get('canary_error_rate', 0):.2%} / {f.get('stable_error_rate', 0):.2%} | "
            f"{f.get('canary_p95_ms', float('nan')):.1f} / {f.get('stable_p95_ms', float('nan')):.1f} | "
            f"{f.get('prediction_psi', 0):.3f} | {verdict} |"
        )
    return "\n".join(lines)


def _hold(serving: ServingBackend, owner: dict, seconds: float) -> None:
    """Wait `seconds`, renewing the canary's lease so the gateway knows a run still drives it."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        serving.renew_lease(owner)
        time.sleep(min(left, LEASE_RENEW_SECONDS))


def _window(
    serving: ServingBackend,
    model_name: str,
    canary: str,
    stable: str,
    before: dict,
    config: CanaryConfig,
    owner: dict,
) -> tuple[VersionWindow, VersionWindow]:
    """Dwell, then wait (up to `max_wait_seconds`) until both versions have `min_samples`."""
    _hold(serving, owner, config.dwell_seconds)
    deadline = time.monotonic() + config.max_wait_seconds
    while True:
        after = parse_metrics(serving.metrics_text(), model_name)
        windows = {
            v: after.get(v, VersionWindow()).minus(before.get(v, VersionWindow())) for v in (canary, stable)
        }
        if (
            has_enough_samples(windows[canary], windows[stable], config.policy())
            or time.monotonic() > deadline
        ):
            return windows[canary], windows[stable]
        _hold(serving, owner, 1.0)


def build_deploy_job(spec: DatasetSpec) -> dg.JobDefinition:
    @dg.op(
        description=(
            "Rolls the `challenger` version out behind a canary. With the spec's `require_approval`, "
            "it first waits (before any traffic) for a person's `mlops approve` and fails on `mlops "
            "reject` or after `approval_timeout_seconds`. Then, for each step (default 10 → 50 → 100 %) "
            "it sets the split on the serving backend, confirms it, waits the dwell time, and compares "
            "canary with stable from the server's metrics (error rate, p95 latency, prediction "
            "distribution, with a minimum sample). Promotes (alias `champion` moves, `challenger` "
            "leaves the promoted version, the versions it replaced are tagged retired) or rolls back "
            "(0 %, `champion` unchanged; a canary judged worse loses `challenger`, one rolled back "
            "for too few requests to judge keeps it for the next deploy_model). Every attempt and its "
            "outcome is tagged on the version (`deployment.*`) and reported as an observation of "
            "registered_model_version; the gateway rolls back a canary whose lease this run stops "
            "renewing."
        ),
        tags={"kind": "deploy"},
    )
    def canary_rollout(
        context: dg.OpExecutionContext, config: CanaryConfig, serving: ServingBackend, mlflow: MlflowTracking
    ) -> dg.Output[dict]:
        """What the registry says afterwards:

        - promoted (or already taking all traffic): the version holds `champion` alone (the rolled
          out alias and `challenger` leave it); the champion before it and the version that served
          all traffic before it are `retired`, naming it;
        - rolled back on a verdict (the canary was judged worse): it loses the rolled out alias and
          `challenger`, so no later deploy rolls it out again (set the alias again to retry);
        - rolled back before a verdict (too few requests to judge), failed or interrupted: it
          keeps its alias, and the next deploy_model tries it again;
        - `champion` moves only on a promotion.
        """
        name = spec.registered_model_name
        steps = config.checked_steps()
        challenger = mlflow.version_for_alias(name, config.alias)
        champion = mlflow.version_for_alias(name, CHAMPION)
        if challenger is None:
            if champion is None:
                raise dg.Failure(
                    f"{name} has no {config.alias!r} alias: register a version first (retrain_model)"
                )
            reason = (
                f"no {config.alias!r} to roll out: v{champion.version} is {CHAMPION} "
                "(a promotion takes the alias off; retrain_model registers the next one)"
            )
            context.log.info(reason)
            return dg.Output(
                {"version": None, "outcome": "nothing_to_deploy", "reason": reason, "steps": []},
                metadata={"outcome": "nothing_to_deploy", "reason": reason},
            )
        version = str(challenger.version)
        champion_before = str(champion.version) if champion is not None else None
        client = mlflow.client()
        current = serving.status()
        stable = current.rolled_out_version
        owner = deploy_owner(context.run.run_id)
        about = {"model_version": version}  # a field of the JSON log lines (MLOPS_LOG_FORMAT=json)
        context.log.info(
            f"{serving.describe()}: serving {current.shares() or 'nothing'}; rolling out v{version}",
            extra=about,
        )
        record: list[dict] = []
        attempt = start_attempt(
            client, name, version, context.run.run_id, mlflow.dagster_run_url(context.run.run_id)
        )
        link = url_metadata(mlflow_model_version=mlflow.model_version_url(name, version))

        def drop_rollout_aliases() -> None:
            held = client.get_model_version(name, version).aliases
            for alias in sorted({config.alias, CHALLENGER} & set(held)):
                client.delete_registered_model_alias(name, alias)

        def finish(outcome: str, reason: str, retired: list[str] | None = None) -> dg.Output[dict]:
            """Record the outcome on the version, and report its aliases and status to Dagster."""
            finish_attempt(client, name, version, attempt, outcome, reason)
            aliases = sorted(client.get_model_version(name, version).aliases)
            context.log_event(
                dg.AssetObservation(
                    asset_key=REGISTERED,
                    metadata={
                        "version": version,
                        "aliases": ", ".join(aliases) or "-",
                        "deployment_status": outcome,
                        "reason": reason,
                        "retired_versions": ", ".join(retired or []) or "-",
                        **link,
                    },
                )
            )
            result = {
                "version": version,
                "previous": stable,
                "outcome": outcome,
                "reason": reason,
                "attempt": attempt,
                "aliases": aliases,
                "retired": retired or [],
                "steps": record,
            }
            return dg.Output(
                result,
                metadata={
                    "outcome": dg.MetadataValue.text(outcome),
                    "version": dg.MetadataValue.text(version),
                    **link,
                    "aliases": dg.MetadataValue.text(", ".join(aliases) or "-"),
                    "attempt": dg.MetadataValue.int(attempt),
                    "previous_version": dg.MetadataValue.text(stable or "-"),
                    "retired_versions": dg.MetadataValue.text(", ".join(retired or []) or "-"),
                    "reason": dg.MetadataValue.text(reason),
                    "backend": dg.MetadataValue.text(serving.describe()),
                    "steps": dg.MetadataValue.md(_steps_markdown(record)),
                    "traffic": dg.MetadataValue.json(serving.status().shares()),
                },
            )

        def promote(outcome: str, reason: str) -> dg.Output[dict]:
            """`champion` moves here and the rollout aliases leave it; the versions it replaced
            (the champion before, the version that took all traffic) are retired."""
            client.set_registered_model_alias(name, CHAMPION, version)
            drop_rollout_aliases()
            retired = sorted({champion_before, stable} - {None, version}, key=int)
            for old in retired:
                retire(client, name, old, replaced_by=version, run_id=context.run.run_id)
            if retired:
                reason += "; retired " + ", ".join(f"v{v}" for v in retired)
            return finish(outcome, reason, retired)

        def observe_approval(status: str, reason: str, by: str = "-") -> None:
            context.log_event(
                dg.AssetObservation(
                    asset_key=REGISTERED,
                    metadata={
                        "version": version,
                        "approval_status": status,
                        "decided_by": by,
                        "reason": reason,
                        **link,
                    },
                )
            )

        def require_approval() -> None:
            """Wait for a person's decision on the version before it takes any traffic; fail on a
            rejection (the version loses its rollout aliases) or when the wait times out (it keeps
            them: approve it and launch deploy_model again)."""
            command = f"mlops approve {version} --by NAME --reason TEXT"
            made = request_decision(client, name, version, context.run.run_id)
            if made is None:
                timeout = config.approval_timeout_seconds
                waiting = f"v{version} waits for approval before any traffic (at most {timeout:.0f} s): "
                waiting += command
                context.log.info(f"{waiting}, or mlops reject {version} --by NAME --reason TEXT", extra=about)
                observe_approval("pending", waiting)
                made = wait_for_decision(client, name, version, timeout)
            if made is None:
                reason = (
                    f"v{version} was not approved within {config.approval_timeout_seconds:.0f} s; it keeps "
                    f"the alias {config.alias!r}: run `{command}`, then launch deploy_model again"
                )
                observe_approval("timed_out", reason)
                output = finish("approval_timed_out", reason)
                raise dg.Failure(description=reason, metadata=output.metadata)
            said = f"{made.decision} by {made.by} at {made.at}: {made.reason}"
            said += f" (gates passed: {'; '.join(made.gates)})"
            observe_approval(made.decision, said, made.by)
            if not made.approved:
                drop_rollout_aliases()
                reason = f"v{version} was {said}"
                context.log.warning(reason, extra=about)
                output = finish("rejected", reason)
                raise dg.Failure(description=reason, metadata=output.metadata)
            context.log.info(f"v{version} {said}", extra=about)

        if stable == version:
            return promote("already_rolled_out", f"v{version} already takes all traffic")
        if spec.deployment.require_approval:
            require_approval()
        try:
            if stable is None:
                serving.set_traffic(version, 100, owner=owner)
                record.append({"percent": 100, "passed": True, "reasons": [], "facts": {}})
                return promote("promoted", "first rollout: no stable version to compare with, so no canary")

            for percent in steps:
                if percent == 100:
                    break
                before = parse_metrics(serving.metrics_text(), name)
                status = serving.set_traffic(version, percent, owner=owner)
                context.log.info(
                    f"step {percent} %: confirmed {status.shares()}; dwelling {config.dwell_seconds:.0f} s",
                    extra=about,
                )
                canary_window, stable_window = _window(serving, name, version, stable, before, config, owner)
                verdict: Verdict = compare(canary_window, stable_window, config.policy())
                record.append({"percent": percent, **verdict.as_dict()})
                context.log_event(
                    dg.AssetObservation(
                        asset_key=REGISTERED,
                        metadata={
                            "canary_step_percent": percent,
                            "canary_version": version,
                            "canary_passed": verdict.passed,
                            **{f"canary_{k}": v for k, v in verdict.facts.items()},
                        },
                    )
                )
                if not verdict.passed:
                    serving.set_traffic(version, 0, owner=owner)
                    reason = f"rolled back at {percent} %: " + "; ".join(verdict.reasons)
                    if has_enough_samples(canary_window, stable_window, config.policy()):
                        drop_rollout_aliases()
                    else:
                        reason += f"; not judged, so it keeps the alias {config.alias!r} for a later try"
                    context.log.warning(reason, extra=about)
                    output = finish("rolled_back", reason)
                    raise dg.Failure(description=reason, metadata=output.metadata)
                context.log.info(f"step {percent} % passed: {verdict.facts}", extra=about)
            serving.set_traffic(version, 100, owner=owner)
        except dg.Failure:
            raise
        except Exception as exc:
            if stable is not None:
                try:  # the local gateway also rolls back a canary whose lease nobody renews
                    serving.request_traffic(version, 0, owner=owner)
                except Exception as rollback_error:
                    context.log.warning(
                        f"could not roll v{version} back to 0 %: {rollback_error}", extra=about
                    )
            try:
                finish_attempt(
                    client, name, version, attempt, "failed", f"rollout of v{version} failed: {exc}"
                )
            except Exception as record_error:
                context.log.warning(
                    f"could not record the failed attempt on v{version}: {record_error}", extra=about
                )
            raise
        record.append({"percent": 100, "passed": True, "reasons": [], "facts": {}})
        context.log.info(
            f"promoted v{version}: alias {CHAMPION} moved from v{champion_before or '-'}", extra=about
        )
        return promote("promoted", "passed every step")

    rollout = spec.deployment
    defaults = CanaryConfig(
        steps=rollout.canary_steps,
        dwell_seconds=rollout.dwell_seconds,
        max_wait_seconds=rollout.max_wait_seconds,
        approval_timeout_seconds=rollout.approval_timeout_seconds,
        **rollout.analysis,
    )

    @dg.job(
        name=DEPLOY_MODEL,
        config=dg.RunConfig(ops={"canary_rollout": defaults}, loggers=job_loggers_config()),
        description="Canary rollout of the `challenger` to `champion`, with automatic analysis and rollback.",
        tags={"mlops/pipeline": "deploy"},
    )
    def deploy_model() -> None:
        canary_rollout()

    return deploy_model
