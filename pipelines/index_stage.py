"""Index stage: embedding shards -> FAISS indexes (one per shard, or one merged), with a budget check first."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from indexes import (IndexSpec, ShardedIndex, apply_search_params, build_index, estimate_memory, index_is_done,
                     load_index, save_index)
from indexes.build import sample_for_training, train_index
from indexes.store import IDS_FILE, INDEX_FILE
from indexes.spec import MemoryBudgetError, training_size
from retriever.atomic import read_json, write_json
from retriever.data.embeddings import read_embedding_shard, read_embeddings
from retriever.types import DataError

log = logging.getLogger("densepipe.index")


def _spec_key(spec: IndexSpec) -> dict:
    return {"factory": spec.factory, "metric": spec.metric, "train_size": spec.train_size, "seed": spec.seed}


def _shared_training(emb_dir: Path, shards: list[dict], spec: IndexSpec, total: int):
    """One trained empty index for all shards, from a seeded sample drawn across them (None: nothing to train)."""
    import faiss

    factory = spec.resolve(total)
    probe = faiss.index_factory(shards[0]["dim"], factory, spec.faiss_metric())
    if probe.is_trained:
        return None
    train_n = training_size(factory, total, spec.train_size)
    parts = []
    for s in shards:
        _, xb = read_embedding_shard(emb_dir, s["shard"])
        share = max(1, round(train_n * s["count"] / total))
        parts.append(sample_for_training(xb, share, spec.seed + s["shard"]))
    trained, seconds = train_index(np.concatenate(parts), spec, total)
    log.info("trained %s once for %d shards in %.1f s", factory, len(shards), seconds)
    return trained


SINGLE_FILE_BUDGET = 2 * 2**30  # write the one-file index.faiss beside the parts up to this size


def index_embeddings(emb_dir: str | os.PathLike, out_dir: str | os.PathLike, spec: IndexSpec,
                     memory_budget: int | None = None, merged: bool = False, progress: bool = True,
                     single_file_budget: int | None = SINGLE_FILE_BUDGET) -> dict:
    """Build the indexes of ``emb_dir`` into ``out_dir``; unchanged ones are skipped. Returns the top manifest.

    One index per embedding shard (default) or one merged index. Shards are trained once, together: every
    shard's index shares the same quantizers, so scores are comparable and IVF shards share their lists.
    When the parts merge exactly and the whole index fits ``single_file_budget`` bytes, ``index.faiss`` and
    ``ids.json`` at the top of ``out_dir`` hold all of it, for ``faiss.read_index`` (None or 0: never).
    """
    emb_dir, out_dir = Path(emb_dir), Path(out_dir)
    if not (emb_dir / "manifest.json").is_file():
        read_embeddings(emb_dir)  # raises the 'incomplete embeddings' error with its fix
    shards = read_json(emb_dir / "manifest.json")["shards"]
    d, total = shards[0]["dim"], sum(s["count"] for s in shards)
    groups = [[s["shard"] for s in shards]] if merged else [[s["shard"]] for s in shards]
    sizes = [sum(shards[i]["count"] for i in g) for g in groups]
    factory = spec.resolve(total)
    train_n = training_size(factory, total, spec.train_size)
    # the whole budget check comes before any training
    estimates = [estimate_memory(factory, d, n, spec.metric, train_n) for n in sizes]
    total_index = sum(e.index_bytes for e in estimates)
    peak = max(total_index, max(e.peak_bytes for e in estimates))
    if memory_budget is not None and peak > memory_budget:
        raise MemoryBudgetError(factory, total, peak, memory_budget)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = [s["data_hash"] + "/" + s["model_hash"] for s in shards]
    folders = [out_dir / ("merged" if merged else f"shard-{gi:05d}") for gi in range(len(groups))]
    expects = [{"spec": _spec_key(spec), "source": [sources[i] for i in g], "trained_on": sources} for g in groups]
    trained = None
    if not all(index_is_done(f, e) for f, e in zip(folders, expects)):
        (out_dir / "manifest.json").unlink(missing_ok=True)  # incomplete until every part is built
        if len(groups) > 1:
            trained = _shared_training(emb_dir, shards, spec, total)
    for group, folder, expect in zip(groups, folders, expects):
        if index_is_done(folder, expect):
            continue
        ids, parts = [], []
        for i in group:
            shard_ids, xb = read_embedding_shard(emb_dir, i)
            ids.extend(shard_ids)
            parts.append(xb)
        xb = np.concatenate(parts) if len(parts) > 1 else parts[0]
        t0 = time.perf_counter()
        index, info = build_index(xb, spec, progress=progress, trained=trained, n_total=total)
        save_index(folder, index, ids, {**expect, "build": info.to_dict(), "search_params": spec.search_params,
                                        "seconds": round(time.perf_counter() - t0, 3)})
        log.info("index %s: %s over %d vectors in %.1f s", folder.name, info.factory, len(ids),
                 time.perf_counter() - t0)
    single = None
    if len(groups) > 1 and single_file_budget and total_index <= single_file_budget:
        single = _write_single_file(out_dir, folders, {"spec": _spec_key(spec), "source": sources})
    if single is None:  # no stale one-file copy of an earlier build
        for name in ("index.json", INDEX_FILE, IDS_FILE):
            (out_dir / name).unlink(missing_ok=True)
    manifest = {"embeddings": str(emb_dir), "spec": _spec_key(spec), "factory": factory, "single_file": single,
                "search_params": spec.search_params, "parts": [f.name for f in folders], "num_vectors": total,
                "estimated_index_bytes": int(total_index), "metric": spec.metric,
                "shared_quantizer": len(groups) > 1, "dim": int(d),
                "document_model": shards[0].get("model"), "document_model_hash": shards[0].get("model_hash")}
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def _write_single_file(out_dir: Path, folders: list[Path], expect: dict) -> str | None:
    """Merge the parts into ``out_dir/index.faiss`` (with ``ids.json``) when FAISS can merge them exactly; the
    file's name, or None."""
    from indexes.sharded import _offsets, merge_into_one

    if index_is_done(out_dir, expect):
        return INDEX_FILE
    parts, ids = [], []
    for folder in folders:
        index, part_ids, _ = load_index(folder)
        parts.append(index)
        ids.extend(part_ids)
    merged = merge_into_one(parts, _offsets(parts), shared_quantizer=True)
    if merged is None:
        return None
    save_index(out_dir, merged, ids, expect)
    return INDEX_FILE


def read_index_manifest(index_dir: str | os.PathLike) -> dict:
    """The top manifest of a finished index folder (its parts, spec, search parameters)."""
    top = Path(index_dir) / "manifest.json"
    if not top.is_file():
        raise DataError(str(top), None, "no index manifest: the index is missing or unfinished.",
                        "run `densepipe index` (a rerun finishes an interrupted build).")
    return read_json(top)


def load_parts(folders: list, search_params: str) -> tuple[list, list[str]]:
    """The saved indexes in ``folders``, in order, with ``search_params`` applied, and their ids end to end."""
    parts, ids = [], []
    for folder in folders:
        index, part_ids, _ = load_index(folder)
        apply_search_params(index, search_params)
        parts.append(index)
        ids.extend(part_ids)
    return parts, ids


def load_sharded(index_dir: str | os.PathLike, search_params: str | None = None, threads: int = 1
                 ) -> tuple[ShardedIndex, list[str], dict]:
    """Load every part of an index folder as one ShardedIndex with the global id list."""
    index_dir = Path(index_dir)
    manifest = read_index_manifest(index_dir)
    params = manifest.get("search_params", "") if search_params is None else search_params
    parts, ids = load_parts([index_dir / name for name in manifest["parts"]], params)
    sharded = ShardedIndex(parts, threads=threads, shared_quantizer=manifest.get("shared_quantizer", False))
    return sharded, ids, manifest


def check_query_model(index_dir: str | os.PathLike, manifest: dict, model: str, dim: int) -> None:
    """Refuse to search an index with a model whose query vectors do not belong to its document vectors: another
    dimension, or another document model (a query tower trained against the index's document model is fine)."""
    from retriever.encoders import document_model_hash, resolve_model

    expected = manifest.get("dim") or manifest.get("build", {}).get("d")
    if expected and int(expected) != dim:
        raise DataError(str(index_dir), None, f"the index holds {expected}-dimensional vectors of "
                        f"{manifest.get('document_model') or 'another model'}, but {model} gives {dim}-dimensional "
                        "query vectors.", "search with the model the index was built from (or its query tower).")
    recorded = manifest.get("document_model_hash")
    if recorded and document_model_hash(resolve_model(model)) != recorded:
        raise DataError(str(index_dir), None, f"the index was built from document vectors of "
                        f"{manifest.get('document_model')} (hash {recorded}); {model} is another model.",
                        "search with that model, a query tower fine-tuned against it, or rebuild the index.")
