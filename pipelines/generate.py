"""The label-free stage (``densepipe generate-queries``, ``[generate]``): training pairs for a corpus without
judgments. From a seeded sample of documents, queries are generated (the generations cached like HyDE's, in
``OUTPUT/generations``, so a rerun generates nothing; in-process or on Ray actors) and cleaned, and/or title ->
document pairs are taken; a pair is kept only when the round-trip filter's retrievers rank their source document within
the top k. The result is a BEIR folder (``retriever/synthetic.write_pairs``) whose ``qrels/train.tsv`` the mining
and training stages read as their training split; with ``teacher``, also ``teacher.trec``: BM25 fused with the dense
model for the kept queries, the pseudo-labels the distill loss learns from.

Only the corpus is opened: ``prepare(..., labels=False)`` reads no queries and no judgments, whatever the
dataset folder holds."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from retriever.encoders import EncoderConfig
from retriever.hyde import ExpansionReport, GenerationCache, generate_texts
from retriever.synthetic import Pair, clean_query, render_query_prompt, round_trip, sample_documents, title_pairs
from retriever.types import ConfigError

from pipelines.runtime import RayEnv
from pipelines.workspace import prepare

log = logging.getLogger("densepipe.generate")

SOURCES = ("generated", "title")
FILTERS = ("bm25", "dense")


@dataclass(frozen=True)
class GenerateJob:
    dataset: str
    output: str  # the BEIR folder of pairs (and generations/, the cache)
    sources: tuple[str, ...] = ("generated",)  # "generated" queries and/or "title" -> document pairs
    docs: int | None = 1000  # documents sampled (both sources draw on them); None: all
    per_doc: int = 1  # queries generated per sampled document
    generator: str = "smollm2"
    backend: str = "transformers"  # for GGUF generators: "transformers" or "llama.cpp"
    endpoint_model: str | None = None
    template: str = "question"  # a name in retriever.synthetic.QUERY_PROMPTS or a template with {document}
    max_doc_chars: int = 1500
    temperature: float = 0.7
    seed: int = 0
    max_new_tokens: int = 48
    batch_size: int = 16  # prompts per generation call
    filter: tuple[str, ...] = ("bm25",)  # round-trip retrievers ("bm25", "dense"); () keeps every pair
    k: int = 10  # ... each must rank the source document within its top k
    encoder: EncoderConfig = EncoderConfig()  # the dense round-trip retriever
    embeddings: str | None = None  # its corpus embeddings (default: the work cache's)
    bm25_k1: float = 0.9
    bm25_b: float = 0.4
    engine: str = "local"  # "local" or "ray" (generation batches on actors)
    num_workers: int = 1
    ray: RayEnv = field(default_factory=RayEnv)
    docs_per_shard: int = 50_000
    max_docs: int | None = None
    cache: str | None = None  # the generations' cache folder (default: OUTPUT/generations); jobs may share one
    teacher: bool = False  # also write OUTPUT/teacher.trec: BM25 fused with the dense model, the distill loss's labels
    teacher_depth: int = 100  # ... each retriever's top hits per kept query that are fused

    def __post_init__(self) -> None:
        if not self.sources or set(self.sources) - set(SOURCES):
            raise ConfigError(f"generate sources must be some of {SOURCES}, got {list(self.sources)}.")
        if set(self.filter) - set(FILTERS):
            raise ConfigError(f"generate filter must be some of {FILTERS} (or empty), got {list(self.filter)}.")
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"generate engine must be 'local' or 'ray', got {self.engine!r}.")
        if self.per_doc < 1 or self.k < 1 or self.teacher_depth < 1 or (self.docs is not None and self.docs < 1):
            raise ConfigError("generate per_doc, k, teacher_depth and docs must be >= 1.")


def _generate(job: GenerateJob, docs, report: ExpansionReport, generator=None) -> tuple[list[Pair], list[dict]]:
    """Generated (query, source document) pairs, and the generations that gave no usable query: none could be
    read out of it, or the same query came back for several documents (a generic one)."""
    from pipelines.hyde import _Lazy, _on_ray

    prompts = {d.id: render_query_prompt(job.template, d.title or "", d.text or "", job.max_doc_chars)
               for d in docs}
    texts = generate_texts(prompts, generator or _Lazy(job), job.per_doc, job.temperature, job.seed,
                           GenerationCache(job.cache or Path(job.output) / "generations"), report, job.batch_size,
                           _on_ray(job) if job.engine == "ray" else None, what="generate")
    cleaned = {(doc_id, i): clean_query(text) for doc_id, generated in texts.items()
               for i, text in enumerate(generated)}
    sources: dict[str, set] = {}
    for (doc_id, _), query in cleaned.items():
        if query is not None:
            sources.setdefault(query.lower(), set()).add(doc_id)
    pairs, unusable, seen = [], [], set()
    for (doc_id, i), query in cleaned.items():
        if query is None or len(sources[query.lower()]) > 1:  # nothing usable, or a generic query ("What is
            unusable.append({"doc_id": doc_id, "generation": texts[doc_id][i]})  # the answer?") of several documents
        elif (doc_id, query.lower()) not in seen:  # the same query twice for one document counts once
            seen.add((doc_id, query.lower()))
            pairs.append(Pair(f"gen-{doc_id}-{i}", query, doc_id, "generated"))
    return pairs, unusable


def _runs(job: GenerateJob, prep, queries: dict[str, str], names, depth: int) -> dict[str, dict]:
    """Retriever name ("bm25", "dense") -> its run of ``queries`` at ``depth`` over the corpus."""
    out = {}
    for name in names:
        if name == "bm25":
            import os

            from retriever.sparse import BM25Config, BM25Searcher

            searcher = BM25Searcher(prep.lucene_index(threads=os.cpu_count() or 1),
                                    BM25Config(k1=job.bm25_k1, b=job.bm25_b))
            try:
                out[name] = searcher.search(queries, depth)
            finally:
                searcher.close()
        else:
            from pipelines.baselines import dense_searcher

            out[name] = dense_searcher(prep, job.encoder, embeddings=job.embeddings).search(queries, depth)
    return out


def _rankings(job: GenerateJob, prep, pairs: list[Pair]) -> dict[str, dict[str, list[str]]]:
    """Retriever name -> query id -> the top-k document ids, for the round-trip filter."""
    runs = _runs(job, prep, {p.query_id: p.query for p in pairs}, job.filter, job.k)
    return {name: {q: [d for d, _ in sorted(hits.items(), key=lambda x: (-x[1], x[0]))] for q, hits in run.items()}
            for name, run in runs.items()}


def write_teacher(job: GenerateJob, prep, pairs: list[Pair], path: Path) -> dict:
    """The distill loss's pseudo-labels for the kept pairs' queries: BM25 and the dense model's top
    ``teacher_depth`` each, z-scored and summed (the [fuse] stage's default, picked on SciFact's training
    queries: benchmarks/fusion.py), as a TREC run. Returns how often the teacher ranks the pair's source first."""
    from retriever.data.trec import sorted_hits, write_run
    from retriever.eval.fusion import fuse

    t0 = time.perf_counter()
    queries = {p.query_id: p.query for p in pairs}
    runs = _runs(job, prep, queries, ("bm25", "dense"), job.teacher_depth)
    fused = fuse([runs["bm25"], runs["dense"]], "convex", norm="zscore", depth=job.teacher_depth)
    write_run(fused, path, tag="densepipe-teacher")
    source = {p.query_id: p.doc_id for p in pairs}
    ranks = [next((i for i, (d, _) in enumerate(sorted_hits(fused.get(q, {})), 1) if d == source[q]), None)
             for q in sorted(queries)]
    return {"run": str(path), "queries": len(queries), "depth": job.teacher_depth,
            "source_first": sum(r == 1 for r in ranks), "source_missing": sum(r is None for r in ranks),
            "seconds": round(time.perf_counter() - t0, 1)}


def run_generate(job: GenerateJob, generator=None) -> dict:
    """Generate (or read back), clean, add title pairs, filter, and write the pairs folder with
    ``generate.json`` (counts, seconds, examples kept and dropped) and ``candidates.jsonl`` (every candidate
    pair with its source's rank under each filter retriever)."""
    import json

    from retriever.atomic import atomic_path, write_json
    from retriever.data.stream import corpus_file
    from retriever.data.resolve import resolve_dataset
    from retriever.synthetic import write_pairs

    t0 = time.perf_counter()
    prep = prepare(job.dataset, docs_per_shard=job.docs_per_shard, max_docs=job.max_docs, labels=False)
    corpus = prep.dataset.corpus
    documents = (d for batch in corpus.batches(10_000) for d in batch)
    report = ExpansionReport()
    pairs: list[Pair] = []
    unusable: list[dict] = []
    sampled, empty = sample_documents(documents, job.docs, job.seed)  # both sources draw on the same sample
    if "generated" in job.sources:
        generated, unusable = _generate(job, sampled, report, generator)
        pairs += generated
    t_gen = time.perf_counter() - t0
    if "title" in job.sources:
        pairs += title_pairs(sampled)
    t1 = time.perf_counter()
    kept, ranks = round_trip(pairs, _rankings(job, prep, pairs), job.k) if job.filter and pairs else (pairs, {})
    if not kept:
        raise ConfigError(f"generate: no pair survived ({len(pairs)} candidates, filter {list(job.filter)} at k = "
                          f"{job.k}); raise k, drop the filter, or check the generations in {job.output}/generations.")
    out = Path(job.output)
    write_pairs(out, corpus_file(resolve_dataset(job.dataset)), kept)
    kept_ids = {p.query_id for p in kept}
    teacher = write_teacher(job, prep, kept, out / "teacher.trec") if job.teacher else None
    with atomic_path(out / "candidates.jsonl") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for i, p in enumerate(pairs):
                f.write(json.dumps({**asdict(p), "kept": p.query_id in kept_ids,
                                    **{f"rank_{n}": r[i] for n, r in ranks.items()}}, ensure_ascii=False) + "\n")
    by_source = {s: {"candidates": c, "kept": Counter(p.source for p in kept)[s]}
                 for s, c in Counter(p.source for p in pairs).items()}
    dropped = [p for p in pairs if p.query_id not in kept_ids and p.source == "generated"]
    info = {"dataset": job.dataset, "output": str(out), "job": {**asdict(job), "encoder": job.encoder.to_dict()},
            "documents": len(corpus), "sampled_documents": len(sampled), "empty_documents_skipped": empty,
            "generation": {**report.to_dict(), "unusable": len(unusable)}, "pairs": by_source,
            "kept": len(kept), "candidates": len(pairs), **({"teacher": teacher} if teacher else {}),
            "seconds": {"generate": round(t_gen, 1), "filter": round(time.perf_counter() - t1, 1)},
            "seconds_per_document_generating": round(t_gen / max(1, len(sampled)), 3) if report.generated else None,
            "examples": {"kept": [p.query for p in kept if p.source == "generated"][:5],
                         "dropped_by_filter": [p.query for p in dropped][:5],
                         "unusable": [u["generation"][:200] for u in unusable][:5]}}
    if empty:
        log.warning("densepipe: warning: generate: %d empty documents were not sampled", empty)
    write_json(out / "generate.json", info)
    return info
