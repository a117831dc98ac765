"""The dagster and mlops command lines, run as a user runs them: in subprocesses."""

import subprocess

import dagster as dg
import pytest

pytestmark = pytest.mark.slow


def _run(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, cwd=env["MLOPS_HOME"]
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_simulate_validate_and_materialize_the_whole_graph_from_the_cli(cli_env, adult_settings, monkeypatch):
    adult_settings.home.mkdir(parents=True)
    landed = _run(["mlops", "simulate-batches", "--reference"], cli_env)
    assert landed.stdout.count("landed ") == 4

    validated = _run(["dagster", "definitions", "validate", "-m", "mlops_platform"], cli_env)
    assert "Validation successful" in validated.stdout + validated.stderr

    _run(
        [
            "dagster",
            "asset",
            "materialize",
            "-m",
            "mlops_platform",
            "--select",
            "not group:monitoring",
            "--partition-range",
            "2026-01-01...2026-01-04",
        ],
        cli_env,
        timeout=600,
    )
    monkeypatch.setenv("DAGSTER_HOME", cli_env["DAGSTER_HOME"])  # our dagster.yaml reads it
    with dg.DagsterInstance.get() as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("raw_data")) == {
            "2026-01-01",
            "2026-01-02",
            "2026-01-03",
            "2026-01-04",
        }
        training = instance.fetch_materializations(dg.AssetKey("training_set"), limit=1).records
        assert training and training[0].asset_materialization.metadata["rows"].value == 600
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("training_set"), "training_set_is_sound")]
        )
        assert (
            check[dg.AssetCheckKey(dg.AssetKey("training_set"), "training_set_is_sound")].status.value
            == "SUCCEEDED"
        )

        registered = instance.fetch_materializations(dg.AssetKey("registered_model_version"), limit=1).records
        assert registered[0].asset_materialization.metadata["alias"].value == "challenger"

    status = _run(["mlops", "status"], cli_env)
    assert "landing files    4" in status.stdout and "training_set" in status.stdout
    assert "aliases challenger" in status.stdout


def test_the_cli_refuses_bad_arguments_with_a_message(cli_env, adult_settings):
    adult_settings.home.mkdir(parents=True)
    done = subprocess.run(
        ["mlops", "simulate-batches", "--shift", "nonsense"], env=cli_env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "expected COLUMN=+N" in done.stderr
