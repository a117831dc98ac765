"""`mlops approve` and `mlops reject`: a person's decision on a version, recorded on the MLflow
model version (`lib/approval.py`) and as an observation of `registered_model_version` in the
Dagster instance, where a waiting deploy run and the audit trail read it."""

from __future__ import annotations

from mlops_platform.governance.stores import REGISTERED, open_instance, registry
from mlops_platform.lib.approval import Decision, decide
from mlops_platform.lib.ui_links import mlflow_model_version_url
from mlops_platform.settings import Settings


def record_decision(
    settings: Settings, version: str, decision: str, by: str, reason: str
) -> tuple[Decision, str]:
    """Record the decision; returns it and where it was recorded, in words."""
    import dagster as dg

    name = settings.load_spec().registered_model_name
    made = decide(registry(settings), name, version, decision, by, reason)
    where = [f"the MLflow registry ({name} v{version}, tags approval.*)"]
    with open_instance(settings) as instance:
        if instance is not None:
            url = mlflow_model_version_url(settings.mlflow_ui_url, name, str(version))
            instance.report_runless_asset_event(
                dg.AssetObservation(
                    asset_key=REGISTERED,
                    metadata={
                        "version": str(version),
                        "approval_status": made.decision,
                        "decided_by": made.by,
                        "reason": made.reason,
                        "gates_passed": dg.MetadataValue.json(made.gates),
                        **({"mlflow_model_version": dg.MetadataValue.url(url)} if url else {}),
                    },
                )
            )
            where.append(
                f"the Dagster instance ({instance.root_directory}), as an observation of {REGISTERED}"
            )
    return made, " and ".join(where)
