"""Embedding shards: Parquet files of (doc id, fixed-size vector) with a JSON manifest per shard.

A shard's manifest records what it was made from (model hash, data hash, encoder settings); a shard whose
manifest matches is finished and is skipped on rerun, a mismatched or missing one is (re)written. The parquet
file is written first and the manifest last, each atomically, so a manifest always describes a whole file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from retriever.atomic import atomic_path, read_json, write_json
from retriever.types import DataError


def shard_paths(out_dir: str | os.PathLike, shard: int) -> tuple[Path, Path]:
    out = Path(out_dir)
    return out / f"emb-{shard:05d}.parquet", out / f"emb-{shard:05d}.json"


def write_embedding_shard(out_dir: str | os.PathLike, shard: int, ids: list[str], vectors: np.ndarray,
                          meta: dict) -> dict:
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
    dtype = meta.get("dtype", "float32")
    arrow_type = pa.float16() if dtype == "float16" else pa.float32()
    xb = np.ascontiguousarray(vectors, dtype=np.float16 if dtype == "float16" else np.float32)
    dim = xb.shape[1]
    flat = pa.array(xb.reshape(-1), type=arrow_type)
    table = pa.table({"id": pa.array(ids, pa.string()), "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})
    data_path, manifest_path = shard_paths(out_dir, shard)
    with atomic_path(data_path) as tmp:
        pq.write_table(table, tmp)
    manifest = {**meta, "shard": shard, "count": len(ids), "dim": int(dim), "file": data_path.name}
    write_json(manifest_path, manifest)
    return manifest


def shard_is_done(out_dir: str | os.PathLike, shard: int, expect: dict, defaults: dict | None = None) -> bool:
    """True when the shard's manifest exists and agrees with ``expect`` on every key given (a key the manifest
    lacks counts as its value in ``defaults``: shards written before that setting existed)."""
    data_path, manifest_path = shard_paths(out_dir, shard)
    if not (manifest_path.is_file() and data_path.is_file()):
        return False
    have = read_json(manifest_path)
    defaults = defaults or {}
    return all(have.get(k, defaults.get(k)) == v for k, v in expect.items())


def read_embedding_shard(out_dir: str | os.PathLike, shard: int) -> tuple[list[str], np.ndarray]:
    data_path, manifest_path = shard_paths(out_dir, shard)
    if not manifest_path.is_file():
        raise DataError(str(manifest_path), None, "embedding shard has no manifest (unfinished or never written).",
                        "rerun `densepipe encode`; it resumes where it stopped.")
    table = pq.read_table(data_path)
    col = table.column("vector").combine_chunks()
    dim = col.type.list_size
    xb = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)
    return table.column("id").to_pylist(), xb


def read_embeddings(out_dir: str | os.PathLike) -> tuple[list[dict], list[tuple[list[str], np.ndarray]]]:
    """All shards of a finished encode: (manifests, [(ids, vectors)]) in shard order."""
    out = Path(out_dir)
    top = out / "manifest.json"
    if not out.is_dir():
        raise DataError(str(out), None, "no such embeddings folder.",
                        "check the path: `densepipe encode` prints the folder it wrote as \"embeddings\".")
    if not any(out.glob("emb-*.json")):
        raise DataError(str(out), None, "not an embeddings folder (no emb-*.json shard manifests).",
                        "point --embeddings at a folder that `densepipe encode` wrote.")
    if not top.is_file():
        raise DataError(str(top), None, "embeddings are incomplete (no top-level manifest).",
                        "rerun `densepipe encode`; it resumes where it stopped.")
    manifest = read_json(top)
    shards = [read_embedding_shard(out, s["shard"]) for s in manifest["shards"]]
    return manifest["shards"], shards


def write_vectors(out_dir: str | os.PathLike, parts, model: str = "external", data_hash: str = "external") -> dict:
    """Write vectors that did not come from ``densepipe encode`` (a user's own, or seeded ones in benchmarks) as an
    embeddings folder that ``densepipe index`` reads: ``parts`` yields (ids, vectors) per shard, one at a time."""
    import hashlib

    shards = []
    for i, (ids, xb) in enumerate(parts):
        digest = hashlib.sha256(np.ascontiguousarray(xb, dtype=np.float32).tobytes()).hexdigest()[:16]
        shards.append(write_embedding_shard(out_dir, i, list(ids), xb, {
            "model": model, "model_hash": hashlib.sha256(model.encode()).hexdigest()[:16],
            "data_hash": f"{data_hash}:{i}:{digest}", "dtype": "float32"}))
    manifest = {"corpus": None, "data_hash": data_hash, "num_docs": sum(s["count"] for s in shards),
                "shards": shards, "model": model}
    write_json(Path(out_dir) / "manifest.json", manifest)
    return manifest
