"""Paired significance tests between two runs' per-query scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retriever.types import ConfigError


@dataclass(frozen=True)
class PairedTest:
    metric: str
    mean_a: float
    mean_b: float
    num_queries: int
    t_pvalue: float
    randomization_pvalue: float

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def paired_test(per_query_a: dict[str, dict[str, float]], per_query_b: dict[str, dict[str, float]], metric: str,
                trials: int = 10_000, seed: int = 0) -> PairedTest:
    """Two-sided paired t-test and paired randomization (sign-flip) test over the queries both runs scored."""
    from scipy import stats

    common = sorted(set(per_query_a) & set(per_query_b))
    if len(common) < 2:
        raise ConfigError(f"a paired test needs at least 2 common queries, found {len(common)}.")
    a = np.array([per_query_a[q][metric] for q in common])
    b = np.array([per_query_b[q][metric] for q in common])
    diff = a - b
    if np.allclose(diff, 0):
        t_p = 1.0
    else:
        t_p = float(stats.ttest_rel(a, b).pvalue)
    rng = np.random.default_rng(seed)
    observed = abs(diff.mean())
    signs = rng.choice([-1.0, 1.0], size=(trials, len(diff)))
    hits = np.sum(np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12)
    return PairedTest(metric, float(a.mean()), float(b.mean()), len(common), t_p, float((hits + 1) / (trials + 1)))
