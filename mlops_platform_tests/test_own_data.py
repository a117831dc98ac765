"""Your own data, as a new user brings it: a tiny CSV the platform has never seen (about 300
rows, integer-coded categories, nulls, its own visit ids and times) goes through `mlops init` ->
`mlops check-spec` -> `data_pipeline` -> `retrain_model` -> `deploy_model` -> a 200 prediction,
with no edit of the generated spec and no run config."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from mlops_platform.settings import Settings
from mlops_platform_tests.pipeline import (
    checks,
    deploy,
    land_reference,
    materialized,
    retrain,
    run_pipeline,
    table,
)
from mlops_platform_tests.serving import start_server

MLOPS = str(Path(sys.executable).parent / "mlops")


def write_clinic_csv(path: Path, rows: int = 303, seed: int = 5) -> Path:
    """A heart-disease-like table: a visit id and time, integer codes (sex, cp, thal), nulls, a
    float, a 0/1 label."""
    rng = np.random.default_rng(seed)
    age = rng.integers(29, 78, rows)
    sex = rng.choice([0, 1], rows, p=[0.35, 0.65])
    cp = rng.integers(0, 4, rows)
    thalach = rng.normal(150, 22, rows).round().astype(int)
    oldpeak = np.abs(rng.normal(1.0, 1.1, rows)).round(1)
    thal = rng.choice([1, 2, 3], rows, p=[0.1, 0.55, 0.35])
    risk = 1.3 * (cp == 0) + 1.1 * (thal == 3) + 0.9 * oldpeak - 0.04 * (thalach - 150) + 0.02 * (age - 54)
    target = (rng.random(rows) < 1 / (1 + np.exp(-(risk - 1.6) * 1.5))).astype(int)
    frame = pd.DataFrame(
        {
            "visit_id": [f"V{i:04d}" for i in range(rows)],
            "visit_time": pd.date_range("2025-03-01", periods=rows, freq="9h", tz="UTC").strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "age": age,
            "sex": sex,
            "cp": cp,
            "thalach": thalach.astype(object),
            "oldpeak": oldpeak,
            "thal": thal.astype(object),
            "target": target,
        }
    )
    frame.loc[rng.random(rows) < 0.04, "thalach"] = None  # a nullable integer
    frame.loc[rng.random(rows) < 0.04, "thal"] = None  # a nullable integer code
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def _mlops(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([MLOPS, *args], capture_output=True, text=True, timeout=120, env=env, check=False)


def test_a_tiny_csv_goes_from_mlops_init_to_a_served_prediction_with_no_edit(tmp_path, instance):
    csv = write_clinic_csv(tmp_path / "data" / "clinic.csv")
    spec_path = tmp_path / "data" / "clinic.yaml"
    env = {**os.environ, "MLOPS_HOME": str(tmp_path / "home"), "MLOPS_DATASET_SPEC": str(spec_path)}

    made = _mlops("init", str(csv), "--label", "target", "--sensitive", "sex", "--sensitive", "age", env=env)
    assert made.returncode == 0, made.stderr
    checked = _mlops("check-spec", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    settings = Settings.from_env(env)
    spec = settings.load_spec()
    assert spec.columns["cp"].type == "categorical" and spec.columns["cp"].domain == ["0", "1", "2", "3"]
    assert spec.columns["thal"].nullable and spec.columns["thalach"].nullable
    assert (spec.source.id_column, spec.source.timestamp_column) == ("visit_id", "visit_time")
    assert spec.label.positive_class in ("0", "1")
    assert spec.training.search.trials > 0

    days = land_reference(settings)
    data = run_pipeline(settings, instance, days[0], days[-1])
    assert data.success and all(e.passed for e in checks(data).values())

    trained = retrain(settings, instance)
    gates = checks(trained)
    # every gate passed on a real measurement: none of them reports that it could not judge
    assert trained.success, {name: e.description for name, e in gates.items() if not e.passed}
    assert "registered_model_version" in materialized(trained)
    assert all(e.passed for e in gates.values())
    fairness = gates["fairness_gaps_within_limits"]
    assert "not measured" not in (fairness.description or "")
    version = MlflowClient(settings.tracking_uri, settings.tracking_uri).get_model_version_by_alias(
        spec.registered_model_name, "challenger"
    )
    assert str(version.version) == "1"
    staged = table(settings, "stg_records")
    assert staged["record_id"].str.startswith("V").all()  # the file's own ids and event times
    assert (staged["visit_time"] == staged["event_timestamp"]).all()

    server = start_server(settings, 1)
    try:
        assert deploy(settings, instance, server.url).success
        row = {"age": 61, "sex": 1, "cp": 0, "thalach": 120, "oldpeak": 2.3, "thal": 3}
        as_numbers = httpx.post(
            server.predict_url(spec.registered_model_name), json={"instances": [row]}, timeout=30
        )
        assert as_numbers.status_code == 200, as_numbers.text
        as_text = httpx.post(
            server.predict_url(spec.registered_model_name),
            json={"instances": [{**row, "sex": "1", "cp": "0", "thal": "3"}]},
            timeout=30,
        )
        assert as_text.json()["predictions"] == as_numbers.json()["predictions"]
        unknown = httpx.post(
            server.predict_url(spec.registered_model_name),
            json={"instances": [{**row, "cp": 9}]},
            timeout=30,
        )
        assert unknown.status_code == 422 and "instances[0].cp" in unknown.text
    finally:
        server.stop()
