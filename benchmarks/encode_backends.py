"""Encoder backends side by side in one run: plain ``SentenceTransformer.encode`` (torch, the peer) against
densepipe's encoder on each backend (torch float32 / bfloat16, ONNX Runtime float32 / int8, OpenVINO float32 /
bfloat16), in-process and through the Ray encode stage, on the same corpus and cores.

Every measurement runs in a fresh interpreter (its own peak memory, no warm caches but the export cache, which is
filled beforehand: exporting is a one-off and is timed separately). For each row, three kinds of run:

- local: the encoder in this process over the corpus already in memory: documents per second (model load
  excluded, and with it), peak RSS, nDCG@10 of exact search over the resulting vectors with queries encoded by
  the same backend, and query latency (one query at a time, and batches of 32);
- path: the encode stage on the local engine end to end, as ``densepipe encode --engine local`` runs it (imports,
  model load, reading the corpus shards, planning the chunks, writing the embedding shards);
- ray: the same stage on the Ray engine, one actor holding every core, Ray itself already running (its actor's
  start, imports and model load included). ``ray / path`` is the overhead of Ray on the same work.

    python benchmarks/encode_backends.py --dataset scifact [--max-docs N] [--kinds local,path,ray] [--repeats 2]

Speed is measured ``--repeats`` times per row, the kinds alternating (A B C C B A): this machine's speed drifts by
about ten per cent over minutes, more than the overhead of Ray being measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from childproc import run_child

HERE = Path(__file__).resolve().parent

VARIANTS = {  # name: EncoderConfig settings
    "torch": {"backend": "torch"},
    "torch-bf16": {"backend": "torch", "model_dtype": "bfloat16"},
    "onnx": {"backend": "onnx"},
    "onnx-int8": {"backend": "onnx", "quantize": "int8"},
    "openvino": {"backend": "openvino"},
    "openvino-bf16": {"backend": "openvino", "model_dtype": "bfloat16"},
}


def _quality_and_latency(encode_queries, prep, xb, ids) -> dict:
    """nDCG@10 of exact inner-product search over ``xb``, and query-encoding latency."""
    import numpy as np

    from retriever.eval.metrics import evaluate

    qids = sorted(prep.dataset.qrels)
    texts = [prep.dataset.queries[q] for q in qids]
    xq = encode_queries(texts)
    scores = xq @ xb.T
    top = np.argsort(-scores, axis=1)[:, :100]
    run = {q: {ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(qids)}
    ndcg = evaluate(prep.dataset.qrels, run, ["ndcg@10"]).aggregate["ndcg@10"]
    single = []
    for text in texts[:60]:
        t = time.perf_counter()
        encode_queries([text])
        single.append(time.perf_counter() - t)
    batched = []
    for start in range(0, min(len(texts), 320), 32):
        t = time.perf_counter()
        encode_queries(texts[start:start + 32])
        batched.append(time.perf_counter() - t)
    return {"ndcg@10": round(float(ndcg), 4), "queries": len(qids),
            "query_ms_single_median": round(1000 * float(np.median(single[10:])), 2),
            "query_ms_batch32_median": round(1000 * float(np.median(batched[1:] or batched)), 2)}


def run_plain(prep, batch_size: int) -> dict:
    """The peer: sentence-transformers as a user calls it, over the same texts (normalised, as densepipe's)."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from retriever.data.parquet import iter_corpus_shards
    from retriever.encoders import resolve_model
    from retriever.memory import peak_rss_mb

    docs = [d for _, shard in iter_corpus_shards(prep.corpus_dir) for d in shard]
    t0 = time.perf_counter()
    st = SentenceTransformer(resolve_model("sentence-transformers/all-MiniLM-L6-v2"), device="cpu")
    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    xb = st.encode([d.joined(" ") for d in docs], batch_size=batch_size, normalize_embeddings=True,
                   convert_to_numpy=True)
    seconds = time.perf_counter() - t1
    out = {"docs": len(docs), "load_s": round(load, 2), "encode_s": round(seconds, 2),
           "docs_per_s": round(len(docs) / seconds, 2)}
    out.update(_quality_and_latency(
        lambda t: st.encode(t, batch_size=32, normalize_embeddings=True, convert_to_numpy=True),
        prep, np.asarray(xb, dtype=np.float32), [d.id for d in docs]))
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def run_local(prep, settings: dict, batch_size: int) -> dict:
    """densepipe's encoder in this process, over the same length-ordered chunks as the local engine and Ray."""
    from pipelines.encode import EncodeBatch, shard_chunks
    from retriever.data.parquet import iter_corpus_shards
    from retriever.encoders import EncoderConfig
    from retriever.memory import peak_rss_mb

    import numpy as np

    config = EncoderConfig(batch_size=batch_size, threads=os.cpu_count(), **settings)
    t0 = time.perf_counter()
    fn = EncodeBatch(config)
    load = time.perf_counter() - t0
    ids, parts, seconds = [], [], 0.0
    for shard, docs in iter_corpus_shards(prep.corpus_dir):
        for rows in shard_chunks(Path(prep.corpus_dir) / shard["file"], 1024):
            chunk = [docs[r] for r in rows]
            batch = {k: np.array([getattr(d, k) for d in chunk], dtype=object) for k in ("id", "title", "text")}
            t = time.perf_counter()
            out = fn(batch)
            seconds += time.perf_counter() - t
            ids += out["id"].tolist()
            parts.append(out["vector"])
    xb = np.concatenate(parts)
    res = {"docs": len(ids), "load_s": round(load, 2), "encode_s": round(seconds, 2),
           "docs_per_s": round(len(ids) / seconds, 2),
           "docs_per_s_with_load": round(len(ids) / (seconds + load), 2), "runtime": fn.encoder.describe()}
    res.update(_quality_and_latency(fn.encoder.encode_queries, prep, xb, ids))
    res["peak_rss_mb"] = peak_rss_mb()
    return res


def run_stage(prep, settings: dict, batch_size: int, out_dir: str, engine: str) -> dict:
    """densepipe's encode stage end to end, as ``densepipe encode`` runs it: ``ray``, one actor holding every core
    on a private local Ray already started (actor start, imports and model load included), or ``local``, in this
    process (imports and model load included: this process has not imported the model's libraries yet). Both read
    the corpus shards, plan the chunks and write the embedding shards and manifest."""
    import shutil

    import numpy as np

    from pipelines.encode import EncodeConfig, encode_corpus
    from pipelines.runtime import RayEnv
    from retriever.data.embeddings import read_embeddings
    from retriever.encoders import BiEncoder, EncoderConfig
    from retriever.memory import peak_rss_mb

    assert "sentence_transformers" not in sys.modules  # the in-process path pays its imports, as an actor does
    shutil.rmtree(out_dir, ignore_errors=True)
    env = RayEnv()
    if engine == "ray":
        env.start()
    config = EncodeConfig(EncoderConfig(batch_size=batch_size, **settings), engine=engine, num_workers=1, ray=env)
    t0 = time.perf_counter()
    manifest = encode_corpus(prep.corpus_dir, out_dir, config, progress=False)
    seconds = time.perf_counter() - t0
    if engine == "ray":
        import ray

        ray.shutdown()
    _, shards = read_embeddings(out_dir)
    ids = [i for s in shards for i in s[0]]
    xb = np.concatenate([s[1] for s in shards])
    res = {"docs": len(ids), "seconds": round(seconds, 2), "docs_per_s": round(len(ids) / seconds, 2)}
    if engine == "ray":
        res.update({"cpus_per_worker": manifest["last_run"]["cpus_per_worker"],
                    "worker_peak_rss_mb": manifest["last_run"]["worker_peak_rss_mb"]})
    res["driver_peak_rss_mb" if engine == "ray" else "peak_rss_mb"] = peak_rss_mb()
    encoder = BiEncoder(EncoderConfig(batch_size=batch_size, **settings))
    res["ndcg@10"] = _quality_and_latency(encoder.encode_queries, prep, xb, ids)["ndcg@10"]
    return res


def export_all() -> dict:
    """Fill the export cache (each graph once), timing each export."""
    from retriever.encoders import EncoderConfig, model_hash, resolve_model
    from retriever.encoders.backends import export_key, export_onnx, export_root

    from sentence_transformers import SentenceTransformer

    path = resolve_model(EncoderConfig().model)
    source = model_hash(path)
    out = {}
    for quantize in ("none", "int8"):
        folder = export_root() / export_key(source, "0", quantize)
        if folder.is_dir():
            out[quantize] = json.loads((folder / "export.json").read_text())["seconds"]
            continue
        model = SentenceTransformer(path, device="cpu")
        export_onnx(model[0], source, "0", quantize)
        out[quantize] = json.loads((folder / "export.json").read_text())["seconds"]
    return {"export_s": out}


def mean(runs: list[dict], key: str) -> float:
    return round(sum(x[key] for x in runs) / len(runs), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--batch-size", type=int, default=16, help="every row's (16 is the fastest here for all)")
    ap.add_argument("--max-docs", type=int, default=None)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--kinds", default="local,path,ray",
                    help="what each row measures: local (the encoder in-process, and quality), path (the local "
                         "engine end to end), ray (the Ray engine end to end)")
    ap.add_argument("--repeats", type=int, default=2,
                    help="runs of each kind per row, alternating; rates are their means (the machine drifts)")
    ap.add_argument("--output", default=str(HERE / "results" / "encode_backends.json"))
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    from pipelines.workspace import prepare

    prep = prepare(a.dataset, "test", max_docs=a.max_docs)
    if a.child:
        kind, *rest = a.child
        if kind == "export":
            res = export_all()
        elif kind == "plain":
            res = run_plain(prep, a.batch_size)
        elif kind == "local":
            res = run_local(prep, VARIANTS[rest[0]], a.batch_size)
        else:  # "ray" or "path" (the local engine end to end)
            res = run_stage(prep, VARIANTS[rest[0]], a.batch_size, rest[1], "ray" if kind == "ray" else "local")
        print(json.dumps(res))
        return
    common = ["--dataset", a.dataset, "--batch-size", str(a.batch_size)] + (
        ["--max-docs", str(a.max_docs)] if a.max_docs else [])
    variants = a.variants.split(",")
    result = {"benchmark": "encode_backends", "dataset": a.dataset, "model": "sentence-transformers/all-MiniLM-L6-v2",
              "batch_size": a.batch_size, "cpus": os.cpu_count(), "repeats": a.repeats, "kinds": a.kinds, "rows": {}}
    result.update(run_child(__file__, "export", *common))
    kinds = a.kinds.split(",")
    if set(kinds) - {"local", "path", "ray"} or not kinds:
        sys.exit(f"--kinds: choose from local, path, ray (got {a.kinds})")
    plain = plain_args = None
    if "local" in kinds:  # the peer at the common batch size and at its own default (32); the faster is the reference
        common32 = [x if x != str(a.batch_size) else "32" for x in common]
        plain, plain_default = run_child(__file__, "plain", *common), run_child(__file__, "plain", *common32)
        result["plain_sentence_transformers"] = plain
        result["plain_sentence_transformers_batch32"] = plain_default
        print("plain", plain, plain_default, flush=True)
        plain_args = common
        if plain_default["docs_per_s"] > plain["docs_per_s"]:
            plain, plain_args = plain_default, common32
    out_dir = str(prep.folder / "bench-encode-backends")
    for name in variants:
        # the kinds alternate, in the order A B C C B A ..., so drift of this machine's speed over the minutes a
        # row takes falls on each side alike; each kind's rate is its mean over the repeats
        runs: dict[str, list] = {kind: [] for kind in kinds}
        for r in range(a.repeats):
            for kind in (kinds if r % 2 == 0 else kinds[::-1]):
                place = [] if kind == "local" else [out_dir]
                runs[kind].append(run_child(__file__, kind, name, *place, *common))
        row = {}
        for kind, got in runs.items():
            row[kind] = dict(got[0])
            if a.repeats > 1:
                keys = [k for k in ("docs_per_s", "docs_per_s_with_load", "seconds", "encode_s", "load_s",
                                    "peak_rss_mb", "worker_peak_rss_mb") if k in got[0]]
                row[kind].update({k: mean(got, k) for k in ("docs_per_s", "docs_per_s_with_load") if k in got[0]})
                row[kind]["repeats"] = [{k: x[k] for k in keys} for x in got]
        if "ray" in runs and "local" in runs:
            # both with the model's load: the Ray figure includes its actor's start and load
            row["ray_over_local"] = round(row["ray"]["docs_per_s"] / row["local"]["docs_per_s_with_load"], 3)
        if "ray" in runs and "path" in runs:  # the same work but for Ray: the stage end to end on both engines
            row["ray_over_path"] = round(row["ray"]["docs_per_s"] / row["path"]["docs_per_s"], 3)
            row["ray_over_path_per_repeat"] = [round(y["docs_per_s"] / x["docs_per_s"], 3)
                                               for x, y in zip(runs["path"], runs["ray"])]
        if plain:
            row["speedup_over_plain"] = round(row["local"]["docs_per_s"] / plain["docs_per_s"], 3)
            row["ndcg_delta_vs_plain"] = round(row["local"]["ndcg@10"] - plain["ndcg@10"], 4)
        result["rows"][name] = row
        print(name, json.dumps(row), flush=True)
    if plain and a.repeats > 1 and variants:
        # the peer again after every row (its batch size as before): the rows' ratios are to the mean of both runs
        again = run_child(__file__, "plain", *plain_args)
        result["plain_sentence_transformers_after"] = again
        result["plain_docs_per_s_mean"] = mean([plain, again], "docs_per_s")
        for row in result["rows"].values():
            row["speedup_over_plain"] = round(row["local"]["docs_per_s"] / result["plain_docs_per_s_mean"], 3)
    sys.path.insert(0, str(HERE))
    from provenance import provenance

    result.update(provenance("encode_backends.py"))
    result["ray_environment"] = {k: v for k, v in os.environ.items() if k.startswith("RAY_")}  # e.g. worker niceness
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
