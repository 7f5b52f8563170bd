"""Debiased contrastive loss (Chuang et al., NeurIPS 2020, "Debiased Contrastive Learning").

Unlabelled negatives are sometimes positives; with a class prior tau+ (the chance a sampled negative is in
fact positive) the negative term is corrected to
    Ng = max( (mean_j exp(s_j / t) - tau+ * exp(s_pos / t)) / (1 - tau+),  exp(-1 / t) )
and the loss is  -log( exp(s_pos / t) / (exp(s_pos / t) + N * Ng) ).  tau+ = 0 gives plain InfoNCE (without
the positive counted among the negatives)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from retriever.losses.infonce import batch_scores
from retriever.types import ConfigError


@dataclass(frozen=True)
class DebiasedInfoNCEConfig:
    temperature: float = 0.05
    tau_plus: float = 0.1

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}.")
        if not 0 <= self.tau_plus < 1:
            raise ConfigError(f"tau_plus must be in [0, 1), got {self.tau_plus}.")


class DebiasedInfoNCE(nn.Module):
    def __init__(self, config: DebiasedInfoNCEConfig = DebiasedInfoNCEConfig()):
        super().__init__()
        self.config = config

    def forward(self, q: torch.Tensor, d_pos: torch.Tensor, d_neg: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        t, tp = self.config.temperature, self.config.tau_plus
        scores = batch_scores(q, d_pos, d_neg) / t  # (B, B + N)
        b = q.shape[0]
        eye = torch.eye(b, scores.shape[1], dtype=torch.bool, device=q.device)
        excluded = eye if mask is None else eye | mask
        pos = scores[eye]  # (B,)
        # log-sum-exp arithmetic, for stability at small temperatures
        neg_scores = scores.masked_fill(excluded, float("-inf"))
        n_neg = (~excluded).sum(dim=1).clamp(min=1)
        log_mean_neg = torch.logsumexp(neg_scores, dim=1) - torch.log(n_neg.float())
        corrected = (torch.exp(log_mean_neg - pos) - tp) / (1 - tp)  # Ng / exp(pos)
        floor = torch.exp(torch.tensor(-1.0 / t, device=q.device) - pos)
        ng_over_pos = torch.maximum(corrected, floor)
        return torch.log1p(n_neg.float() * ng_over_pos).mean()


