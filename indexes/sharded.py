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
    """Merge per-shard (D, I) lists, with I already global (-1 = no hit), into the global top k.

    The parts are concatenated in shard order and stably sorted by score, so among equal scores the lower
    shard (the lower global ids) wins, as FAISS keeps the lowest ids among ties in one index.
    """
    D = np.concatenate(D_parts, axis=1)
    I = np.concatenate(I_parts, axis=1)
    order = topk_order(D, I, k, metric)
    D_out = np.take_along_axis(D, order, axis=1)
    I_out = np.take_along_axis(I, order, axis=1)
    if D_out.shape[1] < k:  # fewer vectors than k in all shards together
        pad = k - D_out.shape[1]
        fill = -np.inf if metric == "ip" else np.inf
        D_out = np.pad(D_out, ((0, 0), (0, pad)), constant_values=fill)
        I_out = np.pad(I_out, ((0, 0), (0, pad)), constant_values=-1)
    return D_out, I_out


def topk_order(D: np.ndarray, I: np.ndarray, k: int, metric: str = "ip") -> np.ndarray:
    """Column positions of each row's top k in concatenated per-shard results: best score first, ties in
    column (shard) order, empty slots (I = -1) last."""
    key = -D if metric == "ip" else D
    key = np.where(I < 0, np.inf, key)
    return np.argsort(key, axis=1, kind="stable")[:, :k]


def index_metric(index) -> str:
    """'ip' or 'l2', as the index really computes it. FAISS's factory builds some indexes (HNSW over PQ codes)
    with L2 even when inner product was asked for; on unit vectors L2 ranks the same, but its values are
    distances (smaller is better)."""
    import faiss

    return "l2" if getattr(index, "metric_type", faiss.METRIC_INNER_PRODUCT) == faiss.METRIC_L2 else "ip"


def as_scores(D: np.ndarray, metric: str) -> np.ndarray:
    """Larger-is-better scores from FAISS results: inner products as they are, L2 distances negated."""
    return D if metric == "ip" else -D


def _offsets(shards: list) -> np.ndarray:
    """The global id of each shard's first vector."""
    sizes = [s.ntotal for s in shards]
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def _plain_ivf(index):
    """The IndexIVF itself when ``index`` is one (not wrapped in a transform), else None."""
    import faiss

    inner = faiss.downcast_index(index)
    return inner if isinstance(inner, faiss.IndexIVF) else None


def merge_into_one(shards: list, offsets: np.ndarray, shared_quantizer: bool):
    """One index holding every shard's vectors, when FAISS can merge them exactly; else None.

    Flat shards always merge (appending rows keeps global positions); trained codes (SQ, PQ) and IVF lists
    merge only when the shards were trained once, together, so their quantizers are the same. The merged index
    returns what one index built over all the vectors returns, at one index's speed.
    """
    import faiss

    inner = [faiss.downcast_index(s) for s in shards]
    if len({type(i) for i in inner}) != 1:
        return None
    first = inner[0]
    if isinstance(first, faiss.IndexIVF):
        ok = shared_quantizer
    elif isinstance(first, faiss.IndexFlatCodes):
        ok = shared_quantizer or isinstance(first, faiss.IndexFlat)
    else:
        ok = False
    if not ok:
        return None
    merged = faiss.clone_index(first)
    for shard, offset in zip(inner[1:], offsets[1:]):
        merged.merge_from(faiss.clone_index(shard), int(offset) if isinstance(first, faiss.IndexIVF) else 0)
    return merged


class ShardedIndex:
    """Indexes over consecutive slices of one collection, searched as one.

    ``shards`` are FAISS indexes; shard j's local id i is global id ``offsets[j] + i``. Shards FAISS can merge
    exactly (see ``merge_into_one``) are merged when loaded, unless ``merge=False``; the others are searched
    one by one — ``threads`` > 1 searches them concurrently (FAISS releases the GIL) — and their top-k lists
    merged exactly.
    """

    def __init__(self, shards: list, threads: int = 1, shared_quantizer: bool = False, merge: bool = True):
        if not shards:
            raise ValueError("ShardedIndex needs at least one shard")
        merged = merge_into_one(shards, _offsets(shards), shared_quantizer) if merge and len(shards) > 1 else None
        if merged is not None:
            shards = [merged]
        self.merged = merged is not None
        self.shards = shards
        metrics = {index_metric(s) for s in shards}
        if len(metrics) != 1:
            raise ValueError(f"shards disagree on the metric: {sorted(metrics)}")
        self.metric = metrics.pop()  # what FAISS computes, whatever was asked (see index_metric)
        self.threads = threads
        self.offsets = _offsets(shards)
        self.ntotal = int(sum(s.ntotal for s in shards))
        # IVF shards trained once and filled separately share their coarse quantizer: the probed lists are then
        # found once per query batch instead of once per shard (as FAISS's IndexShardsIVF does)
        ivfs = [_plain_ivf(s) for s in shards]
        self._ivfs = ivfs if shared_quantizer and len(shards) > 1 and all(ivfs) else None

    def reconstruct(self, i: int) -> np.ndarray:
        """The stored vector of global id ``i`` (as the index holds it: decoded for compressed codes)."""
        j = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.shards[j].reconstruct(int(i - self.offsets[j]))

    def _search_one(self, j: int, xq: np.ndarray, k: int, assign=None) -> tuple[np.ndarray, np.ndarray]:
        kk = min(k, self.shards[j].ntotal) or 1
        if assign is None:
            D, I = self.shards[j].search(xq, kk)
        else:
            D, I = self._ivfs[j].search_preassigned(xq, kk, assign[1], assign[0])
        I = np.where(I >= 0, I + self.offsets[j], -1)
        return D, I

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        if len(self.shards) == 1:
            D, I = self._search_one(0, xq, k)
            return merge_topk([D], [I], k, self.metric)
        assign = None
        if self._ivfs is not None:
            first = self._ivfs[0]
            assign = first.quantizer.search(xq, first.nprobe)
        if self.threads > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                parts = list(pool.map(lambda j: self._search_one(j, xq, k, assign), range(len(self.shards))))
        else:
            parts = [self._search_one(j, xq, k, assign) for j in range(len(self.shards))]
        return merge_topk([p[0] for p in parts], [p[1] for p in parts], k, self.metric)
