"""Hard negative mixing (MoCHi: Kalantidis et al., NeurIPS 2020, "Hard Negative Mixing for Contrastive
Learning"): for each query, the ``pool`` highest-scoring negatives are its hardest; from them it synthesises
  - ``negatives`` points  h = normalize(a * n_i + (1 - a) * n_j),   n_i, n_j two of the hardest, a ~ U(0, 1);
  - ``query`` points      h = normalize(b * q + (1 - b) * n_j),     b ~ U(0, ``query_max``), harder still,
as extra negatives of that query only. They are computed from detached vectors: no gradient flows into them,
as in the paper. Draws come from torch's generator (the trainer seeds it per step, so a resumed run mixes the
same points)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from retriever.types import ConfigError


@dataclass(frozen=True)
class MixConfig:
    negatives: int = 8  # synthetic points mixed from two hard negatives, per query
    query: int = 0  # synthetic points mixed from the query and a hard negative, per query
    pool: int = 16  # how many of the hardest negatives are mixed
    query_max: float = 0.5  # the query's share is drawn from (0, query_max)

    def __post_init__(self) -> None:
        if self.negatives < 0 or self.query < 0 or self.negatives + self.query == 0:
            raise ConfigError("MoCHi needs negatives >= 0 and query >= 0, not both 0.")
        if self.pool < 2:
            raise ConfigError(f"MoCHi pool must be >= 2, got {self.pool}.")
        if not 0 < self.query_max <= 0.5:
            raise ConfigError(f"MoCHi query_max must be in (0, 0.5], got {self.query_max}.")


class Mixed(NamedTuple):
    mixed: torch.Tensor  # (B, M, d) unit vectors
    first: torch.Tensor  # (B, M) candidate column of the first source (-1: the query itself)
    second: torch.Tensor  # (B, M) candidate column of the second source
    weight: torch.Tensor  # (B, M) share of the first source


def mix_hard_negatives(q: torch.Tensor, docs: torch.Tensor, scores: torch.Tensor, excluded: torch.Tensor,
                       config: MixConfig) -> Mixed:
    """``docs`` (C, d) the shared candidates, ``scores`` (B, C) the query's scores with them, ``excluded``
    (B, C) True where a candidate is not a negative of the row (its positives, dropped entries)."""
    q, docs = q.detach(), docs.detach()
    b = q.shape[0]
    pool = min(config.pool, docs.shape[0])
    hard = scores.detach().masked_fill(excluded, float("-inf")).topk(pool, dim=1).indices  # (B, pool)
    valid = (~excluded).sum(dim=1).clamp(max=pool)  # rows with fewer negatives draw from those they have
    n_mix, n_q = config.negatives, config.query

    def pick(count: int) -> torch.Tensor:
        slots = (torch.rand(b, count, device=q.device) * valid.unsqueeze(1)).long().clamp(max=pool - 1)
        return hard.gather(1, slots)

    first_parts, second_parts, weight_parts, points = [], [], [], []
    if n_mix:
        i, j = pick(n_mix), pick(n_mix)
        a = torch.rand(b, n_mix, device=q.device)
        points.append(a.unsqueeze(2) * docs[i] + (1 - a).unsqueeze(2) * docs[j])
        first_parts.append(i), second_parts.append(j), weight_parts.append(a)
    if n_q:
        j = pick(n_q)
        w = torch.rand(b, n_q, device=q.device) * config.query_max
        points.append(w.unsqueeze(2) * q.unsqueeze(1) + (1 - w).unsqueeze(2) * docs[j])
        first_parts.append(torch.full_like(j, -1)), second_parts.append(j), weight_parts.append(w)
    mixed = F.normalize(torch.cat(points, dim=1), dim=-1)
    return Mixed(mixed, torch.cat(first_parts, dim=1), torch.cat(second_parts, dim=1), torch.cat(weight_parts, dim=1))
