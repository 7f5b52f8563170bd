"""``densepipe run CONFIG``: the stages of a config in order, each cached under a key hashed from its own
section and the keys of the stages it reads, so an unchanged stage is skipped on rerun and a changed one is
redone with everything after it. Every stage records its key, timing and outputs in ``stages/<name>.json``
inside the run folder; the run ends with a Markdown report."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.config import PipelineConfig
from retriever.atomic import read_json, write_json, write_text
from retriever.types import ConfigError



def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class StagePlan:
    name: str
    key: str
    cached: bool

    def to_dict(self) -> dict:
        return {"stage": self.name, "key": self.key, "cached": self.cached}


class PipelineRun:
    def __init__(self, config: PipelineConfig, progress: bool = True):
        self.config = config
        self.dir = Path(config.run.output)
        self.progress = progress
        self._prep = None

    def ray_env(self):
        """One RayEnv for every Ray stage of the run, from [run] (and the command line's overrides)."""
        from pipelines.runtime import RayEnv

        r = self.config.run
        return RayEnv(address=r.ray_address, storage=r.storage, cpus_per_worker=r.cpus_per_worker)

    # -- planning -------------------------------------------------------------------------------------------
    def prep(self):
        if self._prep is None:
            from pipelines.workspace import prepare

            r = self.config.run
            self._prep = prepare(r.dataset, r.split, r.docs_per_shard, max_docs=r.max_docs)
        return self._prep

    def keys(self) -> dict[str, str]:
        from retriever.data.parquet import queries_hash

        prep = self.prep()
        keys = {"prepare": _key(prep.data_hash, queries_hash(prep.dataset.queries),
                                prep.dataset.qrels, self.config.run.split)}
        for stage in self.config.stages():
            section = self.config.section_dict(stage)
            if stage in ("pretrain", "encode", "encode_tuned", "generate", "mine"):  # engine and workers: how, not what
                section = {k: v for k, v in section.items() if k not in ("engine", "num_workers")}
            if stage == "train" and section.get("teacher"):  # a user's teacher run: its content, not its name
                teacher = Path(section["teacher"])
                if not teacher.is_file():
                    raise ConfigError(f"[train] teacher {teacher} is not a file: give a TREC run of the training "
                                      "queries.")
                section = {**section, "teacher": hashlib.sha256(teacher.read_bytes()).hexdigest()}
            keys[stage] = _key(stage, section, [keys[u] for u in self.upstream(stage)])
        return keys

    def upstream(self, stage: str) -> list[str]:
        """The stages whose outputs ``stage`` reads (their keys are part of its key)."""
        stages = self.config.stages()
        final_vectors = "encode_tuned" if "encode_tuned" in stages else "encode"
        tuned = ["train"] if "train" in stages else []
        pretrained = ["pretrain"] if "pretrain" in stages else []
        generated = ["generate"] if "generate" in stages else []
        return {"pretrain": ["prepare"], "bm25": ["prepare"], "encode": ["prepare", *pretrained], "dense": ["encode"],
                "generate": ["prepare"] + (["encode"] if "encode" in stages else []),
                "mine": ["prepare", *generated] + (["encode"] if self.config.mine and "dense" in self.config.mine.retrievers
                                       else [])
                        + (["bm25"] if "bm25" in stages and self.config.mine and "bm25" in self.config.mine.retrievers
                           else []),  # [bm25] k1 and b shape the BM25 negatives
                "train": ["prepare", "encode", *generated] + (["mine"] if "mine" in stages else []),
                "encode_tuned": ["train"], "index": [final_vectors], "search": ["index", *tuned],
                "fuse": ["bm25", "search" if "search" in stages else "dense"],
                "compress": [final_vectors, *tuned]}[stage]

    def _manifest(self, stage: str) -> Path:
        return self.dir / "stages" / f"{stage}.json"

    def plan(self) -> list[StagePlan]:
        out = []
        for stage, key in self.keys().items():
            m = self._manifest(stage)
            out.append(StagePlan(stage, key, m.is_file() and read_json(m).get("key") == key))
        return out

    def estimates(self) -> dict:
        """Disk for the embeddings and memory for the index, before anything runs."""
        from indexes import IndexSpec, estimate_memory

        n = len(self.prep().dataset.corpus)
        out: dict = {"documents": n}
        if self.config.encode is not None:
            d = _model_dim(self.config.encode.model)
            out["embedding_dim"] = d
            out["embeddings_disk_bytes"] = n * d * 4 if d else None
            if self.config.index is not None and d:
                spec = IndexSpec(self.config.index.factory)
                out["index_memory_bytes"] = estimate_memory(spec.resolve(n), d, n).peak_bytes
            if self.config.encode.segment_tokens:
                out["note"] = ("documents are cut into windows ([encode].segment_tokens): the estimates count one "
                               "vector a document, a lower bound (times the windows a document has)")
        return out

    # -- running --------------------------------------------------------------------------------------------
    def execute(self) -> dict:
        plan = self.plan()
        results: dict[str, dict] = {}
        for step in plan:
            path = self._manifest(step.name)
            if step.cached:
                results[step.name] = {**read_json(path), "skipped": True}
                continue
            t0 = time.perf_counter()
            outputs = getattr(self, f"_stage_{step.name}")()
            record = {"key": step.key, "seconds": round(time.perf_counter() - t0, 2), **outputs}
            write_json(path, record)
            results[step.name] = {**record, "skipped": False}
        report = self.report(results)
        return {"run": str(self.dir), "stages": {k: {"skipped": v["skipped"], "seconds": v["seconds"]}
                                                 for k, v in results.items()}, "report": report,
                "metrics": {k: v["metrics"] for k, v in results.items() if "metrics" in v}}

    def _stage_prepare(self) -> dict:
        prep = self.prep()
        return {"corpus": str(prep.corpus_dir), "documents": len(prep.dataset.corpus),
                "queries": len(prep.dataset.queries)}

    def _stage_bm25(self) -> dict:
        from pipelines.baselines import run_bm25

        c, r = self.config.bm25, self.config.run
        res = run_bm25(r.dataset, r.split, str(self.dir / "bm25.trec"), k=c.k, k1=c.k1, b=c.b,
                       remove_query=True, max_docs=r.max_docs)
        return {"run_file": res["run"], "metrics": res["metrics"]}

    def _stage_pretrain(self) -> dict:
        from pipelines.config import loop_config
        from pipelines.pretrain import PretrainJob, run_pretraining
        from retriever.pretraining import PretrainConfig

        c, r = self.config.pretrain, self.config.run
        job = PretrainJob(r.dataset, str(self.dir / "pretrain"), self.config.encode.model,
                          loop_config(PretrainConfig, c), c.max_texts, c.engine, c.num_workers, self.ray_env(),
                          docs_per_shard=r.docs_per_shard,
                          max_docs=r.max_docs)
        info = run_pretraining(job)
        return {"model": info["model"], "loss_png": str(self.dir / "pretrain" / "loss.png"), "task": c.task,
                "texts": info["texts"], "steps": info["steps"], "train_seconds": info["train_seconds"],
                "final_loss": info["final_loss"]}

    def _base_model(self) -> str:
        """The model every stage after pretraining starts from: the pretrained one when [pretrain] is set."""
        if self.config.pretrain is not None:
            return str(self.dir / "pretrain" / "model")
        return self.config.encode.model

    def _encoder(self):
        from retriever.encoders import EncoderConfig

        c = self.config.encode
        return EncoderConfig(model=self._base_model(), batch_size=c.batch_size, max_seq_length=c.max_seq_length,
                             backend=c.backend, quantize=c.quantize, model_dtype=c.model_dtype,
                             segment_tokens=c.segment_tokens, segment_stride=c.segment_stride,
                             segment_title=c.segment_title)

    def _encode_into(self, folder: Path, encoder) -> dict:
        from pipelines.encode import EncodeConfig, encode_corpus

        c = self.config.encode
        manifest = encode_corpus(self.prep().corpus_dir, folder,
                                 EncodeConfig(encoder, engine=c.engine, num_workers=c.num_workers,
                                              ray=self.ray_env()), progress=self.progress)
        return {"embeddings": str(folder), "last_run": manifest["last_run"]}

    def _stage_encode(self) -> dict:
        return self._encode_into(self._embeddings(), self._encoder())

    def _embeddings(self) -> Path:
        """Embedding shards of this run (its own: a stage key vouches only for what this run wrote)."""
        return self.dir / "embeddings"

    def _whole_documents(self) -> tuple[str, object]:
        """(embeddings folder, encoder) of one vector per document, for mining, the dense round trip and training
        against fixed document vectors: the run's own when it does not cut documents into windows; otherwise a
        folder of whole-document vectors beside them (encoded by the first stage that reads it), the windows
        serving the dense baseline and the index (the recipe benchmarks/windows.py measured)."""
        from dataclasses import replace

        encoder = self._encoder()
        if not encoder.segment_tokens:
            return str(self._embeddings()), encoder
        return str(self.dir / "embeddings-whole"), replace(encoder, segment_tokens=None, segment_stride=None,
                                                            segment_title=False)

    def _final_embeddings(self) -> Path:
        """The corpus vectors the index is built from: the fine-tuned model's when it re-encoded the corpus."""
        return self.dir / "embeddings-tuned" if "encode_tuned" in self.config.stages() else self._embeddings()

    def _final_encoder(self):
        """The encoder for queries (and documents) after training: the fine-tuned model when there is one."""
        from dataclasses import replace

        if self.config.train is None:
            return self._encoder()
        return replace(self._encoder(), model=str(self.dir / "train" / "model"))

    def _stage_dense(self) -> dict:
        from pipelines.baselines import flat_searcher
        from retriever.data import write_run
        from retriever.eval import DEFAULT_METRICS, drop_self_hits, evaluate

        prep = self.prep()
        searcher = flat_searcher(self._embeddings(), self._encoder())
        run = drop_self_hits(searcher.search(prep.dataset.queries, self.config.dense.k))
        write_run(run, self.dir / "dense-base.trec")
        return {"run_file": str(self.dir / "dense-base.trec"), "model": self._base_model(),
                "metrics": evaluate(prep.dataset.qrels, run, DEFAULT_METRICS).to_dict(),
                "geometry": searcher.geometry(prep.dataset.queries, prep.dataset.qrels)}

    def _training_data(self) -> str:
        """The dataset [mine] and [train] read their training split from: the generated pairs' folder when
        [generate] is set (the run's dataset then lends only its corpus), else the run's dataset."""
        if self.config.generate is None:
            return self.config.run.dataset
        from pipelines.workspace import slug

        return str(self.dir / f"{slug(Path(self.config.run.dataset).name)}-generated")

    def _stage_generate(self) -> dict:
        from pipelines.config import generate_job
        from pipelines.generate import run_generate

        r = self.config.run
        whole, encoder = self._whole_documents() if self.config.encode else (None, self._encoder())
        job = generate_job(self.config.generate, r.dataset, self._training_data(), encoder=encoder, embeddings=whole,
                           bm25_k1=self.config.bm25.k1 if self.config.bm25 else 0.9,
                           bm25_b=self.config.bm25.b if self.config.bm25 else 0.4, ray=self.ray_env(),
                           docs_per_shard=r.docs_per_shard, max_docs=r.max_docs)
        info = run_generate(job)
        keep = ("output", "sampled_documents", "candidates", "kept", "pairs", "generation",
                "seconds_per_document_generating", "examples")
        return {**{k: info[k] for k in keep}, "timing": info["seconds"]}  # "seconds" is the stage's own

    def _stage_mine(self) -> dict:
        from pipelines.mine import MineJob, mine_pairs
        from retriever.mining import MiningConfig

        c, r = self.config.mine, self.config.run
        cfg = MiningConfig(depth=c.depth, num_negatives=c.num_negatives, margin=c.margin or None,
                           margin_mode=c.margin_mode,
                           rank_range=(1, c.depth))
        bm25 = {"bm25_k1": self.config.bm25.k1, "bm25_b": self.config.bm25.b} if self.config.bm25 else {}
        tables = {}
        whole, encoder = self._whole_documents()
        for retriever in c.retrievers:
            job = MineJob(self._training_data(), str(self.dir / "mine" / f"{retriever}.parquet"), retriever, c.split, cfg,
                          encoder, c.engine, c.num_workers, ray=self.ray_env(),
                          docs_per_shard=r.docs_per_shard, max_docs=r.max_docs, embeddings=whole, **bm25)
            tables[retriever] = mine_pairs(job)
        return {"tables": {k: v["output"] for k, v in tables.items()},
                "reports": {k: v["report"] for k, v in tables.items()}}

    def _stage_train(self) -> dict:
        from pipelines.config import loop_config
        from pipelines.train import TrainJob, run_training
        from retriever.training import TrainConfig

        c, r = self.config.train, self.config.run
        pairs = ()
        if self.config.mine is not None:
            pairs = tuple(str(self.dir / "mine" / f"{x}.parquet") for x in self.config.mine.retrievers)
        whole, encoder = self._whole_documents()
        job = TrainJob(self._training_data(), str(self.dir / "train"), self._base_model(), c.split, pairs, c.held_out,
                       config=loop_config(TrainConfig, c), engine=c.engine, num_workers=c.num_workers,
                       ray=self.ray_env(), docs_per_shard=r.docs_per_shard, max_docs=r.max_docs,
                       embeddings=whole, doc_encoder=encoder, teacher=self._teacher())
        info = run_training(job)
        return {"model": info["model"], "loss_png": str(self.dir / "train" / "loss.png"), "steps": info["steps"],
                "train_seconds": info["train_seconds"], "held_out_evals": info["held_out_evals"],
                "examples": info["examples"], "final_loss": info["final_loss"],
                "final_temperature": info.get("final_temperature")}  # set when the temperature is learned

    def _teacher(self) -> str | None:
        """The distill loss's run: [train] teacher, else the one [generate] writes with teacher = true (the config's
        checks make sure the distill loss has one and that no other loss gets one)."""
        c, g = self.config.train, self.config.generate
        if c.loss == "distill" and not c.teacher and g is not None and g.teacher:
            return str(Path(self._training_data()) / "teacher.trec")
        return c.teacher

    def _stage_encode_tuned(self) -> dict:
        return self._encode_into(self._final_embeddings(), self._final_encoder())

    def _stage_index(self) -> dict:
        from indexes import IndexSpec, parse_bytes
        from pipelines.index_stage import index_embeddings

        c = self.config.index
        manifest = index_embeddings(self._final_embeddings(), self.dir / "index",
                                    IndexSpec(c.factory, search_params=c.search_params),
                                    parse_bytes(c.memory_budget) if c.memory_budget else None, c.merged,
                                    progress=self.progress)
        return {"index": str(self.dir / "index"), "factory": manifest["factory"],
                "estimated_index_bytes": manifest["estimated_index_bytes"]}

    def _stage_search(self) -> dict:
        from pipelines.baselines import search_and_evaluate

        r = self.config.run
        res = search_and_evaluate(str(self.dir / "index"), r.dataset, r.split, str(self.dir / "dense.trec"),
                                  self._final_encoder(), k=self.config.search.k, max_docs=r.max_docs, remove_query=True)
        return {"run_file": res["run"], "factory": res["factory"], "metrics": res["metrics"]}

    def _stage_fuse(self) -> dict:
        from retriever.data import read_run, write_run
        from retriever.eval import DEFAULT_METRICS
        from retriever.eval.fusion import compare_fused, fuse

        c = self.config.fuse
        dense = self.dir / ("dense.trec" if "search" in self.config.stages() else "dense-base.trec")
        runs = [read_run(self.dir / "bm25.trec"), read_run(dense)]
        fused = fuse(runs, c.method, c.weights, c.rrf_k, c.norm, c.depth)
        write_run(fused, self.dir / "fused.trec", tag=f"densepipe-{c.method}")
        compared = compare_fused(fused, runs, self.prep().dataset.qrels, DEFAULT_METRICS)  # tests on ndcg@10
        tests = {name: row["fused_vs_this"] for name, row in zip(("bm25", "dense"), compared["inputs"])
                 if "fused_vs_this" in row}
        return {"run_file": str(self.dir / "fused.trec"), "inputs": ["bm25.trec", dense.name],
                "metrics": compared["fused"], "fused_vs": tests}

    def _stage_compress(self) -> dict:
        from pipelines.compress import compress_prepared

        rows = compress_prepared(self.prep(), self._final_embeddings(), self._final_encoder(), self.dir / "compress",
                                 self.config.compress.variants, self.progress)
        out = {"sweep": str(self.dir / "compress" / "sweep.json"),
               "rows": [{"name": r.name, "index_bytes": r.index_bytes, **r.metrics} for r in rows]}
        if self.config.compress.memory_budget:
            from indexes import parse_bytes
            from indexes.compress import pick

            out["picked"] = pick(rows, parse_bytes(self.config.compress.memory_budget)).to_dict()
        return out

    # -- report ---------------------------------------------------------------------------------------------
    def report(self, results: dict[str, dict]) -> str:
        """``report.md`` and ``report.html`` in the run folder; returns the Markdown path."""
        from pipelines.report_html import markdown_to_html

        r = self.config.run
        from pipelines.published import published

        reference = published

        dataset = Path(r.dataset).name
        base = self.config.encode.model if self.config.encode else None
        pretrained = self.config.pretrain is not None
        if pretrained:
            base = f"{base} + {self.config.pretrain.task} pretraining"
        prep = self.prep()
        if r.max_docs is not None:  # a subset: published full-corpus figures do not apply
            title = (f"{r.dataset} ({r.split}): first {len(prep.dataset.corpus):,} documents, "
                     f"{len(prep.dataset.queries):,} queries judged on them")
            reference = lambda *_: None  # noqa: E731
        else:
            title = f"{r.dataset} ({r.split}): {len(prep.dataset.corpus):,} documents, {len(prep.dataset.queries):,} queries"
        lines = [f"# densepipe run: {title}", "", "## Metrics", "",
                 "| system | nDCG@10 | published nDCG@10 | MRR@10 | Recall@100 |", "|---|---|---|---|---|"]

        def row(name: str, m: dict, reference) -> None:
            lines.append(f"| {name} | {m['ndcg@10']:.4f} | {reference if reference is not None else '–'} | "
                         f"{m['mrr@10']:.4f} | {m['recall@100']:.4f} |")

        if "bm25" in results:
            row("BM25 flat (Pyserini)", results["bm25"]["metrics"], reference(dataset, "bm25"))
        if "dense" in results:
            row(f"{base} · exact", results["dense"]["metrics"], None if pretrained else reference(dataset, base))
        if "search" in results:
            tuned = "train" in results
            name = f"{base} fine-tuned" if tuned else base
            compare = reference(dataset, "BAAI/bge-small-en-v1.5")
            row(f"{name} · {results['search']['factory']}", results["search"]["metrics"],
                (f"{compare} (bge-small-en-v1.5, for comparison)" if compare else None) if tuned
                else None if pretrained else reference(dataset, base))
        if "fuse" in results:
            c, fused = self.config.fuse, results["fuse"]
            how = f"RRF (k={c.rrf_k:g})" if c.method == "rrf" else f"convex, {c.norm}"
            dense_name = "fine-tuned" if "train" in results and "search" in results else "dense"
            row(f"BM25 + {dense_name} · {how}, weights {c.weights[0]:g}:{c.weights[1]:g}", fused["metrics"], None)
        if "compress" in results:
            for c in results["compress"]["rows"]:
                if c["name"].startswith(("pq", "opq", "ivf")):
                    cells = " | ".join(f"{c[m]:.4f}" if isinstance(c.get(m), float) else "–"
                                       for m in ("mrr@10", "recall@100"))
                    lines.append(f"| {'fine-tuned ' if 'train' in results else ''}{base} · {c['name']} "
                                 f"({c['index_bytes'] / 1e6:.2f} MB) | {c['ndcg@10']:.4f} | – | {cells} |")
        if "pretrain" in results:
            p = results["pretrain"]
            lines += ["", "## Pretraining", "",
                      f"{p['task']} pretraining of {self.config.encode.model} on {p['texts']} corpus texts (no "
                      f"queries, no qrels): {p['steps']} steps in {p['train_seconds']} s; final loss "
                      f"{p['final_loss']}.", "", "![pretraining loss](pretrain/loss.png)"]
        if "generate" in results:
            g, c = results["generate"], self.config.generate
            parts = []
            if "generated" in c.sources:
                gen = g["pairs"].get("generated", {})
                parts.append(f"{c.per_doc} query per document from {c.generator} "
                             f"({g['seconds_per_document_generating']} s per document), {gen.get('candidates', 0)} "
                             f"usable, {gen.get('kept', 0)} kept")
            if "title" in c.sources:
                title = g["pairs"].get("title", {})
                parts.append(f"{title.get('candidates', 0)} title -> document pairs, {title.get('kept', 0)} kept")
            kept_by = (f" (kept: the round-trip filter, {', '.join(c.filter)} ranks the source within its top {c.k})"
                       if c.filter else " (no round-trip filter)")
            lines += ["", "## Label-free training pairs", "",
                      f"No judgment of {dataset} was read for training: {g['sampled_documents']} sampled documents; "
                      + "; ".join(parts) + kept_by + ".", ""]
            lines += [f"- kept: {q}" for q in g["examples"]["kept"][:3]]
            lines += [f"- dropped by the filter: {q}" for q in g["examples"]["dropped_by_filter"][:3]]
        if "train" in results:
            t = results["train"]
            evals = t["held_out_evals"]
            lines += ["", "## Fine-tuning", "",
                      f"{t['examples']} training pairs, {t['steps']} steps in {t['train_seconds']} s; final loss "
                      f"{t['final_loss']}"
                      + (f"; the learned temperature went from {self.config.train.temperature} to "
                         f"{t['final_temperature']}." if t.get("final_temperature") is not None else ".")
                      + (" Held-out queries (from the training split) during training:"
                                               if evals else " No queries were held out."), ""]
            if evals:
                lines += ["| step | " + " | ".join(k for k in evals[0] if k not in ("step", "epoch")) + " |",
                          "|---|" + "---|" * (len(evals[0]) - 2)]
            for e in evals:
                lines.append(f"| {e['step']} | " + " | ".join(str(v) for k, v in e.items()
                                                              if k not in ("step", "epoch")) + " |")
            lines += ["", "![loss curve](train/loss.png)"]
        if results.get("dense", {}).get("geometry"):
            g = results["dense"]["geometry"]
            lines += ["", "## Embedding geometry", "",
                      f"{base} on this split (Wang & Isola's measures, lower is better for both): alignment of the "
                      f"judged pairs {g.get('alignment', '–')}, uniformity of the documents "
                      f"{g.get('uniformity_docs', '–')} and of the queries {g.get('uniformity_queries', '–')}."
                      + (" The fine-tuning table above has both on the held-out training queries, before (step 0) "
                         "and after." if "train" in results else "")]
        if "mine" in results:
            lines += ["", "## Hard-negative mining", "", "| retriever | pairs | negatives | dropped: known positive "
                      "| dropped: near the positive (false-negative filter) |", "|---|---|---|---|---|"]
            for name, rep in results["mine"]["reports"].items():
                lines.append(f"| {name} | {rep['pairs']} | {rep['negatives']} | {rep['dropped_known_positive']} | "
                             f"{rep['dropped_margin']} |")
        if "compress" in results:
            lines += ["", "## Compression", "", "![memory vs nDCG@10](compress/sweep.png)", "",
                      (self.dir / "compress" / "sweep.md").read_text()]
            if "picked" in results["compress"]:
                p = results["compress"]["picked"]
                lines.append(f"Picked under the {self.config.compress.memory_budget} budget: **{p['name']}** "
                             f"({p['index_bytes']:,} bytes, nDCG@10 {p['ndcg@10']:.4f}).")
        lines += ["", "## Stages", "", "| stage | key | cached | seconds |", "|---|---|---|---|"]
        for name, res in results.items():
            lines.append(f"| {name} | `{res['key']}` | {'yes' if res['skipped'] else 'no'} | {res['seconds']} |")
        lines += ["", "## Provenance", "", f"- config: `{json.dumps(_config_dict(self.config), sort_keys=True)}`",
                  f"- python {platform.python_version()}, {_versions()}", ""]
        lines += ["Published figures: BM25 flat from Anserini's/Pyserini's BEIR regressions; models from the "
                  "MTEB leaderboard (see pipelines/published.py).", ""]
        text = "\n".join(lines)
        path = self.dir / "report.md"
        write_text(path, text)
        write_text(self.dir / "report.html", markdown_to_html(text, f"densepipe run: {r.dataset}"))
        return str(path)


def _config_dict(config: PipelineConfig) -> dict:
    return {name: config.section_dict(name) for name in ("run", *config.stages())}


def _versions() -> str:
    from pipelines.encode import _versions as versions

    v = versions()
    import faiss

    v["faiss"] = faiss.__version__
    return ", ".join(f"{k} {val}" for k, val in v.items())


def _model_dim(model: str) -> int | None:
    from retriever.encoders import resolve_model

    pooling = Path(resolve_model(model)) / "1_Pooling" / "config.json"
    if pooling.is_file():
        return int(json.loads(pooling.read_text()).get("word_embedding_dimension", 0)) or None
    return None
