"""Learned PQ stage: start from a trained (O)PQ index over cached document embeddings, train its codebooks
(and, for JPQ, the query encoder), and export a standard FAISS index plus a sentence-transformers folder."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from indexes import IndexSpec, build_index, save_index
from indexes.pq_params import extract_pq, with_centroids
from pipelines.search import hits_to_run
from retriever.atomic import write_json
from retriever.encoders import BiEncoder, EncoderConfig
from retriever.eval import evaluate
from retriever.training.learned_pq import LearnedPQConfig, distill_centroids, jpq_train
from retriever.types import Qrels, Queries


def train_learned_pq(xb: np.ndarray, doc_ids: list[str], encoder: EncoderConfig, train_queries: Queries,
                     train_qrels: Qrels | None, config: LearnedPQConfig, factory: str = "OPQ48,PQ48",
                     pseudo_queries: int = 2000, base_index=None):
    """Return (index with learned centroids, BiEncoder for queries, info). ``train_qrels`` only for jpq."""
    t0 = time.perf_counter()
    index = base_index if base_index is not None else build_index(xb, IndexSpec(factory))[0]
    params = extract_pq(index)
    enc = BiEncoder(encoder)
    rng = np.random.default_rng(config.seed)
    if config.mode == "distill":
        # label-free: unjudged query texts and documents as pseudo-queries
        xq = enc.encode_queries(list(train_queries.values()))
        docs_as_queries = xb[rng.choice(len(xb), size=min(pseudo_queries, len(xb)), replace=False)]
        xq = np.concatenate([xq, docs_as_queries])
        C, losses = distill_centroids(params.centroids, params.codes, xb, xq, config, params.rotation, params.bias)
    else:
        if not train_qrels:
            from retriever.types import ConfigError

            raise ConfigError("JPQ needs training qrels (e.g. qrels/train.tsv).")
        pos = {d: i for i, d in enumerate(doc_ids)}
        qids = [q for q in train_qrels if q in train_queries and any(d in pos for d in train_qrels[q])]
        positives = [[pos[d] for d, r in train_qrels[q].items() if r > 0 and d in pos] for q in qids]
        keep = [i for i, p in enumerate(positives) if p]
        C, losses = jpq_train(params.centroids, params.codes, enc.model, [train_queries[qids[i]] for i in keep],
                              [positives[i] for i in keep], config, params.rotation, params.bias)
    learned = with_centroids(index, C)
    info = {"mode": config.mode, "factory": factory, "losses": [round(x, 6) for x in losses],
            "train_s": round(time.perf_counter() - t0, 2), "config": config.__dict__}
    return learned, enc, info


def evaluate_index(index, enc: BiEncoder, doc_ids: list[str], queries: Queries, qrels: Qrels, k: int = 100) -> dict:
    qids = list(queries)
    xq = enc.encode_queries([queries[q] for q in qids])
    t0 = time.perf_counter()
    D, I = index.search(xq, k)
    qps = len(qids) / max(time.perf_counter() - t0, 1e-9)
    res = evaluate(qrels, hits_to_run(qids, D, I, doc_ids), ["ndcg@10", "recall@100", "mrr@10"])
    return {**{m: round(v, 5) for m, v in res.aggregate.items()}, "qps": round(qps, 1)}


def export(out_dir: str | Path, index, enc: BiEncoder, doc_ids: list[str], info: dict) -> None:
    """``index/`` loads with faiss.read_index; ``query_encoder/`` with SentenceTransformer(path)."""
    out = Path(out_dir)
    save_index(out / "index", index, doc_ids, {"learned_pq": info})
    if info["mode"] == "jpq":
        enc.model.save(str(out / "query_encoder"))
    write_json(out / "learned_pq.json", info)
