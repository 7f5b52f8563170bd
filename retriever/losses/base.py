"""What every retrieval contrastive loss here shares: the candidates a query is scored against, the temperature
(fixed, or learned), and optional synthetic hard negatives (``mochi.py``).

Candidates, as columns of one (B, C) score matrix, in this order:
  - the B positives of the batch (column i is query i's own positive; the others are in-batch negatives),
  - N shared documents (mined hard negatives, and for the multi-positive losses the queries' other positives),
  - K queue entries (earlier batches' documents, ``training/queue.py``),
  - M per-query synthetic negatives (mixed from each query's hardest, ``mochi.py``).
``mask`` (B, B + N [+ K]) is True where a column is a *known* positive of the row's query other than its own;
``queue_mask`` (B, K) is True where a queue entry must be dropped for that query (a known positive). With a
``queue_margin``, queue entries scoring above margin x the query's own positive score are dropped too (likely
false negatives, as mining's relative margin). Dropped columns take part in nothing; known positives are positives
for the multi-positive losses and excluded from the negatives for the others."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from retriever.types import ConfigError


@dataclass(frozen=True)
class ContrastiveOptions:
    """Options every loss takes. ``learn_temperature``: the temperature becomes a parameter (log-parameterised,
    clamped to [0.01, 1], as CLIP learns its logit scale: Radford et al., ICML 2021), starting at the configured
    value; the optimizer must include ``loss.parameters()``."""
    learn_temperature: bool = False
    mix: object | None = None  # a mochi.MixConfig: synthetic hard negatives per query
    queue_margin: float | None = None  # drop queue entries scoring above margin x the own positive's score

    def __post_init__(self) -> None:
        if self.queue_margin is not None and not 0 < self.queue_margin <= 1.5:
            raise ConfigError(f"queue_margin must be in (0, 1.5], got {self.queue_margin}.")


class Temperature(nn.Module):
    MIN, MAX = 0.01, 1.0

    def __init__(self, value: float, learned: bool = False):
        super().__init__()
        if value <= 0:
            raise ConfigError(f"temperature must be > 0, got {value}.")
        self.learned = learned
        if learned:
            self.log_t = nn.Parameter(torch.tensor(math.log(value)))
        else:
            self.register_buffer("log_t", torch.tensor(math.log(value)), persistent=False)

    def forward(self) -> torch.Tensor:
        return self.log_t.exp().clamp(self.MIN, self.MAX)


class Candidates(NamedTuple):
    scores: torch.Tensor  # (B, C) raw inner products
    known: torch.Tensor  # (B, C) known positives other than the own one
    dropped: torch.Tensor  # (B, C) columns this row ignores altogether
    own: torch.Tensor  # (B, C) the own positive (the diagonal of the first B columns)
    docs: torch.Tensor  # the shared columns' vectors (positives, shared documents, queue), in column order


def candidates(q: torch.Tensor, d_pos: torch.Tensor, d_neg: torch.Tensor | None = None,
               mask: torch.Tensor | None = None, queue: torch.Tensor | None = None,
               queue_mask: torch.Tensor | None = None, queue_margin: float | None = None) -> Candidates:
    """The shared columns: every query against the batch's positives, the shared documents and the queue."""
    docs = torch.cat([d_pos] + [x for x in (d_neg, queue) if x is not None and x.numel()])
    scores = q @ docs.T
    b, width = q.shape[0], scores.shape[1]
    known = torch.zeros(b, width, dtype=torch.bool, device=q.device)
    if mask is not None:
        known[:, :mask.shape[1]] = mask
    dropped = torch.zeros_like(known)
    if queue is not None and queue.numel():
        k = queue.shape[0]
        drop = known[:, width - k:].clone()  # a known positive in the queue is dropped, not used as a positive
        if queue_mask is not None:
            drop |= queue_mask
        if queue_margin is not None:
            own_score = scores[:, :b].diagonal().detach()
            drop |= scores[:, width - k:].detach() > queue_margin * own_score.unsqueeze(1)
        known[:, width - k:] = False
        dropped[:, width - k:] = drop
    own = torch.zeros_like(known)
    own[:, :b] = torch.eye(b, dtype=torch.bool, device=q.device)
    return Candidates(scores, known, dropped, own, docs)


def with_extra(c: Candidates, q: torch.Tensor, extra: torch.Tensor) -> Candidates:
    """``c`` with M more columns per query: ``extra`` (B, M, d), each query's own synthetic negatives."""
    pad = torch.zeros(q.shape[0], extra.shape[1], dtype=torch.bool, device=q.device)
    return Candidates(torch.cat([c.scores, torch.einsum("bd,bmd->bm", q, extra)], dim=1),
                      torch.cat([c.known, pad], dim=1), torch.cat([c.dropped, pad], dim=1),
                      torch.cat([c.own, pad], dim=1), c.docs)


@dataclass(frozen=True)
class LossConfig:
    """What every loss's config has; a loss with more settings subclasses it."""
    temperature: float = 0.05

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}.")


class ContrastiveLoss(nn.Module):
    """Base of the retrieval losses: ``forward(q, d_pos, d_neg=None, mask=None, *, queue=None, queue_mask=None,
    relevance=None)`` builds the candidates (and the synthetic negatives, when configured) and hands the scaled
    scores to ``objective``. A subclass names its config class as ``Config``."""

    Config = LossConfig

    def __init__(self, config: LossConfig | None = None, options: ContrastiveOptions = ContrastiveOptions()):
        super().__init__()
        self.config = config if config is not None else self.Config()
        self.options = options
        self.temperature = Temperature(self.config.temperature, options.learn_temperature)

    def forward(self, q: torch.Tensor, d_pos: torch.Tensor, d_neg: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, queue: torch.Tensor | None = None,
                queue_mask: torch.Tensor | None = None, relevance: torch.Tensor | None = None) -> torch.Tensor:
        c = candidates(q, d_pos, d_neg, mask, queue, queue_mask, self.options.queue_margin)
        if self.options.mix is not None:
            from retriever.losses.mochi import mix_hard_negatives

            c = with_extra(c, q, mix_hard_negatives(q, c.docs, c.scores, c.known | c.dropped | c.own,
                                                    self.options.mix).mixed)
        if relevance is not None and relevance.shape[1] < c.scores.shape[1]:
            relevance = torch.nn.functional.pad(relevance, (0, c.scores.shape[1] - relevance.shape[1]))
        return self.objective(c.scores / self.temperature(), c, relevance, q, d_pos)

    def objective(self, logits: torch.Tensor, c: Candidates, relevance: torch.Tensor | None,
                  q: torch.Tensor, d_pos: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
