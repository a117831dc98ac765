"""The torch model: seeded determinism, train-only preprocessing, a self-contained artifact."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from mlops_platform.lib.evaluation import choose_threshold, classification_metrics, expected_calibration_error
from mlops_platform.lib.model_artifact import load_artifact, save_artifact
from mlops_platform.lib.preprocessing import MISSING_CATEGORY, UNKNOWN_INDEX, FeatureEncoder
from mlops_platform.lib.tabular_net import TabularNet
from mlops_platform.lib.training import choose_device, predict_proba, train_model
from mlops_platform.lib.training_params import TrainingParams
from mlops_platform.serving.revisions import load_revision
from mlops_platform.serving.validation import FeatureBatch

NUMERIC, CATEGORICAL = ["x1", "x2"], ["colour"]


def _frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(0, 1, rows), rng.normal(5, 2, rows)
    colour = rng.choice(["red", "green", "blue"], rows)
    logit = 1.5 * x1 - 0.4 * (x2 - 5) + np.where(colour == "red", 1.0, -0.5)
    frame = pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "colour": colour,
            "label": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int),
        }
    )
    frame.loc[rng.random(rows) < 0.05, "x2"] = np.nan
    return frame


@pytest.fixture(scope="module")
def data():
    return _frame(1500, 0), _frame(400, 1), _frame(400, 2)


def test_training_is_deterministic_for_a_seed(data):
    train, validation, test = data
    params = TrainingParams(hidden_sizes=[16], epochs=8, seed=11)
    first = train_model(train, validation, NUMERIC, CATEGORICAL, params, device=choose_device("cpu"))
    second = train_model(train, validation, NUMERIC, CATEGORICAL, params, device=choose_device("cpu"))
    a = predict_proba(first.net, first.encoder, test)
    b = predict_proba(second.net, second.encoder, test)
    assert np.max(np.abs(a - b)) < 1e-6
    assert [h["validation_loss"] for h in first.history] == pytest.approx(
        [h["validation_loss"] for h in second.history], abs=1e-6
    )
    metrics_a = classification_metrics(test["label"].to_numpy(), a, 0.5)
    metrics_b = classification_metrics(test["label"].to_numpy(), b, 0.5)
    assert all(abs(metrics_a[k] - metrics_b[k]) < 1e-6 for k in metrics_a)
    assert metrics_a["roc_auc"] > 0.75  # it learned the signal
    other = train_model(
        train,
        validation,
        NUMERIC,
        CATEGORICAL,
        TrainingParams(hidden_sizes=[16], epochs=8, seed=12),
        device=choose_device("cpu"),
    )
    assert np.max(np.abs(predict_proba(other.net, other.encoder, test) - a)) > 1e-4


def test_early_stopping_keeps_the_best_validation_epoch(data):
    train, validation, _ = data
    outcome = train_model(
        train,
        validation,
        NUMERIC,
        CATEGORICAL,
        TrainingParams(hidden_sizes=[32], epochs=40, patience=3, learning_rate=0.05),
        device=choose_device("cpu"),
    )
    losses = [h["validation_loss"] for h in outcome.history]
    assert outcome.best_epoch == int(np.argmin(losses)) + 1
    assert len(losses) <= 40 and len(losses) - outcome.best_epoch <= 3


def test_preprocessing_is_fitted_on_the_training_split_only(data):
    train, validation, _ = data
    encoder = train_model(
        train,
        validation,
        NUMERIC,
        CATEGORICAL,
        TrainingParams(hidden_sizes=[8], epochs=1),
        device=choose_device("cpu"),
    ).encoder
    assert encoder.means == pytest.approx(train[NUMERIC].mean().tolist())
    assert encoder.vocabularies == [sorted(train["colour"].unique())]
    unseen = FeatureEncoder.fit(train, NUMERIC, CATEGORICAL).category_indices(
        pd.DataFrame({"colour": ["purple"]})
    )
    assert unseen.tolist() == [[UNKNOWN_INDEX]]


def test_the_artifact_loads_and_scores_with_torch_alone(data, tmp_path):
    train, validation, test = data
    outcome = train_model(
        train,
        validation,
        NUMERIC,
        CATEGORICAL,
        TrainingParams(hidden_sizes=[16], epochs=3),
        device=choose_device("cpu"),
    )
    path = save_artifact(outcome.net, outcome.encoder, {"threshold": 0.4}, tmp_path / "model.pt")
    expected = predict_proba(outcome.net, outcome.encoder, test)
    assert np.allclose(load_artifact(path).predict_proba(test), expected, atol=1e-6)
    # a fresh interpreter that imports only torch: no class of this project is needed
    rows = test.head(5)
    script = f"""
import json, sys, torch
files = {{"encoder.json": "", "model_meta.json": ""}}
module = torch.jit.load({str(path)!r}, _extra_files=files)
encoder = json.loads(files["encoder.json"])
lookup = {{v: i + 1 for i, v in enumerate(encoder["vocabularies"][0])}}
numeric = torch.tensor({rows[NUMERIC].to_numpy().tolist()!r}, dtype=torch.float32)
categorical = torch.tensor([[lookup.get(c, 0)] for c in {rows["colour"].tolist()!r}])
print(json.dumps(module.predict_proba(numeric, categorical).tolist()))
assert not any(name.startswith("mlops_platform") for name in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", script.replace("nan", "float('nan')")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert np.allclose(json.loads(done.stdout), expected[:5], atol=1e-6)


def test_the_device_is_chosen_at_run_time():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert choose_device("auto").type == expected
    assert choose_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            choose_device("cuda")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        choose_device("tpu")


def test_expected_calibration_error_and_threshold_by_hand():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.05, 0.15, 0.85, 0.95])
    # bins [0,0.1): 0.05 vs 0; [0.1,0.2): 0.15 vs 0; [0.8,0.9): 0.85 vs 1; [0.9,1]: 0.95 vs 1
    assert expected_calibration_error(labels, scores) == pytest.approx((0.05 + 0.15 + 0.15 + 0.05) / 4)
    assert choose_threshold(labels, scores) == pytest.approx(0.85)  # F1 = 1 from 0.85 on
    metrics = classification_metrics(labels, scores, 0.5)
    assert metrics["accuracy"] == 1.0 and metrics["roc_auc"] == 1.0 and metrics["threshold"] == 0.5


def test_a_missing_category_scores_as_the_training_data_wrote_it(tmp_path):
    """dbt writes a missing categorical value as MISSING_CATEGORY; offline scoring and the server
    must map None/NaN to that category, not to 'unknown' (no training/serving skew)."""
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", MISSING_CATEGORY, "b", "a"]})
    encoder = FeatureEncoder.fit(train, ["x"], ["c"])
    missing = encoder.vocabularies[0].index(MISSING_CATEGORY) + 1
    scoring = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": [None, np.nan, "zzz", "a"]})
    a = encoder.vocabularies[0].index("a") + 1
    assert encoder.category_indices(scoring)[:, 0].tolist() == [missing, missing, UNKNOWN_INDEX, a]

    torch.manual_seed(0)
    path = save_artifact(TabularNet(encoder, [4], 0.0), encoder, {"threshold": 0.5}, tmp_path / "m.pt")
    served = load_revision("m", "1", path).predict_proba(
        FeatureBatch(
            numeric=scoring[["x"]].to_numpy(np.float32), categorical=[[None, None, "zzz", "a"]], rows=4
        )
    )
    assert np.allclose(served, load_artifact(path).predict_proba(scoring), atol=1e-6)
    with_token = scoring.assign(c=[MISSING_CATEGORY, MISSING_CATEGORY, "zzz", "a"])
    assert np.allclose(served, load_artifact(path).predict_proba(with_token), atol=1e-6)


def test_integer_codes_score_the_same_as_text_ints_or_floats_with_missing_values():
    """A DataFrame read by pandas holds integer codes as int64, or as float64 once a value is
    missing (`2.0`): each scores as the code's text the model was trained on, never as unknown."""
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["1", "2", "3", MISSING_CATEGORY]})
    encoder = FeatureEncoder.fit(train, ["x"], ["c"])
    as_text = encoder.category_indices(pd.DataFrame({"c": ["2", None, "3", "7"]}))
    as_floats = encoder.category_indices(pd.DataFrame({"c": [2.0, np.nan, 3.0, 7.0]}))
    as_ints = encoder.category_indices(pd.DataFrame({"c": [2, 1, 3, 7]}))
    assert as_floats.tolist() == as_text.tolist()
    assert as_ints[[0, 2, 3]].tolist() == as_text[[0, 2, 3]].tolist()
    assert as_text[3, 0] == UNKNOWN_INDEX and as_text[0, 0] != UNKNOWN_INDEX
    assert encoder.category_indices(pd.DataFrame({"c": [2.5]}))[0, 0] == UNKNOWN_INDEX
