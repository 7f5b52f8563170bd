"""The two baselines (BM25 through Pyserini, exact dense search) and search-then-evaluate over a built index."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from retriever.data import write_run
from retriever.encoders import BiEncoder, EncoderConfig
from retriever.eval import DEFAULT_METRICS, drop_self_hits, evaluate
from retriever.types import Run

from pipelines.workspace import Prepared, prepare


@dataclass(frozen=True)
class Topics:
    """Which queries and judgments a baseline reads, and how its run is written and scored.

    ``topics`` / ``qrels``: files replacing the dataset folder's queries / judgments (TREC DL topics and qrels);
    ``relevance_level``: the lowest grade counted relevant by binary measures (recall, MAP, MRR; 2 for TREC DL
    passage, as the track reports them; nDCG uses the grades themselves); ``run_format``: ``trec`` (``qid Q0
    docid rank score tag``) or ``msmarco`` (``qid<TAB>docid<TAB>rank``)."""

    topics: str | None = None
    qrels: str | None = None
    relevance_level: int = 1
    run_format: str = "trec"


def _prepare(dataset: str, split: str, topics: Topics, docs_per_shard: int = 50_000,
             max_docs: int | None = None) -> Prepared:
    return prepare(dataset, split, docs_per_shard, max_docs=max_docs, topics=topics.topics, qrels=topics.qrels)


def _finish(prep: Prepared, run: Run, output: str, timings: dict, extra: dict, remove_query: bool,
            topics: Topics = Topics()) -> dict:
    from retriever.data.trec import write_msmarco_run
    from retriever.eval.metrics import msmarco_mrr

    if remove_query:
        run = drop_self_hits(run)
    (write_msmarco_run if topics.run_format == "msmarco" else write_run)(run, output)
    qrels = prep.dataset.qrels
    metrics = evaluate(qrels, run, DEFAULT_METRICS, relevance_level=topics.relevance_level).to_dict()
    if topics.run_format == "msmarco" or prep.dataset.corpus.manifest.get("source", "").endswith(
            ("collection.tsv", "collection.tsv.gz")):
        metrics["mrr@10_msmarco"] = round(msmarco_mrr(qrels, run, 10, topics.relevance_level), 6)
    out = {"dataset": prep.dataset.name, "split": prep.dataset.split, "run": str(output), **extra,
           "metrics": metrics, "seconds": {k: round(v, 2) for k, v in timings.items()}}
    if topics.relevance_level != 1:
        out["relevance_level"] = topics.relevance_level
    return out


def run_bm25(dataset: str, split: str, output: str, k: int = 1000, k1: float = 0.9, b: float = 0.4,
             remove_query: bool = False, max_docs: int | None = None, threads: int = 1,
             topics: Topics = Topics(), heap_mb: int | None = None) -> dict:
    """``heap_mb``: the JVM's heap (default: from the corpus size); the peak memory of the indexing and search
    children (the JVMs) is reported."""
    from retriever.atomic import read_json
    from retriever.sparse import BM25Config, BM25Searcher

    t0 = time.perf_counter()
    prep = _prepare(dataset, split, topics, max_docs=max_docs)
    index_dir = prep.lucene_index(threads, heap_mb)
    t1 = time.perf_counter()
    searcher = BM25Searcher(index_dir, BM25Config(k1=k1, b=b, threads=threads, remove_query=remove_query,
                                                  heap_mb=heap_mb))
    try:
        run = searcher.search(prep.dataset.queries, k)
        search_peak = searcher.peak_rss()
    finally:
        searcher.close()
    t2 = time.perf_counter()
    stamp = read_json(Path(index_dir) / "densepipe.json")
    memory = {"java_heap_mb": stamp.get("java_heap_mb"), "jvm_max_heap_mb": stamp.get("jvm_max_heap_mb"),
              "index_peak_rss_mb": stamp.get("indexing_peak_rss_mb"),
              "search_peak_rss_mb": round(search_peak / 2**20, 1)}
    return _finish(prep, run, output, {"index": t1 - t0, "search": t2 - t1},
                   {"method": "bm25-flat", "k1": k1, "b": b, "memory": memory}, remove_query, topics)


def run_dense(dataset: str, split: str, output: str, encoder: EncoderConfig, k: int = 1000, engine: str = "local",
              ray=None, num_workers: int = 1, docs_per_shard: int = 50_000,
              max_docs: int | None = None, remove_query: bool = False, topics: Topics = Topics()) -> dict:
    """``ray``: the RayEnv for ``engine="ray"`` (default: a private local Ray)."""
    from pipelines.encode import EncodeConfig

    t0 = time.perf_counter()
    prep = _prepare(dataset, split, topics, docs_per_shard, max_docs=max_docs)
    searcher = dense_searcher(prep, encoder, EncodeConfig(encoder, engine=engine, num_workers=num_workers,
                                                          **({"ray": ray} if ray is not None else {})))
    t1 = time.perf_counter()
    run = searcher.search(prep.dataset.queries, k)
    t2 = time.perf_counter()
    return _finish(prep, run, output, {"encode": t1 - t0, "search": t2 - t1},
                   {"method": "dense-flat-ip", "model": encoder.model,
                    "embeddings": str(prep.embeddings_dir(encoder.model, encoder)),
                    "geometry": searcher.geometry(prep.dataset.queries, prep.dataset.qrels)}, remove_query, topics)


def corpus_embeddings(prep: Prepared, encoder: EncoderConfig, encode=None, embeddings=None) -> Path:
    """The folder of the prepared corpus's vectors, encoded where its cached shards do not cover it (``encode``: an
    EncodeConfig, default in-process; ``embeddings``: where the vectors live, default the work cache's folder for
    the model)."""
    from pipelines.encode import EncodeConfig, encode_corpus

    emb_dir = Path(embeddings or prep.embeddings_dir(encoder.model, encoder))
    encode_corpus(prep.corpus_dir, emb_dir, encode or EncodeConfig(encoder, engine="local"))
    return emb_dir


def dense_searcher(prep: Prepared, encoder: EncoderConfig, encode=None, embeddings=None):
    """An exact inner-product DenseSearcher over the prepared corpus (``corpus_embeddings``'s options)."""
    return flat_searcher(corpus_embeddings(prep, encoder, encode, embeddings), encoder)


def flat_searcher(embeddings_dir, encoder: EncoderConfig):
    """An exact inner-product DenseSearcher over finished embedding shards."""
    import faiss

    from indexes import ShardedIndex
    from pipelines.search import DenseSearcher
    from retriever.data.embeddings import read_embeddings

    _, shards = read_embeddings(embeddings_dir)
    parts, ids = [], []
    for shard_ids, xb in shards:
        index = faiss.IndexFlatIP(xb.shape[1])
        index.add(xb)
        parts.append(index)
        ids.extend(shard_ids)
    return DenseSearcher(BiEncoder(encoder), ShardedIndex(parts), ids)


def search_and_evaluate(index_dir: str, dataset: str, split: str, output: str, encoder: EncoderConfig,
                        k: int = 1000, search_params: str | None = None, max_docs: int | None = None,
                        threads: int = 1, remove_query: bool = False, topics: Topics = Topics(),
                        engine: str = "local", num_workers: int = 1, ray=None) -> dict:
    """Search a built index with the dataset's queries and evaluate. Reads the queries and judgments, never the
    corpus text (a corpus not prepared yet is prepared, streaming). ``engine="ray"``: the index's parts are held
    by ``num_workers`` Ray actors (``ray``: the RayEnv; see ``pipelines/shard_search.py``)."""
    from pipelines.index_stage import check_query_model, load_sharded
    from pipelines.search import DenseSearcher

    t0 = time.perf_counter()
    prep = _prepare(dataset, split, topics, max_docs=max_docs)
    bi = BiEncoder(encoder)
    extra: dict = {}
    if engine == "ray":
        from pipelines.runtime import RayEnv
        from pipelines.shard_search import DistributedSearcher

        searcher = DistributedSearcher(index_dir, bi, num_workers, ray or RayEnv(), search_params)
        manifest = searcher.manifest
        check_query_model(index_dir, manifest, encoder.model, bi.dim)
        t1 = time.perf_counter()
        try:
            run = searcher.search(prep.dataset.queries, k)
            extra = {"engine": "ray", "actors": searcher.actor_info(),
                     "qps": round(len(run) / max(searcher.search_seconds, 1e-9), 1)}
        finally:
            searcher.close()
    else:
        index, ids, manifest = load_sharded(index_dir, search_params, threads)
        check_query_model(index_dir, manifest, encoder.model, bi.dim)
        t1 = time.perf_counter()
        searcher = DenseSearcher(bi, index, ids)
        run = searcher.search(prep.dataset.queries, k)
    return _finish(prep, run, output, {"load": t1 - t0, "search": time.perf_counter() - t1},
                   {"method": "dense", "index": str(Path(index_dir)), "factory": manifest["spec"]["factory"],
                    "model": encoder.model, **extra}, remove_query, topics)
