"""Fine-tuning all-MiniLM-L6-v2 on SciFact's train qrels (809 queries) with mined hard negatives, evaluated on
the test split (300 queries), plus the ablation: in-batch negatives only / + BM25 / + dense negatives, each with
and without false-negative filtering, and debiased vs plain InfoNCE.

    python benchmarks/finetune.py                       # every variant
    python benchmarks/finetune.py --only both-bm25+dense   # some, keeping the others from the last run

Mined tables and trained models are cached under $DRP_WORK_DIR/scifact/finetune (a rerun of an unchanged
variant is free). Writes benchmarks/results/finetune_scifact.json and prints a Markdown table. Reference
figures (nDCG@10): all-MiniLM-L6-v2 0.6451 (MTEB), bge-small-en-v1.5 0.7127 (its model card / MTEB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = "sentence-transformers/all-MiniLM-L6-v2"
def _published() -> dict:
    from pipelines.published import published

    return {m: published("scifact", m) for m in (BASE, "BAAI/bge-small-en-v1.5")}

# name -> (mined tables, TrainConfig overrides). Tables: "<retriever>-<filtered|unfiltered|margin0.NN>"
# (filtered: the relative margin 0.95, the default job's).
QUERY = {"tower": "query", "epochs": 5, "lr": 5e-5, "negatives": 8}  # picked on held-out nDCG@10 (select-*)
BOTH = ("bm25-filtered", "dense-filtered")
VARIANTS = {
    # hyper-parameter selection on the held-out 10% of the *training* queries (never on test)
    "select-lr2e-5-3ep-4neg": (BOTH, {"tower": "query", "epochs": 3, "lr": 2e-5, "negatives": 4}),
    "select-lr5e-5-3ep-4neg": (BOTH, {"tower": "query", "epochs": 3, "lr": 5e-5, "negatives": 4}),
    "select-lr1e-4-3ep-4neg": (BOTH, {"tower": "query", "epochs": 3, "lr": 1e-4, "negatives": 4}),
    "select-lr1e-4-3ep-8neg-b64": (BOTH, {"tower": "query", "epochs": 3, "lr": 1e-4, "negatives": 8,
                                          "batch_size": 64}),
    "both-bm25+dense": (BOTH, {"tower": "both", "epochs": 2, "lr": 3e-5, "negatives": 1}),
    "query-inbatch": ((), {**QUERY, "negatives": 0}),
    "query-bm25": (("bm25-filtered",), QUERY),
    "query-bm25-unfiltered": (("bm25-unfiltered",), QUERY),
    "query-dense": (("dense-filtered",), QUERY),
    "query-dense-unfiltered": (("dense-unfiltered",), QUERY),
    "query-bm25+dense": (BOTH, QUERY),
    "query-bm25+dense-debiased": (BOTH, {**QUERY, "loss": "debiased"}),
    "query-bm25+dense-margin0.98": (("bm25-margin0.98", "dense-margin0.98"), QUERY),
    "query-bm25+dense-unfiltered": (("bm25-unfiltered", "dense-unfiltered"), QUERY),
}


def table_margin(kind: str) -> float | None:
    if kind.startswith("margin"):
        return float(kind[len("margin"):])
    return {"filtered": 0.95, "unfiltered": None}[kind]


# the trainer's default recipe before 2026-11-30 (InfoNCE at a fixed temperature of 0.05, random batches): every
# figure of this benchmark, losses.py, label_free.py and pretrain.py was measured with it, so they pin it (the
# default since then learns the temperature and forms cluster batches: README, "The contrastive toolbox")
PREVIOUS_DEFAULT = {"learn_temperature": False, "temperature_lr": None, "batching": "random"}


def mine_once(job) -> dict:
    """Mine ``job`` (a MineJob) into its output table once, its report beside it (the table's name with .json);
    both are reused when they exist. The report."""
    from pipelines.mine import mine_pairs

    path = Path(job.output)
    report_path = path.with_suffix(".json")
    if not (path.is_file() and report_path.is_file()):
        report_path.write_text(json.dumps(mine_pairs(job), indent=2))
    return json.loads(report_path.read_text())


def mine_both(data: str, folder: Path, model: str | None = None) -> list[str]:
    """The BM25 and dense tables of ``data``'s train split (default mining; the dense one with ``model``, the
    default encoder unless given) in ``folder``, mined once; their paths."""
    from pipelines.mine import MineJob
    from retriever.encoders import EncoderConfig
    from retriever.mining import MiningConfig

    folder.mkdir(parents=True, exist_ok=True)
    encoder = EncoderConfig(model=model) if model else EncoderConfig()
    paths = [str(folder / f"{retriever}.parquet") for retriever in ("bm25", "dense")]
    for path, retriever in zip(paths, ("bm25", "dense")):
        mine_once(MineJob(data, path, retriever, "train", MiningConfig(), encoder))
    return paths


def mined_tables(folder: Path, names: set[str], dataset: str = "scifact") -> dict:
    from pipelines.mine import MineJob
    from retriever.mining import MiningConfig

    reports = {}
    for name in sorted(names):
        retriever, kind = name.split("-")
        cfg = MiningConfig(margin=table_margin(kind))
        reports[name] = mine_once(MineJob(dataset, str(folder / f"{name}.parquet"), retriever, "train", cfg))
    return reports


def evaluate_model(model: str, split: str = "test", dataset: str = "scifact") -> tuple[dict, dict, float]:
    """nDCG@10, MRR@10 and Recall@100 of a dense model over the whole corpus (cached embeddings per model), the
    per-query scores for paired tests, and the seconds it took."""
    from pipelines.baselines import dense_searcher
    from pipelines.workspace import prepare
    from retriever.encoders import EncoderConfig
    from retriever.eval import evaluate

    t0 = time.perf_counter()
    prep = prepare(dataset, split)
    searcher = dense_searcher(prep, EncoderConfig(model=model))
    res = evaluate(prep.dataset.qrels, searcher.search(prep.dataset.queries, 100), ["ndcg@10", "mrr@10", "recall@100"])
    return {k: round(v, 5) for k, v in res.aggregate.items()}, res.per_query, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=None, help="comma-separated variant names")
    ap.add_argument("--engine", choices=("local", "ray"), default="local")
    a = ap.parse_args()
    from pipelines.train import TrainJob, run_training
    from pipelines.workspace import work_root
    from retriever.eval import paired_test
    from retriever.training import TrainConfig

    names = a.only.split(",") if a.only else list(VARIANTS)
    unknown = set(names) - set(VARIANTS)
    if unknown:
        sys.exit(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    folder = work_root() / "scifact" / "finetune"
    t0 = time.perf_counter()
    reports = mined_tables(folder / "mined", {t for n in names for t in VARIANTS[n][0]})
    mine_s = time.perf_counter() - t0
    out_path = HERE / "results" / "finetune_scifact.json"
    old = json.loads(out_path.read_text()) if a.only and out_path.is_file() else {"variants": {}}
    base_metrics, base_pq, base_s = evaluate_model(BASE)
    results = dict(old["variants"])
    per_query = {}
    for name in names:
        tables, overrides = VARIANTS[name]
        cfg = replace(TrainConfig(), **{**PREVIOUS_DEFAULT, **overrides})
        job = TrainJob("scifact", str(folder / name), BASE, "train",
                       tuple(str(folder / "mined" / f"{t}.parquet") for t in tables), config=cfg, engine=a.engine)
        info = run_training(job)
        metrics, pq, eval_s = evaluate_model(info["model"])
        per_query[name] = pq
        test = paired_test(pq, base_pq, "ndcg@10")
        results[name] = {"tables": list(tables), "config": cfg.to_dict(), "metrics": metrics,
                         "vs_base": {"delta_ndcg@10": round(metrics["ndcg@10"] - base_metrics["ndcg@10"], 5),
                                     "t_test_p": round(test.t_pvalue, 5),
                                     "randomization_p": round(test.randomization_pvalue, 5)},
                         "train_seconds": info["train_seconds"], "steps": info["steps"],
                         "eval_seconds": round(eval_s, 1), "held_out_evals": info["held_out_evals"],
                         "mining": {t: reports[t]["report"] for t in tables},
                         "mining_seconds": {t: reports[t]["seconds"] for t in tables},
                         "skipped_training": info["skipped"]}
        print(f"{name}: {metrics} (train {info['train_seconds']} s)", flush=True)
    result = {"command": "python benchmarks/" + Path(__file__).name + (f" --only {a.only}" if a.only else ""),
              "dataset": "scifact", "train_split": "train (809 queries)", "test_split": "test (300 queries)",
              "base": {"model": BASE, "metrics": base_metrics, "eval_seconds": round(base_s, 1)},
              "published_ndcg@10": _published(), "variants": results, "engine": a.engine,
              "mining_seconds_this_run": round(mine_s, 1),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HERE))
    from provenance import provenance

    result = {**result, **provenance("finetune.py"), "command": result["command"]}
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


def _p(p: float) -> str:
    return "p < 1e-4" if p < 1e-4 else f"p = {p:.2g}"


def table(result: dict) -> str:
    lines = ["| variant | negatives | loss | held-out nDCG@10 | test nDCG@10 | Δ vs base (p) | MRR@10 | Recall@100 "
             "| train (s) |", "|---|---|---|---|---|---|---|---|---|",
             f"| base all-MiniLM-L6-v2 | – | – | – | {result['base']['metrics']['ndcg@10']:.4f} | – | "
             f"{result['base']['metrics']['mrr@10']:.4f} | {result['base']['metrics']['recall@100']:.4f} | – |"]
    for name, r in result["variants"].items():
        m, v = r["metrics"], r["vs_base"]
        negs = " + ".join(r["tables"]) or "in-batch only"
        held = r["held_out_evals"][-1].get("ndcg_at_10") if r["held_out_evals"] else None
        lines.append(f"| {name} | {negs} | {r['config']['loss']} | {held if held is not None else '–'} | "
                     f"{m['ndcg@10']:.4f} | {v['delta_ndcg@10']:+.4f} ({_p(v['t_test_p'])}) | {m['mrr@10']:.4f} | "
                     f"{m['recall@100']:.4f} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
