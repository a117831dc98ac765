"""Train the tabular network: seeded, early-stopped on validation, on CUDA when present."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from mlops_platform.lib.preprocessing import FeatureEncoder
from mlops_platform.lib.tabular_net import TabularNet
from mlops_platform.lib.training_params import TrainingParams


@dataclass
class TrainingOutcome:
    net: TabularNet
    encoder: FeatureEncoder
    history: list[dict[str, float]]
    best_epoch: int
    device: str
    positive_weight: float


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


def _tensors(frame: pd.DataFrame, encoder: FeatureEncoder, device: torch.device):
    numeric = torch.from_numpy(encoder.numeric_array(frame)).to(device)
    categorical = torch.from_numpy(encoder.category_indices(frame)).to(device)
    labels = torch.from_numpy(frame["label"].to_numpy(dtype=np.float32)).to(device)
    return numeric, categorical, labels


def train_model(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    params: TrainingParams,
    device: torch.device | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainingOutcome:
    """Fit the encoder on `train`, train with AdamW, keep the epoch with the best validation loss."""
    device = device or choose_device()
    seed_everything(params.seed)
    encoder = FeatureEncoder.fit(train, numeric, categorical)
    net = TabularNet(encoder, params.hidden_sizes, params.dropout).to(device)
    x_num, x_cat, y = _tensors(train, encoder, device)
    v_num, v_cat, v_y = _tensors(validation, encoder, device)
    positives = float(y.sum().item())
    positive_weight = (len(y) - positives) / positives if params.class_weighting == "balanced" else 1.0
    train_loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(positive_weight, device=device))
    validation_loss = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.AdamW(net.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    generator = torch.Generator().manual_seed(params.seed)

    best_loss, best_epoch, best_state, waited = float("inf"), 0, copy.deepcopy(net.state_dict()), 0
    history: list[dict[str, float]] = []
    for epoch in range(1, params.epochs + 1):
        net.train()
        order = torch.randperm(len(y), generator=generator).to(device)
        total = 0.0
        for start in range(0, len(y), params.batch_size):
            batch = order[start : start + params.batch_size]
            optimizer.zero_grad()
            loss = train_loss(net(x_num[batch], x_cat[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total += float(loss.item()) * len(batch)
        net.eval()
        with torch.no_grad():
            val = float(validation_loss(net(v_num, v_cat), v_y).item())
        record = {"epoch": float(epoch), "train_loss": total / len(y), "validation_loss": val}
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if val < best_loss - 1e-6:
            best_loss, best_epoch, best_state, waited = val, epoch, copy.deepcopy(net.state_dict()), 0
        else:
            waited += 1
            if waited >= params.patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    return TrainingOutcome(
        net=net.cpu(),
        encoder=encoder,
        history=history,
        best_epoch=best_epoch,
        device=str(device),
        positive_weight=positive_weight,
    )


def predict_proba(net: TabularNet, encoder: FeatureEncoder, frame: pd.DataFrame) -> np.ndarray:
    """Positive-class probabilities for the rows of `frame` (CPU)."""
    with torch.no_grad():
        numeric = torch.from_numpy(encoder.numeric_array(frame))
        categorical = torch.from_numpy(encoder.category_indices(frame))
        return net.predict_proba(numeric, categorical).numpy().astype(np.float64)
