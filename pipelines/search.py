"""Dense search: an ``Encoder`` for the queries and a ``ShardedIndex`` for the documents, as a ``Searcher``."""

from __future__ import annotations

import numpy as np

from indexes import ShardedIndex
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

    def search_vectors(self, qids: list[str], xq: np.ndarray, k: int) -> Run:
        D, I = self.index.search(xq, k)
        return hits_to_run(qids, D, I, self.ids)

    def search(self, queries: Queries, k: int = 1000) -> Run:
        qids = list(queries)
        xq = self.encoder.encode_queries([queries[q] for q in qids])
        return self.search_vectors(qids, xq, k)
