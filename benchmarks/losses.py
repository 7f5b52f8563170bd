"""The contrastive toolbox side by side: the previous default fine-tuning recipe (row ``default``: InfoNCE at a fixed
temperature of 0.05, random batches, query tower, BM25 + dense mined negatives, 5 epochs, lr 5e-5; every row
starts from it, PREVIOUS_DEFAULT) against each addition alone — supervised contrastive (every judged positive),
decoupled InfoNCE, a learned temperature, a momentum queue of negatives, MoCHi's mixed hard negatives,
cluster-formed batches — and a combination, with several seeds each, and sentence-transformers' own
MultipleNegativesRankingLoss recipe (its trainer, 1 epoch, batch 32, in-batch negatives, the same training
queries) as the peer; and the default recipe started from span or dropout pretraining (``span-pretrained``,
``dropout-pretrained``: the checkpoints benchmarks/pretrain.py left). all-MiniLM-L6-v2 on SciFact and on CISI
(train qrels -> test qrels). The trainer's default since 2026-11-30 is the row ``learned-temperature-lr1e-2+cluster``.

Selection reads only the held-out 10 % of the *training* queries (``held_out``); the test split is reported, never
used to choose. For each row and seed: test nDCG@10 / MRR@10 / Recall@100, paired t-test against the default recipe
with the same seed, held-out nDCG@10, train seconds, alignment and uniformity on the held-out queries before and
after training. The graded loss is not a row: both collections' training qrels have a single grade (1), where it
equals SupCon (a unit test shows it).

    python benchmarks/losses.py --datasets cisi,scifact --seeds 0,1,2 [--rows default,supcon,...]
    python benchmarks/losses.py --table      # the README's tables from the last results

Mined tables and trained models are cached under $DRP_WORK_DIR/<dataset>/losses, so a rerun of finished rows is
free; results merge into benchmarks/results/losses.json row by row as they finish.
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
OUTPUT = HERE / "results" / "losses.json"
ROWS = {
    "default": {},
    "supcon": {"loss": "supcon"},
    "dcl": {"loss": "dcl"},
    "learned-temperature": {"learn_temperature": True},
    "learned-temperature-lr1e-2": {"learn_temperature": True, "temperature_lr": 1e-2},
    "queue-4096": {"queue_size": 4096},
    "mochi-16+4": {"mix_negatives": 16, "mix_query": 4},
    "cluster-batches": {"batching": "cluster"},
}
PEER = "sentence-transformers-mnrl"
# the default recipe started from another checkpoint (row -> the folder under $DRP_WORK_DIR/<dataset>/ that
# benchmarks/pretrain.py pretrained); its test run encodes the corpus with that model
STARTS = {"span-pretrained": "pretrain/span/model", "dropout-pretrained": "pretrain/dropout/model"}


def start_model(dataset: str, name: str) -> str:
    from pipelines.workspace import work_root

    if name not in STARTS:
        return BASE
    path = work_root() / dataset / STARTS[name]
    if not path.is_dir():
        sys.exit(f"row {name} starts from {path}, which does not exist: run `python benchmarks/pretrain.py "
                 f"--dataset {dataset} --rows {name.split('-')[0]}` first")
    return str(path)


def train_peer(dataset: str, out: Path, seed: int) -> tuple[str, float]:
    """sentence-transformers' trainer with MultipleNegativesRankingLoss on the densepipe rows' training queries
    (the same held-out split), its defaults otherwise (lr 5e-5, no warm-up), 1 epoch, batch 32, no duplicates."""
    model_dir = out / "model"
    record = out / "peer.json"
    if record.is_file():
        return str(model_dir), json.loads(record.read_text())["train_seconds"]
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers

    from pipelines.workspace import prepare
    from retriever.encoders import resolve_model
    from retriever.training import examples_from_qrels, split_held_out

    ds = prepare(dataset, "train").dataset
    train, _ = split_held_out(examples_from_qrels(ds.qrels, ds.queries, ds.corpus), 0.1, seed)
    pairs = Dataset.from_dict({"anchor": [ds.queries[e.query_id] for e in train],
                               "positive": [ds.corpus[e.positive_id].joined(" ") for e in train]})
    model = SentenceTransformer(resolve_model(BASE), device="cpu")
    args = SentenceTransformerTrainingArguments(output_dir=str(out / "trainer"), num_train_epochs=1,
                                               per_device_train_batch_size=32, seed=seed, report_to=[],
                                               batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no",
                                               logging_steps=10, use_cpu=True)
    t0 = time.perf_counter()
    SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs,
                               loss=MultipleNegativesRankingLoss(model)).train()
    seconds = round(time.perf_counter() - t0, 1)
    model.save(str(model_dir))
    record.write_text(json.dumps({"train_seconds": seconds, "examples": len(train)}))
    return str(model_dir), seconds


def final_temperature(model: str) -> float | None:
    """The learned temperature at the last step (loss.json beside the model), None when it was fixed."""
    log = Path(model).parent / "loss.json"
    losses = json.loads(log.read_text())["losses"] if log.is_file() else []
    return losses[-1].get("temperature") if losses else None


def geometry_of(evals: list[dict]) -> dict:
    keys = ("alignment", "uniformity_docs", "uniformity_queries")
    pick = lambda e: {k: e[k] for k in keys if k in e}  # noqa: E731
    return {"before": pick(evals[0]), "after": pick(evals[-1])} if evals else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="cisi,scifact")
    ap.add_argument("--rows", default=",".join([*ROWS, *STARTS, PEER]))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--combo", default=None, help="name=json overrides of an extra row, e.g. "
                    "'supcon+queue={\"loss\": \"supcon\", \"queue_size\": 4096}'")
    ap.add_argument("--table", action="store_true", help="print the tables of the last results and stop")
    a = ap.parse_args()
    if a.table:
        print(table(json.loads(OUTPUT.read_text())))
        return
    from pipelines.train import TrainJob, run_training
    from pipelines.workspace import work_root
    from retriever.eval import paired_test
    from retriever.training import TrainConfig

    rows = {**ROWS, **{name: {} for name in STARTS}}
    if a.combo:
        name, spec = a.combo.split("=", 1)
        rows[name] = json.loads(spec)
    names = a.rows.split(",") + ([a.combo.split("=", 1)[0]] if a.combo else [])
    unknown = set(names) - set(rows) - {PEER}
    if unknown:
        sys.exit(f"unknown rows {sorted(unknown)}; choose from {[*rows, PEER]}")
    seeds = [int(s) for s in a.seeds.split(",")]
    result = json.loads(OUTPUT.read_text()) if OUTPUT.is_file() else {"datasets": {}}
    sys.path.insert(0, str(HERE))
    from finetune import PREVIOUS_DEFAULT, evaluate_model, mine_both
    from provenance import provenance

    # every invocation that added figures, in order; each seed's figures name theirs ("run": its index)
    started = provenance("losses.py")
    result.setdefault("invocations", []).append({k: started[k] for k in ("command", "commit", "dirty")} |
                                                {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    run_index = len(result["invocations"]) - 1
    for dataset in a.datasets.split(","):
        folder = work_root() / dataset / "losses"
        (folder / "mined").mkdir(parents=True, exist_ok=True)
        pairs = mine_both(dataset, folder / "mined")
        entry = result["datasets"].setdefault(dataset, {"rows": {}})
        base_metrics, base_pq, _ = evaluate_model(BASE, "test", dataset)
        entry["base"] = {"model": BASE, "metrics": base_metrics}
        entry["mining"] = {Path(p).stem: json.loads((folder / "mined" / f"{Path(p).stem}.json").read_text())["report"]
                           for p in pairs}
        default_pq: dict[int, dict] = {}
        for name in (["default"] if "default" not in names else []) + names:  # the default first: the reference
            row = entry["rows"].setdefault(name, {"seeds": {}})
            for seed in seeds:
                if name == PEER:
                    model, seconds = train_peer(dataset, folder / f"{PEER}-seed{seed}", seed)
                    info = {"train_seconds": seconds, "held_out_evals": [], "steps": None, "config": "sentence-"
                            "transformers trainer, MultipleNegativesRankingLoss, 1 epoch, batch 32, lr 5e-5"}
                else:
                    cfg = replace(TrainConfig(), seed=seed, checkpoint_every=1000, **{**PREVIOUS_DEFAULT, **rows[name]})
                    job = TrainJob(dataset, str(folder / f"{name}-seed{seed}"), start_model(dataset, name), "train",
                                   tuple(pairs), config=cfg, engine="local")
                    info = run_training(job)
                    model, info["config"] = info["model"], {k: v for k, v in cfg.to_dict().items()
                                                            if k in rows[name] or k == "seed"}
                    if name in STARTS:
                        info["config"]["start"] = STARTS[name]
                metrics, pq, _ = evaluate_model(model, "test", dataset)
                if name == "default":
                    default_pq[seed] = pq
                vs_default = paired_test(pq, default_pq[seed], "ndcg@10") if seed in default_pq else None
                vs_base = paired_test(pq, base_pq, "ndcg@10")
                evals = info["held_out_evals"]
                row["seeds"][str(seed)] = {
                    "metrics": metrics, "held_out_ndcg@10": evals[-1]["ndcg_at_10"] if evals else None,
                    "p_vs_default": None if name == "default" else round(vs_default.t_pvalue, 5),
                    "p_vs_base": round(vs_base.t_pvalue, 5), "train_seconds": info["train_seconds"],
                    "steps": info["steps"], "geometry_held_out": geometry_of(evals), "config": info["config"],
                    "final_temperature": final_temperature(model), "run": run_index}
                done = list(row["seeds"].values())  # every seed of the row, this invocation's or an earlier one's
                row["mean_ndcg@10"] = round(sum(d["metrics"]["ndcg@10"] for d in done) / len(done), 5)
                held = [d["held_out_ndcg@10"] for d in done if d["held_out_ndcg@10"] is not None]
                row["mean_held_out_ndcg@10"] = round(sum(held) / len(held), 5) if held else None
                print(f"{dataset} {name} seed {seed}: {metrics} held-out {row['seeds'][str(seed)]['held_out_ndcg@10']}"
                      f" ({info['train_seconds']} s)", flush=True)
                result.update({"benchmark": "losses", "model": BASE,
                               "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}})
                result.update(provenance("losses.py"))
                result["command"] = "python benchmarks/losses.py " + " ".join(sys.argv[1:])
                OUTPUT.parent.mkdir(parents=True, exist_ok=True)
                tmp = OUTPUT.with_suffix(".tmp")
                tmp.write_text(json.dumps(result, indent=2) + "\n")
                tmp.replace(OUTPUT)
    print(table(result))


LABELS = {"default": "previous default (InfoNCE, τ 0.05 fixed, random batches)",
          "learned-temperature-lr1e-2+cluster": "**learned temperature at lr 1e-2 + cluster batches: the default now**"}


def table(result: dict) -> str:
    """Markdown per collection: every row's test nDCG@10 by seed, its mean and the change of the mean against the
    default's (seeds the row and the default share), p per seed, held-out mean, geometry after training (mean over
    seeds; before: the base model's) and train seconds."""
    lines = []
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    for dataset, entry in result["datasets"].items():
        default = entry["rows"]["default"]["seeds"]
        before = [s["geometry_held_out"]["before"] for s in default.values()]
        lines += [f"\n{dataset}: base {entry['base']['metrics']['ndcg@10']:.4f}; the base model on the same held-out "
                  f"queries: alignment {mean([g['alignment'] for g in before]):.3f}, uniformity (queries) "
                  f"{mean([g['uniformity_queries'] for g in before]):.3f}",
                  "| row | test nDCG@10, seeds " + " / ".join(sorted(default)) + " | mean | Δ mean vs previous "
                  "default | p vs it per seed | held-out mean | alignment after | uniformity (queries) after | "
                  "train s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, row in entry["rows"].items():
            seeds = dict(sorted(row["seeds"].items()))
            ndcg = " / ".join("%.4f" % s["metrics"]["ndcg@10"] for s in seeds.values())
            shared = [k for k in seeds if k in default]
            delta = mean([seeds[k]["metrics"]["ndcg@10"] - default[k]["metrics"]["ndcg@10"] for k in shared])
            p = " / ".join("–" if s["p_vs_default"] is None else "%.2g" % s["p_vs_default"] for s in seeds.values())
            held = row["mean_held_out_ndcg@10"]
            after = [s["geometry_held_out"]["after"] for s in seeds.values() if s["geometry_held_out"]]
            geo = (f"{mean([g['alignment'] for g in after]):.3f} | {mean([g['uniformity_queries'] for g in after]):.3f}"
                   if after else "– | –")
            tau = [s["final_temperature"] for s in seeds.values() if s.get("final_temperature") is not None]
            label = LABELS.get(name, name) + (f" (τ → {mean(tau):.3f})" if tau else "")
            lines.append(f"| {label} | {ndcg} | {row['mean_ndcg@10']:.4f} | "
                         f"{'–' if name == 'default' else '%+.4f' % delta} | {p} | "
                         f"{'–' if held is None else '%.4f' % held} | {geo} | "
                         f"{round(mean([s['train_seconds'] for s in seeds.values()]))} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
