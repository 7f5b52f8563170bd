"""Long documents as windows (``segment_tokens``; MaxP: a document scores its best window) against one truncated
vector per document, with all-MiniLM-L6-v2 and with the label-free title-adapted query tower, on SciFact and CISI.
No training query and no judgment is read to build anything: the windows change only how the corpus is encoded.

all-MiniLM-L6-v2 reads at most 256 tokens of a document (and was trained on 128); 71 % of SciFact's documents
(title + abstract) are longer than 256 tokens (median 316), 9 % of CISI's (median 144). Variants:

- whole: one vector per document, truncated at the model's 256 tokens (the default);
- whole-512: one vector per document, truncated at 512 tokens (the model's position limit);
- w250s125 / w128s64: windows of 250 / 128 tokens every 125 / 64 (half-overlapping), title in the first;
- w128s64-title: windows of the text, each led by the title (``segment_title``).

Query encoders: the base model, and the label-free title -> document model of ``label_free.py`` (row
"title-all" on SciFact, "title" on CISI: title pairs of every document; seeds 0, 1, 2; trained here if absent).
Each: test nDCG@10 / MRR@10 / Recall@100, paired t-test against the base model on whole documents, nDCG@10 on the
collection's *train* queries (dev: what a variant is picked on), and the run fused with BM25 (z-score, equal
weights); encoding seconds and vectors per variant.

    python benchmarks/windows.py --datasets scifact,cisi [--variants whole,w128s64] [--seeds 0,1,2]
        [--extra NAME=MODEL]   # another query encoder over the same vectors, e.g. labelled=runs/scifact/train/model
                               # (`make run`'s fine-tuned tower: its "dev" queries are the ones it trained on)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "results" / "windows.json"
VARIANTS = {  # name -> EncoderConfig changes
    "whole": {},
    "whole-512": {"max_seq_length": 512},
    "w250s125": {"segment_tokens": 250, "segment_stride": 125},
    "w128s64": {"segment_tokens": 128, "segment_stride": 64},
    "w128s64-title": {"segment_tokens": 128, "segment_stride": 64, "segment_title": True},
}
TITLE_ROW = {"scifact": "title-all", "cisi": "title"}  # label_free.py's picked row on each collection
METRICS = ["ndcg@10", "mrr@10", "recall@100"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="scifact,cisi")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--extra", action="append", default=[], help="NAME=MODEL: another query encoder")
    a = ap.parse_args()
    from pipelines.baselines import corpus_embeddings, flat_searcher
    from pipelines.encode import EncodeConfig
    from pipelines.workspace import prepare, work_root
    from retriever.atomic import read_json, write_json
    from retriever.data.embeddings import read_embeddings
    from retriever.encoders import EncoderConfig, model_hash, resolve_model
    from retriever.eval import evaluate, paired_test

    sys.path.insert(0, str(HERE))
    from label_free import BASE, bm25_run, fused_rows, row_inputs, train_row
    from provenance import choose, provenance

    variants = choose(a.variants, VARIANTS, "variants")
    result = json.loads(OUTPUT.read_text()) if OUTPUT.is_file() else {"datasets": {}}
    made = provenance("windows.py")
    seeds = [int(s) for s in a.seeds.split(",")]

    def save() -> None:
        result.update({"benchmark": "windows", "model": BASE, **made})
        write_json(OUTPUT, result)

    for dataset in a.datasets.split(","):
        folder = work_root() / "label_free" / dataset
        folder.mkdir(parents=True, exist_ok=True)
        test, dev = prepare(dataset, "test"), prepare(dataset, "train")
        bm25 = bm25_run(dataset, folder)
        info, changes, _ = row_inputs(dataset, folder, TITLE_ROW[dataset])
        queries = {"base": BASE, **{f"title-seed{s}": train_row(folder, TITLE_ROW[dataset], s, info, changes)["model"]
                                    for s in seeds}}
        queries.update(dict(x.split("=", 1) for x in a.extra))
        entry = result["datasets"].setdefault(dataset, {"variants": {}})
        entry["title_row"] = TITLE_ROW[dataset]
        base_eval = None
        for name in ["whole"] + [v for v in variants if v != "whole"]:
            encoder = EncoderConfig(model=BASE, **VARIANTS[name])
            emb = None if name == "whole" else test.folder / "embeddings-windows" / name
            t0 = time.perf_counter()
            emb = corpus_embeddings(test, encoder, EncodeConfig(encoder, engine="local"), emb)
            _, shards = read_embeddings(emb)
            ids = [i for s in shards for i in s[0]]
            last = read_json(Path(emb) / "manifest.json")["last_run"]
            row = entry["variants"].setdefault(name, {"queries": {}})
            row.update({"encoder": VARIANTS[name], "vectors": len(ids), "documents": len(set(ids))})
            if last["docs"]:  # encoded by this call (a cached folder keeps the time recorded when it was made)
                row["encode"] = {"seconds": last["seconds"], "docs_per_s": last["docs_per_s"],
                                 "wall_seconds": round(time.perf_counter() - t0, 1)}
            for label, model in queries.items():
                searcher = flat_searcher(emb, replace(encoder, model=model))
                run = searcher.search(test.dataset.queries, 1000)
                res = evaluate(test.dataset.qrels, run, METRICS)
                dev_run = searcher.search(dev.dataset.queries, 1000)
                if base_eval is None:  # the base model on whole documents: what every row is tested against
                    base_eval = res
                row["queries"][label] = {
                    "model": model, "model_hash": model_hash(resolve_model(model)),
                    "metrics": {k: round(v, 5) for k, v in res.aggregate.items()},
                    "p_vs_base_whole": round(paired_test(res.per_query, base_eval.per_query, "ndcg@10").t_pvalue, 5),
                    "dev_ndcg@10": round(evaluate(dev.dataset.qrels, dev_run, ["ndcg@10"]).aggregate["ndcg@10"], 5),
                    "fused_zscore": fused_rows(bm25, run, test.dataset.qrels, base_eval.per_query)["convex-zscore"],
                    "made_by": {k: made[k] for k in ("command", "commit", "dirty")}}
                print(dataset, name, label, row["queries"][label]["metrics"]["ndcg@10"],
                      row["queries"][label]["dev_ndcg@10"], flush=True)
            titled = [row["queries"][q] for q in row["queries"] if q.startswith("title-seed")]
            if titled:
                row["title_mean_ndcg@10"] = round(sum(q["metrics"]["ndcg@10"] for q in titled) / len(titled), 5)
                row["title_mean_dev_ndcg@10"] = round(sum(q["dev_ndcg@10"] for q in titled) / len(titled), 5)
            save()
    print(json.dumps({d: {v: {q: (r["metrics"]["ndcg@10"], r["dev_ndcg@10"]) for q, r in row["queries"].items()}
                          for v, row in e["variants"].items()} for d, e in result["datasets"].items()}, indent=1))


if __name__ == "__main__":
    main()
