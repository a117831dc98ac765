"""The tabular network: standardization, missing indicators, embeddings and an MLP.

Written so `torch.jit.script` compiles it: the saved artifact runs without this module.
"""

from __future__ import annotations

import torch
from torch import nn

from mlops_platform.lib.preprocessing import FeatureEncoder


def embedding_size(cardinality: int) -> int:
    """A common rule of thumb: about half the categories, at most 16."""
    return max(2, min(16, (cardinality + 1) // 2))


class TabularNet(nn.Module):
    """Logits of the positive class from raw numerics (NaN = missing) and category indices."""

    def __init__(self, encoder: FeatureEncoder, hidden: list[int], dropout: float) -> None:
        super().__init__()
        self.register_buffer("means", torch.tensor(encoder.means, dtype=torch.float32))
        self.register_buffer("stds", torch.tensor(encoder.stds, dtype=torch.float32))
        self.embeddings = nn.ModuleList(
            [nn.Embedding(len(v) + 1, embedding_size(len(v) + 1)) for v in encoder.vocabularies]
        )
        width = 2 * len(encoder.numeric) + sum(e.embedding_dim for e in self.embeddings)
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        missing = torch.isnan(numeric)
        scaled = torch.where(missing, torch.zeros_like(numeric), (numeric - self.means) / self.stds)
        parts = [scaled, missing.to(numeric.dtype)]
        for i, embedding in enumerate(self.embeddings):
            parts.append(embedding(categorical[:, i]))
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)

    @torch.jit.export
    def predict_proba(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.forward(numeric, categorical))
