"""Dense search: an ``Encoder`` for the queries and a ``ShardedIndex`` for the documents, as a ``Searcher``."""

from __future__ import annotations

import numpy as np

from indexes import ShardedIndex
from indexes.sharded import as_scores
from retriever.types import Encoder, Queries, Run


def hits_to_run(qids: list[str], D: np.ndarray, I: np.ndarray, ids: list[str]) -> Run:
    run: Run = {}
    for qi, qid in enumerate(qids):
        run[qid] = {ids[j]: float(s) for s, j in zip(D[qi], I[qi]) if j >= 0}
    return run


class DenseSearcher:
    def __init__(self, encoder: Encoder, index: ShardedIndex, ids: list[str]):
        if index.ntotal != len(ids):
            raise ValueError(f"index holds {index.ntotal} vectors but {len(ids)} ids were given")
        self.encoder, self.index, self.ids = encoder, index, ids
        self._position: dict[str, int] | None = None
        self._texts: dict[str, str] = {}

    def score(self, query_id: str, doc_ids, query_text: str | None = None) -> list[float]:
        """Exact inner products of one query with given documents (the positives a search missed)."""
        if query_text is None:
            query_text = self._texts[query_id]
        q = self.encoder.encode_queries([query_text])[0]
        return [float(q @ self._vector(d)) for d in doc_ids]

    def _rows(self) -> dict[str, int]:
        """Document id -> row of the index, built on first use."""
        if self._position is None:
            self._position = {d: i for i, d in enumerate(self.ids)}
        return self._position

    def _vector(self, doc_id: str) -> np.ndarray:
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
        picked = np.random.default_rng(seed).choice(len(self.ids), size=min(sample, len(self.ids)), replace=False)
        corpus = np.stack([self.index.reconstruct(int(i)) for i in picked])
        return geometry(xq, qids, xd, judged, qrels, max_vectors=sample, seed=seed, corpus_sample=corpus)

    def search_vectors(self, qids: list[str], xq: np.ndarray, k: int) -> Run:
        D, I = self.index.search(xq, k)
        return hits_to_run(qids, as_scores(D, self.index.metric), I, self.ids)

    def search(self, queries: Queries, k: int = 1000) -> Run:
        self._texts.update(queries)
        qids = list(queries)
        xq = self.encoder.encode_queries([queries[q] for q in qids])
        return self.search_vectors(qids, xq, k)
