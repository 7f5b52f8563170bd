"""Encode stage: corpus Parquet shards -> embedding shards, on Ray Data or in-process.

The work itself is ``EncodeBatch``, a plain callable class (model loaded once in ``__init__``, one batch mapped
in ``__call__``), so it runs and is tested without Ray. On Ray, ``num_workers`` actors (each asking for
``cpus_per_worker`` CPUs, default 1, and a GPU when the cluster has them; checked against the nodes first) load
the model once and encode chunks of the corpus shards, which they read themselves by URI: from
the run's storage (``storage``: a local folder or an object-store URI) or, without one, from this machine's disk
(one machine, or a shared filesystem). Chunks are handed out shard by shard as workers free up, and the driver
writes each shard atomically the moment its last chunk is back, so Ctrl-C or a killed driver keeps every finished
shard and a rerun encodes only the rest. A chunk is a set of rows of one shard of similar length: each shard's rows
are ordered by text length once (``chunk_plan``), so every chunk pads little, on either engine, and both engines
encode the same chunks (the same vectors, even with int8's per-batch scales). Shards are the unit of resumption: finished shards (their manifest
matches model, data and settings) are skipped; output never depends on Ray's scheduling, and a retried chunk
cannot duplicate a row.
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

from pipelines.runtime import RayEnv

log = logging.getLogger("densepipe.encode")

# Settings that change the vectors; batch size, bucketing, device and threads do not (beyond float rounding).
_OUTPUT_KEYS = ("model", "max_seq_length", "title_sep", "dtype", "backend", "quantize", "model_dtype", "segment_tokens",
                "segment_stride", "segment_title")
# what shards written before a key existed were made with
_OUTPUT_DEFAULTS = {"backend": "torch", "quantize": "none", "model_dtype": "float32", "segment_tokens": None,
                    "segment_stride": None, "segment_title": False}


@dataclass(frozen=True)
class EncodeConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    engine: str = "ray"  # "ray" (Ray Data actors) or "local" (this process)
    num_workers: int = 1  # Ray actors; each loads the model once
    rows_per_ray_batch: int = 1024  # a chunk: rows of one shard of similar length, cut into encoder batches
    ray: RayEnv = RayEnv()  # the cluster: address, storage (where workers read the shards), per-worker request

    def __post_init__(self) -> None:
        if self.engine not in ("ray", "local"):
            raise ConfigError(f"encode engine must be 'ray' or 'local', got {self.engine!r}.")
        if self.num_workers < 1:
            raise ConfigError(f"encode num_workers must be >= 1, got {self.num_workers}.")


class EncodeBatch:
    """Map a batch of documents (columns id, title, text) to vectors. Plain class: usable without Ray. With
    ``segment_tokens`` a document gives one row per window: its id repeated, and ``owner`` (the row of the batch
    it came from) says which document each vector belongs to."""

    def __init__(self, encoder: EncoderConfig, fail_once_file: str | None = None):
        self.encoder = BiEncoder(encoder)
        self.fail_once_file = fail_once_file  # fault injection for tests: die once, the first time it is called

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.fail_once_file and not os.path.exists(self.fail_once_file):
            Path(self.fail_once_file).write_text("crashed")
            os._exit(1)
        docs = [Document(id=str(i), title=str(t or ""), text=str(x or ""))
                for i, t, x in zip(batch["id"], batch["title"], batch["text"])]
        vectors, owner = self.encoder.encode_document_segments(docs)
        out = {"id": np.asarray(batch["id"])[owner], "vector": vectors, "owner": owner}
        if "path" in batch:
            out["path"] = np.asarray(batch["path"])[owner]
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
    pending = [(i, s) for i, s in enumerate(cmanifest["shards"])
               if not shard_is_done(out_dir, i, metas[s["file"]], _OUTPUT_DEFAULTS)]
    todo = sum(s["count"] for _, s in pending)
    log.info("encode: %d of %d shards to do (%d docs)", len(pending), len(cmanifest["shards"]), todo)
    start = time.perf_counter()
    if pending:
        (out_dir / "manifest.json").unlink(missing_ok=True)  # incomplete until every shard is back
        bar = tqdm(total=todo, desc="encode", unit="doc", disable=not progress)
        runner = _encode_ray if config.engine == "ray" else _encode_local
        try:
            placement = runner(corpus_dir, out_dir, config, pending, metas, bar, fail_once_file) or {}
        finally:
            bar.close()
    else:
        placement = {}
    seconds = time.perf_counter() - start
    manifest = {"corpus": str(corpus_dir), "data_hash": cmanifest["data_hash"], "num_docs": cmanifest["num_docs"],
                "encoder": config.encoder.to_dict(), "shards": [],
                "last_run": {"docs": todo, "seconds": round(seconds, 3),
                             "docs_per_s": round(todo / seconds, 2) if todo and seconds else None,
                             "engine": config.engine, "num_workers": config.num_workers, **placement},
                "versions": _versions()}
    for i in range(len(cmanifest["shards"])):
        manifest["shards"].append(read_json(out_dir / f"emb-{i:05d}.json"))
    if todo:
        log.info("encode: %d docs in %.1f s (%.1f docs/s)", todo, seconds, todo / max(seconds, 1e-9))
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def _versions() -> dict:
    from retriever.versions import package_versions

    return package_versions(("densepipe", "torch", "sentence-transformers", "transformers", "ray"))


def _write(out_dir: Path, index: int, ids: list[str], vectors: np.ndarray, meta: dict,
           encoder: EncoderConfig) -> None:
    extra = {"path": resolve_model(encoder.model), "dim": int(vectors.shape[1]), "created": time.time()}
    write_embedding_shard(out_dir, index, ids, vectors, {**meta, **extra})


def text_lengths(titles, texts) -> np.ndarray:
    """Characters (code points) of title + text per row, a missing one counting 0: what chunks are grouped by.
    Columns as pyarrow arrays or Python lists."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = np.zeros(len(titles), dtype=np.int64)
    for column in (titles, texts):
        arr = column if isinstance(column, (pa.Array, pa.ChunkedArray)) else pa.array(column, pa.string())
        total += pc.fill_null(pc.utf8_length(arr), 0).to_numpy().astype(np.int64)
    return total


def chunk_plan(lengths: np.ndarray, step: int) -> list[np.ndarray]:
    """A shard's rows, longest text first, cut into chunks of ``step``: each chunk holds texts of similar length
    (the encoder orders each chunk by token length again), so padding stays low across the whole shard rather
    than within each run of ``step`` consecutive rows."""
    order = np.argsort(-np.asarray(lengths), kind="stable").astype(np.int64)
    return [order[a:a + step] for a in range(0, len(order), step)]


def shard_chunks(shard_file: str | os.PathLike, step: int) -> list[np.ndarray]:
    """``chunk_plan`` of a corpus shard on disk, reading its title and text columns only."""
    import pyarrow.parquet as pq

    table = pq.read_table(shard_file, columns=["title", "text"])
    return chunk_plan(text_lengths(table.column("title"), table.column("text")), step)


def _assemble(parts: list) -> tuple[list[str], np.ndarray]:
    """A shard's ids and vectors in its row order, from (rows, ids, vectors, owner) per chunk in any order: vector
    i of a chunk belongs to the shard's row ``rows[owner[i]]`` (a document's windows stay in their order)."""
    position = np.concatenate([np.asarray(rows)[owner] for rows, _, _, owner in parts])
    order = np.argsort(position, kind="stable")
    ids = np.concatenate([np.asarray(chunk_ids, dtype=object) for _, chunk_ids, _, _ in parts])[order]
    return ids.tolist(), np.concatenate([vectors for _, _, vectors, _ in parts])[order]


def _encode_local(corpus_dir, out_dir, config, pending, metas, bar, fail_once_file) -> None:
    fn = EncodeBatch(config.encoder, fail_once_file)
    shards = dict(pending)
    for index, (shard, docs) in enumerate(iter_corpus_shards(corpus_dir)):
        if index not in shards:
            continue
        parts = []
        lengths = text_lengths([d.title for d in docs], [d.text for d in docs])
        for rows in chunk_plan(lengths, config.rows_per_ray_batch):
            chunk = [docs[r] for r in rows]
            out = fn({"id": np.array([d.id for d in chunk], dtype=object),
                      "title": np.array([d.title for d in chunk], dtype=object),
                      "text": np.array([d.text for d in chunk], dtype=object)})
            parts.append((rows, out["id"], out["vector"], out["owner"]))
            bar.update(len(chunk))
        _write(out_dir, index, *_assemble(parts), metas[shard["file"]], config.encoder)


class EncodeChunks:
    """A Ray actor's body: reads corpus shards by URI (one kept open) and encodes chunks (row numbers) of them."""

    def __init__(self, encoder: EncoderConfig, fail_once_file: str | None = None):
        self.fn = EncodeBatch(encoder, fail_once_file)
        self._uri, self._table = None, None

    def __call__(self, uri: str, rows: np.ndarray) -> dict:
        from pipelines.runtime import node_id
        from retriever.data.parquet import read_parquet_uri

        if uri != self._uri:
            self._uri, self._table = uri, read_parquet_uri(uri, ["id", "title", "text"])
        chunk = self._table.take(rows)
        out = self.fn({k: np.asarray(chunk.column(k).to_pylist(), dtype=object) for k in ("id", "title", "text")})
        from retriever.memory import peak_rss_mb

        return {"id": out["id"].tolist(), "vector": out["vector"], "owner": out["owner"], "node": node_id(),
                "peak_rss_mb": peak_rss_mb()}


def _encode_ray(corpus_dir, out_dir, config, pending, metas, bar, fail_once_file) -> dict:
    import ray

    from pipelines.runtime import ClusterError, check_fits, open_storage

    env = config.ray
    env.start()
    request = env.request(config.num_workers)
    check_fits(request, config.num_workers, "encode")
    encoder_cfg = config.encoder
    if encoder_cfg.threads is None and not request["GPU"]:
        from dataclasses import replace

        encoder_cfg = replace(encoder_cfg, threads=max(1, int(request["CPU"])))  # no more threads than its CPUs
    step = config.rows_per_ray_batch
    n_chunks = sum(-(-s["count"] // step) for _, s in pending)
    Actor = ray.remote(num_cpus=request["CPU"], num_gpus=request["GPU"], max_restarts=-1,
                       max_task_retries=-1)(EncodeChunks)
    # started first: their processes start and load the model while this driver publishes and plans the shards
    actors = [Actor.remote(encoder_cfg, fail_once_file) for _ in range(min(config.num_workers, n_chunks))]
    storage = open_storage(env.storage)
    if storage is not None:
        data_hash = read_manifest(corpus_dir)["data_hash"]
        key = f"corpus/{data_hash}-{Path(corpus_dir).name}"
        storage.publish_dir(corpus_dir, key, stamp=data_hash)
        uris = {i: storage.uri(f"{key}/{s['file']}") for i, s in pending}
    else:
        uris = {i: str((Path(corpus_dir) / s["file"]).resolve()) for i, s in pending}
    # planned a shard at a time, as the work reaches it: the driver holds one shard's row order, not the corpus's
    todo = ((i, rows) for i, s in pending for rows in shard_chunks(Path(corpus_dir) / s["file"], step))
    shards = dict(pending)
    parts: dict[int, list] = {i: [] for i, _ in pending}
    nodes: set[str] = set()
    peak_rss = 0.0
    inflight: dict = {}

    def submit(actor) -> None:
        chunk = next(todo, None)
        if chunk is not None:
            inflight[actor.__call__.remote(uris[chunk[0]], chunk[1])] = (actor, chunk)

    try:
        for actor in actors:  # two chunks each in flight: a worker never waits for the driver
            submit(actor)
            submit(actor)
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=env.stall_timeout)
            if not ready:
                raise ClusterError(f"encode: no chunk finished in {env.stall_timeout:g} s ({len(inflight)} in "
                                   f"flight); the workers may be waiting for resources "
                                   f"({request} each) — see `ray status`, or raise stall_timeout for slow models.")
            actor, (index, rows) = inflight.pop(ready[0])
            out = ray.get(ready[0])
            submit(actor)
            nodes.add(out["node"])
            peak_rss = max(peak_rss, out["peak_rss_mb"])
            parts[index].append((rows, out["id"], out["vector"], out["owner"]))
            bar.update(len(rows))
            if sum(len(p[0]) for p in parts[index]) == shards[index]["count"]:
                _write(out_dir, index, *_assemble(parts[index]), metas[shards[index]["file"]], encoder_cfg)
                del parts[index]
    finally:
        for actor in actors:
            ray.kill(actor)
    return {"nodes": sorted(nodes), "cpus_per_worker": request["CPU"], "gpus_per_worker": request["GPU"],
            "worker_peak_rss_mb": round(peak_rss, 1)}


def corpus_vectors(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike, encoder: EncoderConfig,
                   progress: bool = True) -> tuple[list[str], np.ndarray]:
    """All document ids and vectors of a corpus, encoded in-process where the cached shards do not cover it."""
    from retriever.data.embeddings import read_embeddings

    encode_corpus(corpus_dir, out_dir, EncodeConfig(encoder, engine="local"), progress=progress)
    _, shards = read_embeddings(out_dir)
    return [i for s in shards for i in s[0]], np.concatenate([s[1] for s in shards])
