"""The scale-out backends, for real: the Dagster instance on PostgreSQL, Feast online on Redis.

Uses the machine's PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379). Skips when they
do not answer, unless MLOPS_REQUIRE_SERVICES=1 (CI), where it fails instead.
"""

import uuid

import dagster as dg
import psycopg2
import pytest
import redis
import yaml

from mlops_platform.settings import Settings
from mlops_platform_tests.pipeline import DATA_HALF, checks, land_reference, materialized, run_pipeline
from mlops_platform_tests.services import POSTGRES, REDIS, require_service

pytestmark = pytest.mark.services


@pytest.fixture
def postgres_database():
    """A fresh database for this test, dropped afterwards."""
    require_service("PostgreSQL", POSTGRES)
    name = f"mlops_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(host=POSTGRES[0], port=POSTGRES[1], user="postgres", dbname="test")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_the_data_half_runs_on_a_postgres_instance_with_a_redis_online_store(
    adult_settings, postgres_database, tmp_path
):
    require_service("Redis", REDIS)
    dagster_home = tmp_path / "dagster_postgres"
    dagster_home.mkdir()
    url = f"postgresql://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{postgres_database}"
    (dagster_home / "dagster.yaml").write_text(
        yaml.safe_dump({"storage": {"postgres": {"postgres_url": url}}, "telemetry": {"enabled": False}})
    )
    settings = Settings(
        home=adult_settings.home,
        dataset_spec_path=adult_settings.dataset_spec_path,
        feast_online_store="redis",
        redis_url=f"{REDIS[0]}:{REDIS[1]}",
    )
    days = land_reference(settings)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = run_pipeline(settings, instance, days[0], days[-1])
        assert result.success
        assert materialized(result) == DATA_HALF
        assert checks(result)["online_matches_offline"].passed  # read back from Redis
        assert instance.get_materialized_partitions(dg.AssetKey("raw_data")) == set(days)

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
