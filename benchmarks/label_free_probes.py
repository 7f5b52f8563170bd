"""Probes around the label-free pick (title -> document pairs of every document: label_free.py's ``title-all``
row), each aimed at the dense-only target it misses (SciFact test nDCG@10 >= 0.675; the pick: 0.6589). SciFact
test and dev (its train queries, the selection set; nothing here trains on them) nDCG@10 of:

- interpolate: the fine-tuned query tower's weights blended with the base model's,
  w = a * tuned + (1 - a) * base (WiSE-FT, Wortsman et al., CVPR 2022; a > 1 extrapolates along the fine-tuning
  direction), and the uniform average of the tuned towers of seeds 0 and 1 (a "model soup", Wortsman et al.,
  ICML 2022). Documents keep the base model's vectors, so only queries are encoded again.
- prf: Rocchio pseudo-relevance feedback on the dense vectors at query time,
  q' = a * q + (1 - a) * mean(top-k documents' vectors), renormalised (the vector PRF studied by Li et al.,
  "Pseudo Relevance Feedback with Deep Language Models and Dense Retrievers: Successes and Pitfalls"), on the
  seed-0 title model.
- sentence: the last sentence of each abstract (at least 5 words, of at least two) -> its document as the
  training pairs instead of the title (a conclusion reads like a claim), trained like label_free.py's rows (the
  previous default recipe, BM25 + dense mined negatives), seed 0.

    python benchmarks/label_free_probes.py [--probes interpolate,prf,sentence]

Needs label_free.py's ``title-all`` models of seeds 0 and 1 (python benchmarks/label_free.py --datasets scifact
--rows title-all --seeds 0,1). Results: benchmarks/results/label_free_probes.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "results" / "label_free_probes.json"
DATASET = "scifact"
ALPHAS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
PRF = [(k, a) for k in (1, 3, 5, 10) for a in (0.5, 0.7, 0.85)]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")


def scores(model: str) -> dict:
    from label_free import dev_ndcg, runs_of

    return {"test_ndcg@10": round(runs_of(DATASET, model)[1].aggregate["ndcg@10"], 5),
            "dev_ndcg@10": dev_ndcg(DATASET, model)}


def blend(tuned: list[str], alpha: float, out: Path) -> str:
    """A query-tower model whose query weights are ``alpha`` * (the mean of ``tuned``'s) + (1 - alpha) * the
    document route's (the base model's); written to ``out`` with the first model's training record."""
    import torch
    from sentence_transformers import SentenceTransformer

    from retriever.encoders import TRAINING_INFO

    model = SentenceTransformer(tuned[0], device="cpu")
    states = [model.state_dict()] + [SentenceTransformer(t, device="cpu").state_dict() for t in tuned[1:]]
    merged = {}
    for key, value in model.state_dict().items():
        if ".sub_modules.query." in key and torch.is_floating_point(value):
            base = states[0][key.replace(".sub_modules.query.", ".sub_modules.document.")]
            merged[key] = alpha * sum(s[key] for s in states) / len(states) + (1 - alpha) * base
        else:
            merged[key] = value.clone()
    model.load_state_dict(merged)  # merged holds new tensors: states[0] (the model's own) was only read
    shutil.rmtree(out, ignore_errors=True)
    model.save(str(out))
    shutil.copy(Path(tuned[0]) / TRAINING_INFO, out / TRAINING_INFO)  # the document route: the base's vectors
    return str(out)


def prf(model: str) -> dict:
    """{split: {"none" | "k<k>-a<a>": nDCG@10}} of Rocchio feedback over exact search (top 100 each)."""
    import numpy as np

    from pipelines.baselines import dense_searcher
    from pipelines.workspace import prepare
    from retriever.data.trec import sorted_hits
    from retriever.encoders import EncoderConfig
    from retriever.eval import evaluate

    out = {}
    for split in ("test", "train"):
        prep = prepare(DATASET, split)
        searcher = dense_searcher(prep, EncoderConfig(model=model))
        qids = sorted(q for q in prep.dataset.queries if q in prep.dataset.qrels)
        xq = searcher.encoder.encode_queries([prep.dataset.queries[q] for q in qids])
        first = searcher.search_vectors(qids, xq, 100)
        row = {d: i for i, d in enumerate(searcher.ids)}
        ranked = [[row[d] for d, _ in sorted_hits(first[q])] for q in qids]
        feedback = {k: np.stack([np.mean([searcher.index.reconstruct(i) for i in rows[:k]], axis=0)
                                 for rows in ranked]) for k in {k for k, _ in PRF}}

        def ndcg(run) -> float:
            return round(evaluate(prep.dataset.qrels, run, ["ndcg@10"]).aggregate["ndcg@10"], 5)

        res = {"none": ndcg(first)}
        for k, a in PRF:
            q = a * xq + (1 - a) * feedback[k]
            res[f"k{k}-a{a}"] = ndcg(searcher.search_vectors(qids, q / np.linalg.norm(q, axis=1, keepdims=True), 100))
        out["dev" if split == "train" else split] = res
    return out


def sentence_pairs(folder: Path) -> tuple[str, int]:
    """The pairs folder of last-sentence -> document pairs (documents only are read); (folder, pairs)."""
    from pipelines.workspace import prepare
    from retriever.data.resolve import resolve_dataset
    from retriever.data.stream import corpus_file
    from retriever.synthetic import Pair, write_pairs

    pairs = []
    for batch in prepare(DATASET, labels=False).dataset.corpus.batches(10_000):
        for d in batch:
            sentences = [s for s in _SENTENCE_END.split(" ".join((d.text or "").split())) if len(s.split()) >= 5]
            if len(sentences) >= 2:
                pairs.append(Pair(f"sent-{d.id}", sentences[-1], d.id, "sentence"))
    out = folder / "pairs-x-last"
    write_pairs(out, corpus_file(resolve_dataset(DATASET)), pairs)
    return str(out), len(pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probes", default="interpolate,prf,sentence")
    a = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from finetune import PREVIOUS_DEFAULT, mine_both
    from label_free import BASE
    from provenance import provenance

    from pipelines.train import TrainJob, run_training
    from pipelines.workspace import work_root
    from retriever.training import TrainConfig

    folder = work_root() / "label_free" / DATASET
    tuned = [folder / "models" / f"title-all-seed{s}" / "model" for s in (0, 1)]
    if not all((t / "modules.json").is_file() for t in tuned):
        sys.exit("train the title-all models first: python benchmarks/label_free.py --datasets scifact "
                 "--rows title-all --seeds 0,1")
    result = json.loads(OUTPUT.read_text()) if OUTPUT.is_file() else {}
    result.update({"benchmark": "label_free_probes", "dataset": DATASET, "model": BASE, **provenance(
        "label_free_probes.py")})
    probes = result.setdefault("probes", {})
    scratch = folder / "probes"
    for probe in a.probes.split(","):
        if probe == "interpolate":
            rows = {"base": scores(BASE)}
            for alpha in ALPHAS:
                rows[f"seed0-a{alpha}"] = scores(blend([str(tuned[0])], alpha, scratch / f"seed0-a{alpha}"))
            rows["soup-seeds0+1"] = scores(blend([str(t) for t in tuned], 1.0, scratch / "soup-seeds0+1"))
            probes["interpolate"] = rows
        elif probe == "prf":
            probes["prf"] = {"model": "title-all seed 0", **prf(str(tuned[0]))}
        elif probe == "sentence":
            pairs, n = sentence_pairs(folder)
            cfg = replace(TrainConfig(), seed=0, checkpoint_every=1000, **PREVIOUS_DEFAULT)
            trained = run_training(TrainJob(pairs, str(folder / "models" / "x-last-seed0"), BASE, "train",
                                            tuple(mine_both(pairs, folder / "mined" / Path(pairs).name, BASE)),
                                            config=cfg, engine="local"))
            probes["sentence"] = {"pairs": n, "seed": 0, "train_seconds": trained["train_seconds"],
                                  **scores(trained["model"])}
        else:
            sys.exit(f"unknown probe {probe!r}: interpolate, prf, sentence")
        print(probe, json.dumps(probes[probe]), flush=True)
        tmp = OUTPUT.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(OUTPUT)


if __name__ == "__main__":
    main()
