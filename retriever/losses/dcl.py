"""Decoupled contrastive learning (Yeh et al., ECCV 2022, "Decoupled Contrastive Learning"): InfoNCE with the
positive removed from the denominator,
    L_i = -s_ii / t + log sum_{j negative} exp(s_ij / t),
which removes the "negative-positive coupling" that damps the gradient when the positive already dominates —
the case of small batches and easy negatives."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from retriever.losses.base import Candidates, ContrastiveLoss, LossConfig


@dataclass(frozen=True)
class DecoupledConfig(LossConfig):
    """The temperature only."""


class DecoupledInfoNCE(ContrastiveLoss):
    Config = DecoupledConfig

    def objective(self, logits: torch.Tensor, c: Candidates, relevance, q, d_pos) -> torch.Tensor:
        negatives = logits.masked_fill(c.own | c.known | c.dropped, float("-inf"))
        return (torch.logsumexp(negatives, dim=1) - logits[c.own]).mean()
