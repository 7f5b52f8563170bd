"""InfoNCE over in-batch and hard negatives (van den Oord et al., 2018; as used for dense retrieval by DPR,
Karpukhin et al., EMNLP 2020): each query's positive must outscore every other document in the batch — the
other queries' positives and all mined hard negatives — at temperature t. Optionally symmetric: each positive
must also pick out its own query among the batch's queries."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from retriever.types import ConfigError


@dataclass(frozen=True)
class InfoNCEConfig:
    temperature: float = 0.05
    symmetric: bool = False

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}.")


def batch_scores(q: torch.Tensor, d_pos: torch.Tensor, d_neg: torch.Tensor | None) -> torch.Tensor:
    """(B, B + N) inner products of each query with all positives, then all hard negatives."""
    docs = d_pos if d_neg is None or d_neg.numel() == 0 else torch.cat([d_pos, d_neg])
    return q @ docs.T


class InfoNCE(nn.Module):
    def __init__(self, config: InfoNCEConfig = InfoNCEConfig()):
        super().__init__()
        self.config = config

    def forward(self, q: torch.Tensor, d_pos: torch.Tensor, d_neg: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` (B, B + N), True where a document must not count as a negative (a known positive)."""
        logits = batch_scores(q, d_pos, d_neg) / self.config.temperature
        if mask is not None:
            logits = logits.masked_fill(mask, float("-inf"))
        labels = torch.arange(q.shape[0], device=q.device)
        loss = F.cross_entropy(logits, labels)
        if self.config.symmetric:
            loss = (loss + F.cross_entropy(d_pos @ q.T / self.config.temperature, labels)) / 2
        return loss
