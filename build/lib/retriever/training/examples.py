"""Training examples for contrastive fine-tuning: (query, positive, hard negatives) as ids, from mined tables or
straight from qrels (in-batch negatives only), with a held-out split by query."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from retriever.mining import MinedExample
from retriever.types import DataError, Qrels, Queries


@dataclass(frozen=True)
class TrainingExample:
    query_id: str
    positive_id: str
    negative_ids: tuple[str, ...] = ()


def examples_from_qrels(qrels: Qrels, queries: Queries, doc_ids: Sequence[str] | Mapping, source: str = "qrels"
                        ) -> list[TrainingExample]:
    """One example per judged (query, positive) pair, without hard negatives."""
    docs = doc_ids if isinstance(doc_ids, Mapping) else set(doc_ids)
    out = [TrainingExample(q, d) for q in sorted(qrels) if q in queries
           for d, r in sorted(qrels[q].items()) if r > 0 and d in docs]
    if not out:
        raise DataError(source, None, "no (query, positive) pair has both texts.",
                        "train on a split whose qrels have grades > 0 for documents in the corpus.")
    return out


def examples_from_mined(tables: Sequence[tuple[str, Sequence[MinedExample]]], queries: Queries,
                        doc_ids: Sequence[str] | Mapping, qrels: Qrels | None = None
                        ) -> list[TrainingExample]:
    """Merge mined tables (``(path, rows)`` each, e.g. BM25 and dense) into one example per (query, positive),
    negatives interleaved source by source and deduplicated. Ids unknown to the queries or the corpus are a
    DataError naming the table; pairs the qrels (when given) do not judge positive are too."""
    docs = doc_ids if isinstance(doc_ids, Mapping) else set(doc_ids)
    merged: dict[tuple[str, str], list[list[str]]] = {}
    for path, rows in tables:
        for n, row in enumerate(rows, start=1):
            where = f"row {n} (query {row.query_id!r})"
            if row.query_id not in queries:
                raise DataError(path, None, f"{where}: unknown query id.",
                                "mine with the same dataset and split you train on.")
            unknown = [d for d in (row.positive_id, *row.negative_ids) if d not in docs]
            if unknown:
                raise DataError(path, None, f"{where}: document ids not in the corpus: {unknown[:3]}.",
                                "mine against the same corpus you train on.")
            if qrels is not None and qrels.get(row.query_id, {}).get(row.positive_id, 0) <= 0:
                raise DataError(path, None, f"{where}: positive {row.positive_id!r} is not judged relevant.",
                                "mine with the qrels of the split you train on.")
            merged.setdefault((row.query_id, row.positive_id), []).append(list(row.negative_ids))
    out = []
    for (qid, pid), lists in sorted(merged.items()):
        seen, negatives = set(), []
        for i in range(max(len(x) for x in lists)):
            for lst in lists:
                if i < len(lst) and lst[i] not in seen:
                    seen.add(lst[i])
                    negatives.append(lst[i])
        out.append(TrainingExample(qid, pid, tuple(negatives)))
    return out


def split_held_out(examples: Sequence[TrainingExample], fraction: float, seed: int = 0
                   ) -> tuple[list[TrainingExample], list[str]]:
    """Hold out a fraction of the *queries* (all their pairs): returns (training examples, held-out query ids)."""
    if not 0 <= fraction < 1:
        raise DataError(None, None, f"held-out fraction must be in [0, 1), got {fraction}.", "pick e.g. 0.1.")
    qids = sorted({e.query_id for e in examples})
    n = int(round(len(qids) * fraction))
    held = set(np.random.default_rng(seed).choice(qids, size=n, replace=False).tolist()) if n else set()
    train = [e for e in examples if e.query_id not in held]
    if not train:
        raise DataError(None, None, "nothing left to train on after the held-out split.", "lower held_out.")
    return train, sorted(held)


def examples_hash(examples: Sequence[TrainingExample]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.query_id, e.positive_id, e.negative_ids]).encode())
    return h.hexdigest()[:16]
