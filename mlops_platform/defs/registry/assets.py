"""`registered_model_version`: the model that passed every gate, in the MLflow registry."""

import json
import math

import dagster as dg

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.training.model_ref import ModelRef
from mlops_platform.lib.approval import GATES_TAG
from mlops_platform.lib.model_registry import CHALLENGER
from mlops_platform.resources.mlflow import MlflowTracking, code_version, url_metadata
from mlops_platform.settings import Settings

GROUP = "registry"
_DESCRIPTION_LIMIT = 300  # per gate, so the `gates` tag stays within MLflow's tag length


def gates_of_run(instance: dg.DagsterInstance, run_id: str) -> list[dict]:
    """The asset checks a run evaluated, in order: `gate` (`asset:check`), `passed`, `blocking`,
    `description`. Registration runs after its blocking checks, so each of those passed."""
    gates = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        gates.append(
            {
                "gate": f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}",
                "passed": evaluation.passed,
                "blocking": bool(evaluation.blocking),
                "description": (evaluation.description or "")[:_DESCRIPTION_LIMIT],
            }
        )
    return gates


def build_registry_asset(settings: Settings, spec: DatasetSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key="registered_model_version",
        group_name=GROUP,
        kinds={"mlflow"},
        backfill_policy=dg.BackfillPolicy.single_run(),  # lets `--partition-range` runs include it
        description=(
            f"Registers the trained model as a new version of {spec.registered_model_name!r} with the "
            "alias `challenger`, tagged with its metrics, fairness, the gates it passed, data version, "
            "Dagster run (id and UI link) and git commit, and a generated model card. Runs only after "
            "every blocking gate "
            "upstream passed. Its metadata holds the alias at registration; deploy_model reports the "
            "version's later aliases and rollout status as observations of this asset."
        ),
    )
    def registered_model_version(
        context: dg.AssetExecutionContext,
        trained_model: ModelRef,
        model_evaluation: dict,
        fairness_report: dict,
        mlflow: MlflowTracking,
    ) -> dg.Output[dict]:
        import mlflow as mlflow_api

        from mlops_platform.lib.model_card import model_card

        client = mlflow.client()
        name = spec.registered_model_name
        metrics = model_evaluation["metrics"]
        version = mlflow_api.register_model(trained_model.model_uri, name)
        facts = {
            "mlflow_run_id": trained_model.mlflow_run_id,
            "model_uri": trained_model.model_uri,
            "training_set_version": trained_model.training_set_version,
            "dagster_run_id": context.run.run_id,
            "git_commit": code_version(),
            "trained_on": trained_model.device,
        }
        card = model_card(spec, str(version.version), metrics, fairness_report, facts)
        fairness_summary = {
            # null: not measured (a group too small, passed under `on_unmeasurable: warn`)
            f"{attribute}.{gap}": round(v["value"], 4) if math.isfinite(v["value"]) else None
            for attribute, entry in fairness_report.items()
            for gap, v in entry["gaps"].items()
            if gap in entry["limits"]
        }
        dagster_url = mlflow.dagster_run_url(context.run.run_id)
        tags = {
            **{
                f"metric.{k}": f"{metrics[k]:.6f}"
                for k in ("roc_auc", "pr_auc", "accuracy", "f1", "threshold")
            },
            "fairness": json.dumps(fairness_summary, sort_keys=True),
            "training_set_version": trained_model.training_set_version,
            "dagster_run_id": context.run.run_id,
            **({"dagster_run_url": dagster_url} if dagster_url else {}),
            "git_commit": facts["git_commit"],
            GATES_TAG: json.dumps(gates_of_run(context.instance, context.run.run_id)),
            # why this version exists: a sensor, the schedule, the demo, a person (`mlops/*` run tags)
            "trigger": next(
                (
                    context.run.tags[key]
                    for key in ("mlops/trigger", "dagster/schedule_name", "dagster/sensor_name")
                    if key in context.run.tags
                ),
                "manual",
            ),
            **{
                f"trigger.{key.removeprefix('mlops/')}": value
                for key, value in context.run.tags.items()
                if key.startswith("mlops/drift")
            },
        }
        for key, value in tags.items():
            client.set_model_version_tag(name, version.version, key, value)
        client.update_model_version(name, version.version, description=card)
        client.set_registered_model_alias(name, CHALLENGER, version.version)
        with mlflow.resume_run(trained_model.mlflow_run_id):
            mlflow_api.log_text(card, "model_card.md")
        context.log.info(f"registered {name} v{version.version} as {CHALLENGER}")
        return dg.Output(
            {
                "name": name,
                "version": str(version.version),
                "alias": CHALLENGER,
                "run_id": trained_model.mlflow_run_id,
            },
            metadata={
                "model_name": dg.MetadataValue.text(name),
                "version": dg.MetadataValue.text(str(version.version)),
                "alias": dg.MetadataValue.text(CHALLENGER),
                "model_uri": dg.MetadataValue.text(f"models:/{name}/{version.version}"),
                **url_metadata(
                    mlflow_model_version=mlflow.model_version_url(name, str(version.version)),
                    mlflow_run=mlflow.run_url(trained_model.mlflow_run_id),
                ),
                "model_card": dg.MetadataValue.md(card),
            },
        )

    return registered_model_version
