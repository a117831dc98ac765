"""Environment-driven settings: where the platform keeps its data and which backends it uses.

Read when `Definitions` are built (never at import time). Every path derives from one
data directory, `MLOPS_HOME`, so nothing lands in whatever folder the user stands in.
`ENVIRONMENT` below is the one list of the variables the platform reads: `mlops --help`
prints it and docs/operations.md shows it (a test keeps the two equal).

dbt lives in its own virtual environment (`make install` puts it in `.venv/dbt`): dagster-dbt
then runs it as a subprocess without importing dbt-core, which keeps loading the code
location (every CLI call and every step process) about 1.7 s faster, and keeps dbt's pins
out of the platform's environment.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mlops_platform.datasets.spec import DatasetSpec, load_spec, shipped_spec_path

# (variable, default, meaning) of every environment variable the platform reads.
ENVIRONMENT: tuple[tuple[str, str, str], ...] = (
    ("MLOPS_HOME", "`~/.mlops_platform`", "data directory: landing files, warehouse, lake, Feast"),
    ("MLOPS_DATASET_SPEC", "the shipped `adult.yaml`", "the dataset spec to run"),
    ("DAGSTER_HOME", "a temporary folder", "the Dagster instance: runs, sensors, schedules"),
    ("MLOPS_FEAST_ONLINE_STORE", "`sqlite`", "Feast online store: `sqlite` (embedded) or `redis`"),
    ("MLOPS_REDIS_URL", "`127.0.0.1:6379`", "Redis for the Feast online store"),
    ("MLOPS_MLFLOW_TRACKING_URI", "`sqlite:///$MLOPS_HOME/mlflow/mlflow.db`", "MLflow tracking and registry"),
    ("MLOPS_MLFLOW_ARTIFACT_ROOT", "`$MLOPS_HOME/mlflow/artifacts`", "artifacts of new MLflow experiments"),
    ("MLOPS_MLFLOW_UI_URL", "`http://127.0.0.1:5000`", "the MLflow UI links point to (empty: no links)"),
    ("MLOPS_DAGSTER_UI_URL", "`http://127.0.0.1:3000`", "the Dagster UI links point to (empty: no links)"),
    ("MLOPS_DUCKDB_MEMORY_LIMIT", "`1GB`", "DuckDB's memory cap (warehouse, dbt); it spills beyond"),
    ("MLOPS_DBT_EXECUTABLE", "`<venv>/dbt/bin/dbt`, else `dbt` on PATH", "dbt, in its own environment"),
    ("MLOPS_EXECUTOR", "`in_process`", "a run's steps: `in_process` or `multiprocess` (a process each)"),
    ("MLOPS_DRIFT_REPORTS_KEPT", "`30`", "drift HTML reports kept under MLOPS_HOME (older ones pruned)"),
    ("MLOPS_SERVING_BACKEND", "`local`", "`local` (the `mlops serve` gateway) or `kserve`"),
    ("MLOPS_SERVING_URL", "`http://127.0.0.1:8080`", "the local gateway the deploy job drives"),
    ("MLOPS_KSERVE_NAME", "-", "kserve backend: the InferenceService"),
    ("MLOPS_KSERVE_NAMESPACE", "`default`", "kserve backend: its namespace"),
    ("MLOPS_KSERVE_IMAGE", "-", "kserve backend: the serving image its predictor runs"),
    ("MLOPS_KSERVE_METRICS_URL", "-", "kserve backend: Prometheus `/federate` URL with the `mlops_*` series"),
    ("MLOPS_KSERVE_TRACKING_URI_SECRET", "`mlflow-db`", "kserve backend: Secret with the pods' tracking URI"),
    ("MLOPS_ADMIN_TOKEN", "generated under MLOPS_HOME", "model server admin token"),
    ("MLOPS_CANARY_LEASE_SECONDS", "`60`", "a canary's traffic lease without renewal"),
    ("MLOPS_SERVE_MAX_BODY_BYTES", "8 MiB", "model server: largest request body"),
    ("MLOPS_SERVE_MAX_ROWS", "`10000`", "model server: most rows per request"),
    ("MLOPS_LOG_FORMAT", "`text`", "log lines of the model server, the jobs and the CLI: `text` or `json`"),
)


def environment_table() -> str:
    """`ENVIRONMENT` as a Markdown table (docs/operations.md holds a copy; a test compares)."""
    rows = [f"| `{name}` | {default} | {meaning} |" for name, default, meaning in ENVIRONMENT]
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows])


def default_dbt_executable() -> str:
    """dbt from the environment beside this one (`<venv>/dbt`), else from PATH."""
    beside = Path(sys.prefix) / "dbt" / "bin" / "dbt"
    if beside.exists():
        return str(beside)
    return shutil.which("dbt") or "dbt"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    home: Path
    dataset_spec_path: Path
    feast_online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str = "127.0.0.1:6379"
    dbt_executable: str = Field(default_factory=default_dbt_executable)
    mlflow_tracking_uri: str | None = None
    mlflow_artifact_root: str | None = None
    executor: Literal["in_process", "multiprocess"] = "in_process"
    serving_backend: Literal["local", "kserve"] = "local"
    serving_url: str = "http://127.0.0.1:8080"
    mlflow_ui_url: str = "http://127.0.0.1:5000"
    dagster_ui_url: str = "http://127.0.0.1:3000"
    drift_reports_kept: int = Field(default=30, ge=1)
    kserve: dict[str, str] = Field(default_factory=dict)  # MLOPS_KSERVE_* without the prefix, lower-cased

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("MLOPS_HOME") or Path.home() / ".mlops_platform").expanduser()
        spec = env.get("MLOPS_DATASET_SPEC") or shipped_spec_path()
        return cls(
            home=home.resolve(),
            dataset_spec_path=Path(spec).expanduser().resolve(),
            feast_online_store=env.get("MLOPS_FEAST_ONLINE_STORE", "sqlite"),
            redis_url=env.get("MLOPS_REDIS_URL", "127.0.0.1:6379"),
            dbt_executable=env.get("MLOPS_DBT_EXECUTABLE") or default_dbt_executable(),
            mlflow_tracking_uri=env.get("MLOPS_MLFLOW_TRACKING_URI") or None,
            mlflow_artifact_root=env.get("MLOPS_MLFLOW_ARTIFACT_ROOT") or None,
            executor=env.get("MLOPS_EXECUTOR", "in_process"),
            serving_backend=env.get("MLOPS_SERVING_BACKEND", "local"),
            serving_url=env.get("MLOPS_SERVING_URL", "http://127.0.0.1:8080"),
            mlflow_ui_url=env.get("MLOPS_MLFLOW_UI_URL", "http://127.0.0.1:5000"),
            dagster_ui_url=env.get("MLOPS_DAGSTER_UI_URL", "http://127.0.0.1:3000"),
            drift_reports_kept=env.get("MLOPS_DRIFT_REPORTS_KEPT", "30"),
            kserve={
                k.removeprefix("MLOPS_KSERVE_").lower(): v
                for k, v in env.items()
                if k.startswith("MLOPS_KSERVE_")
            },
        )

    def to_env(self) -> dict[str, str]:
        """The `MLOPS_*` variables that give a child process these settings (`from_env`'s inverse),
        with MLflow's own URI variables pinned: `mlflow.set_tracking_uri` exports them to children."""
        env = {
            "MLOPS_HOME": str(self.home),
            "MLOPS_DATASET_SPEC": str(self.dataset_spec_path),
            "MLOPS_FEAST_ONLINE_STORE": self.feast_online_store,
            "MLOPS_REDIS_URL": self.redis_url,
            "MLOPS_DBT_EXECUTABLE": self.dbt_executable,
            "MLOPS_MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLOPS_MLFLOW_ARTIFACT_ROOT": self.artifact_root,
            "MLOPS_EXECUTOR": self.executor,
            "MLOPS_SERVING_BACKEND": self.serving_backend,
            "MLOPS_SERVING_URL": self.serving_url,
            "MLOPS_MLFLOW_UI_URL": self.mlflow_ui_url,
            "MLOPS_DAGSTER_UI_URL": self.dagster_ui_url,
            "MLOPS_DRIFT_REPORTS_KEPT": str(self.drift_reports_kept),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_REGISTRY_URI": self.tracking_uri,
        }
        env.update({f"MLOPS_KSERVE_{key.upper()}": value for key, value in self.kserve.items()})
        return env

    def load_spec(self) -> DatasetSpec:
        return load_spec(self.dataset_spec_path)

    @property
    def landing_dir(self) -> Path:
        """Where new batches arrive, one CSV file per day: `YYYY-MM-DD.csv`."""
        return self.home / "landing"

    @property
    def warehouse_path(self) -> Path:
        """The DuckDB warehouse file that ingestion writes and dbt transforms."""
        return self.home / "warehouse.duckdb"

    @property
    def lake_dir(self) -> Path:
        """Parquet copies of every table, partitioned by day where the asset is."""
        return self.home / "lake"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def tracking_uri(self) -> str:
        """MLflow's store: SQLite under the data directory unless configured."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        return self.mlflow_artifact_root or str(self.home / "mlflow" / "artifacts")

    @property
    def models_dir(self) -> Path:
        """Local copies of model artifacts and evaluation plots, one folder per MLflow run."""
        return self.home / "models"

    @property
    def serving_dir(self) -> Path:
        """The model server's state: traffic split, admin token, model cache, worker reports."""
        return self.home / "serving"

    @property
    def inference_log_dir(self) -> Path:
        """Every prediction the server made, as JSON lines per day (`date=YYYY-MM-DD/`)."""
        return self.home / "inference_log"

    @property
    def ground_truth_dir(self) -> Path:
        """Labels delivered later for served requests (`mlops simulate-batches --labels`)."""
        return self.home / "ground_truth"

    @property
    def dbt_target_dir(self) -> Path:
        """dbt's target folder (manifest, run results), kept out of the source tree."""
        return self.home / "dbt_target"
