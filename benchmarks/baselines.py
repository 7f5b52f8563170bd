"""Baselines on a BEIR dataset through the `densepipe` CLI: BM25 (Pyserini, flat) and exact dense search,
each beside its published figure. Writes benchmarks/results/baselines_<dataset>.json and prints a table.

    python benchmarks/baselines.py --dataset scifact

Published figures come from ``pipelines/published.py`` (the module the reports use too). Both searches drop a hit whose id equals the query id, as
Anserini's -removeQuery and BEIR's ignore_identical_ids do.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cli(*args: str) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], check=True, stdout=subprocess.PIPE,
                         text=True)
    result = json.loads(out.stdout)
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    return result


def table(rows: list[dict]) -> str:
    lines = ["| method | nDCG@10 | published | Δ | MRR@10 | Recall@100 | wall (s) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        pub = r.get("published")
        delta = f"{r['ndcg@10'] - pub:+.4f}" if pub is not None else ""
        lines.append(f"| {r['method']} | {r['ndcg@10']:.4f} | {pub if pub is not None else ''} | {delta} | "
                     f"{r['mrr@10']:.4f} | {r['recall@100']:.4f} | {r['wall_s']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--output", default=None)
    a = ap.parse_args()
    runs = Path(a.runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    from pipelines.published import published as reference

    sys.path.insert(0, str(HERE))
    from provenance import provenance

    common = ["--dataset", a.dataset, "--split", a.split, "--remove-query"]
    bm25 = cli("bm25", *common, "--output", str(runs / f"{a.dataset}.bm25.trec"))
    dense = cli("dense", *common, "--model", a.model, "--engine", "ray",
                "--output", str(runs / f"{a.dataset}.dense.trec"))
    rows = []
    for name, res in (("bm25-flat", bm25), (a.model, dense)):
        rows.append({"method": name, **{k: res["metrics"][k] for k in ("ndcg@10", "mrr@10", "recall@100",
                                                                        "recall@1000")},
                     "published": reference(a.dataset, "bm25" if name == "bm25-flat" else name), "wall_s": res["wall_s"], "seconds": res["seconds"],
                     "run": res["run"]})
    result = {"benchmark": "baselines", "dataset": a.dataset, "split": a.split, "rows": rows,
              **provenance("baselines.py")}
    out = Path(a.output or HERE / "results" / f"baselines_{a.dataset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
