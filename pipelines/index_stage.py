"""Index stage: embedding shards -> FAISS indexes (one per shard, or one merged), with a budget check first."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from indexes import IndexSpec, ShardedIndex, build_index, estimate_memory, index_is_done, load_index, save_index
from indexes.spec import MemoryBudgetError, training_size
from retriever.atomic import read_json, write_json
from retriever.data.embeddings import read_embedding_shard, read_embeddings

log = logging.getLogger("densepipe.index")


def _spec_key(spec: IndexSpec) -> dict:
    return {"factory": spec.factory, "metric": spec.metric, "train_size": spec.train_size, "seed": spec.seed}


def index_embeddings(emb_dir: str | os.PathLike, out_dir: str | os.PathLike, spec: IndexSpec,
                     memory_budget: int | None = None, merged: bool = False, progress: bool = True) -> dict:
    """Build the indexes of ``emb_dir`` into ``out_dir``; unchanged ones are skipped. Returns the top manifest."""
    emb_dir, out_dir = Path(emb_dir), Path(out_dir)
    emb_manifest = read_json(emb_dir / "manifest.json") if (emb_dir / "manifest.json").is_file() else None
    if emb_manifest is None:
        read_embeddings(emb_dir)  # raises the 'incomplete embeddings' error with its fix
    shards = emb_manifest["shards"]
    d = shards[0]["dim"]
    groups = [[s["shard"] for s in shards]] if merged else [[s["shard"]] for s in shards]
    sizes = [sum(shards[i]["count"] for i in g) for g in groups]
    # the whole budget check comes before any training
    estimates = [estimate_memory(spec.resolve(n), d, n, spec.metric, training_size(spec.resolve(n), n,
                                                                                     spec.train_size))
                 for n in sizes]
    total_index = sum(e.index_bytes for e in estimates)
    peak = max(total_index, max(e.peak_bytes for e in estimates))
    if memory_budget is not None and peak > memory_budget:
        raise MemoryBudgetError(spec.resolve(sum(sizes)), sum(sizes), peak, memory_budget)
    out_dir.mkdir(parents=True, exist_ok=True)
    built = []
    for gi, group in enumerate(groups):
        folder = out_dir / (f"shard-{gi:05d}" if not merged else "merged")
        source = [shards[i]["data_hash"] + "/" + shards[i]["model_hash"] for i in group]
        expect = {"spec": _spec_key(spec), "source": source}
        if index_is_done(folder, expect):
            built.append(folder.name)
            continue
        ids, parts = [], []
        for i in group:
            shard_ids, xb = read_embedding_shard(emb_dir, i)
            ids.extend(shard_ids)
            parts.append(xb)
        xb = np.concatenate(parts) if len(parts) > 1 else parts[0]
        t0 = time.perf_counter()
        index, info = build_index(xb, spec, progress=progress)
        save_index(folder, index, ids, {**expect, "build": info.to_dict(), "search_params": spec.search_params,
                                        "seconds": round(time.perf_counter() - t0, 3)})
        built.append(folder.name)
        log.info("index %s: %s over %d vectors in %.1f s", folder.name, info.factory, len(ids),
                 time.perf_counter() - t0)
    manifest = {"embeddings": str(emb_dir), "spec": _spec_key(spec), "search_params": spec.search_params,
                "parts": built, "num_vectors": int(sum(sizes)), "estimated_index_bytes": int(total_index),
                "metric": spec.metric}
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def load_sharded(index_dir: str | os.PathLike, search_params: str | None = None, threads: int = 1
                 ) -> tuple[ShardedIndex, list[str], dict]:
    """Load every part of an index folder as one ShardedIndex with the global id list."""
    from indexes import apply_search_params
    from retriever.types import DataError

    index_dir = Path(index_dir)
    top = index_dir / "manifest.json"
    if not top.is_file():
        raise DataError(str(top), None, "no index manifest: the index is missing or unfinished.",
                        "run `densepipe index` (a rerun finishes an interrupted build).")
    manifest = read_json(top)
    parts, ids = [], []
    for name in manifest["parts"]:
        index, part_ids, _ = load_index(index_dir / name)
        params = manifest.get("search_params", "") if search_params is None else search_params
        apply_search_params(index, params)
        parts.append(index)
        ids.extend(part_ids)
    return ShardedIndex(parts, metric=manifest.get("metric", "ip"), threads=threads), ids, manifest
