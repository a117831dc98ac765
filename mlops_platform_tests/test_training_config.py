"""Training configuration belongs to the dataset: the spec's `training` section, searched on
validation only, overridable per run; a logistic-regression baseline trains beside the model."""

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from mlops_platform.definitions import build_definitions
from mlops_platform.defs.jobs import RETRAIN_MODEL
from mlops_platform.defs.training.params import TrainingConfig, resolve_params
from mlops_platform.lib.hyperparameter_search import search
from mlops_platform.lib.model_artifact import load_artifact
from mlops_platform.lib.training import choose_device, load_training_data
from mlops_platform.lib.training_params import MIN_STEPS, TrainingParams, auto_batch_size, auto_patience
from mlops_platform_tests.pipeline import copy_landed, materialized, table


@pytest.mark.parametrize("rows", [128, 148, 150, 300, 1_000, 5_000, 50_000, 1_000_000, 10_000_000])
def test_automatic_batch_size_gives_every_epoch_enough_steps(rows):
    resolved = TrainingParams().for_rows(rows)
    assert rows / resolved.batch_size >= MIN_STEPS
    assert resolved.batch_size == auto_batch_size(rows)
    assert resolved.patience == auto_patience(rows, resolved.epochs) >= 2


def test_small_data_gets_small_batches_and_patience_large_data_large_batches():
    assert auto_batch_size(150) == 8 and auto_patience(150, 30) == 8
    assert auto_batch_size(20_000) == 256
    assert auto_batch_size(10_000_000) == 4096 and auto_patience(10_000_000, 3) == 2


def test_run_config_overrides_the_search_which_overrides_the_spec(adult_settings):
    spec = adult_settings.load_spec()
    searched = {"learning_rate": 0.01, "hidden_sizes": [16]}
    params = resolve_params(spec, searched, TrainingConfig(learning_rate=0.05, epochs=4))
    assert params.learning_rate == 0.05  # run config
    assert params.hidden_sizes == [16]  # search
    assert params.weight_decay == spec.training.weight_decay  # spec
    assert params.epochs == 4
    assert resolve_params(spec, {}, TrainingConfig()) == TrainingParams(
        **spec.training.model_dump(exclude={"search"})
    )
    with pytest.raises(ValueError, match="optimizer must be one of adamw, sgd"):
        TrainingConfig(optimizer="adam")


def _splits(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, rows)
    colour = rng.choice(["red", "green", "blue"], rows)
    logit = 1.2 * x + np.where(colour == "red", 1.0, -0.6)
    return pd.DataFrame(
        {
            "x": x,
            "colour": colour,
            "label": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int),
            "record_id": [f"r{seed}-{i:05d}" for i in range(rows)],
        }
    )


def _search(tmp_path, trials: int, validation: pd.DataFrame, base: TrainingParams | None = None):
    train = _splits(400, 0)
    with duckdb.connect() as con:
        con.register("train_rows", train)
        con.register("validation_rows", validation)

        def load(params: TrainingParams):
            folder = tmp_path / f"batch_size_{params.batch_size}"
            folder.mkdir(parents=True, exist_ok=True)
            return load_training_data(
                con,
                "SELECT * FROM train_rows",
                "SELECT * FROM validation_rows",
                "record_id",
                ["x"],
                ["colour"],
                params,
                folder,
            )

        seen = []
        result = search(
            load,
            base or TrainingParams(epochs=6, seed=3),
            ["learning_rate", "dropout", "hidden_sizes", "batch_size"] if base is None else ["dropout"],
            trials,
            device=choose_device("cpu"),
            on_trial=seen.append,
        )
    return result, seen


def test_the_search_is_seeded_prunes_and_reports_every_trial(tmp_path):
    validation = _splits(150, 1)
    first, seen = _search(tmp_path / "a", 8, validation)
    second, _ = _search(tmp_path / "b", 8, validation)
    assert len(first.trials) == len(seen) == 8
    assert first.best.number == second.best.number
    assert first.best_params == second.best_params
    assert first.best.value == pytest.approx(second.best.value, abs=1e-9)
    assert [t.state for t in first.trials] == [t.state for t in second.trials]
    # the median pruner stopped weak trials once the first ones had completed
    assert "PRUNED" in [t.state for t in first.trials[5:]]
    assert all(len(t.history) < 6 for t in first.trials if t.state == "PRUNED")
    completed = [t for t in first.trials if t.state == "COMPLETE"]
    assert first.best.value == min(t.value for t in completed)
    assert set(first.best_params) == {"learning_rate", "dropout", "hidden_sizes", "batch_size"}
    # the best trial's value is its best validation loss, as its history shows
    assert first.best.value == pytest.approx(min(e["validation_loss"] for e in first.best.history))


def test_the_search_judges_on_the_validation_split_it_is_given(tmp_path):
    """Other validation rows give other losses: the search reads what it is handed as validation
    (and `load_splits` hands it the validation split, never the test split)."""
    one, _ = _search(tmp_path / "a", 3, _splits(150, 1))
    other, _ = _search(tmp_path / "b", 3, _splits(150, 2))
    assert [t.value for t in one.trials] != pytest.approx([t.value for t in other.trials])


def test_a_search_whose_every_trial_diverges_fails_saying_so(tmp_path):
    with pytest.raises(ValueError, match=r"no trial of 3 completed \(0 pruned, 3 fail"):
        _search(tmp_path, 3, _splits(150, 1), TrainingParams(epochs=3, learning_rate=1e38, seed=1))


def test_the_sgd_optimizer_trains(tmp_path):
    result, _ = _search(tmp_path, 1, _splits(150, 1), TrainingParams(epochs=3, optimizer="sgd", seed=1))
    assert result.best.state == "COMPLETE" and result.best.value < 0.69  # below a coin's log loss


def test_a_retrain_without_run_config_trains_with_the_spec_and_the_search(landed_home, tmp_path, instance):
    """What a sensor or schedule launches (no run config) trains with the spec's `training`
    values and the search's best trial; a run's config still overrides one value."""
    training = {"hidden_sizes": [8], "epochs": 3, "seed": 4}
    search = {"trials": 3, "timeout_minutes": None, "parameters": ["learning_rate", "dropout"]}
    settings = copy_landed(landed_home, tmp_path, training={**training, "search": search})
    defs = build_definitions(settings)
    result = defs.resolve_job_def(RETRAIN_MODEL).execute_in_process(instance=instance, raise_on_error=False)
    assert {"hyperparameter_search", "trained_model"} <= materialized(result)
    found = result.output_for_node("hyperparameter_search")
    assert found["searched"] and found["trials"] == 3
    ref = result.output_for_node("trained_model")
    assert ref.params["hidden_sizes"] == [8] and ref.params["epochs"] == 3 and ref.params["seed"] == 4
    assert ref.params["learning_rate"] == pytest.approx(found["best_params"]["learning_rate"])
    assert ref.params["dropout"] == pytest.approx(found["best_params"]["dropout"])

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    trials = client.search_runs(
        [client.get_experiment_by_name(settings.load_spec().name).experiment_id],
        f"tags.mlflow.parentRunId = '{found['mlflow_run_id']}'",
    )
    assert len(trials) == 3
    assert {t.data.tags["optuna.state"] for t in trials} <= {"COMPLETE", "PRUNED"}
    logged = client.get_run(ref.mlflow_run_id).data.params
    assert logged["params_from_search"] == "dropout,learning_rate"
    assert logged["hidden_sizes"] == "[8]"

    # the baseline: a linear model on the same encoder, in the same run
    baseline = load_artifact(ref.baseline_artifact_path)
    assert baseline.meta["baseline"] is True
    scripted = torch.jit.load(ref.baseline_artifact_path)
    assert [m.original_name for m in scripted.mlp.children()] == ["Linear"]  # no hidden layer
    rows = table(settings, "training_set").head(5)
    assert baseline.predict_proba(rows).shape == (5,)

    overridden = defs.resolve_job_def(RETRAIN_MODEL).execute_in_process(
        instance=instance,
        run_config={
            "ops": {
                "trained_model": {"config": {"learning_rate": 0.004}},
                "hyperparameter_search": {"config": {"trials": 0}},
            }
        },
        raise_on_error=False,
    )
    assert not overridden.output_for_node("hyperparameter_search")["searched"]
    params = overridden.output_for_node("trained_model").params
    assert params["learning_rate"] == 0.004 and params["hidden_sizes"] == [8]
    assert params["dropout"] == settings.load_spec().training.dropout
