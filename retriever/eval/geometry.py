"""Alignment and uniformity of an embedding space (Wang & Isola, "Understanding Contrastive Representation Learning
through Alignment and Uniformity on the Hypersphere", ICML 2020), on unit-normalised vectors:

- alignment = E over positive pairs (query, judged document) of ||q − d||² (α = 2): lower is better aligned;
- uniformity = log E over pairs of distinct vectors of exp(−t ||x − y||²), t = 2: lower is more uniform (−4 is
  the floor for two orthogonal vectors; a collapsed space scores 0).

They show what a recipe did to the space, not only to nDCG: fine-tuning that pulls positives together while
collapsing the corpus shows as better alignment and worse (higher) uniformity.
"""

from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def alignment(xq: np.ndarray, xd: np.ndarray, alpha: float = 2.0) -> float:
    """Mean ||q_i − d_i||^alpha over row-aligned positive pairs."""
    if len(xq) != len(xd) or not len(xq):
        raise ValueError(f"alignment needs as many (and some) queries as documents, got {len(xq)} and {len(xd)}.")
    dist = np.linalg.norm(_unit(xq) - _unit(xd), axis=1)
    return float(np.mean(dist ** alpha))


def uniformity(x: np.ndarray, t: float = 2.0, max_vectors: int = 4096, seed: int = 0) -> float:
    """log of the mean of exp(−t ||x_i − x_j||²) over pairs i < j (a seeded sample of ``max_vectors`` rows)."""
    x = _unit(x)
    if len(x) < 2:
        raise ValueError("uniformity needs at least two vectors.")
    if len(x) > max_vectors:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), size=max_vectors, replace=False))]
    sq = np.clip(2.0 - 2.0 * (x @ x.T), 0.0, 4.0)  # unit vectors: ||a − b||² = 2 − 2 a·b
    values = -t * sq[np.triu_indices(len(x), k=1)]
    top = values.max()
    return float(top + np.log(np.mean(np.exp(values - top))))  # log-mean-exp, stable


def positive_pairs(qids: list[str], doc_ids: list[str], qrels: dict) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (into the query list, into the document list) of every judged positive pair present."""
    where = {d: j for j, d in enumerate(doc_ids)}
    rows, cols = [], []
    for i, q in enumerate(qids):
        for d, grade in qrels.get(q, {}).items():
            if grade > 0 and d in where:
                rows.append(i)
                cols.append(where[d])
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def geometry(xq: np.ndarray, qids: list[str], xd: np.ndarray, doc_ids: list[str], qrels: dict,
             max_vectors: int = 4096, seed: int = 0, corpus_sample: np.ndarray | None = None) -> dict:
    """Alignment over the judged pairs among ``doc_ids``, uniformity of the documents (of ``corpus_sample`` when
    given: ``xd`` may hold only the judged ones) and of the queries."""
    rows, cols = positive_pairs(qids, doc_ids, qrels)
    xu = xd if corpus_sample is None else corpus_sample
    out = {}
    if len(xu) > 1:
        out["uniformity_docs"] = round(uniformity(xu, max_vectors=max_vectors, seed=seed), 4)
    if len(qids) > 1:
        out["uniformity_queries"] = round(uniformity(xq, max_vectors=max_vectors, seed=seed), 4)
    if len(rows):
        out["alignment"] = round(alignment(xq[rows], xd[cols]), 4)
    return out
