"""Self-supervised pretraining on a collection's corpus text only (no queries, no qrels), from all-MiniLM-L6-v2:
zero-shot nDCG@10 before and after each task, then the fine-tuning recipe of benchmarks/finetune.py (query
tower, BM25 + dense negatives mined with the base model) started from each pretrained checkpoint vs from the
base model.

    python benchmarks/pretrain.py [--dataset scifact|cisi] [--rows span,dropout,ict,...] [--max-texts 1000]
                                  [--seeds N]   # N fine-tuning seeds per row; 0: zero-shot only

Zero-shot quality is measured on the test split (reported) and on the train split's queries ("dev": the only
figure used to choose between pretraining settings — the queries are never seen by pretraining). Each row
pretrains for one epoch on ``--max-texts`` seeded corpus documents at 128 tokens (2 CPU cores); evaluation
re-encodes the whole corpus with each pretrained model. Models are cached under $DRP_WORK_DIR/<dataset>/pretrain;
rows not named keep their last figures. Writes benchmarks/results/pretrain_<dataset>.json.
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
sys.path.insert(0, str(HERE))

# row -> PretrainConfig overrides; every row shares the rest of the config (batch 32, temperature 0.05, 1 epoch)
ROWS = {
    "span": {"task": "span", "lr": 1e-5},
    "dropout": {"task": "dropout", "lr": 1e-5},
    "ict": {"task": "ict", "lr": 1e-5},
    "span+mlm": {"task": "span", "lr": 1e-5, "mlm_weight": 1.0},
    "span-lr2e-5": {"task": "span", "lr": 2e-5},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--max-texts", type=int, default=1000)
    ap.add_argument("--engine", choices=("local", "ray"), default="local")
    ap.add_argument("--seeds", type=int, default=1,
                    help="fine-tuning seeds per row (sampling, order, dropout); 0: zero-shot only")
    a = ap.parse_args()
    from finetune import BASE, BOTH, PREVIOUS_DEFAULT, QUERY, evaluate_model, mined_tables

    from pipelines.pretrain import PretrainJob, run_pretraining
    from pipelines.train import TrainJob, run_training
    from pipelines.workspace import work_root
    from retriever.eval import paired_test
    from retriever.pretraining import PretrainConfig
    from retriever.training import TrainConfig

    names = a.rows.split(",")
    if set(names) - set(ROWS):
        sys.exit(f"unknown rows {sorted(set(names) - set(ROWS))}; choose from {list(ROWS)}")
    root = work_root() / a.dataset
    if a.seeds:
        mined_tables(root / "finetune" / "mined", set(BOTH), a.dataset)
    pairs = tuple(str(root / "finetune" / "mined" / f"{t}.parquet") for t in BOTH)
    out_path = HERE / "results" / f"pretrain_{a.dataset}.json"
    old = json.loads(out_path.read_text()) if out_path.is_file() else {}
    results = {k: v for k, v in old.get("rows", {}).items() if k in ROWS or k == "base"}

    def zero_shot(model: str) -> tuple[dict, dict]:
        test, per_query, _ = evaluate_model(model, "test", a.dataset)
        dev, _, _ = evaluate_model(model, "train", a.dataset)
        return {"test": test, "dev": dev}, per_query

    def finetune(model: str, name: str) -> tuple[dict | None, dict]:
        """Seed 0's metrics and per-query scores, plus every seed's nDCG@10 and their mean (None with --seeds 0)."""
        if not a.seeds:
            return None, {}
        runs = []
        for seed in range(a.seeds):
            folder = root / "pretrain" / (f"finetune-{name}" + (f"-seed{seed}" if seed else ""))
            job = TrainJob(a.dataset, str(folder), model, "train", pairs,
                           config=replace(TrainConfig(), **{**PREVIOUS_DEFAULT, **QUERY}, seed=seed), engine=a.engine)
            info = run_training(job)
            metrics, per_query, _ = evaluate_model(info["model"], "test", a.dataset)
            runs.append((metrics, per_query, info["train_seconds"]))
        seeds = [r[0]["ndcg@10"] for r in runs]
        return {"metrics": runs[0][0], "train_seconds": runs[0][2], "ndcg@10_by_seed": seeds,
                "ndcg@10_mean": round(sum(seeds) / len(seeds), 5)}, runs[0][1]

    base_zero, base_pq = zero_shot(BASE)
    base_ft, base_ft_pq = finetune(BASE, "base")
    results["base"] = {"zero_shot": base_zero, "fine_tuned": base_ft}
    print("base", results["base"], flush=True)
    for name in names:
        t0 = time.perf_counter()
        cfg = PretrainConfig(**ROWS[name])
        job = PretrainJob(a.dataset, str(root / "pretrain" / name), BASE, cfg, max_texts=a.max_texts,
                          engine=a.engine)
        info = run_pretraining(job)
        zero, zero_pq = zero_shot(info["model"])
        ft, ft_pq = finetune(info["model"], name)
        vs_zero = paired_test(zero_pq, base_pq, "ndcg@10")
        results[name] = {
            "config": cfg.to_dict(), "texts": info["texts"], "steps": info["steps"],
            "pretrain_seconds": info["train_seconds"], "final_loss": info["final_loss"], "zero_shot": zero,
            "zero_shot_vs_base": {"delta_ndcg@10": round(zero["test"]["ndcg@10"] - base_zero["test"]["ndcg@10"], 5),
                                  "t_test_p": round(vs_zero.t_pvalue, 5)},
            "fine_tuned": ft,
            "fine_tuned_vs_base_fine_tuned": None if ft is None else {
                "delta_ndcg@10": round(ft["metrics"]["ndcg@10"] - base_ft["metrics"]["ndcg@10"], 5),
                "t_test_p": round(paired_test(ft_pq, base_ft_pq, "ndcg@10").t_pvalue, 5),
                "delta_mean_over_seeds": round(ft["ndcg@10_mean"] - base_ft["ndcg@10_mean"], 5)},
            "row_seconds": round(time.perf_counter() - t0, 1)}
        print(name, json.dumps(results[name]), flush=True)
        write(out_path, a, results)  # after every row: a long run keeps what it finished
    print(table(json.loads(out_path.read_text())))


def write(out_path: Path, a, results: dict) -> None:
    from finetune import BASE, QUERY

    result = {"command": f"python benchmarks/pretrain.py --dataset {a.dataset} --rows {a.rows} --max-texts "
                         f"{a.max_texts} --seeds {a.seeds}",
              "dataset": f"{a.dataset} (corpus text only for pretraining; dev = the train split's queries, "
                         "test = test)",
              "base": BASE, "rows": results, "row_overrides": ROWS, "fine_tuning_recipe": QUERY,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    sys.path.insert(0, str(HERE))
    from provenance import provenance

    result = {**result, **provenance("pretrain.py"), "command": result["command"]}
    out_path.write_text(json.dumps(result, indent=2) + "\n")


def table(result: dict) -> str:
    base = result["rows"]["base"]
    def seeds(ft: dict | None) -> str:
        if ft is None:
            return "not fine-tuned"
        if len(ft.get("ndcg@10_by_seed", [])) < 2:
            return "one seed"
        return " / ".join(f"{x:.4f}" for x in ft["ndcg@10_by_seed"]) + f" (mean {ft['ndcg@10_mean']:.4f})"

    def tuned(ft: dict | None, vs: dict | None = None) -> str:
        if ft is None:
            return "–"
        change = f" ({vs['delta_ndcg@10']:+.4f}, p = {vs['t_test_p']:.2g})" if vs else ""
        return f"{ft['metrics']['ndcg@10']:.4f}{change}"

    lines = ["| pretraining | steps | dev zero-shot | test zero-shot (Δ, p) | fine-tuned test, seed 0 (Δ, p) "
             "| fine-tuned test by seed |", "|---|---|---|---|---|---|",
             f"| none (all-MiniLM-L6-v2) | – | {base['zero_shot']['dev']['ndcg@10']:.4f} | "
             f"{base['zero_shot']['test']['ndcg@10']:.4f} | {tuned(base['fine_tuned'])} | "
             f"{seeds(base['fine_tuned'])} |"]
    for name, row in result["rows"].items():
        if name == "base":
            continue
        z, f = row["zero_shot_vs_base"], row["fine_tuned_vs_base_fine_tuned"]
        lines.append(f"| {name} | {row['steps']} | {row['zero_shot']['dev']['ndcg@10']:.4f} | "
                     f"{row['zero_shot']['test']['ndcg@10']:.4f} ({z['delta_ndcg@10']:+.4f}, p = {z['t_test_p']:.2g}) "
                     f"| {tuned(row['fine_tuned'], f)} | {seeds(row['fine_tuned'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
