"""Leaderboard metrics with trec_eval semantics, computed by pytrec_eval (trec_eval's own C code).

Metric names: ``ndcg@k``, ``recall@k``, ``p@k``, ``map``, ``map@k``, ``mrr`` and ``mrr@k``. As in trec_eval and
BEIR, the mean is over the queries that are both judged and retrieved; ``complete=True`` counts judged queries
missing from the run as zero (trec_eval ``-c``). ``mrr@k`` is trec_eval's ``recip_rank`` over the top k hits in
trec_eval's own order (score descending, ties by document id descending), the MS MARCO MRR@10.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from retriever.data.trec import sorted_hits
from retriever.types import ConfigError, Qrels, Run

DEFAULT_METRICS = ("ndcg@10", "mrr@10", "recall@100", "recall@1000", "map@100", "p@10")
_METRIC = re.compile(r"^(ndcg|recall|p|map|mrr)(?:@(\d+))?$")
_TREC = {"ndcg": "ndcg_cut", "recall": "recall", "p": "P", "map": "map_cut"}


@dataclass(frozen=True)
class EvalResult:
    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(repr=False)
    num_queries: int = 0

    def to_dict(self) -> dict:
        return {**{m: round(v, 6) for m, v in self.aggregate.items()}, "num_queries": self.num_queries}


def parse_metric(name: str) -> tuple[str, int | None]:
    m = _METRIC.match(name.strip().lower())
    if not m:
        raise ConfigError(f"unknown metric {name!r}; use ndcg@k, recall@k, p@k, map, map@k, mrr or mrr@k.")
    family, k = m.group(1), m.group(2)
    if family in ("ndcg", "recall", "p") and k is None:
        raise ConfigError(f"metric {name!r} needs a cutoff, e.g. {family}@10.")
    return family, int(k) if k else None


def drop_self_hits(run: Run) -> Run:
    """A copy of ``run`` without hits whose document id equals the query id (BEIR's ignore_identical_ids)."""
    return {qid: {did: s for did, s in hits.items() if did != qid} for qid, hits in run.items()}


def truncate(run: Run, k: int) -> Run:
    """A copy of ``run`` keeping each query's top k hits in trec_eval's order."""
    return {qid: dict(sorted_hits(hits)[:k]) for qid, hits in run.items()}


def evaluate(qrels: Qrels, run: Run, metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS,
             ignore_self: bool = False, relevance_level: int = 1, complete: bool = False) -> EvalResult:
    import pytrec_eval

    parsed = [(name, *parse_metric(name)) for name in metrics]
    if ignore_self:
        run = drop_self_hits(run)
    run = {qid: {did: float(s) for did, s in hits.items()} for qid, hits in run.items() if hits}
    per_query: dict[str, dict[str, float]] = {}

    trec_measures = {f"{_TREC[f]}.{k}" if k else "map" for _, f, k in parsed if f != "mrr"}
    if trec_measures:
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, trec_measures, relevance_level=relevance_level)
        scores = evaluator.evaluate(run)
        for name, family, k in parsed:
            if family == "mrr":
                continue
            key = f"{_TREC[family]}_{k}" if k else "map"
            for qid, row in scores.items():
                per_query.setdefault(qid, {})[name] = row[key]
    for name, family, k in parsed:
        if family != "mrr":
            continue
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}, relevance_level=relevance_level)
        scores = evaluator.evaluate(truncate(run, k) if k else run)
        for qid, row in scores.items():
            per_query.setdefault(qid, {})[name] = row["recip_rank"]

    if complete:
        for qid in qrels:
            per_query.setdefault(qid, {name: 0.0 for name, _, _ in parsed})
    n = len(per_query)
    aggregate = {name: (sum(row[name] for row in per_query.values()) / n if n else 0.0) for name, _, _ in parsed}
    return EvalResult(aggregate=aggregate, per_query=per_query, num_queries=n)


def msmarco_mrr(qrels: Qrels, run: Run, k: int = 10, relevance_level: int = 1) -> float:
    """MRR@k as MS MARCO's official passage evaluation script computes it: the reciprocal rank of the first
    relevant passage within the top k (ranked in trec_eval's order, as the written run lists them), averaged over
    every query of the judgments — a judged query missing from the run counts 0 — where trec_eval's recip_rank
    averages over the queries the run answers. Queries without a judgment of at least ``relevance_level`` are
    not judged."""
    judged = {q: {d for d, r in docs.items() if r >= relevance_level} for q, docs in qrels.items()}
    judged = {q: docs for q, docs in judged.items() if docs}
    if not judged:
        return 0.0
    total = 0.0
    for qid, relevant in judged.items():
        for rank, (did, _) in enumerate(sorted_hits(run.get(qid, {}))[:k], start=1):
            if did in relevant:
                total += 1.0 / rank
                break
    return total / len(judged)
