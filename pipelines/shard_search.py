"""Distributed search: each Ray actor holds some of an index folder's parts, every query batch goes to all of
them, and their top k lists are merged exactly (``indexes.sharded.topk_order``).

Parts are split between the actors in order, as contiguous runs of about equal size, so concatenating the
actors' answers in actor order lists candidates in global-position order and ties resolve as in one index:
the merged run equals ``ShardedIndex`` over the same folder. Each actor loads only its parts (from the run's
storage when one is given: each part is published once, by content), and maps positions to document ids
itself, so the driver never holds the id list of the whole collection.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from retriever.atomic import read_json
from retriever.types import ConfigError

log = logging.getLogger("densepipe.search")


def split_parts(sizes: list[int], workers: int) -> list[list[int]]:
    """Contiguous runs of part indices, one per worker, each holding about the same number of vectors."""
    if workers < 1:
        raise ConfigError(f"search needs at least one worker, got {workers}.")
    workers = min(workers, len(sizes))
    total, groups, current, done = sum(sizes), [], [], 0
    for i, n in enumerate(sizes):
        current.append(i)
        done += n
        left_parts, left_groups = len(sizes) - i - 1, workers - len(groups) - 1
        if left_groups and (done >= total * (len(groups) + 1) / workers or left_parts == left_groups):
            groups.append(current)
            current = []
    groups.append(current)
    return [g for g in groups if g]


class IndexShardActor:
    """Holds some parts of an index folder (a local path, or the parts' storage URIs) and searches them."""

    def __init__(self, sources: list[str], base: int, search_params: str, shared_quantizer: bool, threads: int):
        import faiss

        from indexes import ShardedIndex
        from pipelines.index_stage import load_parts
        from pipelines.runtime import fetch_dir

        faiss.omp_set_num_threads(max(1, threads))
        parts, ids = load_parts([fetch_dir(src) for src in sources], search_params)
        self.index = ShardedIndex(parts, shared_quantizer=shared_quantizer)
        self.ids = np.asarray(ids, dtype=object)
        self.base = base

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(D, global positions, document ids) of this actor's top k."""
        D, I = self.index.search(xq, k)
        ids = np.where(I >= 0, self.ids[np.maximum(I, 0)], None)
        return D, np.where(I >= 0, I + self.base, -1), ids

    def info(self) -> dict:
        from pipelines.runtime import node_id
        from pipelines.search import vectors_per_doc
        from retriever.memory import peak_rss_mb

        return {"node": node_id(), "vectors": int(self.index.ntotal), "metric": self.index.metric,
                "per_doc": vectors_per_doc(self.ids), "peak_rss_mb": peak_rss_mb()}


class DistributedSearcher:
    """A ``Searcher`` over an index folder whose parts are held by ``num_workers`` Ray actors."""

    def __init__(self, index_dir: str | os.PathLike, encoder, num_workers: int, ray_env,
                 search_params: str | None = None, batch_size: int = 4096):
        import ray

        from pipelines.runtime import check_fits, open_storage

        from pipelines.index_stage import read_index_manifest

        index_dir = Path(index_dir)
        self.manifest = read_index_manifest(index_dir)
        names = self.manifest["parts"]
        if search_params is None:
            search_params = self.manifest.get("search_params", "")
        sizes = [read_json(index_dir / n / "index.json")["ntotal"] for n in names]
        groups = split_parts(sizes, num_workers)
        if len(groups) < num_workers:
            log.warning("densepipe: warning: the index has %d parts, so %d search actors (not %d); build it with "
                        "more embedding shards (--docs-per-shard) to spread it wider", len(names), len(groups),
                        num_workers)
        ray_env.start()
        request = ray_env.request(len(groups), gpus=False)
        check_fits(request, len(groups), "search")
        storage = open_storage(ray_env.storage)
        sources = []
        for n in names:
            part = index_dir / n
            if storage is None:
                sources.append(str(part.resolve()))
            else:
                import hashlib

                stamp = hashlib.sha256((part / "index.json").read_bytes()).hexdigest()[:16]
                sources.append(storage.publish_dir(part, f"index/{stamp}", stamp))
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        Actor = ray.remote(num_cpus=request["CPU"])(IndexShardActor)
        shared = self.manifest.get("shared_quantizer", False)
        self.actors = [Actor.remote([sources[i] for i in g], int(offsets[g[0]]), search_params, shared,
                                    max(1, int(request["CPU"]))) for g in groups]
        self.groups, self.encoder, self.batch_size = groups, encoder, batch_size
        self.ntotal = int(offsets[-1])
        self.timeout = ray_env.stall_timeout
        self.info = ray.get([a.info.remote() for a in self.actors], timeout=self.timeout)
        self.metric = self.info[0]["metric"]
        # a document's windows are written together, so they sit in one part: the actors' maximum is the index's
        self.per_doc = max(i.get("per_doc", 1) for i in self.info)
        self.search_seconds = 0.0

    def search_vectors(self, qids: list[str], xq: np.ndarray, k: int):
        import ray

        from indexes.sharded import as_scores, topk_order
        from pipelines.search import best_per_doc, search_depth

        run = {}
        t0 = time.perf_counter()
        depth = search_depth(k, self.per_doc, self.ntotal)  # windows of a document: its best one scores it
        for start in range(0, len(qids), self.batch_size):
            ref = ray.put(np.ascontiguousarray(xq[start:start + self.batch_size], dtype=np.float32))
            parts = ray.get([a.search.remote(ref, depth) for a in self.actors], timeout=self.timeout)
            D = np.concatenate([p[0] for p in parts], axis=1)
            I = np.concatenate([p[1] for p in parts], axis=1)
            ids = np.concatenate([p[2] for p in parts], axis=1)
            order = topk_order(D, I, depth, self.metric)
            D, I, ids = (np.take_along_axis(x, order, axis=1) for x in (D, I, ids))
            D = as_scores(D, self.metric)
            for row, qid in enumerate(qids[start:start + self.batch_size]):
                run[qid] = best_per_doc(((d, s) for d, s, i in zip(ids[row], D[row], I[row]) if i >= 0), k)
        self.search_seconds += time.perf_counter() - t0
        return run

    def search(self, queries: dict[str, str], k: int = 1000):
        qids = list(queries)
        xq = self.encoder.encode_queries([queries[q] for q in qids])
        return self.search_vectors(qids, xq, k)

    def actor_info(self) -> list[dict]:
        """Each actor's node, vectors and peak memory (after the searches so far)."""
        import ray

        rows = ray.get([a.info.remote() for a in self.actors], timeout=self.timeout)
        return [{**r, "parts": len(g)} for r, g in zip(rows, self.groups)]

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
