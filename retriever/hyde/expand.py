"""Hypothetical documents for queries (cached), and the expanded query vector: the mean of the query's
embedding and its N hypothetical documents' embeddings (document path of the encoder), or of the documents
alone. A query whose generations all failed or came back empty keeps its plain vector, and is counted."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from retriever.hyde.cache import GenerationCache, generation_key
from retriever.hyde.prompts import render_prompt
from retriever.types import DensepipeError, Document, Encoder, Generator, Queries

log = logging.getLogger("densepipe.hyde")


@dataclass
class ExpansionReport:
    queries: int = 0
    generated: int = 0  # new generations this run
    cached: int = 0  # generations read from the cache
    empty: int = 0  # generations that came back empty (dropped)
    failed_batches: int = 0  # generator errors (their queries fall back)
    fallback_queries: list[str] = field(default_factory=list)  # queries searched with the plain query vector

    def to_dict(self) -> dict:
        return {**asdict(self), "fallbacks": len(self.fallback_queries)}


# (prompt batches, n) -> (batch index, n texts per prompt, or the error) as each batch finishes
GenerateMany = Callable[[list[list[str]], int], Iterator[tuple[int, "list[list[str]] | DensepipeError"]]]


def sequential(generator: Generator, temperature: float, seed: int) -> GenerateMany:
    """Batches one after the other in this process; a failed batch is reported, not raised."""

    def run(batches: list[list[str]], n: int):
        for i, prompts in enumerate(batches):
            try:
                yield i, generator.generate(prompts, n, temperature, seed)
            except DensepipeError as e:
                yield i, e

    return run


def hypothetical_documents(queries: Queries, generator: Generator, template: str, n: int, temperature: float,
                           seed: int, cache: GenerationCache, report: ExpansionReport, batch_size: int = 16,
                           generate: GenerateMany | None = None) -> dict[str, list[str]]:
    """N texts per query from the task prompt ``template`` (see ``generate_texts``)."""
    prompts = {q: render_prompt(template, text) for q, text in queries.items()}
    return generate_texts(prompts, generator, n, temperature, seed, cache, report, batch_size, generate)


def generate_texts(prompts: dict[str, str], generator: Generator, n: int, temperature: float, seed: int,
                   cache: GenerationCache, report: ExpansionReport, batch_size: int = 16,
                   generate: GenerateMany | None = None, what: str = "hyde") -> dict[str, list[str]]:
    """N texts per prompt (id -> rendered prompt): the cached ones, plus new generations for the missing sample
    indices, cached batch by batch as they finish (a killed run keeps what it made). ``generate`` runs the
    batches (default: in this process; the pipeline passes Ray actors). Failed and empty generations are dropped
    and counted in ``report``."""
    settings = {**generator.settings(), "temperature": temperature, "seed": seed}
    keys = {q: [generation_key(generator.name, settings, prompts[q], i) for i in range(n)] for q in prompts}
    texts: dict[str, list[str | None]] = {q: [cache.get(k) for k in keys[q]] for q in prompts}
    report.queries += len(prompts)
    report.cached += sum(t is not None for ts in texts.values() for t in ts)
    todo = [q for q in prompts if any(t is None for t in texts[q])]
    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    run = generate or sequential(generator, temperature, seed)
    done = 0
    for index, out in run([[prompts[q] for q in batch] for batch in batches], n):
        batch = batches[index]
        done += len(batch)
        if isinstance(out, Exception):
            report.failed_batches += 1
            log.warning("%s: generation failed for %d prompts (%s)", what, len(batch), out)
            continue
        rows = []
        for q, generated in zip(batch, out):
            for i, text in enumerate(generated[:n]):
                if texts[q][i] is None:
                    texts[q][i] = text
                    rows.append({"key": keys[q][i], "text": text, "generator": generator.name,
                                 "prompt": prompts[q], "sample": i})
        report.generated += len(rows)
        cache.put(rows)
        log.warning("%s: generated for %d of %d prompts", what, done, len(todo))
    result = {}
    for q, ts in texts.items():
        report.empty += sum(t == "" for t in ts)
        result[q] = [t for t in ts if t]  # None (failed) or "" (empty) are dropped
    return result


def expand_queries(queries: Queries, documents: dict[str, Sequence[str]], encoder: Encoder,
                   include_query: bool = True, report: ExpansionReport | None = None
                   ) -> tuple[list[str], np.ndarray]:
    """(query ids, expanded vectors): mean over [query vector] + hypothetical-document vectors."""
    report = report if report is not None else ExpansionReport()
    qids = list(queries)
    xq = encoder.encode_queries([queries[q] for q in qids])
    flat = [(i, text) for i, q in enumerate(qids) for text in documents.get(q, ())]
    xd = encoder.encode_documents([Document(id=f"hyde-{j}", title="", text=t) for j, (_, t) in enumerate(flat)]) \
        if flat else np.zeros((0, xq.shape[1]), dtype=np.float32)
    out = np.array(xq, dtype=np.float32, copy=True)
    owner = np.array([i for i, _ in flat], dtype=np.int64)
    for i, q in enumerate(qids):
        rows = xd[owner == i]
        if len(rows) == 0:
            report.fallback_queries.append(q)
            continue
        parts = np.vstack([xq[i:i + 1], rows]) if include_query else rows
        out[i] = parts.mean(axis=0)
    if report.fallback_queries:
        log.warning("hyde: %d queries had no usable generation and use the plain query vector",
                    len(report.fallback_queries))
    return qids, out
