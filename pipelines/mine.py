"""The mining stage: hard negatives for a split's judged queries from BM25 or the dense index, with
false-negative filtering, written as one Parquet table. With ``engine="ray"`` the queries are cut into shards
and mined by Ray actors, each opening its own searcher (a Lucene index or the cached embedding shards); the
result does not depend on the sharding (negatives are sampled with a per-query seed). With a ``storage`` root the
driver publishes what the searchers read there and each actor fetches it into its node's cache, so no actor
opens a path of the driver's machine."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from retriever.encoders import EncoderConfig
from retriever.mining import MinedExample, MiningConfig, MiningReport, mine_negatives, write_mined
from retriever.sparse.bm25 import BM25Config
from retriever.types import ConfigError, Qrels, Queries

from pipelines.runtime import RayEnv
from pipelines.workspace import Prepared, prepare

log = logging.getLogger("densepipe.mine")


@dataclass(frozen=True)
class MineJob:
    dataset: str
    output: str
    retriever: str = "dense"  # "bm25" or "dense"
    split: str = "train"
    config: MiningConfig = MiningConfig()
    encoder: EncoderConfig = EncoderConfig()
    engine: str = "local"  # "local" or "ray"
    num_workers: int = 1
    queries_per_shard: int = 256
    ray: RayEnv = RayEnv()  # the cluster (its storage: where actors fetch the Lucene index and embeddings)
    docs_per_shard: int = 50_000
    max_docs: int | None = None
    embeddings: str | None = None  # finished corpus embeddings of ``encoder`` (default: the work cache's)
    bm25_k1: float = BM25Config.k1  # BM25's parameters for retriever = "bm25" ([bm25] k1 and b in a config)
    bm25_b: float = BM25Config.b

    def __post_init__(self) -> None:
        if self.retriever not in ("bm25", "dense"):
            raise ConfigError(f"mining retriever must be 'bm25' or 'dense', got {self.retriever!r}.")
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"mining engine must be 'local' or 'ray', got {self.engine!r}.")


class MineShard:
    """Mine one shard of queries: load the searcher once (``__init__``), mine a shard per call."""

    def __init__(self, job: MineJob, source: str, embeddings_dir: str | None):
        from pipelines.runtime import fetch_dir

        source = str(fetch_dir(source))  # an object-store URI comes down to this node once
        embeddings_dir = embeddings_dir and str(fetch_dir(embeddings_dir))
        if job.retriever == "bm25":
            from retriever.sparse import BM25Config, BM25Searcher

            self.searcher = BM25Searcher(source, BM25Config(k1=job.bm25_k1, b=job.bm25_b))
            self.score_fn = None
        else:
            from pipelines.baselines import flat_searcher

            self.searcher = flat_searcher(embeddings_dir, job.encoder)
            self.score_fn = self.searcher.score
        self.job = job

    def __call__(self, queries: Queries, qrels: Qrels) -> tuple[list[MinedExample], MiningReport]:
        return mine_negatives(queries, qrels, self.searcher, self.job.config, self.job.retriever, self.score_fn)

    def node(self) -> str:
        from pipelines.runtime import node_id

        return node_id()


def _source(job: MineJob, prep: Prepared) -> tuple[str, str | None]:
    """Build what the searchers read (the Lucene index, or the corpus embeddings), once, before sharding."""
    if job.retriever == "bm25":
        return str(prep.lucene_index(threads=os.cpu_count() or 1)), None
    from pipelines.baselines import corpus_embeddings

    emb = str(corpus_embeddings(prep, job.encoder, embeddings=job.embeddings))
    return emb, emb


def mine_pairs(job: MineJob) -> dict:
    t0 = time.perf_counter()
    prep = prepare(job.dataset, job.split, job.docs_per_shard, max_docs=job.max_docs)
    ds = prep.dataset
    source, emb = _source(job, prep)
    source, emb = str(Path(source).resolve()), emb and str(Path(emb).resolve())  # actors have their own cwd
    from retriever.data.beir import corpus_positives

    # a judged document missing from the corpus cannot be mined for (ids checked without loading the texts)
    qrels = corpus_positives(ds.qrels, ds.corpus.present({d for docs in ds.qrels.values() for d in docs}))
    qids = sorted(q for q in qrels if q in ds.queries)
    shards = [qids[i:i + job.queries_per_shard] for i in range(0, len(qids), job.queries_per_shard)]
    args = [({q: ds.queries[q] for q in s}, {q: qrels[q] for q in s}) for s in shards]
    nodes: list[str] = []
    if job.engine == "ray":
        parts, nodes = _mine_on_ray(job, source, emb, args)
    else:
        miner = MineShard(job, source, emb)
        parts = [miner(*a) for a in args]
    examples = sorted((e for part, _ in parts for e in part), key=lambda e: (e.query_id, e.positive_id))
    report = MiningReport()
    for _, r in parts:
        for k, v in r.to_dict().items():
            if isinstance(v, int):
                setattr(report, k, getattr(report, k) + v)
    write_mined(examples, job.output)
    from retriever.mining.negatives import mining_warnings

    warnings = mining_warnings(report, job.config)
    for w in warnings:
        log.warning("densepipe: warning: mine (%s): %s", job.retriever, w)
    return {"output": job.output, **({"warnings": warnings} if warnings else {}), "retriever": job.retriever,
            "examples": len(examples), "shards": len(shards),
            "engine": job.engine, "seconds": round(time.perf_counter() - t0, 1), "report": report.to_dict(),
            **({"nodes": nodes} if nodes else {})}


def _publish(job: MineJob, source: str, emb: str | None) -> tuple[str, str | None]:
    """The searchers' inputs on the run's storage (uploaded once per content), as URIs for the actors."""
    from pipelines.runtime import Storage

    storage = Storage(job.ray.storage)
    if job.retriever == "bm25":
        from retriever.atomic import read_json

        stamp = read_json(Path(source) / "densepipe.json")["data_hash"]
        return storage.publish_dir(source, f"lucene/{stamp}", stamp), None
    import hashlib

    stamp = hashlib.sha256((Path(emb) / "manifest.json").read_bytes()).hexdigest()[:16]
    uri = storage.publish_dir(emb, f"embeddings/{Path(emb).name}-{stamp}", stamp)
    return uri, uri


def _mine_on_ray(job: MineJob, source: str, emb: str | None, args: list) -> tuple[list, list[str]]:
    import ray

    from pipelines.runtime import ClusterError, check_fits

    job.ray.start()
    workers = min(job.num_workers, len(args))
    request = job.ray.request(workers, gpus=False)
    check_fits(request, workers, "mine")
    if job.ray.storage:
        source, emb = _publish(job, source, emb)
    Actor = ray.remote(num_cpus=request["CPU"])(MineShard)
    actors = [Actor.remote(job, source, emb) for _ in range(workers)]
    try:
        pending = [actors[i % len(actors)].__call__.remote(*a) for i, a in enumerate(args)]
        out = []
        for i, ref in enumerate(pending, start=1):
            try:
                out.append(ray.get(ref, timeout=job.ray.stall_timeout))
            except ray.exceptions.GetTimeoutError:
                raise ClusterError(f"mine: query shard {i} of {len(pending)} did not finish in "
                                   f"{job.ray.stall_timeout:g} s; see `ray status` (are the actors placed?), or raise "
                                   "stall_timeout.") from None
            log.warning("mine: %d of %d query shards done", i, len(pending))
        nodes = sorted(set(ray.get([a.node.remote() for a in actors])))
    finally:
        for actor in actors:
            ray.kill(actor)
    return out, nodes
