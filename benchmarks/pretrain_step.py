"""Seconds per span-prediction step with the views encoded in length-sorted chunks (what the pretraining loop
does) vs as one padded batch, side by side on the same batches: 32 SciFact documents and their spans at four
granularities, all-MiniLM-L6-v2, 128 tokens, forward and backward.

    python benchmarks/pretrain_step.py [--steps 4]

Writes benchmarks/results/pretrain_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from pipelines.pretrain import PretrainJob, corpus_texts
    from retriever.encoders import resolve_model
    from retriever.losses.span_prediction import GroupwiseSpanLoss
    from retriever.pretraining import PretrainConfig, make_views
    from retriever.pretraining.loop import by_length
    from retriever.training.contrastive import embedding_fn

    torch.set_num_threads(os.cpu_count() or 1)
    cfg = PretrainConfig(task="span")  # span views: the task whose mixed lengths the chunks are for
    texts = corpus_texts(PretrainJob("scifact", "unused", config=cfg, max_texts=32 * a.steps))
    model = SentenceTransformer(resolve_model("sentence-transformers/all-MiniLM-L6-v2"), device="cpu")
    model.max_seq_length = cfg.max_seq_length
    model.train()
    plain = embedding_fn(model)
    ways = {"length-sorted chunks": by_length(plain), "one padded batch": plain}
    loss_fn = GroupwiseSpanLoss()
    seconds = {name: [] for name in ways}
    for step in range(a.steps):
        anchors, views, owner = make_views(texts[32 * step:32 * (step + 1)], cfg, np.random.default_rng(step))
        for name, encode in ways.items():  # alternate, so drift in machine load hits both
            t0 = time.perf_counter()
            loss = loss_fn(encode(anchors), encode(views), torch.as_tensor(owner))
            loss.backward()
            model.zero_grad(set_to_none=True)
            seconds[name].append(time.perf_counter() - t0)
    rows = {name: {"seconds_per_step": round(float(np.median(s)), 2), "all": [round(x, 2) for x in s]}
            for name, s in seconds.items()}
    ratio = rows["one padded batch"]["seconds_per_step"] / rows["length-sorted chunks"]["seconds_per_step"]
    result = {"command": f"python benchmarks/pretrain_step.py --steps {a.steps}", "rows": rows,
              "speedup": round(ratio, 2), "batch": "32 documents + 4 spans each (ngram, phrase, sentence, paragraph)",
              "model": "all-MiniLM-L6-v2", "max_seq_length": cfg.max_seq_length,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    sys.path.insert(0, str(HERE))
    from provenance import provenance

    result = {**result, **provenance("pretrain_step.py"), "command": result["command"]}
    (HERE / "results" / "pretrain_step.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
