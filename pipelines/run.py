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

# nDCG@10 figures published for reference (source named in benchmarks/baselines.py)
PUBLISHED = {"scifact": {"bm25": 0.6789, "sentence-transformers/all-MiniLM-L6-v2": 0.6451}}
UPSTREAM = {"bm25": ["prepare"], "encode": ["prepare"], "index": ["encode"], "search": ["index"],
            "compress": ["encode"]}


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

    # -- planning -------------------------------------------------------------------------------------------
    def prep(self):
        if self._prep is None:
            from pipelines.workspace import prepare

            r = self.config.run
            self._prep = prepare(r.dataset, r.split, r.docs_per_shard, max_docs=r.max_docs)
        return self._prep

    def keys(self) -> dict[str, str]:
        from retriever.data.parquet import corpus_hash, queries_hash

        prep = self.prep()
        keys = {"prepare": _key(corpus_hash(prep.dataset.corpus), queries_hash(prep.dataset.queries),
                                prep.dataset.qrels, self.config.run.split)}
        for stage in self.config.stages():
            section = self.config.section_dict(stage)
            if stage == "encode":  # engine and workers change how, not what
                section = {k: v for k, v in section.items() if k not in ("engine", "num_workers")}
            keys[stage] = _key(stage, section, [keys[u] for u in UPSTREAM[stage]])
        return keys

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

    def _encoder(self):
        from retriever.encoders import EncoderConfig

        c = self.config.encode
        return EncoderConfig(model=c.model, batch_size=c.batch_size, max_seq_length=c.max_seq_length)

    def _stage_encode(self) -> dict:
        from pipelines.encode import EncodeConfig, encode_corpus

        c = self.config.encode
        manifest = encode_corpus(self.prep().corpus_dir, self._embeddings(),
                                 EncodeConfig(self._encoder(), engine=c.engine, num_workers=c.num_workers,
                                              ray_address=self.config.run.ray_address), progress=self.progress)
        return {"embeddings": str(self._embeddings()), "last_run": manifest["last_run"]}

    def _embeddings(self) -> Path:
        """Embedding shards of this run (its own: a stage key vouches only for what this run wrote)."""
        return self.dir / "embeddings"

    def _stage_index(self) -> dict:
        from indexes import IndexSpec, parse_bytes
        from pipelines.index_stage import index_embeddings

        c = self.config.index
        manifest = index_embeddings(self._embeddings(), self.dir / "index",
                                    IndexSpec(c.factory, search_params=c.search_params),
                                    parse_bytes(c.memory_budget) if c.memory_budget else None, c.merged,
                                    progress=self.progress)
        return {"index": str(self.dir / "index"), "factory": manifest["factory"],
                "estimated_index_bytes": manifest["estimated_index_bytes"]}

    def _stage_search(self) -> dict:
        from pipelines.baselines import search_and_evaluate

        r = self.config.run
        res = search_and_evaluate(str(self.dir / "index"), r.dataset, r.split, str(self.dir / "dense.trec"),
                                  self._encoder(), k=self.config.search.k, max_docs=r.max_docs, remove_query=True)
        return {"run_file": res["run"], "factory": res["factory"], "metrics": res["metrics"]}

    def _stage_compress(self) -> dict:
        from pipelines.compress import compress_prepared

        rows = compress_prepared(self.prep(), self._embeddings(), self._encoder(), self.dir / "compress",
                                 self.config.compress.variants, self.progress)
        out = {"sweep": str(self.dir / "compress" / "sweep.json"),
               "rows": [{"name": r.name, "index_bytes": r.index_bytes, "ndcg@10": r.metrics["ndcg@10"]}
                        for r in rows]}
        if self.config.compress.memory_budget:
            from indexes import parse_bytes
            from indexes.compress import pick

            out["picked"] = pick(rows, parse_bytes(self.config.compress.memory_budget)).to_dict()
        return out

    # -- report ---------------------------------------------------------------------------------------------
    def report(self, results: dict[str, dict]) -> str:
        r = self.config.run
        published = PUBLISHED.get(Path(r.dataset).name, {})
        lines = [f"# densepipe run: {r.dataset} ({r.split})", "", "## Metrics", "",
                 "| system | nDCG@10 | published nDCG@10 | MRR@10 | Recall@100 |", "|---|---|---|---|---|"]
        if "bm25" in results:
            m = results["bm25"]["metrics"]
            lines.append(f"| BM25 flat (Pyserini) | {m['ndcg@10']:.4f} | {published.get('bm25', '')} | "
                         f"{m['mrr@10']:.4f} | {m['recall@100']:.4f} |")
        if "search" in results:
            m, model = results["search"]["metrics"], self.config.encode.model
            lines.append(f"| {model} · {results['search']['factory']} | {m['ndcg@10']:.4f} | "
                         f"{published.get(model, '')} | {m['mrr@10']:.4f} | {m['recall@100']:.4f} |")
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
        path = self.dir / "report.md"
        write_text(path, "\n".join(lines))
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
