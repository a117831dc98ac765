"""Train the tabular network: seeded, early-stopped on validation, on CUDA when present.

The loop reads batches from a `BatchSource` (`lib/training_batches.py`): arrays in memory or
a Parquet stream, so memory stays bounded however many rows the train split holds.
"""

from __future__ import annotations

import contextlib
import copy
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pandas as pd
import torch
from torch import nn

from mlops_platform.lib.preprocessing import FeatureEncoder
from mlops_platform.lib.tabular_net import TabularNet
from mlops_platform.lib.training_batches import Batch, BatchSource, query_batches
from mlops_platform.lib.training_params import TrainingParams

StopReason = Literal["epochs", "early_stopping", "time_budget"]


@dataclass
class TrainingData:
    """What a training run reads: the resolved parameters, the encoder fitted on the train
    split, and the two splits as batch sources."""

    params: TrainingParams  # batch size and epochs filled in for the train rows
    encoder: FeatureEncoder
    train: BatchSource
    validation: BatchSource


@dataclass
class TrainingOutcome:
    net: TabularNet
    encoder: FeatureEncoder
    history: list[dict[str, float]]  # per epoch: losses, seconds, train rows per second
    best_epoch: int
    device: str
    positive_weight: float
    params: TrainingParams
    stop_reason: StopReason


def choose_device(prefer: str = "auto") -> torch.device:
    """`auto`: CUDA when available, else CPU. `cuda` fails clearly when there is no GPU."""
    if prefer not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {prefer!r}")
    if prefer == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch sees no CUDA device; use 'auto' or 'cpu'")
    if prefer == "cpu" or (prefer == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def load_training_data(
    con: duckdb.DuckDBPyConnection,
    train: str,
    validation: str,
    order_by: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    params: TrainingParams,
    folder: Path,
) -> TrainingData:
    """Read the train and validation splits (SQL queries with features and `label`, sorted by
    `order_by`) as batch sources; large ones are exported to Parquet under `folder`, which
    must outlive the training. The encoder is fitted in SQL on the train split."""
    rows = con.sql(f"SELECT count(*) FROM ({train})").fetchall()[0][0]
    params = params.for_rows(rows)
    encoder = FeatureEncoder.fit_sql(con, train, numeric, categorical)
    sources = [
        query_batches(con, query, order_by, encoder, params.batch_size, params.seed, folder, name)
        for name, query in (("train", train), ("validation", validation))
    ]
    return TrainingData(params, encoder, *sources)


def _tensors(batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(torch.from_numpy(array).to(device, non_blocking=True) for array in batch)


@contextlib.contextmanager
def _threads_beside_reader(source: BatchSource, device: torch.device) -> Iterator[None]:
    """On CPU, torch computes on one thread fewer while the source reads in a background thread:
    torch threads that share a core with the reader wait on each other at every operation
    (measured on a busy 2-core machine: about 300k rows/s on one torch thread, 15k on two)."""
    previous = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(max(1, previous - source.reader_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _train_epoch(
    net: TabularNet,
    source: BatchSource,
    epoch: int,
    optimizer: torch.optim.Optimizer,
    loss: nn.Module,
    device: torch.device,
) -> float:
    """One pass over the epoch's batches; the mean training loss."""
    net.train()
    total = torch.zeros((), device=device)
    for batch in source.batches(epoch):
        numeric, categorical, labels = _tensors(batch, device)
        optimizer.zero_grad()
        batch_loss = loss(net(numeric, categorical), labels)
        batch_loss.backward()
        optimizer.step()
        total += batch_loss.detach() * batch.rows
    return float(total) / source.rows


def _validation_loss(net: TabularNet, source: BatchSource, device: torch.device) -> float:
    """Mean log loss over the source, summed chunk by chunk."""
    net.eval()
    loss = nn.BCEWithLogitsLoss(reduction="sum")
    total = torch.zeros((), device=device)
    with torch.no_grad():
        for batch in source.chunks():
            numeric, categorical, labels = _tensors(batch, device)
            total += loss(net(numeric, categorical), labels)
    return float(total) / source.rows


def make_optimizer(net: nn.Module, params: TrainingParams) -> torch.optim.Optimizer:
    """AdamW, or SGD with Nesterov momentum; fused: one kernel per step, not a few per parameter."""
    if params.optimizer == "sgd":
        return torch.optim.SGD(
            net.parameters(),
            lr=params.learning_rate,
            momentum=0.9,
            nesterov=True,
            weight_decay=params.weight_decay,
            fused=True,
        )
    return torch.optim.AdamW(
        net.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay, fused=True
    )


def fit(
    data: TrainingData,
    device: torch.device | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> TrainingOutcome:
    """Train with AdamW on `data.train`, keep the epoch with the best validation loss.

    Stops after `params.epochs`, after `patience` epochs without improvement, or after the
    epoch that passes `params.time_budget_minutes` on `clock` (seconds).
    """
    params = data.params
    device = device or choose_device()
    seed_everything(params.seed)
    net = TabularNet(data.encoder, params.hidden_sizes, params.dropout).to(device)
    positives = data.train.positives
    negatives = data.train.rows - positives
    positive_weight = negatives / positives if params.class_weighting == "balanced" else 1.0
    train_loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(positive_weight, device=device))
    optimizer = make_optimizer(net, params)

    best_loss, best_epoch, best_state, waited = float("inf"), 0, copy.deepcopy(net.state_dict()), 0
    history: list[dict[str, float]] = []
    stop_reason: StopReason = "epochs"
    started = clock()
    for epoch in range(1, params.epochs + 1):
        epoch_started = clock()
        with _threads_beside_reader(data.train, device):
            loss = _train_epoch(net, data.train, epoch, optimizer, train_loss, device)
        seconds = clock() - epoch_started
        val = _validation_loss(net, data.validation, device)
        record = {
            "epoch": float(epoch),
            "train_loss": loss,
            "validation_loss": val,
            "seconds": seconds,
            "rows_per_second": data.train.rows / max(seconds, 1e-9),
        }
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if val < best_loss - 1e-6:
            best_loss, best_epoch, best_state, waited = val, epoch, copy.deepcopy(net.state_dict()), 0
        else:
            waited += 1
            if waited >= params.patience:
                stop_reason = "early_stopping"
                break
        budget = params.time_budget_minutes
        if budget is not None and epoch < params.epochs and clock() - started >= budget * 60:
            stop_reason = "time_budget"
            break
    net.load_state_dict(best_state)
    net.eval()
    return TrainingOutcome(
        net=net.cpu(),
        encoder=data.encoder,
        history=history,
        best_epoch=best_epoch,
        device=str(device),
        positive_weight=positive_weight,
        params=params,
        stop_reason=stop_reason,
    )


def train_model(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    params: TrainingParams,
    device: torch.device | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainingOutcome:
    """`fit` on two DataFrames (features and `label`), read through DuckDB like warehouse splits."""
    with duckdb.connect() as con, tempfile.TemporaryDirectory() as folder:
        con.register("train_rows", train)
        con.register("validation_rows", validation)
        data = load_training_data(
            con,
            "SELECT * FROM train_rows",
            "SELECT * FROM validation_rows",
            "ALL",
            numeric,
            categorical,
            params,
            Path(folder),
        )
        return fit(data, device=device, on_epoch=on_epoch)


def predict_source(net: TabularNet, source: BatchSource) -> tuple[np.ndarray, np.ndarray]:
    """Positive-class probabilities and labels of every row of `source`, chunk by chunk (CPU)."""
    scores, labels = [], []
    with torch.no_grad():
        for batch in source.chunks():
            numeric, categorical, _ = _tensors(batch, torch.device("cpu"))
            scores.append(net.predict_proba(numeric, categorical).numpy().astype(np.float64))
            labels.append(batch.labels.astype(np.int64))
    return np.concatenate(scores), np.concatenate(labels)


def predict_proba(net: TabularNet, encoder: FeatureEncoder, frame: pd.DataFrame) -> np.ndarray:
    """Positive-class probabilities for the rows of `frame` (CPU)."""
    with torch.no_grad():
        numeric = torch.from_numpy(encoder.numeric_array(frame))
        categorical = torch.from_numpy(encoder.category_indices(frame))
        return net.predict_proba(numeric, categorical).numpy().astype(np.float64)
