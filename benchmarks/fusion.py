"""BM25 + dense fusion: Pyserini BM25 and exact all-MiniLM-L6-v2 search fused by reciprocal ranks and by a convex
combination of min-max / z-score normalised scores, with fixed weights (1:1 or 1:2 for BM25:dense), on each
dataset's train split (where the default is picked: held-out training queries, no test judgment) and test split
(where it is confirmed). Paired randomisation tests of each fusion against both of its inputs on nDCG@10.
Everything through the `densepipe` CLI, as a user would run it.

    python benchmarks/fusion.py --datasets scifact,cisi --splits train,test
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from baselines import cli  # noqa: E402  (the CLI as a user runs it, timed)

METHODS = {"rrf (k=60)": ["--method", "rrf"], "rrf (k=60), weights 1:2": ["--method", "rrf", "--weights", "1", "2"],
           "convex, min-max": ["--method", "convex", "--norm", "minmax"],
           "convex, min-max, weights 1:2": ["--method", "convex", "--norm", "minmax", "--weights", "1", "2"],
           "convex, z-score": ["--method", "convex", "--norm", "zscore"],
           "convex, z-score, weights 1:2": ["--method", "convex", "--norm", "zscore", "--weights", "1", "2"]}
METRICS = "ndcg@10,mrr@10,recall@100,recall@1000"


def one(dataset: str, split: str, model: str, runs: Path) -> dict:
    common = ["--dataset", dataset, "--split", split, "--remove-query"]
    bm25 = cli("bm25", *common, "--output", str(runs / f"{dataset}.{split}.bm25.trec"))
    dense = cli("dense", *common, "--model", model, "--engine", "local",
                "--output", str(runs / f"{dataset}.{split}.dense.trec"))
    from retriever.data.resolve import resolve_dataset

    qrels = str(resolve_dataset(dataset, download=False) / "qrels" / f"{split}.tsv")
    rows = [{"method": "BM25 (Pyserini)", **{m: bm25["metrics"][m] for m in METRICS.split(",")}},
            {"method": f"dense ({model.split('/')[-1]})", **{m: dense["metrics"][m] for m in METRICS.split(",")}}]
    for name, flags in METHODS.items():
        res = cli("fuse", "--runs", bm25["run"], dense["run"], *flags, "--qrels", qrels, "--metrics", METRICS,
                  "--output", str(runs / f"{dataset}.{split}.fused.trec"))
        tests = {f"p_vs_{'bm25' if i == 0 else 'dense'}": round(r["fused_vs_this"]["randomization_pvalue"], 5)
                 for i, r in enumerate(res["inputs"])}
        rows.append({"method": f"BM25 + dense, {name}", **{m: res["fused"][m] for m in METRICS.split(",")},
                     **tests, "fuse_wall_s": res["wall_s"]})
    return {"dataset": dataset, "split": split, "queries": bm25["metrics"].get("num_queries"), "rows": rows,
            "bm25_wall_s": bm25["wall_s"], "dense_wall_s": dense["wall_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="scifact,cisi")
    ap.add_argument("--splits", default="train,test")
    ap.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--runs-dir", default="runs/fusion")
    ap.add_argument("--output", default=str(HERE / "results" / "fusion.json"))
    a = ap.parse_args()
    runs = Path(a.runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "fusion", "weights": "fixed per row; the default is picked on the train splits",
              "results": [one(d, split, a.model, runs) for d in a.datasets.split(",") for split in a.splits.split(",")]}
    from provenance import provenance

    result.update(provenance("fusion.py"))
    Path(a.output).write_text(json.dumps(result, indent=2) + "\n")
    for r in result["results"]:
        print(f"\n{r['dataset']} {r['split']}")
        for row in r["rows"]:
            print(f"  {row['method']:<32} nDCG@10 {row['ndcg@10']:.4f}  R@100 {row['recall@100']:.4f}  "
                  f"{ {k: v for k, v in row.items() if k.startswith('p_vs')} }")


if __name__ == "__main__":
    main()
