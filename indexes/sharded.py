"""Search over several index shards with an exact top-k merge.

Each shard returns its own exact top k, so the union of the shards' lists holds the global top k; the merge
sorts that union by score (descending for inner product, ascending for L2) with ties broken by the global
position of the vector, the same order one index over all the vectors would give.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np


def merge_topk(D_parts: list[np.ndarray], I_parts: list[np.ndarray], k: int, metric: str = "ip"
               ) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard (D, I) lists, with I already global (-1 = no hit), into the global top k."""
    D = np.concatenate(D_parts, axis=1)
    I = np.concatenate(I_parts, axis=1)
    missing = I < 0
    key = -D if metric == "ip" else D.copy()
    key = np.where(missing, np.inf, key)
    # lexsort sorts by the last key first: score, then global id
    order = np.lexsort((np.where(missing, np.iinfo(np.int64).max, I), key), axis=1)[:, :k]
    D_out = np.take_along_axis(D, order, axis=1)
    I_out = np.take_along_axis(I, order, axis=1)
    I_out[np.take_along_axis(missing, order, axis=1)] = -1
    if D_out.shape[1] < k:  # fewer vectors than k in all shards together
        pad = k - D_out.shape[1]
        fill = -np.inf if metric == "ip" else np.inf
        D_out = np.pad(D_out, ((0, 0), (0, pad)), constant_values=fill)
        I_out = np.pad(I_out, ((0, 0), (0, pad)), constant_values=-1)
    return D_out, I_out


class ShardedIndex:
    """Indexes over consecutive slices of one collection, searched as one.

    ``shards`` are FAISS indexes; shard j's local id i is global id ``offsets[j] + i``. ``threads`` > 1 searches
    shards concurrently (FAISS releases the GIL); 1 searches them in turn, each with all of FAISS's OpenMP threads.
    """

    def __init__(self, shards: list, metric: str = "ip", threads: int = 1):
        if not shards:
            raise ValueError("ShardedIndex needs at least one shard")
        self.shards = shards
        self.metric = metric
        self.threads = threads
        sizes = [s.ntotal for s in shards]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.ntotal = int(sum(sizes))

    def _search_one(self, j: int, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        D, I = self.shards[j].search(xq, min(k, self.shards[j].ntotal) or 1)
        I = np.where(I >= 0, I + self.offsets[j], -1)
        return D, I

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        if len(self.shards) == 1:
            D, I = self._search_one(0, xq, k)
            return merge_topk([D], [I], k, self.metric)
        if self.threads > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                parts = list(pool.map(lambda j: self._search_one(j, xq, k), range(len(self.shards))))
        else:
            parts = [self._search_one(j, xq, k) for j in range(len(self.shards))]
        return merge_topk([p[0] for p in parts], [p[1] for p in parts], k, self.metric)
