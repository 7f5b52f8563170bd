"""Self-supervised pretraining on SciFact's corpus text only (no queries, no qrels), from all-MiniLM-L6-v2:
zero-shot test nDCG@10 before and after each task, then the fine-tuning recipe of benchmarks/finetune.py
(query tower, BM25 + dense negatives mined with the base model) started from each pretrained checkpoint vs
from the base model.

    python benchmarks/pretrain.py [--tasks span,dropout,ict] [--max-texts 2000]

Pretraining samples ``--max-texts`` corpus documents (seeded) for one epoch at 128 tokens (2 CPU cores);
evaluation re-encodes the whole corpus with each pretrained model. Models are cached under
$DRP_WORK_DIR/scifact/pretrain. Writes benchmarks/results/pretrain_scifact.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="span,dropout,ict")
    ap.add_argument("--max-texts", type=int, default=2000)
    ap.add_argument("--engine", choices=("local", "ray"), default="local")
    a = ap.parse_args()
    from finetune import BASE, BOTH, QUERY, evaluate_model, mined_tables

    from pipelines.pretrain import PretrainJob, run_pretraining
    from pipelines.train import TrainJob, run_training
    from pipelines.workspace import work_root
    from retriever.pretraining import PretrainConfig
    from retriever.training import TrainConfig

    root = work_root() / "scifact"
    mined_tables(root / "finetune" / "mined", set(BOTH))
    pairs = tuple(str(root / "finetune" / "mined" / f"{t}.parquet") for t in BOTH)
    out_path = HERE / "results" / "pretrain_scifact.json"
    results = json.loads(out_path.read_text())["rows"] if out_path.is_file() else {}

    def finetune(model: str, name: str) -> dict:
        job = TrainJob("scifact", str(root / "pretrain" / f"finetune-{name}"), model, "train", pairs,
                       config=replace(TrainConfig(), **QUERY), engine=a.engine)
        info = run_training(job)
        metrics, _, _ = evaluate_model(info["model"])
        return {"metrics": metrics, "train_seconds": info["train_seconds"]}

    base_zero, _, _ = evaluate_model(BASE)
    results["base"] = {"zero_shot": base_zero, "fine_tuned": finetune(BASE, "base")}
    print("base", results["base"], flush=True)
    for task in a.tasks.split(","):
        job = PretrainJob("scifact", str(root / "pretrain" / task), BASE, PretrainConfig(task=task),
                          max_texts=a.max_texts, engine=a.engine)
        info = run_pretraining(job)
        zero, _, _ = evaluate_model(info["model"])
        results[task] = {"pretrain_seconds": info["train_seconds"], "steps": info["steps"],
                         "final_loss": info["final_loss"], "zero_shot": zero,
                         "fine_tuned": finetune(info["model"], task)}
        print(task, results[task], flush=True)
    result = {"command": f"python benchmarks/pretrain.py --tasks {a.tasks} --max-texts {a.max_texts}",
              "dataset": "scifact (corpus text only for pretraining)", "base": BASE, "rows": results,
              "fine_tuning_recipe": QUERY, "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    out_path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
