"""Training that streams and scoring in chunks, on a small real DuckDB warehouse: the Parquet
stream trains exactly like arrays in memory given the same order, holds a bounded number of
batches, and every SQL or chunked path equals its whole-frame counterpart."""

import dataclasses
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch

from mlops_platform.lib.evaluation import model_scores, score_record_batches
from mlops_platform.lib.fairness import attribute_fairness, group_values
from mlops_platform.lib.model_artifact import load_artifact, save_artifact
from mlops_platform.lib.preprocessing import MISSING_CATEGORY, FeatureEncoder
from mlops_platform.lib.training import TrainingData, fit, load_training_data
from mlops_platform.lib.training_batches import (
    ArrayBatches,
    Batch,
    ParquetBatches,
    encode_record_batches,
    query_batches,
    select_sql,
)
from mlops_platform.lib.training_params import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MIN_BATCH_SIZE,
    MIN_EPOCHS,
    TrainingParams,
    auto_batch_size,
    auto_epochs,
)

NUMERIC, CATEGORICAL = ["x1", "x2", "flat", "empty"], ["colour"]
TRAIN = "SELECT * FROM training_set WHERE split = 'train'"
VALIDATION = "SELECT * FROM training_set WHERE split = 'validation'"
TEST = "SELECT * FROM training_set WHERE split = 'test'"
ROWS = 20_000


def _training_set(rows: int, seed: int) -> pd.DataFrame:
    """Rows shaped like `training_set`: a double with missing values, an integer, a constant
    and an empty column, a category with missing values and the dbt missing token."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(0, 1, rows), rng.integers(0, 10, rows)
    colour = rng.choice(["red", "green", "blue", MISSING_CATEGORY], rows, p=[0.4, 0.3, 0.2, 0.1])
    logit = 1.5 * x1 - 0.3 * (x2 - 5) + np.where(colour == "red", 1.0, -0.5)
    frame = pd.DataFrame(
        {
            "record_id": [f"r{i:07d}" for i in rng.permutation(rows)],
            "split": rng.choice(["train", "validation", "test"], rows, p=[0.7, 0.15, 0.15]),
            "label": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int),
            "x1": np.where(rng.random(rows) < 0.05, np.nan, x1),
            "x2": x2,
            "flat": 3.0,
            "empty": np.nan,
            "colour": pd.Series(colour, dtype=object).where(rng.random(rows) >= 0.05, None),
            "sex": rng.choice(["f", "m"], rows),
        }
    )
    return frame


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    con = duckdb.connect(str(tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb"))
    con.register("incoming", _training_set(ROWS, 0))
    con.execute("CREATE TABLE training_set AS SELECT * FROM incoming ORDER BY record_id")
    con.unregister("incoming")
    yield con
    con.close()


@pytest.fixture(scope="module")
def encoder(warehouse) -> FeatureEncoder:
    return FeatureEncoder.fit_sql(warehouse, TRAIN, NUMERIC, CATEGORICAL)


def _in_memory(con, query: str, encoder: FeatureEncoder) -> Batch:
    select = f"{select_sql(query, encoder.numeric, encoder.categorical)} ORDER BY record_id"
    rows = con.sql(f"SELECT count(*) FROM ({query})").fetchall()[0][0]
    return encode_record_batches(con.sql(select).to_arrow_reader(1000), encoder, rows)


def _stream(con, encoder, folder: Path, batch_size: int, shuffle_batches: int) -> ParquetBatches:
    select = f"{select_sql(TRAIN, encoder.numeric, encoder.categorical)} ORDER BY record_id"
    path = folder / "train.parquet"
    con.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE {batch_size})")
    return ParquetBatches(path, encoder, batch_size, seed=3, shuffle_batches=shuffle_batches)


def _all_rows(source) -> list[np.ndarray]:
    """Every row of a source read in order: numeric, categorical and labels arrays."""
    return [np.concatenate(part) for part in zip(*source.chunks(), strict=True)]


def test_the_sql_fitted_encoder_equals_fit_on_the_same_rows(warehouse, encoder):
    train = warehouse.sql(TRAIN).df()
    reference = FeatureEncoder.fit(train, NUMERIC, CATEGORICAL)
    assert encoder.means == pytest.approx(reference.means, rel=1e-12, abs=1e-12)
    assert encoder.stds == pytest.approx(reference.stds, rel=1e-9)
    assert encoder.stds[2:] == [1.0, 1.0] and encoder.means[3] == 0.0  # constant and empty columns
    assert encoder.vocabularies == reference.vocabularies
    assert MISSING_CATEGORY in encoder.vocabularies[0]
    # an Arrow batch encodes like the same rows as a DataFrame (unknown and missing values too)
    rows = pd.DataFrame(
        {
            "x1": [1.5, None],
            "x2": [2, None],
            "flat": [3.0, 3.0],
            "empty": [None, None],
            "colour": ["teal", None],
        }
    )
    warehouse.register("rows", rows)
    (arrow,) = warehouse.sql(
        select_sql("SELECT *, 0 AS label FROM rows", NUMERIC, CATEGORICAL)
    ).to_arrow_reader(10)
    warehouse.unregister("rows")
    numeric, categorical = encoder.record_batch_arrays(arrow)
    np.testing.assert_array_equal(numeric, encoder.numeric_array(rows))
    np.testing.assert_array_equal(categorical, encoder.category_indices(rows))


def test_streamed_training_equals_training_in_memory_for_the_same_order(warehouse, encoder, tmp_path):
    stream = _stream(warehouse, encoder, tmp_path, batch_size=512, shuffle_batches=4)
    memory = ArrayBatches(_in_memory(warehouse, TRAIN, encoder), 512, seed=3, order=stream.epoch_order)
    assert len(stream.group_rows) > 4  # several row groups, so the windows really shuffle
    for epoch in (1, 2):
        streamed, held = list(stream.batches(epoch)), list(memory.batches(epoch))
        assert [b.rows for b in streamed] == [b.rows for b in held]
        for a, b in zip(streamed, held, strict=True):
            for left, right in zip(a, b, strict=True):
                np.testing.assert_array_equal(left, right)
    order = stream.epoch_order(1)
    assert sorted(order.tolist()) == list(range(stream.rows)) and (order != stream.epoch_order(2)).any()

    validation = ArrayBatches(_in_memory(warehouse, VALIDATION, encoder), 512, seed=3)
    params = TrainingParams(hidden_sizes=[8], epochs=3, batch_size=512, seed=5)
    device = torch.device("cpu")
    outcomes = [fit(TrainingData(params, encoder, source, validation), device) for source in (stream, memory)]
    for name, tensor in outcomes[0].net.state_dict().items():
        assert torch.max(torch.abs(tensor - outcomes[1].net.state_dict()[name])).item() < 1e-6
    for key in ("train_loss", "validation_loss"):
        assert [h[key] for h in outcomes[0].history] == pytest.approx(
            [h[key] for h in outcomes[1].history], abs=1e-6
        )


def test_the_parquet_stream_holds_a_bounded_number_of_batches(warehouse, encoder, tmp_path):
    batch_size, shuffle_batches = 512, 4
    stream = _stream(warehouse, encoder, tmp_path, batch_size, shuffle_batches)
    assert stream.max_rows <= (2 * shuffle_batches + 1) * batch_size < stream.rows
    rows = sum(batch.rows for batch in stream.batches(1))
    rows_in_order = sum(chunk.rows for chunk in stream.chunks())
    assert rows == rows_in_order == stream.rows
    assert 0 < stream.peak_rows <= stream.max_rows


def test_a_split_is_read_in_memory_or_streamed_by_its_size_with_the_same_rows(warehouse, encoder, tmp_path):
    small = query_batches(warehouse, TRAIN, "record_id", encoder, 512, 0, tmp_path, "small")
    large = query_batches(warehouse, TRAIN, "record_id", encoder, 64, 0, tmp_path, "large")
    assert isinstance(small, ArrayBatches) and isinstance(large, ParquetBatches)
    assert small.positives == large.positives and small.rows == large.rows
    for a, b in zip(_all_rows(small), _all_rows(large), strict=True):
        np.testing.assert_array_equal(a, b)


def test_batch_size_and_epochs_follow_the_rows_unless_given():
    assert auto_batch_size(4_096) == auto_batch_size(50_000) == MIN_BATCH_SIZE == 256
    assert auto_batch_size(1_000) == 32  # small data: at least 16 steps an epoch
    assert auto_batch_size(100_000) == 512
    assert auto_batch_size(1_000_000) == auto_batch_size(10_000_000) == MAX_BATCH_SIZE == 4096
    assert auto_epochs(1_000) == MAX_EPOCHS == 30
    assert (
        auto_epochs(1_000_000) == 7 and auto_epochs(2_000_000) == 5 and auto_epochs(10_000_000) == MIN_EPOCHS
    )
    sizes = [10**k for k in range(3, 9)]
    assert [auto_batch_size(n) for n in sizes] == sorted(auto_batch_size(n) for n in sizes)
    assert [auto_epochs(n) for n in sizes] == sorted((auto_epochs(n) for n in sizes), reverse=True)
    resolved = TrainingParams(epochs=2).for_rows(2_000_000)
    assert (resolved.epochs, resolved.batch_size) == (2, 4096)


def test_training_reads_its_params_from_the_rows_and_stops_at_the_time_budget(warehouse, tmp_path):
    params = TrainingParams(hidden_sizes=[8], epochs=10, patience=100, time_budget_minutes=1.0)
    data = load_training_data(
        warehouse, TRAIN, VALIDATION, "record_id", NUMERIC, CATEGORICAL, params, tmp_path
    )
    assert data.params.batch_size == auto_batch_size(data.train.rows) and data.params.epochs == 10
    ticks = iter(range(0, 10_000, 10))  # a clock that moves 10 s each time it is read
    outcome = fit(data, torch.device("cpu"), clock=lambda: float(next(ticks)))
    # read at 0 (start); epoch 1 from 10 to 20, checked at 30; epoch 2 from 40 to 50, checked at 60
    assert outcome.stop_reason == "time_budget" and len(outcome.history) == 2
    assert [h["rows_per_second"] for h in outcome.history] == [data.train.rows / 10] * 2
    unlimited = dataclasses.replace(
        data, params=dataclasses.replace(data.params, time_budget_minutes=None, epochs=3)
    )
    assert fit(unlimited, torch.device("cpu")).stop_reason == "epochs"


def test_chunked_scoring_equals_scoring_the_whole_frame(warehouse, tmp_path):
    params = TrainingParams(hidden_sizes=[8], epochs=2)
    data = load_training_data(
        warehouse, TRAIN, VALIDATION, "record_id", NUMERIC, CATEGORICAL, params, tmp_path
    )
    outcome = fit(data, torch.device("cpu"))
    model = load_artifact(save_artifact(outcome.net, outcome.encoder, {"threshold": 0.5}, tmp_path / "m.pt"))
    select = f"{select_sql(TEST, NUMERIC, CATEGORICAL, extra=['sex'])} ORDER BY record_id"
    chunked = score_record_batches(
        model_scores(model), warehouse.sql(select).to_arrow_reader(100), keep=["sex"]
    )
    whole = warehouse.sql(f"{TEST} ORDER BY record_id").df()
    expected = model.predict_proba(whole)
    assert len(chunked.scores) == len(whole) > 1000
    np.testing.assert_allclose(chunked.scores, expected, atol=1e-6)
    np.testing.assert_array_equal(chunked.labels, whole["label"].to_numpy())
    assert chunked.kept.columns.tolist() == ["sex"]
    assert chunked.kept["sex"].tolist() == whole["sex"].tolist()
    fair_chunked = attribute_fairness(
        group_values(chunked.kept["sex"], None),
        chunked.labels,
        (chunked.scores >= 0.5).astype(int),
        "sex",
        50,
    )
    fair_whole = attribute_fairness(
        group_values(whole["sex"], None), whole["label"].to_numpy(), model.predict(whole), "sex", 50
    )
    assert fair_chunked.gaps == fair_whole.gaps
