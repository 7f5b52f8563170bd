"""Graded relevance as soft targets (generalized contrastive learning: Zhu et al., 2024, "Generalized Contrastive
Learning for Multi-Modal Retrieval and Ranking"): the target distribution over a query's candidates is
proportional to each known positive's gain, so a grade-2 document is pulled harder than a grade-1 one,
    L_i = -sum_j w_ij / sum_k w_ik * log softmax_j(s_i / t),   w_ij = gain(grade of j for query i).
``gain``: "linear" (the grade) or "exponential" (2^grade - 1, nDCG's). With every grade 1 it equals SupCon."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from retriever.losses.base import Candidates, ContrastiveLoss, LossConfig
from retriever.losses.supcon import soft_target_loss
from retriever.types import ConfigError


@dataclass(frozen=True)
class GradedConfig(LossConfig):
    gain: str = "exponential"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gain not in ("linear", "exponential"):
            raise ConfigError(f"graded gain must be 'linear' or 'exponential', got {self.gain!r}.")


class GradedContrastive(ContrastiveLoss):
    Config = GradedConfig

    def objective(self, logits: torch.Tensor, c: Candidates, relevance, q, d_pos) -> torch.Tensor:
        """``relevance`` (B, C): the grade of each candidate for each query (0 where unjudged); without it every
        known positive counts 1."""
        grades = (c.own | c.known).float() if relevance is None else relevance.clamp(min=0).float()
        grades = torch.where(c.own & (grades <= 0), torch.ones_like(grades), grades)  # the own pair is relevant
        gains = grades if self.config.gain == "linear" else torch.exp2(grades) - 1
        return soft_target_loss(logits, c, gains.masked_fill(c.dropped, 0.0))
