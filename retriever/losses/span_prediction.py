"""Group-wise contrastive loss of contrastive span prediction (COSTA: Ma et al., SIGIR 2022, "Pre-train a
Discriminative Text Encoder for Dense Retrieval via Contrastive Span Prediction"): a document's vector must be
closer to each of its own spans than to any span of the other documents in the batch.

For document i with own spans P(i) and every span m of the batch,
    L = mean over i, p in P(i) of  -log( exp(s(i,p)/t) / (exp(s(i,p)/t) + sum_{m not in P(i)} exp(s(i,m)/t)) ).
With one span per document this is in-batch InfoNCE — which is how the dropout-view (SimCSE) and inverse-cloze
tasks use it too."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from retriever.losses.base import LossConfig


@dataclass(frozen=True)
class SpanLossConfig(LossConfig):
    """The temperature only."""


class GroupwiseSpanLoss(nn.Module):
    def __init__(self, config: SpanLossConfig = SpanLossConfig()):
        super().__init__()
        self.config = config

    def forward(self, docs: torch.Tensor, spans: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """``docs`` (B, d), ``spans`` (S, d), ``owner`` (S,) the document index of every span."""
        logits = docs @ spans.T / self.config.temperature  # (B, S)
        own = owner.unsqueeze(0) == torch.arange(docs.shape[0], device=docs.device).unsqueeze(1)  # (B, S)
        negatives = logits.masked_fill(own, float("-inf"))
        neg_lse = torch.logsumexp(negatives, dim=1, keepdim=True).expand_as(logits)  # (B, S)
        # per positive pair: -log(e^pos / (e^pos + sum e^neg)) = logaddexp(pos, lse_neg) - pos
        per_pair = torch.logaddexp(logits, neg_lse) - logits
        return per_pair[own].mean()
