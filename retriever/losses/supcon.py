"""Supervised contrastive loss (Khosla et al., NeurIPS 2020, "Supervised Contrastive Learning", the L_out form)
for retrieval: every known positive of a query among the candidates is in the numerator, one term each,
    L_i = -1/|P(i)| sum_{p in P(i)} log( exp(s_ip / t) / sum_{a} exp(s_ia / t) ),
where P(i) is the own positive plus the query's other judged positives in the batch (the trainer adds them as
candidates) and a runs over every candidate the row does not drop. With one positive per query it is InfoNCE
with the other positives left in the denominator."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from retriever.losses.base import Candidates, ContrastiveLoss, LossConfig


@dataclass(frozen=True)
class SupConConfig(LossConfig):
    """The temperature only."""


def soft_target_loss(logits: torch.Tensor, c: Candidates, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the softmax over non-dropped candidates against targets proportional to ``weights``."""
    log_p = torch.log_softmax(logits.masked_fill(c.dropped, float("-inf")), dim=1)
    target = weights / weights.sum(dim=1, keepdim=True)
    return -(target * log_p.masked_fill(target == 0, 0.0)).sum(dim=1).mean()


class SupCon(ContrastiveLoss):
    Config = SupConConfig

    def objective(self, logits: torch.Tensor, c: Candidates, relevance, q, d_pos) -> torch.Tensor:
        return soft_target_loss(logits, c, (c.own | c.known).float())
