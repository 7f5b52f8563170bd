"""Debiased contrastive loss (Chuang et al., NeurIPS 2020, "Debiased Contrastive Learning").

Unlabelled negatives are sometimes positives; with a class prior tau+ (the chance a sampled negative is in
fact positive) the negative term is corrected to
    Ng = max( (mean_j exp(s_j / t) - tau+ * exp(s_pos / t)) / (1 - tau+),  exp(-1 / t) )
and the loss is  -log( exp(s_pos / t) / (exp(s_pos / t) + N * Ng) ).  tau+ = 0 gives plain InfoNCE (without
the positive counted among the negatives)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from retriever.losses.base import Candidates, ContrastiveLoss, LossConfig
from retriever.types import ConfigError


@dataclass(frozen=True)
class DebiasedInfoNCEConfig(LossConfig):
    tau_plus: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.tau_plus < 1:
            raise ConfigError(f"tau_plus must be in [0, 1), got {self.tau_plus}.")


class DebiasedInfoNCE(ContrastiveLoss):
    Config = DebiasedInfoNCEConfig

    def objective(self, logits: torch.Tensor, c: Candidates, relevance, q, d_pos) -> torch.Tensor:
        tp = self.config.tau_plus
        excluded = c.own | c.known | c.dropped
        pos = logits[c.own]  # (B,)
        # log-sum-exp arithmetic, for stability at small temperatures
        n_neg = (~excluded).sum(dim=1).clamp(min=1)
        log_mean_neg = torch.logsumexp(logits.masked_fill(excluded, float("-inf")), dim=1) - torch.log(n_neg.float())
        corrected = (torch.exp(log_mean_neg - pos) - tp) / (1 - tp)  # Ng / exp(pos)
        floor = torch.exp(-1.0 / self.temperature() - pos)
        return torch.log1p(n_neg.float() * torch.maximum(corrected, floor)).mean()
