"""Encode stage: corpus Parquet shards -> embedding shards, on Ray Data or in-process.

The work itself is ``EncodeBatch``, a plain callable class (model loaded once in ``__init__``, one batch mapped
in ``__call__``), so it runs and is tested without Ray; ``encode_corpus`` hands it to ``map_batches`` with an
``ActorPoolStrategy`` (one actor per worker, each loading the model once). Shards are the unit of resumption:
finished shards (their manifest matches model, data and settings) are skipped, and the driver writes a shard
atomically once all its rows are back, reordered to the corpus order, so the output never depends on Ray's
scheduling and a retried batch cannot duplicate a row.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from retriever.atomic import read_json, write_json
from retriever.data.embeddings import shard_is_done, write_embedding_shard
from retriever.data.parquet import iter_corpus_shards, read_manifest
from retriever.encoders import BiEncoder, EncoderConfig, document_encoder, document_model_hash, resolve_model
from retriever.types import ConfigError, Document

log = logging.getLogger("densepipe.encode")

# Settings that change the vectors; batch size, device and threads do not.
_OUTPUT_KEYS = ("model", "max_seq_length", "title_sep", "dtype")


@dataclass(frozen=True)
class EncodeConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    engine: str = "ray"  # "ray" (Ray Data actors) or "local" (this process)
    num_workers: int = 1  # Ray actors; each loads the model once
    cpus_per_worker: float | None = None  # None: all CPUs split between the workers
    rows_per_ray_batch: int = 1024  # sorted by length inside (less padding), then cut into encoder batches
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.engine not in ("ray", "local"):
            raise ConfigError(f"encode engine must be 'ray' or 'local', got {self.engine!r}.")
        if self.num_workers < 1:
            raise ConfigError(f"encode num_workers must be >= 1, got {self.num_workers}.")


class EncodeBatch:
    """Map a batch of documents (columns id, title, text) to vectors. Plain class: usable without Ray."""

    def __init__(self, encoder: EncoderConfig, fail_once_file: str | None = None):
        self.encoder = BiEncoder(encoder)
        self.fail_once_file = fail_once_file  # fault injection for tests: die once, the first time it is called

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.fail_once_file and not os.path.exists(self.fail_once_file):
            Path(self.fail_once_file).write_text("crashed")
            os._exit(1)
        docs = [Document(id=str(i), title=str(t or ""), text=str(x or ""))
                for i, t, x in zip(batch["id"], batch["title"], batch["text"])]
        out = {"id": np.asarray(batch["id"]), "vector": self.encoder.encode_documents(docs)}
        if "path" in batch:
            out["path"] = np.asarray(batch["path"])
        return out


def shard_meta(corpus_manifest: dict, encoder: EncoderConfig, shard: dict) -> dict:
    """What a finished embedding shard must have been made from."""
    cfg = encoder.to_dict()
    meta = {k: cfg[k] for k in _OUTPUT_KEYS}
    path = resolve_model(encoder.model)
    meta["model"] = document_encoder(path) or encoder.model  # a frozen-document model writes its base's vectors
    meta["model_hash"] = document_model_hash(path)
    meta["data_hash"] = f"{corpus_manifest['data_hash']}:{shard['first']}:{shard['count']}"
    return meta


def encode_corpus(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike, config: EncodeConfig,
                  progress: bool = True, fail_once_file: str | None = None) -> dict:
    """Encode every unfinished shard of ``corpus_dir`` into ``out_dir``; return the top-level manifest."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmanifest = read_manifest(corpus_dir)
    metas = {s["file"]: shard_meta(cmanifest, config.encoder, s) for s in cmanifest["shards"]}
    pending = [(i, s) for i, s in enumerate(cmanifest["shards"]) if not shard_is_done(out_dir, i, metas[s["file"]])]
    todo = sum(s["count"] for _, s in pending)
    log.info("encode: %d of %d shards to do (%d docs)", len(pending), len(cmanifest["shards"]), todo)
    start = time.perf_counter()
    if pending:
        (out_dir / "manifest.json").unlink(missing_ok=True)  # incomplete until every shard is back
        bar = tqdm(total=todo, desc="encode", unit="doc", disable=not progress)
        runner = _encode_ray if config.engine == "ray" else _encode_local
        runner(corpus_dir, out_dir, config, pending, metas, bar, fail_once_file)
        bar.close()
    seconds = time.perf_counter() - start
    manifest = {"corpus": str(corpus_dir), "data_hash": cmanifest["data_hash"], "num_docs": cmanifest["num_docs"],
                "encoder": config.encoder.to_dict(), "shards": [],
                "last_run": {"docs": todo, "seconds": round(seconds, 3),
                             "docs_per_s": round(todo / seconds, 2) if todo and seconds else None,
                             "engine": config.engine, "num_workers": config.num_workers},
                "versions": _versions()}
    for i in range(len(cmanifest["shards"])):
        manifest["shards"].append(read_json(out_dir / f"emb-{i:05d}.json"))
    if todo:
        log.info("encode: %d docs in %.1f s (%.1f docs/s)", todo, seconds, todo / max(seconds, 1e-9))
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("densepipe", "torch", "sentence-transformers", "transformers", "ray"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


def _write(out_dir: Path, index: int, ids: list[str], vectors: np.ndarray, meta: dict,
           encoder: EncoderConfig) -> None:
    extra = {"path": resolve_model(encoder.model), "dim": int(vectors.shape[1]), "created": time.time()}
    write_embedding_shard(out_dir, index, ids, vectors, {**meta, **extra})


def _encode_local(corpus_dir, out_dir, config, pending, metas, bar, fail_once_file) -> None:
    fn = EncodeBatch(config.encoder, fail_once_file)
    shards = dict(pending)
    for index, (shard, docs) in enumerate(iter_corpus_shards(corpus_dir)):
        if index not in shards:
            continue
        ids, parts = [], []
        step = config.rows_per_ray_batch
        for start in range(0, len(docs), step):
            chunk = docs[start:start + step]
            out = fn({"id": np.array([d.id for d in chunk], dtype=object),
                      "title": np.array([d.title for d in chunk], dtype=object),
                      "text": np.array([d.text for d in chunk], dtype=object)})
            ids.extend(out["id"].tolist())
            parts.append(out["vector"])
            bar.update(len(chunk))
        _write(out_dir, index, ids, np.concatenate(parts), metas[shard["file"]], config.encoder)


def _encode_ray(corpus_dir, out_dir, config, pending, metas, bar, fail_once_file) -> None:
    import ray
    import pyarrow.parquet as pq

    from pipelines.runtime import cluster_gpus, init_ray

    init_ray(config.ray_address)
    gpus = cluster_gpus()
    total_cpus = float(ray.cluster_resources().get("CPU", 1))
    # torch threads per actor: the machine's cores shared between the workers. The logical CPUs each actor asks of
    # Ray stay below that, so Ray's Parquet read tasks can still be scheduled beside the actors.
    cpus = config.cpus_per_worker or max(1.0, total_cpus / config.num_workers)
    logical = min(cpus, max(0.25, (total_cpus - 1) / config.num_workers))
    paths = {str((corpus_dir / s["file"]).resolve()): (i, s) for i, s in pending}
    encoder_cfg = config.encoder
    if encoder_cfg.threads is None and not gpus:
        from dataclasses import replace

        encoder_cfg = replace(encoder_cfg, threads=max(1, int(cpus)))
    ds = ray.data.read_parquet(list(paths), include_paths=True, columns=["id", "title", "text"])
    # Ray reads a file as one block, and one block goes to one actor: with fewer files than actors, cut the text
    # into batch-sized blocks so every actor has work. (With one actor this costs more than it gives: on SciFact
    # the Ray/plain throughput ratio fell from 0.91 to 0.865, so progress then comes shard by shard.)
    if len(paths) < config.num_workers:
        ds = ds.repartition(min(-(-sum(s["count"] for _, s in pending) // config.rows_per_ray_batch), 1024))
    ds = ds.map_batches(EncodeBatch, fn_constructor_kwargs={"encoder": encoder_cfg, "fail_once_file": fail_once_file},
                        batch_size=config.rows_per_ray_batch, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=config.num_workers),
                        num_cpus=0 if gpus else logical, num_gpus=1 if gpus else 0, max_restarts=-1,
                        max_task_retries=-1)
    got: dict[str, dict[str, np.ndarray]] = {p: {} for p in paths}
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for did, vec, path in zip(batch["id"], batch["vector"], batch["path"]):
            path = _match_path(str(path), paths)
            got[path][str(did)] = vec
        bar.update(len(batch["id"]))
        for path in [p for p in got if len(got[p]) == paths[p][1]["count"]]:
            index, shard = paths[path]
            order = pq.read_table(path, columns=["id"]).column("id").to_pylist()
            _write(out_dir, index, order, np.stack([got[path][d] for d in order]), metas[shard["file"]], encoder_cfg)
            del got[path]
    if got:
        missing = {p: paths[p][1]["count"] - len(v) for p, v in got.items()}
        raise RuntimeError(f"encode: rows missing after the Ray job: {missing}")


def _match_path(path: str, paths: dict) -> str:
    if path in paths:
        return path
    for p in paths:  # Ray may report the path without the leading slash or with a scheme
        if p.endswith(path.lstrip("/").split("://")[-1]) or path.endswith(p.lstrip("/")):
            return p
    raise KeyError(path)


def corpus_vectors(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike, encoder: EncoderConfig,
                   progress: bool = True) -> tuple[list[str], np.ndarray]:
    """All document ids and vectors of a corpus, encoded in-process where the cached shards do not cover it."""
    from retriever.data.embeddings import read_embeddings

    encode_corpus(corpus_dir, out_dir, EncodeConfig(encoder, engine="local"), progress=progress)
    _, shards = read_embeddings(out_dir)
    return [i for s in shards for i in s[0]], np.concatenate([s[1] for s in shards])
