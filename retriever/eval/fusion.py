"""Fusing runs: reciprocal-rank fusion and normalised convex combination (e.g. BM25 with a dense retriever).

- **RRF** (Cormack, Clarke & Büttcher, SIGIR 2009): ``score(d) = Σ_r w_r / (k + rank_r(d))`` over the runs that
  retrieved d, ranks from 1, k = 60 by default. Ranks follow trec_eval's order of a run (score descending, ties
  by document id descending), the order the run is evaluated in; hits tied on score get consecutive ranks in that
  order, not a shared one.
- **Convex combination** (Pyserini's dense–sparse hybrid is the peer; Bruch, Gai & Ingber, TOIS 2023, for the
  normalisations): each run's scores of a query are normalised (``minmax`` to [0, 1], ``zscore`` to mean 0 and
  standard deviation 1, or ``none``), then ``score(d) = Σ_r w_r · s_r(d)``. A document missing from a run takes
  that run's lowest normalised score for the query, as Pyserini's hybrid does, so a one-sided hit is neither
  dropped nor rewarded. A query whose scores are all equal in a run normalises to 0 (minmax) / 0 (zscore).

Only each run's top ``depth`` hits are fused, and the fused run keeps ``depth`` hits per query. A query missing from
one run is fused from the runs that have it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from retriever.data.trec import sorted_hits
from retriever.types import ConfigError, Run

METHODS = ("rrf", "convex")
NORMS = ("minmax", "zscore", "none")


def _weights(runs: Sequence[Run], weights: Sequence[float] | None) -> list[float]:
    if len(runs) < 2:
        raise ConfigError(f"fusion needs at least two runs, got {len(runs)}.")
    if weights is None:
        return [1.0] * len(runs)
    if len(weights) != len(runs):
        raise ConfigError(f"{len(weights)} weights for {len(runs)} runs: give one weight per run.")
    if any(w < 0 or not math.isfinite(w) for w in weights) or not any(weights):
        raise ConfigError(f"fusion weights must be finite, >= 0 and not all 0, got {list(weights)}.")
    return [float(w) for w in weights]


def _top(hits: dict[str, float], depth: int) -> list[tuple[str, float]]:
    return sorted_hits(hits)[:depth]


def _keep(fused: dict[str, float], depth: int) -> dict[str, float]:
    return dict(sorted_hits(fused)[:depth])


def rrf(runs: Sequence[Run], k: float = 60.0, weights: Sequence[float] | None = None, depth: int = 1000) -> Run:
    """Reciprocal-rank fusion of ``runs`` (see the module docstring)."""
    w = _weights(runs, weights)
    if k < 0:
        raise ConfigError(f"the RRF constant k must be >= 0, got {k}.")
    out: Run = {}
    for qid in sorted(set().union(*runs)):
        fused: dict[str, float] = {}
        for run, weight in zip(runs, w):
            for rank, (did, _) in enumerate(_top(run.get(qid, {}), depth), start=1):
                fused[did] = fused.get(did, 0.0) + weight / (k + rank)
        out[qid] = _keep(fused, depth)
    return out


def normalise(scores: list[float], norm: str) -> list[float]:
    if norm == "none" or not scores:
        return list(scores)
    if norm == "minmax":
        lo, hi = min(scores), max(scores)
        return [(s - lo) / (hi - lo) if hi > lo else 0.0 for s in scores]
    mean = sum(scores) / len(scores)
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    return [(s - mean) / sd if sd > 0 else 0.0 for s in scores]


def convex(runs: Sequence[Run], weights: Sequence[float] | None = None, norm: str = "minmax",
           depth: int = 1000) -> Run:
    """Weighted sum of per-query normalised scores (see the module docstring)."""
    w = _weights(runs, weights)
    if norm not in NORMS:
        raise ConfigError(f"fusion norm must be one of {', '.join(NORMS)}, got {norm!r}.")
    out: Run = {}
    for qid in sorted(set().union(*runs)):
        per_run = []
        for run in runs:
            top = _top(run.get(qid, {}), depth)
            per_run.append(dict(zip([d for d, _ in top], normalise([s for _, s in top], norm))))
        docs = set().union(*per_run)
        fused = {}
        for did in docs:
            total = 0.0
            for scores, weight in zip(per_run, w):
                if not scores:
                    continue  # the query is not in this run at all
                total += weight * scores.get(did, min(scores.values()))
            fused[did] = total
        out[qid] = _keep(fused, depth)
    return out


def fuse(runs: Sequence[Run], method: str = "convex", weights: Sequence[float] | None = None, rrf_k: float = 60.0,
         norm: str = "zscore", depth: int = 1000) -> Run:
    """``method`` "rrf" or "convex"; the defaults are the [fuse] stage's (z-scored convex, equal weights)."""
    if method == "rrf":
        return rrf(runs, rrf_k, weights, depth)
    if method == "convex":
        return convex(runs, weights, norm, depth)
    raise ConfigError(f"fusion method must be one of {', '.join(METHODS)}, got {method!r}.")


def compare_fused(fused: Run, inputs: Sequence[Run], qrels, metrics: Sequence[str], relevance_level: int = 1) -> dict:
    """The fused run's metrics, each input's, and a paired test (on the first metric) of the fused run against
    each input that shares at least two scored queries with it."""
    from retriever.eval.metrics import evaluate
    from retriever.eval.significance import paired_test

    result = evaluate(qrels, fused, metrics, relevance_level=relevance_level)
    rows = []
    for run in inputs:
        other = evaluate(qrels, run, metrics, relevance_level=relevance_level)
        row = other.to_dict()
        if len(set(result.per_query) & set(other.per_query)) >= 2:  # a paired test needs two queries
            row["fused_vs_this"] = paired_test(result.per_query, other.per_query, metrics[0]).to_dict()
        rows.append(row)
    return {"fused": result.to_dict(), "inputs": rows}
