"""The MLflow registry's names and its client, in one place.

Every component that reads or moves an alias (the registry asset, the canary, the model server,
the CLI and the demo) takes the alias names and the client from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

CHAMPION = "champion"  # the version serving production traffic
CHALLENGER = "challenger"  # a registered version that passed its gates and waits for its canary


def mlflow_client(tracking_uri: str) -> MlflowClient:
    """A client on one store for tracking and registry (the platform never splits them)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
