"""Decoupled contrastive learning (Yeh et al., ECCV 2022, "Decoupled Contrastive Learning"): InfoNCE with the
positive removed from the denominator,
    L_i = -s_ii / t + log sum_{j negative} exp(s_ij / t),
which removes the "negative-positive coupling" that damps the gradient when the positive already dominates —
the case of small batches and easy negatives."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from retriever.losses.base import Candidates, ContrastiveLoss, ContrastiveOptions
from retriever.types import ConfigError


@dataclass(frozen=True)
class DecoupledConfig:
    temperature: float = 0.05

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}.")


class DecoupledInfoNCE(ContrastiveLoss):
    def __init__(self, config: DecoupledConfig = DecoupledConfig(), options: ContrastiveOptions = ContrastiveOptions()):
        super().__init__(config.temperature, options)
        self.config = config

    def objective(self, logits: torch.Tensor, c: Candidates, relevance, q, d_pos) -> torch.Tensor:
        negatives = logits.masked_fill(c.own | c.known | c.dropped, float("-inf"))
        return (torch.logsumexp(negatives, dim=1) - logits[c.own]).mean()
