"""The two baselines (BM25 through Pyserini, exact dense search) and search-then-evaluate over a built index."""

from __future__ import annotations

import time
from pathlib import Path

from retriever.data import write_run
from retriever.encoders import BiEncoder, EncoderConfig
from retriever.eval import DEFAULT_METRICS, drop_self_hits, evaluate
from retriever.types import Run

from pipelines.workspace import Prepared, prepare


def _finish(prep: Prepared, run: Run, output: str, timings: dict, extra: dict, remove_query: bool) -> dict:
    if remove_query:
        run = drop_self_hits(run)
    write_run(run, output)
    result = evaluate(prep.dataset.qrels, run, DEFAULT_METRICS)
    return {"dataset": prep.dataset.name, "split": prep.dataset.split, "run": str(output), **extra,
            "metrics": result.to_dict(), "seconds": {k: round(v, 2) for k, v in timings.items()}}


def run_bm25(dataset: str, split: str, output: str, k: int = 1000, k1: float = 0.9, b: float = 0.4,
             remove_query: bool = False, max_docs: int | None = None, threads: int = 1) -> dict:
    from retriever.sparse import BM25Config, BM25Searcher, build_lucene_index

    t0 = time.perf_counter()
    prep = prepare(dataset, split, max_docs=max_docs)
    index_dir = build_lucene_index(prep.dataset.corpus, prep.folder / "lucene-flat", threads=threads)
    t1 = time.perf_counter()
    searcher = BM25Searcher(index_dir, BM25Config(k1=k1, b=b, threads=threads, remove_query=remove_query))
    run = searcher.search(prep.dataset.queries, k)
    t2 = time.perf_counter()
    return _finish(prep, run, output, {"index": t1 - t0, "search": t2 - t1},
                   {"method": "bm25-flat", "k1": k1, "b": b}, remove_query)


def run_dense(dataset: str, split: str, output: str, encoder: EncoderConfig, k: int = 1000, engine: str = "local",
              ray=None, num_workers: int = 1, docs_per_shard: int = 50_000,
              max_docs: int | None = None, remove_query: bool = False) -> dict:
    """``ray``: the RayEnv for ``engine="ray"`` (default: a private local Ray)."""
    from pipelines.encode import EncodeConfig

    t0 = time.perf_counter()
    prep = prepare(dataset, split, docs_per_shard, max_docs=max_docs)
    searcher = dense_searcher(prep, encoder, EncodeConfig(encoder, engine=engine, num_workers=num_workers,
                                                          **({"ray": ray} if ray is not None else {})))
    t1 = time.perf_counter()
    run = searcher.search(prep.dataset.queries, k)
    t2 = time.perf_counter()
    return _finish(prep, run, output, {"encode": t1 - t0, "search": t2 - t1},
                   {"method": "dense-flat-ip", "model": encoder.model,
                    "embeddings": str(prep.embeddings_dir(encoder.model))}, remove_query)


def dense_searcher(prep: Prepared, encoder: EncoderConfig, encode=None):
    """Encode the prepared corpus (cached shards are reused; ``encode``: an EncodeConfig, default in-process) and
    return an exact inner-product DenseSearcher."""
    from pipelines.encode import EncodeConfig, encode_corpus

    emb_dir = prep.embeddings_dir(encoder.model)
    encode_corpus(prep.corpus_dir, emb_dir, encode or EncodeConfig(encoder, engine="local"))
    return flat_searcher(emb_dir, encoder)


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
                        threads: int = 1, remove_query: bool = False) -> dict:
    from pipelines.index_stage import check_query_model, load_sharded
    from pipelines.search import DenseSearcher

    t0 = time.perf_counter()
    prep = prepare(dataset, split, max_docs=max_docs)
    index, ids, manifest = load_sharded(index_dir, search_params, threads)
    bi = BiEncoder(encoder)
    check_query_model(index_dir, manifest, encoder.model, bi.dim)
    searcher = DenseSearcher(bi, index, ids)
    run = searcher.search(prep.dataset.queries, k)
    return _finish(prep, run, output, {"search": time.perf_counter() - t0},
                   {"method": "dense", "index": str(Path(index_dir)), "factory": manifest["spec"]["factory"],
                    "model": encoder.model}, remove_query)
