"""The ``densepipe`` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from retriever.encoders.backends import BACKENDS, MODEL_DTYPES, QUANTIZATIONS
from retriever.types import DensepipeError


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send everything written to fd 1 (Java's and libraries' logging too) to stderr, so stdout holds one JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _add_policy(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--strict", action="store_true",
                   help="refuse record-level problems too (empty documents, judged documents not in the corpus, "
                        "judgments of unknown queries, repeated judgments), which are otherwise counted and kept")
    g.add_argument("--skip-malformed", action="store_true",
                   help="count and skip corrupt records (unparsable lines, wrong column counts, non-UTF-8 bytes) "
                        "instead of stopping at the first")


def _add_dataset(p: argparse.ArgumentParser, split: str = "test") -> None:
    p.add_argument("--dataset", required=True, help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv), "
                   "an MS MARCO-style folder (collection.tsv, queries.SPLIT.tsv, qrels.SPLIT.tsv; .gz too), or a "
                   "BEIR name under $DRP_DATA_DIR")
    p.add_argument("--split", default=split, help=f"qrels split (default: {split})")
    p.add_argument("--max-docs", type=int, default=None, help="use only the first N documents (quick runs)")
    _add_policy(p)


def _add_topics(p: argparse.ArgumentParser) -> None:
    """Queries and judgments other than the dataset folder's, and how runs are written and scored."""
    p.add_argument("--topics", default=None, help="queries file replacing the dataset's (TSV qid<TAB>text, as "
                   "TREC DL and MS MARCO ship them, or BEIR queries.jsonl)")
    p.add_argument("--qrels", default=None, help="judgments replacing the dataset's (TREC or BEIR TSV)")
    p.add_argument("--relevance-level", type=int, default=1, help="lowest grade binary measures count relevant "
                   "(recall, MAP, MRR; 2 for TREC DL passage; nDCG uses the grades)")
    p.add_argument("--run-format", choices=("trec", "msmarco"), default="trec",
                   help="trec: qid Q0 docid rank score tag; msmarco: qid<TAB>docid<TAB>rank")


def _topics(a):
    from pipelines.baselines import Topics

    return Topics(topics=a.topics, qrels=a.qrels, relevance_level=a.relevance_level, run_format=a.run_format)


def _add_cluster(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray-address", default=None,
                   help="'auto' (the cluster running on this machine), host:port, or ray://host:10001 (Ray Client); "
                        "default: a private local Ray, never a cluster something else started")
    p.add_argument("--storage", default=None,
                   help="where Ray workers read inputs and write outputs: a folder shared by the nodes, or a URI "
                        "(s3://bucket/prefix[?endpoint_override=host:port&scheme=http], gs://...); default: this "
                        "machine's disk (one machine)")
    p.add_argument("--cpus-per-worker", type=float, default=None, help="CPUs each Ray worker asks for (default 1)")


def _ray_env(a):
    """The run's RayEnv from the cluster options (``_add_cluster``)."""
    from pipelines.runtime import RayEnv

    return RayEnv(address=a.ray_address, storage=a.storage, cpus_per_worker=a.cpus_per_worker,
                  gpus_per_worker=getattr(a, "gpus_per_worker", None),
                  stall_timeout=getattr(a, "stall_timeout", RayEnv.stall_timeout))


def _add_ray(p: argparse.ArgumentParser) -> None:
    _add_cluster(p)
    p.add_argument("--num-workers", type=int, default=1, help="Ray workers for this command")


def _add_encoder(p: argparse.ArgumentParser, shards: bool = True, dtype: bool = True,
                 backend_flag: str = "--backend") -> None:
    """The encoder's options; ``shards`` / ``dtype``: only for commands that cut the corpus into shards / store
    vectors (an option a command would ignore is not offered); ``backend_flag``: the name of the encoder's backend
    option (``hyde``'s ``--backend`` is its generator's)."""
    p.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2",
                   help="hub name, packaged model or folder")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-seq-length", type=int, default=None)
    p.add_argument(backend_flag, dest="encoder_backend", choices=BACKENDS, default="torch",
                   help="where the transformer runs: torch, ONNX Runtime or OpenVINO (CPU; exported once, cached)")
    p.add_argument("--quantize", choices=QUANTIZATIONS, default="none", help="int8: ONNX Runtime dynamic int8")
    p.add_argument("--model-dtype", choices=MODEL_DTYPES, default="float32",
                   help="the model's compute type (bfloat16 on CPUs with bf16 units; float16 on GPUs)")
    if shards:
        p.add_argument("--docs-per-shard", type=int, default=50_000)
    if dtype:
        p.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="stored vector type")
        p.add_argument("--segment-tokens", type=int, default=None,
                       help="one vector per window of this many tokens of a document (a search scores a document by "
                            "its best window: MaxP); default one vector per document, truncated")
        p.add_argument("--segment-stride", type=int, default=None, help="tokens between windows (default half one)")
        p.add_argument("--segment-title", action="store_true", help="windows of the text, each led by the title")


def _add_generator(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    """The text generator's options (``hyde``, ``generate-queries``)."""
    p.add_argument("--generator", default="smollm2", help="smollm2 | gemma3-270m | a model folder | a .gguf "
                   "file | an http(s):// OpenAI-compatible endpoint")
    p.add_argument("--backend", choices=("transformers", "llama.cpp"), default="transformers",
                   help="GGUF generators: dequantized transformers (cached) or quantized llama.cpp")
    p.add_argument("--endpoint-model", default=None, help="the served model's name (endpoint generators)")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument("--gen-batch-size", type=int, default=16, help="prompts per generation call")


def _add_loop(p: argparse.ArgumentParser, defaults) -> None:
    """Options of the training loops (fine-tuning and pretraining), defaulting to ``defaults`` (the loop's config
    class), so the CLI trains with the same recipe as the Python API."""
    p.add_argument("--engine", choices=("ray", "local"), default="ray", help="ray: Ray Train's TorchTrainer")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--temperature", type=float, default=defaults.temperature)
    p.add_argument("--max-seq-length", type=int, default=defaults.max_seq_length, help="token limit while training")
    p.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=defaults.seed)


def _encoder_config(a):
    from retriever.encoders import EncoderConfig

    return EncoderConfig(model=a.model, batch_size=a.batch_size, max_seq_length=a.max_seq_length,
                         dtype=getattr(a, "dtype", "float32"), backend=a.encoder_backend,
                         quantize=a.quantize, model_dtype=a.model_dtype, segment_tokens=getattr(a, "segment_tokens", None),
                         segment_stride=getattr(a, "segment_stride", None),
                         segment_title=getattr(a, "segment_title", False))


def cmd_data_check(a) -> tuple[int, dict]:
    from pipelines.check import check_path

    report, summary = check_path(a.path, a.split)
    return 0 if not report.corrupt else 1, {**summary, **report.to_dict()}


def cmd_prepare(a) -> tuple[int, dict]:
    from retriever.data.parquet import read_manifest

    from pipelines.workspace import prepare

    prep = prepare(a.dataset, a.split, a.docs_per_shard, max_docs=a.max_docs, need_qrels=False)
    manifest = read_manifest(prep.corpus_dir)
    return 0, {"dataset": prep.dataset.name, "split": prep.dataset.split, "corpus": str(prep.corpus_dir),
               "documents": manifest["num_docs"], "shards": len(manifest["shards"]),
               "queries": len(prep.dataset.queries), "data_hash": manifest["data_hash"]}


def cmd_bm25(a) -> tuple[int, dict]:
    from pipelines.baselines import run_bm25

    result = run_bm25(a.dataset, a.split, a.output, k=a.k, k1=a.k1, b=a.b, remove_query=a.remove_query,
                      max_docs=a.max_docs, threads=a.threads, topics=_topics(a), heap_mb=a.java_heap)
    return 0, result


def cmd_dense(a) -> tuple[int, dict]:
    from pipelines.baselines import run_dense

    result = run_dense(a.dataset, a.split, a.output, _encoder_config(a), k=a.k, engine=a.engine,
                       ray=_ray_env(a), num_workers=a.num_workers, docs_per_shard=a.docs_per_shard,
                       max_docs=a.max_docs, remove_query=a.remove_query, topics=_topics(a))
    return 0, result


def cmd_fuse(a) -> tuple[int, dict]:
    from retriever.data import read_qrels, read_run, write_run
    from retriever.data.validation import read_checked
    from retriever.eval.fusion import compare_fused, fuse

    runs = [read_checked(read_run, path) for path in a.runs]
    fused = fuse(runs, a.method, a.weights, a.rrf_k, a.norm, a.depth)
    write_run(fused, a.output, tag=f"densepipe-{a.method}")
    out = {"output": a.output, "method": a.method, "runs": a.runs, "weights": a.weights or [1.0] * len(runs),
           "queries": len(fused), **({"rrf_k": a.rrf_k} if a.method == "rrf" else {"norm": a.norm})}
    if a.qrels:
        metrics = [m.strip() for m in a.metrics.split(",") if m.strip()]
        compared = compare_fused(fused, runs, read_checked(read_qrels, a.qrels), metrics, a.relevance_level)
        out["fused"] = compared["fused"]
        out["inputs"] = [{"run": path, **row} for path, row in zip(a.runs, compared["inputs"])]
    return 0, out


def cmd_evaluate(a) -> tuple[int, dict]:
    from retriever.data import read_qrels, read_run
    from retriever.eval import evaluate, paired_test

    metrics = [m.strip() for m in a.metrics.split(",") if m.strip()]
    from retriever.data.validation import read_checked
    from retriever.types import DataError

    qrels = read_checked(read_qrels, a.qrels)
    run = read_checked(read_run, a.run)
    if not set(run) & set(qrels):
        raise DataError(a.run, None, f"no query of the run is judged in {a.qrels} (run ids such as "
                        f"{sorted(run)[:3]}, qrels ids such as {sorted(qrels)[:3]}), so every metric would be 0.",
                        "evaluate the run against the qrels of the split it was made for.")
    res = evaluate(qrels, run, metrics, ignore_self=a.ignore_self, relevance_level=a.relevance_level,
                   complete=a.complete)
    out = res.to_dict()
    unjudged = sorted(set(run) - set(qrels))
    if unjudged:
        out["queries_in_run_not_in_qrels"] = len(unjudged)
    if a.per_query:
        from retriever.atomic import write_json

        write_json(a.per_query, res.per_query)
    if a.compare:
        other = evaluate(qrels, read_checked(read_run, a.compare), metrics, ignore_self=a.ignore_self,
                         relevance_level=a.relevance_level, complete=a.complete)
        out["compare"] = {"run": a.compare, **other.to_dict(),
                          "tests": [paired_test(res.per_query, other.per_query, m).to_dict() for m in metrics]}
    return 0, out


def cmd_encode(a) -> tuple[int, dict]:
    from pipelines.encode import EncodeConfig, encode_corpus
    from pipelines.workspace import prepare

    prep = prepare(a.dataset, a.split, a.docs_per_shard, max_docs=a.max_docs)
    out = Path(a.output) if a.output else prep.embeddings_dir(a.model, _encoder_config(a))
    manifest = encode_corpus(prep.corpus_dir, out, EncodeConfig(_encoder_config(a), engine=a.engine,
                                                                num_workers=a.num_workers, ray=_ray_env(a)))
    return 0, {"embeddings": str(out), "num_docs": manifest["num_docs"], "shards": len(manifest["shards"]),
               **manifest["last_run"]}


def cmd_index(a) -> tuple[int, dict]:
    from indexes import IndexSpec, parse_bytes
    from pipelines.index_stage import index_embeddings

    spec = IndexSpec(factory=a.factory, metric=a.metric, search_params=a.search_params, train_size=a.train_size)
    budget = parse_bytes(a.memory_budget) if a.memory_budget else None
    single = parse_bytes(a.single_file_budget) if a.single_file_budget not in ("0", "") else None
    manifest = index_embeddings(a.embeddings, a.output, spec, memory_budget=budget, merged=a.merged,
                                single_file_budget=single)
    return 0, {"index": a.output, **manifest}


def cmd_search(a) -> tuple[int, dict]:
    from pipelines.baselines import search_and_evaluate

    result = search_and_evaluate(a.index, a.dataset, a.split, a.output, _encoder_config(a), k=a.k,
                                 search_params=a.search_params, max_docs=a.max_docs, threads=a.threads,
                                 remove_query=a.remove_query, topics=_topics(a), engine=a.engine,
                                 num_workers=a.num_workers, ray=_ray_env(a))
    return 0, result


def _pick(rows, a, metric: str = "ndcg@10") -> dict | None:
    """The pick under the budget, by ``metric`` (the sweep's own: nDCG@10 on a labelled dataset, recall against
    exact search on synthetic vectors)."""
    from indexes import parse_bytes
    from indexes.compress import pick

    if a.memory_budget is None and a.bytes_per_vector is None:
        return None
    if a.bytes_per_vector is not None:
        return pick(rows, float(a.bytes_per_vector), per_vector=True, metric=metric).to_dict()
    return pick(rows, parse_bytes(a.memory_budget), metric=metric).to_dict()


def cmd_compress(a) -> tuple[int, dict]:
    from pipelines.compress import compress_prepared
    from pipelines.workspace import prepare

    prep = prepare(a.dataset, a.split, a.docs_per_shard, max_docs=a.max_docs)
    names = [v.strip() for v in a.variants.split(",")] if a.variants else None
    rows = compress_prepared(prep, prep.embeddings_dir(a.model), _encoder_config(a), a.output, names)
    return 0, {"output": a.output, "variants": len(rows), "picked": _pick(rows, a),
               "pareto": [r.name for r in rows if r.pareto]}


def cmd_plan(a) -> tuple[int, dict]:
    from pipelines.compress import rows_from_json

    rows, metric = rows_from_json(a.sweep)
    if a.memory_budget is None and a.bytes_per_vector is None:
        raise DensepipeError("give --memory-budget (e.g. 50MB) or --bytes-per-vector (e.g. 48).")
    return 0, {"metric": metric, "picked": _pick(rows, a, metric)}


def cmd_learned_pq(a) -> tuple[int, dict]:
    from pipelines.encode import corpus_vectors
    from pipelines.learned_pq import evaluate_index, export, train_learned_pq
    from pipelines.workspace import prepare
    from retriever.data import load_beir, resolve_dataset
    from retriever.training.learned_pq import LearnedPQConfig

    _encoder_config(a).one_vector_per_document("learned PQ")
    prep = prepare(a.dataset, a.split, a.docs_per_shard, max_docs=a.max_docs)
    doc_ids, xb = corpus_vectors(prep.corpus_dir, prep.embeddings_dir(a.model), _encoder_config(a))
    from retriever.data.validation import policy_report

    train = load_beir(resolve_dataset(a.dataset), a.train_split, policy_report(), with_corpus=False)
    from indexes import IndexSpec, build_index
    from retriever.encoders import BiEncoder

    cfg = LearnedPQConfig(mode=a.mode, epochs=a.epochs)
    base = build_index(xb, IndexSpec(a.factory))[0]
    # the same index with its k-means codebooks and the untrained query encoder: what learning must beat
    before = evaluate_index(base, BiEncoder(_encoder_config(a)), doc_ids, prep.dataset.queries, prep.dataset.qrels)
    index, enc, info = train_learned_pq(xb, doc_ids, _encoder_config(a), train.queries,
                                        train.qrels if a.mode == "jpq" else None, cfg, a.factory, base_index=base)
    info["metrics"] = evaluate_index(index, enc, doc_ids, prep.dataset.queries, prep.dataset.qrels)
    info["metrics_before"] = before
    export(a.output, index, enc, doc_ids, info)
    return 0, {"output": a.output, **{k: info[k] for k in ("mode", "factory", "losses", "train_s", "metrics",
                                                           "metrics_before")}}


def cmd_mine(a) -> tuple[int, dict]:
    from pipelines.mine import MineJob, mine_pairs
    from retriever.mining import MiningConfig

    cfg = MiningConfig(depth=a.depth, rank_range=(a.rank_start, a.rank_end), num_negatives=a.num_negatives,
                       margin=None if a.margin <= 0 else a.margin, margin_mode=a.margin_mode, seed=a.seed)
    job = MineJob(a.dataset, a.output, a.retriever, a.split, cfg, _encoder_config(a), a.engine, a.num_workers,
                  a.queries_per_shard, ray=_ray_env(a), docs_per_shard=a.docs_per_shard, max_docs=a.max_docs,
                  bm25_k1=a.k1, bm25_b=a.b)
    return 0, mine_pairs(job)


def cmd_train(a) -> tuple[int, dict]:
    from pipelines.train import TrainJob, run_training
    from retriever.training import TrainConfig

    cfg = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, loss=a.loss, temperature=a.temperature,
                      tau_plus=a.tau_plus, symmetric=a.symmetric, tower=a.tower,
                      negatives=a.negatives if a.negatives is not None else (TrainConfig.negatives if a.pairs else 0),
                      max_seq_length=a.max_seq_length or None, grad_cache_chunk=a.grad_cache_chunk,
                      checkpoint_every=a.checkpoint_every, max_steps=a.max_steps, seed=a.seed,
                      learn_temperature=a.learn_temperature, temperature_lr=a.temperature_lr,
                      max_positives=a.max_positives,
                      graded_gain=a.graded_gain, queue_size=a.queue_size, queue_momentum=a.queue_momentum,
                      queue_margin=a.queue_margin, mix_negatives=a.mix_negatives, mix_query=a.mix_query,
                      mix_pool=a.mix_pool, batching=a.batching, teacher_temperature=a.teacher_temperature,
                      teacher_weight=a.teacher_weight)
    job = TrainJob(a.dataset, a.output, a.model, a.split, tuple(a.pairs), a.held_out, config=cfg, engine=a.engine,
                   num_workers=a.num_workers, ray=_ray_env(a), max_docs=a.max_docs, teacher=a.teacher)
    info = run_training(job)
    keep = ("model", "skipped", "steps", "train_seconds", "wall_seconds", "final_loss", "held_out_evals",
            "examples", "held_out_queries", "fingerprint")
    return 0, {k: info[k] for k in keep if k in info}


def cmd_pretrain(a) -> tuple[int, dict]:
    from pipelines.pretrain import PretrainJob, run_pretraining
    from retriever.pretraining import PretrainConfig

    cfg = PretrainConfig(task=a.task, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                         temperature=a.temperature, max_seq_length=a.max_seq_length, max_steps=a.max_steps,
                         checkpoint_every=a.checkpoint_every, seed=a.seed, mlm_weight=a.mlm_weight)
    job = PretrainJob(a.dataset, a.output, a.model, cfg, a.max_texts, a.engine, a.num_workers, _ray_env(a),
                      max_docs=a.max_docs)
    info = run_pretraining(job)
    keep = ("model", "skipped", "texts", "steps", "train_seconds", "wall_seconds", "final_loss", "fingerprint")
    return 0, {k: info[k] for k in keep if k in info}


def cmd_hyde(a) -> tuple[int, dict]:
    from pipelines.hyde import HydeJob, run_hyde

    job = HydeJob(a.dataset, a.output, a.split, generator=a.generator, backend=a.backend,
                  endpoint_model=a.endpoint_model, template=a.template, n=a.n, temperature=a.temperature,
                  seed=a.seed, max_new_tokens=a.max_new_tokens, include_query=not a.exclude_query,
                  encoder=_encoder_config(a), k=a.k, batch_size=a.gen_batch_size, engine=a.engine,
                  num_workers=a.num_workers, ray=_ray_env(a), max_docs=a.max_docs,
                  max_queries=a.max_queries)
    info = run_hyde(job)
    info.pop("per_query")
    return 0, info


def cmd_generate_queries(a) -> tuple[int, dict]:
    from pipelines.generate import GenerateJob, run_generate

    job = GenerateJob(a.dataset, a.output, tuple(_csv(a.sources)), None if a.docs == 0 else a.docs, a.per_doc,
                      a.generator, a.backend, a.endpoint_model, a.template, a.max_doc_chars, a.temperature, a.seed,
                      a.max_new_tokens, a.gen_batch_size, tuple(_csv(a.filter)), a.k, _encoder_config(a),
                      engine=a.engine, num_workers=a.num_workers, ray=_ray_env(a), max_docs=a.max_docs, cache=a.cache,
                      teacher=a.teacher, teacher_depth=a.teacher_depth)
    info = run_generate(job)
    info.pop("job")
    return 0, info


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip() and x.strip() != "none"]


def cmd_leaderboard(a) -> tuple[int, dict]:
    from pipelines.leaderboard import leaderboard

    names = [d.strip() for d in a.datasets.split(",") if d.strip()]
    result = leaderboard(names, _encoder_config(a), a.output, a.split, not a.no_bm25, a.max_docs)
    print(open(result["table"]).read(), file=sys.stderr)
    return (0 if any("unavailable" not in r for r in result["rows"]) else 1), result


def cmd_run(a) -> tuple[int, dict]:
    from pipelines.config import load_config
    from pipelines.run import PipelineRun

    config = load_config(a.config)
    if config.run.strict and not a.skip_malformed:
        os.environ["DRP_DATA_POLICY"] = "strict"
    overrides = {k: getattr(a, k) for k in ("ray_address", "storage", "cpus_per_worker") if getattr(a, k) is not None}
    if overrides:
        from dataclasses import replace

        config = replace(config, run=replace(config.run, **overrides))
    run = PipelineRun(config)
    if a.dry_run:
        return 0, {"run": str(run.dir), "plan": [p.to_dict() for p in run.plan()], "estimates": run.estimates()}
    return 0, run.execute()


def build_parser() -> argparse.ArgumentParser:
    from pipelines.mine import MineJob
    from retriever.mining import MiningConfig
    from retriever.sparse import BM25Config

    bm25_defaults = BM25Config()
    ap = argparse.ArgumentParser(prog="densepipe", description="Dense retrieval pipeline: encode, index, search, "
                                 "evaluate (FAISS, Pyserini, Ray).")
    ap.add_argument("-v", "--verbose", action="store_true", help="log each step")
    sub = ap.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="dataset utilities").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("check", help="validate a BEIR folder or a single data file; exit 1 on corruption "
                                      "(record-level problems that densepipe accepts are listed, exit 0)")
    p.add_argument("path")
    p.add_argument("--split", default=None, help="only this qrels split of a BEIR folder (default: all)")
    p.set_defaults(func=cmd_data_check)

    p = sub.add_parser("prepare", help="validate a dataset and cut its corpus into Parquet shards (what every "
                       "stage reads; skipped when unchanged)")
    _add_dataset(p)
    p.add_argument("--docs-per-shard", type=int, default=50_000)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("bm25", help="BM25 baseline with Pyserini (BEIR flat: title + text)")
    _add_dataset(p)
    p.add_argument("--output", required=True, help="TREC run file to write")
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--k1", type=float, default=bm25_defaults.k1)
    p.add_argument("--b", type=float, default=bm25_defaults.b)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--remove-query", action="store_true", help="drop hits whose id equals the query id")
    p.add_argument("--java-heap", type=int, default=None, metavar="MB",
                   help="the JVM's heap in MB (default: from the corpus size, 1-4 GB)")
    _add_topics(p)
    p.set_defaults(func=cmd_bm25)

    p = sub.add_parser("dense", help="exact dense baseline: encode, flat inner-product search, evaluate")
    _add_dataset(p)
    _add_encoder(p)
    _add_ray(p)
    p.add_argument("--output", required=True, help="TREC run file to write")
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--remove-query", action="store_true", help="drop hits whose id equals the query id")
    _add_topics(p)
    p.set_defaults(func=cmd_dense)

    p = sub.add_parser("evaluate", help="score a TREC run against qrels (trec_eval semantics)")
    p.add_argument("--qrels", required=True, help="BEIR qrels TSV or TREC qrels")
    p.add_argument("--run", required=True, help="TREC run file")
    p.add_argument("--metrics", default="ndcg@10,mrr@10,recall@100,recall@1000,map@100,p@10")
    p.add_argument("--ignore-self", action="store_true", help="drop hits whose id equals the query id (BEIR)")
    p.add_argument("--relevance-level", type=int, default=1, help="lowest grade counted relevant (trec_eval -l)")
    p.add_argument("--complete", action="store_true", help="judged queries missing from the run count 0 (-c)")
    p.add_argument("--per-query", default=None, help="write per-query scores to this JSON file")
    p.add_argument("--compare", default=None, help="a second run: paired t-test and randomization test")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("fuse", help="fuse runs (BM25 + dense): reciprocal-rank fusion or a normalised convex "
                       "combination; evaluated against --qrels when given")
    p.add_argument("--runs", nargs="+", required=True, help="two or more TREC run files")
    p.add_argument("--method", choices=("rrf", "convex"), default="convex",
                   help="default: convex with z-scores, the [fuse] stage's (picked on SciFact's train queries)")
    p.add_argument("--weights", nargs="+", type=float, default=None, help="one per run (default: all 1)")
    p.add_argument("--rrf-k", type=float, default=60.0, help="RRF's constant (Cormack et al.: 60)")
    p.add_argument("--norm", choices=("minmax", "zscore", "none"), default="zscore", help="convex: per-query "
                   "normalisation of each run's scores")
    p.add_argument("--depth", type=int, default=1000, help="hits fused from each run, and kept")
    p.add_argument("--output", required=True, help="the fused TREC run")
    p.add_argument("--qrels", default=None, help="evaluate the inputs and the fused run against these")
    p.add_argument("--metrics", default="ndcg@10,mrr@10,recall@100,recall@1000,map@100,p@10")
    p.add_argument("--relevance-level", type=int, default=1, help="lowest grade counted relevant (trec_eval -l)")
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("encode", help="encode a corpus into embedding shards on Ray")
    _add_dataset(p)
    _add_encoder(p)
    _add_ray(p)
    p.add_argument("--engine", choices=("local", "ray"), default="ray")
    p.add_argument("--gpus-per-worker", type=float, default=None,
                   help="GPUs each Ray worker asks for (default: 1 when the cluster has GPUs, else 0)")
    p.add_argument("--stall-timeout", type=float, default=600.0,
                   help="fail when no chunk of documents finishes for this many seconds (default 600)")
    p.add_argument("--output", default=None, help="embeddings folder (default: in the work folder)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("index", help="build FAISS indexes from embedding shards")
    p.add_argument("--embeddings", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--factory", default="Flat", help="FAISS factory string or preset (flat, sq8, ivf-pq48, ...)")
    p.add_argument("--metric", choices=("ip", "l2"), default="ip")
    p.add_argument("--search-params", default="", help="ParameterSpace string, e.g. nprobe=16")
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--memory-budget", default=None, help="refuse indexes over this size, e.g. 50MB")
    p.add_argument("--merged", action="store_true", help="one index over all shards instead of one per shard")
    p.add_argument("--single-file-budget", default="2GB", help="also write the whole index as one index.faiss "
                   "at the top of the folder when it is at most this size (0: never)")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="search an index with encoded queries, write and evaluate a run")
    _add_dataset(p)
    _add_encoder(p, shards=False, dtype=False)
    p.add_argument("--index", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--search-params", default=None, help="override the index's ParameterSpace string")
    p.add_argument("--threads", type=int, default=1, help="shards searched at once (--engine local)")
    p.add_argument("--remove-query", action="store_true")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: the index's parts held by --num-workers Ray actors, placed across the nodes")
    _add_ray(p)
    _add_topics(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("compress", help="sweep compression variants: memory vs quality, Pareto front, plot")
    _add_dataset(p)
    _add_encoder(p)
    p.add_argument("--output", required=True, help="folder for sweep.json, sweep.md, sweep.png")
    p.add_argument("--variants", default=None, help="comma-separated subset (default: all)")
    p.add_argument("--memory-budget", default=None, help="pick the best variant under this index size")
    p.add_argument("--bytes-per-vector", type=float, default=None, help="or under this many bytes per vector")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("learned-pq", help="train PQ codebooks for ranking (jpq: with train qrels and the query "
                       "encoder; distill: label-free) and export a FAISS index + query encoder")
    _add_dataset(p)
    _add_encoder(p)
    p.add_argument("--train-split", default="train", help="queries (and, for jpq, qrels) to train on")
    p.add_argument("--mode", choices=("jpq", "distill"), default="jpq")
    p.add_argument("--factory", default="OPQ48,PQ48", help="an 8-bit PQ or OPQ+PQ factory string")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--output", required=True)
    p.set_defaults(func=cmd_learned_pq)

    p = sub.add_parser("mine", help="mine hard negatives (BM25 or dense) with false-negative filtering")
    _add_dataset(p, split="train")
    _add_encoder(p)
    _add_ray(p)
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="ray: query shards on Ray actors")
    p.add_argument("--queries-per-shard", type=int, default=MineJob.queries_per_shard)
    p.add_argument("--retriever", choices=("bm25", "dense"), default="dense")
    p.add_argument("--output", required=True, help="Parquet table of (query, positive, negatives, scores)")
    mining = MiningConfig()  # the defaults: the mining config's, as the Python API and [mine] use
    p.add_argument("--depth", type=int, default=mining.depth)
    p.add_argument("--rank-start", type=int, default=mining.rank_range[0])
    p.add_argument("--rank-end", type=int, default=mining.rank_range[1])
    p.add_argument("--num-negatives", type=int, default=mining.num_negatives)
    p.add_argument("--margin", type=float, default=mining.margin, help="positive-aware filter; 0 turns it off")
    p.add_argument("--margin-mode", choices=("relative", "absolute"), default=mining.margin_mode)
    p.add_argument("--k1", type=float, default=bm25_defaults.k1, help="BM25 k1 (--retriever bm25)")
    p.add_argument("--b", type=float, default=bm25_defaults.b, help="BM25 b (--retriever bm25)")
    p.add_argument("--seed", type=int, default=mining.seed)
    p.set_defaults(func=cmd_mine)

    p = sub.add_parser("train", help="contrastive fine-tuning (in-batch + mined hard negatives) on Ray "
                       "Train; saves a sentence-transformers folder")
    _add_dataset(p, split="train")
    _add_ray(p)
    p.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2", help="base model to fine-tune")
    p.add_argument("--pairs", nargs="*", default=[], help="mined Parquet tables (`densepipe mine`); none: "
                   "in-batch negatives from the qrels only")
    p.add_argument("--output", required=True, help="folder: model/, loss.json, loss.png, checkpoint/")
    from retriever.training import TrainConfig

    _add_loop(p, TrainConfig)
    from retriever.training.contrastive import LOSSES

    p.add_argument("--loss", choices=LOSSES, default=TrainConfig.loss,
                   help="infonce; debiased (Chuang 2020); dcl: decoupled (Yeh 2022); supcon: every judged positive "
                   "in the numerator (Khosla 2020); graded: qrels grades as soft targets; distill: the softmax "
                   "of a teacher run's scores as targets (--teacher)")
    p.add_argument("--teacher", default=None, help="distill: a TREC run of the training queries whose scores are "
                   "the pseudo-labels (`densepipe generate-queries --teacher` writes OUTPUT/teacher.trec)")
    p.add_argument("--teacher-temperature", type=float, default=TrainConfig.teacher_temperature,
                   help="distill: temperature of the teacher's softmax (higher: softer targets)")
    p.add_argument("--teacher-weight", type=float, default=TrainConfig.teacher_weight,
                   help="distill: the teacher's share of the target, the rest on the pair's own document")
    p.add_argument("--tau-plus", type=float, default=TrainConfig.tau_plus, help="class prior of the debiased loss")
    p.add_argument("--learn-temperature", action=argparse.BooleanOptionalAction, default=TrainConfig.learn_temperature,
                   help="learn the temperature, from --temperature (default: on)")
    p.add_argument("--temperature-lr", type=float, default=TrainConfig.temperature_lr,
                   help=f"the learned temperature's learning rate (default {TrainConfig.temperature_lr})")
    p.add_argument("--max-positives", type=int, default=TrainConfig.max_positives,
                   help="supcon/graded: other judged positives of a query added to its batch, at most")
    p.add_argument("--graded-gain", choices=("exponential", "linear"), default=TrainConfig.graded_gain)
    p.add_argument("--queue-size", type=int, default=TrainConfig.queue_size,
                   help="MoCo: earlier batches' documents as extra negatives (0: none)")
    p.add_argument("--queue-momentum", type=float, default=TrainConfig.queue_momentum,
                   help="--tower both: momentum of the encoder that fills the queue")
    p.add_argument("--queue-margin", type=float, default=TrainConfig.queue_margin,
                   help="drop queue entries scoring above this x the own positive's score (0: keep all)")
    p.add_argument("--mix-negatives", type=int, default=TrainConfig.mix_negatives,
                   help="MoCHi: synthetic negatives per query mixed from two of the hardest")
    p.add_argument("--mix-query", type=int, default=TrainConfig.mix_query,
                   help="MoCHi: synthetic negatives per query mixed from the query and one of the hardest")
    p.add_argument("--mix-pool", type=int, default=TrainConfig.mix_pool, help="MoCHi: the hardest N are mixed")
    p.add_argument("--batching", choices=("random", "cluster"), default=TrainConfig.batching,
                   help="cluster (default): queries whose positive documents are neighbours share a batch; random")
    p.add_argument("--symmetric", action="store_true", help="add the document-to-query InfoNCE term")
    p.add_argument("--negatives", type=int, default=None, help="mined negatives per query per step (0: in-batch "
                   f"only); default {TrainConfig.negatives} with --pairs, 0 without")
    p.add_argument("--tower", choices=("both", "query"), default=TrainConfig.tower,
                   help="query: documents keep the base model's vectors (no re-encoding); both: one shared encoder")
    p.add_argument("--grad-cache-chunk", type=int, default=None, help="gradient cache: embed in chunks of N")
    p.add_argument("--held-out", type=float, default=0.1, help="fraction of queries evaluated during training")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("pretrain", help="self-supervised contrastive pretraining on corpus text only: span "
                       "prediction (COSTA), dropout views (SimCSE) or inverse cloze (ICT)")
    p.add_argument("--dataset", required=True, help="a BEIR folder (corpus.jsonl is all it reads) or name")
    p.add_argument("--max-docs", type=int, default=None)
    _add_ray(p)
    from retriever.pretraining import PretrainConfig

    p.add_argument("--task", choices=("span", "dropout", "ict"), default=PretrainConfig.task,
                   help=f"span: COSTA span prediction; dropout: SimCSE; ict: inverse cloze (default: "
                   f"{PretrainConfig.task})")
    p.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    p.add_argument("--output", required=True)
    _add_loop(p, PretrainConfig)
    p.add_argument("--max-texts", type=int, default=None, help="a seeded sample of the corpus")
    p.add_argument("--mlm-weight", type=float, default=0.0, help="add COSTA's masked-language-modelling term "
                   "with this weight (a fresh MLM head, dropped afterwards)")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("hyde", help="HyDE: generate hypothetical documents per query (cached), average their "
                       "embeddings with the query's, search and evaluate")
    _add_dataset(p)
    _add_encoder(p, shards=False, backend_flag="--encoder-backend")
    _add_ray(p)
    p.add_argument("--output", required=True, help="folder: generations/ cache, query_vectors.parquet, run.trec")
    _add_generator(p, max_new_tokens=128)
    from retriever.hyde.prompts import PROMPTS

    p.add_argument("--template", default="web", help=f"prompt name ({', '.join(PROMPTS)}) or a template "
                   "with {query}")
    p.add_argument("--n", type=int, default=4, help="hypothetical documents per query")
    p.add_argument("--exclude-query", action="store_true", help="average the documents only")
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--max-queries", type=int, default=None)
    p.set_defaults(func=cmd_hyde)

    p = sub.add_parser("generate-queries", help="label-free training pairs: queries generated for sampled "
                       "documents (cached), title -> document pairs, a round-trip filter; writes a BEIR folder "
                       "whose qrels/train.tsv `mine` and `train` read (no judgment of the dataset is opened)")
    p.add_argument("--dataset", required=True, help="a BEIR folder (its corpus is all it reads) or name")
    p.add_argument("--max-docs", type=int, default=None)
    _add_encoder(p, shards=False, backend_flag="--encoder-backend")
    _add_ray(p)
    p.add_argument("--output", required=True, help="the pairs folder (BEIR), with generations/ and generate.json")
    p.add_argument("--sources", default="generated", help="comma-separated: generated, title")
    p.add_argument("--docs", type=int, default=1000, help="documents sampled, for both sources (0: all)")
    p.add_argument("--per-doc", type=int, default=1, help="queries generated per sampled document")
    _add_generator(p, max_new_tokens=48)
    from retriever.synthetic import QUERY_PROMPTS

    p.add_argument("--template", default="question", help=f"prompt name ({', '.join(QUERY_PROMPTS)}) or a "
                   "template with {document}")
    p.add_argument("--max-doc-chars", type=int, default=1500, help="the document is cut to this in the prompt")
    p.add_argument("--filter", default="bm25", help="round-trip retrievers, comma-separated (bm25, dense) or none")
    p.add_argument("--k", type=int, default=10, help="keep a query whose source ranks within this many hits")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--cache", default=None, help="generations cache folder (default: OUTPUT/generations)")
    p.add_argument("--teacher", action="store_true", help="also write OUTPUT/teacher.trec, BM25 fused with the "
                   "dense model for the kept queries: pseudo-labels for `train --loss distill --teacher`")
    p.add_argument("--teacher-depth", type=int, default=100, help="hits of each retriever fused for the teacher")
    p.set_defaults(func=cmd_generate_queries)

    p = sub.add_parser("leaderboard", help="one model (and BM25) on several BEIR datasets: a BEIR-style nDCG@10 "
                       "table with published figures and averages")
    p.add_argument("--datasets", required=True, help="comma-separated BEIR names or folders")
    p.add_argument("--split", default="test")
    p.add_argument("--max-docs", type=int, default=None)
    p.add_argument("--no-bm25", action="store_true")
    p.add_argument("--output", default="leaderboard", help="folder for runs and leaderboard.{md,json}")
    _add_encoder(p, shards=False)
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("run", help="run a pipeline config (TOML or YAML); unchanged stages are skipped")
    p.add_argument("config")
    p.add_argument("--dry-run", action="store_true", help="print the plan (cached or not) and estimates only")
    _add_cluster(p)
    _add_policy(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("plan", help="pick a variant from a finished sweep under a memory budget")
    p.add_argument("--sweep", required=True, help="sweep.json from `densepipe compress`")
    p.add_argument("--memory-budget", default=None)
    p.add_argument("--bytes-per-vector", type=float, default=None)
    p.set_defaults(func=cmd_plan)
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    from retriever.data.validation import reset_accepted

    reset_accepted()
    policy = os.environ.get("DRP_DATA_POLICY")  # restored afterwards: a later in-process command starts afresh
    if getattr(a, "strict", False) or getattr(a, "skip_malformed", False):  # inherited by workers and children
        os.environ["DRP_DATA_POLICY"] = "strict" if a.strict else "skip-malformed"
    try:
        return _run_command(a)
    finally:
        if policy is None:
            os.environ.pop("DRP_DATA_POLICY", None)
        else:
            os.environ["DRP_DATA_POLICY"] = policy


def _run_command(a) -> int:
    try:
        with _stdout_to_stderr():
            code, result = a.func(a)
            from retriever.data.validation import accepted_problems

            problems = accepted_problems()
            if isinstance(result, dict) and problems:
                result["data_problems"] = problems
    except DensepipeError as e:
        print(f"densepipe: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("densepipe: interrupted; finished shards and checkpoints are kept: rerun the same command to go on "
              "from there.", file=sys.stderr)
        return 130
    print(json.dumps(result, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
