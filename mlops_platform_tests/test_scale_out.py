"""The scale-out backends, for real: Dagster and MLflow on PostgreSQL, Feast online on Redis.

Uses the machine's PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379). Skips when they
do not answer, unless MLOPS_REQUIRE_SERVICES=1 (CI), where it fails instead.
"""

import uuid

import dagster as dg
import psycopg2
import pytest
import redis
import yaml
from mlflow import MlflowClient

from mlops_platform.definitions import build_definitions
from mlops_platform.defs.jobs import RETRAIN_MODEL
from mlops_platform.settings import Settings
from mlops_platform_tests.pipeline import DATA_HALF, checks, land_reference, materialized, run_pipeline
from mlops_platform_tests.services import POSTGRES, REDIS, require_service

pytestmark = pytest.mark.services


@pytest.fixture
def postgres_databases():
    """Two fresh databases (Dagster's and MLflow's), dropped afterwards."""
    require_service("PostgreSQL", POSTGRES)
    names = [f"mlops_test_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    admin = psycopg2.connect(host=POSTGRES[0], port=POSTGRES[1], user="postgres", dbname="test")
    admin.autocommit = True
    for name in names:
        admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield [f"postgresql://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}" for name in names]
    finally:
        for name in names:
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_the_lifecycle_runs_on_postgres_and_redis(adult_settings, postgres_databases, tmp_path):
    """Dagster instance and MLflow on PostgreSQL, Feast online store on Redis."""
    require_service("Redis", REDIS)
    dagster_home = tmp_path / "dagster_postgres"
    dagster_home.mkdir()
    url, mlflow_url = postgres_databases
    (dagster_home / "dagster.yaml").write_text(
        yaml.safe_dump({"storage": {"postgres": {"postgres_url": url}}, "telemetry": {"enabled": False}})
    )
    settings = Settings(
        home=adult_settings.home,
        dataset_spec_path=adult_settings.dataset_spec_path,
        feast_online_store="redis",
        redis_url=f"{REDIS[0]}:{REDIS[1]}",
        mlflow_tracking_uri=mlflow_url,
    )
    days = land_reference(settings)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = run_pipeline(settings, instance, days[0], days[-1])
        assert result.success
        assert materialized(result) == DATA_HALF
        assert checks(result)["online_matches_offline"].passed  # read back from Redis
        assert instance.get_materialized_partitions(dg.AssetKey("raw_data")) == set(days)
        trained = (
            build_definitions(settings).resolve_job_def(RETRAIN_MODEL).execute_in_process(instance=instance)
        )
        assert trained.success

    # the registry lives in MLflow's PostgreSQL database
    client = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    version = client.get_model_version_by_alias(settings.load_spec().registered_model_name, "challenger")
    assert version.tags["dagster_run_id"] == trained.run_id
    with psycopg2.connect(mlflow_url) as con, con.cursor() as cur:
        cur.execute("SELECT count(*) FROM model_versions")
        assert cur.fetchone()[0] == 1

    # what the instance wrote is in PostgreSQL itself
    with psycopg2.connect(url) as con, con.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", [result.run_id])
        assert cur.fetchone() == ("SUCCESS",)
        cur.execute(
            "SELECT count(*) FROM event_logs"
            " WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            [result.run_id],
        )
        assert cur.fetchone()[0] >= len(DATA_HALF)
    # and the online features are in Redis
    assert redis.Redis(host=REDIS[0], port=REDIS[1]).dbsize() > 0
