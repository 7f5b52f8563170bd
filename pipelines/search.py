"""Dense search: an ``Encoder`` for the queries and a ``ShardedIndex`` for the documents, as a ``Searcher``."""

from __future__ import annotations

import numpy as np

from indexes import ShardedIndex
from indexes.sharded import as_scores
from retriever.types import Encoder, Queries, Run


def best_per_doc(hits, k: int | None = None) -> dict[str, float]:
    """Ranked (document id, score) hits -> {document: score}, a document scored by its first (best-ranked) hit, as
    MaxP scores a document held as several windows (``segment_tokens``); at most ``k`` documents."""
    row: dict[str, float] = {}
    for doc, score in hits:
        if doc not in row:
            row[doc] = float(score)
            if k is not None and len(row) == k:
                break
    return row


def hits_to_run(qids: list[str], D: np.ndarray, I: np.ndarray, ids, k: int | None = None) -> Run:
    """A run from ranked hits (scores ``D``, positions ``I`` into ``ids``, -1 for none): ``best_per_doc``."""
    return {qid: best_per_doc(((ids[j], s) for s, j in zip(D[qi], I[qi]) if j >= 0), k) for qi, qid in enumerate(qids)}


def vectors_per_doc(ids) -> int:
    """The most vectors any one document has (1 unless documents were encoded as windows)."""
    from collections import Counter

    return max(Counter(ids).values(), default=1)


def search_depth(k: int, per_doc: int, ntotal: int) -> int:
    """Vectors to retrieve so that the best ``k`` documents are all among them when a document may hold up to
    ``per_doc`` vectors: the k-th best document's best vector ranks at most (k - 1) * per_doc + 1."""
    return min(max(ntotal, 1), (k - 1) * per_doc + 1) if per_doc > 1 else k


def first_rows(ids) -> np.ndarray:
    """Row of each document's first vector (its first window), in row order."""
    seen: set = set()
    rows = []
    for i, d in enumerate(ids):
        if d not in seen:
            seen.add(d)
            rows.append(i)
    return np.asarray(rows, dtype=np.int64)


class DenseSearcher:
    def __init__(self, encoder: Encoder, index: ShardedIndex, ids: list[str]):
        if index.ntotal != len(ids):
            raise ValueError(f"index holds {index.ntotal} vectors but {len(ids)} ids were given")
        self.encoder, self.index, self.ids = encoder, index, ids
        self.per_doc = vectors_per_doc(ids)  # > 1: documents held as windows, scored by their best (MaxP)
        self._position: dict[str, int] | None = None
        self._windows: dict[str, list[int]] | None = None
        self._texts: dict[str, str] = {}

    def score(self, query_id: str, doc_ids, query_text: str | None = None) -> list[float]:
        """Exact inner products of one query with given documents (the positives a search missed)."""
        if query_text is None:
            query_text = self._texts[query_id]
        q = self.encoder.encode_queries([query_text])[0]
        return [max(float(q @ self.index.reconstruct(i)) for i in self._all_rows(d)) for d in doc_ids]

    def _rows(self) -> dict[str, int]:
        """Document id -> its first row of the index (its first window's), built on first use: filled from the
        last row back, so a document's earliest row is the one that stays."""
        if self._position is None:
            self._position = dict(zip(reversed(self.ids), range(len(self.ids) - 1, -1, -1)))
        return self._position

    def _all_rows(self, doc_id: str) -> list[int]:
        """Every row of a document: its one, or all its windows' (that map is built only for windowed indexes)."""
        if self.per_doc == 1:
            return [self._rows()[doc_id]]
        if self._windows is None:
            self._windows = {}
            for i, d in enumerate(self.ids):
                self._windows.setdefault(d, []).append(i)
        return self._windows[doc_id]

    def _vector(self, doc_id: str) -> np.ndarray:
        """A document's vector (its first window's when it has several)."""
        return self.index.reconstruct(self._rows()[doc_id])

    def geometry(self, queries: Queries, qrels: dict, sample: int = 4096, seed: int = 0) -> dict:
        """Alignment over the judged (query, document) pairs and uniformity of a seeded sample of the corpus's
        vectors and of the queries (``retriever.eval.geometry``): what the model did to the space."""
        from retriever.eval.geometry import geometry

        qids = sorted(q for q in qrels if q in queries)
        if not qids:
            return {}
        xq = self.encoder.encode_queries([queries[q] for q in qids])
        judged = sorted({d for q in qids for d, g in qrels[q].items() if g > 0 and d in self._rows()})
        xd = np.stack([self._vector(d) for d in judged]) if judged else xq[:0]
        rows = first_rows(self.ids) if self.per_doc > 1 else np.arange(len(self.ids))
        picked = np.random.default_rng(seed).choice(rows, size=min(sample, len(rows)), replace=False)
        corpus = np.stack([self.index.reconstruct(int(i)) for i in picked])
        return geometry(xq, qids, xd, judged, qrels, max_vectors=sample, seed=seed, corpus_sample=corpus)

    def search_vectors(self, qids: list[str], xq: np.ndarray, k: int) -> Run:
        D, I = self.index.search(xq, search_depth(k, self.per_doc, self.index.ntotal))
        return hits_to_run(qids, as_scores(D, self.index.metric), I, self.ids, k)

    def search(self, queries: Queries, k: int = 1000) -> Run:
        self._texts.update(queries)
        qids = list(queries)
        xq = self.encoder.encode_queries([queries[q] for q in qids])
        return self.search_vectors(qids, xq, k)
