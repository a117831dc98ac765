"""The governance commands (`mlops approve | reject | trace | audit`) against hostile arguments.
The whole flow (approval before a canary, trace, audit) runs in `test_demo_loop.py`, the
waiting deploy run in `test_deploy.py`, reproduction in `test_reproduce.py`."""

from __future__ import annotations

import pytest

from mlops_platform.lib.model_registry import mlflow_client
from mlops_platform.settings import Settings


def test_the_commands_refuse_what_they_cannot_answer(tmp_path, monkeypatch, capsys):
    """Hostile arguments: each gets exit 2 and one line that says what is wrong (`main` in process)."""
    from mlops_platform.cli import main
    from mlops_platform_tests.datasets import write_adult_spec

    settings = Settings(home=tmp_path / "home", dataset_spec_path=write_adult_spec(tmp_path / "spec", 100, 1))
    (settings.inference_log_dir / "date=2026-01-01").mkdir(parents=True)
    (settings.inference_log_dir / "date=2026-01-01" / "w1.jsonl").write_text(
        '{"request_id": "other", "row": 0}\n{"request_id": "half-writ'  # a line still being written
    )
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)

    def refused(cases: dict[tuple[str, ...], str]) -> None:
        for argv, expected in cases.items():
            assert main(list(argv)) == 2, argv
            err = capsys.readouterr().err
            assert expected in err and len(err.strip().splitlines()) == 1, (argv, err)

    refused(
        {
            ("audit",): "no MLflow store at sqlite:///",
            ("approve", "1", "--by", "eve", "--reason", "ok"): "nothing is registered yet",
        }
    )
    assert not (settings.home / "mlflow" / "mlflow.db").exists()  # a read made no empty store
    mlflow_client(settings.tracking_uri).search_registered_models()  # an empty store
    capsys.readouterr()  # MLflow's lines as it creates the store
    refused(
        {
            ("trace", "no-such-request"): "request no-such-request is not in the inference log",
            ("trace", "half-writ"): "request half-writ is not in the inference log",
            ("trace", "a b"): "request id 'a b': 1 to 128 characters",
            ("trace", "x" * 129): "1 to 128 characters",
            ("trace", "'; DROP TABLE x; --"): "1 to 128 characters",
            ("audit",): "holds no model 'adult_income_classifier'",
            ("audit", "--model", "nope"): "holds no model 'nope'",
            ("approve", "1", "--by", "eve", "--reason", "ok"): "has no version 1 (versions: none)",
            ("approve", "1", "--by", "", "--reason", "ok"): "--by is empty",
            ("reject", "x1", "--by", "eve", "--reason", "no"): "version 'x1'",
        }
    )
    with pytest.raises(SystemExit) as exited:
        main(["approve", "1", "--reason", "ok"])
    assert exited.value.code == 2 and "--by" in capsys.readouterr().err
