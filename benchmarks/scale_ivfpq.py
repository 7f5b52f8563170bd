"""Scale: IVF-PQ over 1,000,000 synthetic 384-d vectors — build time, search time, recall against exact search
and peak memory — and the memory-budget check refusing a Flat index under a budget it cannot meet.

    python benchmarks/scale_ivfpq.py [--n 1000000] [--factory IVF1024,PQ48] [--budget 1GB]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from provenance import provenance  # noqa: E402 (benchmarks/ on the path first)
sys.path.insert(0, str(HERE))
from sharded_search import synthetic  # noqa: E402


def rss_mb() -> float:
    from retriever.memory import peak_rss_mb

    return peak_rss_mb()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--factory", default="IVF1024,PQ48")
    ap.add_argument("--train-size", type=int, default=65_536)
    ap.add_argument("--nprobe", default="1,4,16,64")
    ap.add_argument("--budget", default="1GB", help="memory budget for the index")
    ap.add_argument("--output", default=str(HERE / "results" / "scale_ivfpq.json"))
    a = ap.parse_args()

    import faiss

    from indexes import IndexSpec, MemoryBudgetError, apply_search_params, build_index, estimate_memory, parse_bytes

    budget = parse_bytes(a.budget)
    t0 = time.perf_counter()
    xb, xq = synthetic(a.n, a.d, a.queries)
    gen_s = time.perf_counter() - t0
    rss_vectors = rss_mb()

    # 1. the budget check: Flat needs n * d * 4 bytes, refused before any work
    refusal = None
    t1 = time.perf_counter()
    try:
        build_index(xb, IndexSpec("Flat"), memory_budget=budget)
    except MemoryBudgetError as e:
        refusal = {"factory": "Flat", "needed_bytes": e.needed, "budget_bytes": e.budget, "message": str(e),
                   "seconds_to_refuse": round(time.perf_counter() - t1, 4)}
    if refusal is None:
        raise SystemExit("the Flat index was not refused: raise n or lower --budget")

    # 2. exact ground truth for recall
    t2 = time.perf_counter()
    exact = faiss.IndexFlatIP(a.d)
    exact.add(xb)
    _, gt = exact.search(xq, 10)
    exact_s = time.perf_counter() - t2
    del exact

    # 3. IVF-PQ under the same budget
    est = estimate_memory(a.factory, a.d, a.n, "ip", a.train_size)
    t3 = time.perf_counter()
    index, info = build_index(xb, IndexSpec(a.factory, train_size=a.train_size), memory_budget=budget)
    build_s = time.perf_counter() - t3
    actual = len(faiss.serialize_index(index))
    sweep = []
    for nprobe in a.nprobe.split(","):
        apply_search_params(index, f"nprobe={nprobe}")
        index.search(xq[:50], 10)
        t4 = time.perf_counter()
        _, I = index.search(xq, 10)
        search_s = time.perf_counter() - t4
        recall = float(np.mean([len(set(r) & set(g)) / 10 for r, g in zip(I, gt)]))
        sweep.append({"nprobe": int(nprobe), "qps": round(a.queries / search_s, 1),
                      "ms_per_query": round(1000 * search_s / a.queries, 3), "recall@10_vs_exact": round(recall, 4)})
    result = {
        "benchmark": "scale_ivfpq", "n": a.n, "d": a.d, "queries": a.queries, "factory": a.factory,
        "budget_bytes": budget, "flat_refusal": refusal,
        "ivfpq": {"estimated_index_bytes": est.index_bytes, "actual_index_bytes": actual,
                  "estimate_error": round(est.index_bytes / actual - 1, 4), "train_n": info.train_n,
                  "train_s": round(info.train_s, 2), "add_s": round(info.add_s, 2), "build_s": round(build_s, 2),
                  "search": sweep},
        "exact_search_s_for_ground_truth": round(exact_s, 2), "generate_s": round(gen_s, 2),
        "peak_rss_mb": {"after_vectors": round(rss_vectors, 1), "end": round(rss_mb(), 1)},
        "cpus": os.cpu_count(), **provenance("scale_ivfpq.py"),
    }
    Path(a.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
