"""Listwise distillation from a teacher's scores (pseudo-labels): the student's softmax over a query's candidates is
pulled towards the teacher's softmax over the same candidates,
    L_i = -sum_j p_ij log softmax_j(s_i / t),   p_i = w * softmax(u_i / t_teacher) + (1 - w) * onehot(own positive),
where u_ij is the teacher's score of candidate j for query i. The listwise form is RocketQAv2's (Ren et al., EMNLP
2021, "RocketQAv2: A Joint Training Method for Dense Passage Retrieval and Passage Re-ranking"); pseudo-labels
from a stronger ranker on generated queries are GPL's idea (Wang et al., NAACL 2022), here from any teacher run
(densepipe's label-free path uses BM25 fused with the base dense model). ``teacher_weight`` w = 0 is InfoNCE with
the known positives kept in the denominator; dropped columns take part in neither softmax."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from retriever.losses.base import Candidates, ContrastiveLoss, ContrastiveOptions, LossConfig
from retriever.losses.supcon import soft_target_loss
from retriever.types import ConfigError


@dataclass(frozen=True)
class DistillConfig(LossConfig):
    teacher_temperature: float = 1.0
    teacher_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.teacher_temperature <= 0:
            raise ConfigError(f"teacher_temperature must be > 0, got {self.teacher_temperature}.")
        if not 0 <= self.teacher_weight <= 1:
            raise ConfigError(f"teacher_weight must be in [0, 1], got {self.teacher_weight}.")


def teacher_targets(teacher: torch.Tensor, c: Candidates, config: DistillConfig) -> torch.Tensor:
    """(B, C) target distribution: the teacher's softmax over the non-dropped columns mixed with the own positive."""
    p = torch.softmax((teacher / config.teacher_temperature).masked_fill(c.dropped, float("-inf")), dim=1)
    return config.teacher_weight * p + (1 - config.teacher_weight) * c.own.float()


class Distillation(ContrastiveLoss):
    """Refuses a queue and MoCHi's mixed negatives: the teacher's run cannot score their columns (the base pads a
    shorter ``relevance`` with zeros, which would be read as teacher scores)."""

    Config = DistillConfig

    def __init__(self, config: DistillConfig | None = None, options: ContrastiveOptions = ContrastiveOptions()):
        if options.mix is not None:
            raise ConfigError("the distill loss cannot score MoCHi's mixed negatives: leave mixing off.")
        super().__init__(config, options)

    def forward(self, q, d_pos, d_neg=None, mask=None, queue=None, queue_mask=None, relevance=None):
        if queue is not None and queue.numel():
            raise ConfigError("the distill loss cannot score a queue's entries: leave the queue off.")
        return super().forward(q, d_pos, d_neg, mask, queue, queue_mask, relevance)

    def objective(self, logits: torch.Tensor, c: Candidates, relevance, q, d_pos) -> torch.Tensor:
        """``relevance`` (B, C): the teacher's score of every candidate column (required)."""
        if relevance is None:
            raise ConfigError("the distill loss needs the teacher's score of every candidate (pass --teacher).")
        return soft_target_loss(logits, c, teacher_targets(relevance.to(logits.dtype), c, self.config).detach())
