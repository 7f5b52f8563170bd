"""Compression sweep with learned PQ, on SciFact (quality against qrels) and on synthetic vectors (quality
as recall against exact search, memory and QPS at scale).

    python benchmarks/compression_sweep.py scifact            # all variants + learned PQ at 48 and 24 bytes
    python benchmarks/compression_sweep.py synthetic --n 1000000

Writes benchmarks/results/compression_<name>/sweep.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from provenance import provenance  # noqa: E402 (benchmarks/ on the path first)
sys.path.insert(0, str(HERE))


def scifact(a) -> dict:
    import faiss

    from indexes import IndexSpec, build_index
    from indexes.compress import SweepRow, default_variants, mark_pareto
    from pipelines.compress import qrels_quality, rows_from_json, sweep, write_outputs
    from pipelines.encode import corpus_vectors
    from pipelines.learned_pq import evaluate_index, export, train_learned_pq
    from pipelines.workspace import prepare
    from retriever.data import load_beir, resolve_dataset
    from retriever.encoders import BiEncoder, EncoderConfig
    from retriever.training.learned_pq import LearnedPQConfig

    enc_cfg = EncoderConfig(model=a.model)
    prep = prepare("scifact", "test")
    doc_ids, xb = corpus_vectors(prep.corpus_dir, prep.embeddings_dir(a.model), enc_cfg)
    test = prep.dataset
    qids = list(test.queries)
    enc = BiEncoder(enc_cfg)
    xq = enc.encode_queries([test.queries[q] for q in qids])
    quality = qrels_quality(qids, doc_ids, test.qrels)
    out_dir = HERE / "results" / "compression_scifact"
    only = set(a.only.split(",")) if a.only else None
    variants = [v for v in default_variants(xb.shape[1]) if only is None or v.name in only]
    rows = []
    if only is not None:  # recompute some rows, keep the others from the last full run
        old, _ = rows_from_json(out_dir / "sweep.json")
        rows = [r for r in old if r.name.split("/")[0] not in only
                and not ("learned" in only and r.name.startswith("learned-"))]
    rows += sweep(xb, xq, variants, quality) if variants else []

    train = load_beir(resolve_dataset("scifact"), "train")  # queries and qrels of the train split only
    learned_info = {}
    for m in (48, 24) if only is None or "learned" in only else ():
        factory = f"OPQ{m},PQ{m}"
        base, _ = build_index(xb, IndexSpec(factory))
        for mode in ("distill", "jpq"):
            cfg = LearnedPQConfig(mode=mode, epochs=a.epochs_jpq if mode == "jpq" else a.epochs_distill)
            t0 = time.perf_counter()
            index, qenc, info = train_learned_pq(xb, doc_ids, enc_cfg, train.queries,
                                                 train.qrels if mode == "jpq" else None, cfg, factory, base_index=base)
            train_s = time.perf_counter() - t0
            metrics = evaluate_index(index, qenc, doc_ids, test.queries, test.qrels)
            qps = metrics.pop("qps")
            size = len(faiss.serialize_index(index))
            name = f"learned-{mode}-opq{m}"
            rows.append(SweepRow(name, factory, "", float(m), size, train_s, qps, metrics))
            learned_info[name] = info
            if m == 48:
                export(Path(a.export_dir) / name, index, qenc, doc_ids, info)
    mark_pareto(rows)
    flat = next(r for r in rows if r.name == "flat").metrics["ndcg@10"]
    for r in rows:
        r.metrics["ndcg@10_vs_flat"] = round(r.metrics["ndcg@10"] / flat, 4)
    if only is not None and not learned_info:
        learned_info = json.loads((out_dir / "sweep.json").read_text()).get("learned", {})
    return write_outputs(rows, out_dir, "ndcg@10",
                         f"SciFact test: memory vs nDCG@10 ({a.model})",
                         {"n": len(xb), "d": int(xb.shape[1]), "queries": len(qids), "learned": learned_info,
                          **provenance("compression_sweep.py")})


def synthetic_sweep(a) -> dict:
    from indexes.compress import Variant
    from pipelines.compress import exact_quality, sweep, write_outputs
    from sharded_search import synthetic

    xb, xq = synthetic(a.n, 384, a.queries)
    variants = [Variant("flat", "Flat"), Variant("fp16", "SQfp16"), Variant("sq8", "SQ8"), Variant("sq4", "SQ4"),
                Variant("pq48", "PQ48"), Variant("pq96x4fs", "PQ96x4fs"), Variant("pq48x4fs", "PQ48x4fs"),
                Variant("ivf-pq48", "IVF{nlist},PQ48", ("nprobe=4", "nprobe=16", "nprobe=64")),
                Variant("binary", "binary")]
    rows = sweep(xb, xq, variants, exact_quality(xb, xq), train_size=a.train_size, metric="recall@10_vs_exact")
    return write_outputs(rows, HERE / "results" / f"compression_synthetic_{a.n}", "recall@10_vs_exact",
                         f"{a.n:,} synthetic 384-d vectors: memory vs recall@10",
                         {"n": a.n, "d": 384, "queries": a.queries, "train_size": a.train_size, "cpus": os.cpu_count(),
                          **provenance("compression_sweep.py")})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", choices=("scifact", "synthetic"))
    ap.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--epochs-distill", type=int, default=8)
    ap.add_argument("--epochs-jpq", type=int, default=3)
    ap.add_argument("--export-dir", default=".densepipe/learned_pq")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--train-size", type=int, default=65_536)
    ap.add_argument("--only", default=None, help="scifact: recompute only these variants ('learned' for the "
                    "learned-PQ rows) and keep the other rows of the last run")
    a = ap.parse_args()
    out = scifact(a) if a.which == "scifact" else synthetic_sweep(a)
    print(json.dumps({k: v for k, v in out.items() if k != "learned"}, indent=1)[:6000])


if __name__ == "__main__":
    main()
