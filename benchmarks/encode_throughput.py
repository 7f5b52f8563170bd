"""Encoding throughput: densepipe's Ray encode vs plain SentenceTransformer.encode, side by side in one run.

Same model, batch size, corpus and cores. Reports docs/s and peak RSS of each, and the ratio (Ray / plain);
the Ray run's embeddings land in the work folder, where later stages reuse them.

    python benchmarks/encode_throughput.py --dataset scifact [--max-docs N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from childproc import run_child
from retriever.memory import peak_rss_mb

HERE = Path(__file__).resolve().parent


def plain(corpus_dir: str, model: str, batch_size: int) -> dict:
    """Child process: plain SentenceTransformer.encode over the same documents."""
    from sentence_transformers import SentenceTransformer

    from retriever.data.parquet import iter_corpus_shards
    from retriever.encoders import resolve_model

    docs = [d for _, shard in iter_corpus_shards(corpus_dir) for d in shard]
    texts = [d.joined(" ") for d in docs]
    t0 = time.perf_counter()
    st = SentenceTransformer(resolve_model(model), device="cpu")
    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    st.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    enc = time.perf_counter() - t1
    total = time.perf_counter() - t0
    return {"docs": len(texts), "load_s": round(load, 2), "encode_s": round(enc, 2), "total_s": round(total, 2),
            "docs_per_s": round(len(texts) / total, 2),
            "peak_rss_mb": peak_rss_mb()}


def ray_encode(corpus_dir: str, out_dir: str, model: str, batch_size: int, workers: int) -> dict:
    """Child process: densepipe's Ray encode stage (start-up of Ray and its actors included)."""
    import ray

    from pipelines.encode import EncodeConfig, encode_corpus
    from retriever.encoders import EncoderConfig

    import shutil
    shutil.rmtree(out_dir, ignore_errors=True)
    t0 = time.perf_counter()
    manifest = encode_corpus(corpus_dir, out_dir, EncodeConfig(EncoderConfig(model=model, batch_size=batch_size),
                                                               engine="ray", num_workers=workers), progress=False)
    total = time.perf_counter() - t0
    # peak RSS of this driver and, separately, of the encode actors (each reports its own)
    actors = manifest["last_run"].get("worker_peak_rss_mb")
    ray.shutdown()
    docs = manifest["num_docs"]
    return {"docs": docs, "total_s": round(total, 2), "docs_per_s": round(docs / total, 2),
            "driver_peak_rss_mb": peak_rss_mb(),
            "workers_peak_rss_mb": actors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--max-docs", type=int, default=None)
    ap.add_argument("--output", default=str(HERE / "results" / "encode_throughput.json"))
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a, rest = ap.parse_known_args()
    if a.child:
        kind, *cargs = a.child
        res = plain(cargs[0], a.model, a.batch_size) if kind == "plain" else ray_encode(
            cargs[0], cargs[1], a.model, a.batch_size, a.workers)
        print(json.dumps(res))
        return
    from pipelines.workspace import prepare

    prep = prepare(a.dataset, "test", max_docs=a.max_docs)
    out_dir = str(prep.embeddings_dir(a.model))
    common = ["--model", a.model, "--batch-size", str(a.batch_size), "--workers", str(a.workers)]
    res_plain = run_child(__file__, "plain", str(prep.corpus_dir), *common)
    res_ray = run_child(__file__, "ray", str(prep.corpus_dir), out_dir, *common)
    result = {
        "benchmark": "encode_throughput", "dataset": a.dataset, "docs": res_plain["docs"], "model": a.model,
        "batch_size": a.batch_size, "ray_workers": a.workers, "cpus": os.cpu_count(),
        "plain_sentence_transformers": res_plain, "densepipe_ray": res_ray,
        "ratio_ray_over_plain": round(res_ray["docs_per_s"] / res_plain["docs_per_s"], 3),
    }
    sys.path.insert(0, str(HERE))
    from provenance import provenance

    result.update(provenance("encode_throughput.py"))
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
