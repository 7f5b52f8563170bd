"""InfoNCE over in-batch and hard negatives (van den Oord et al., 2018; as used for dense retrieval by DPR,
Karpukhin et al., EMNLP 2020): each query's positive must outscore every other document in the batch — the
other queries' positives and all mined hard negatives — at temperature t. Optionally symmetric: each positive
must also pick out its own query among the batch's queries. Known positives other than the own one are not
negatives (masked out)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from retriever.losses.base import Candidates, ContrastiveLoss, LossConfig


@dataclass(frozen=True)
class InfoNCEConfig(LossConfig):
    symmetric: bool = False


class InfoNCE(ContrastiveLoss):
    Config = InfoNCEConfig

    def objective(self, logits: torch.Tensor, c: Candidates, relevance, q, d_pos) -> torch.Tensor:
        labels = torch.arange(q.shape[0], device=q.device)
        loss = F.cross_entropy(logits.masked_fill(c.known | c.dropped, float("-inf")), labels)
        if self.config.symmetric:
            loss = (loss + F.cross_entropy(d_pos @ q.T / self.temperature(), labels)) / 2
        return loss
