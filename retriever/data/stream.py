"""Streaming preparation: a corpus file cut into Parquet shards one shard at a time, in memory that does not grow
with the corpus.

Reads a BEIR ``corpus.jsonl`` or an MS MARCO ``collection.tsv`` (either gzipped). What stays in memory across
shards is one 64-bit hash and one line number per document, for finding repeated ids (12 bytes a document,
against ~500 for the documents themselves). The content hash (``data_hash``) is computed on the way, the same
value ``parquet.corpus_hash`` gives for the documents in memory; the manifest records the file's size and mtime
and the settings, so a rerun on an unchanged file reads the manifest and nothing else. Shards are written into a
temporary folder that replaces the old one only when the manifest is in it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np

from retriever.atomic import atomic_path, read_json, write_json
from retriever.data.validation import Problem, ValidationReport
from retriever.types import DataError, Document

log = logging.getLogger("densepipe.data")

CORPUS_FILES = ("corpus.jsonl", "corpus.jsonl.gz", "collection.tsv", "collection.tsv.gz")
FORMAT_VERSION = 2  # bump when the shards' content or layout changes


def corpus_file(folder: str | os.PathLike) -> Path:
    """The corpus file of a dataset folder: BEIR ``corpus.jsonl`` or MS MARCO ``collection.tsv`` (or ``.gz``)."""
    folder = Path(folder)
    for name in CORPUS_FILES:
        if (folder / name).is_file():
            return folder / name
    raise DataError(str(folder), None, f"no corpus file ({', '.join(CORPUS_FILES)}).",
                    "point --dataset at a BEIR folder (corpus.jsonl) or an MS MARCO-style folder (collection.tsv).")


def iter_documents(path: Path, report: ValidationReport | None) -> Iterator[tuple[int, Document]]:
    """(line number, Document) of a corpus file, by its format; repeated ids are not checked here."""
    if ".jsonl" in path.name:
        from retriever.data.beir import iter_corpus_jsonl

        return iter_corpus_jsonl(path, report)
    from retriever.data.trec import iter_collection_tsv

    return iter_collection_tsv(path, report)


class SeenIds:
    """Ids seen so far as 64-bit hashes with the line each was first seen on (12 bytes an id), in sorted runs that
    merge as they grow, up to ``max_run`` ids a run, so that merging never needs more than a run's worth of
    temporary memory and a lookup searches a few runs (at most n / max_run + log n). A hash match is only a
    candidate: the caller confirms it."""

    def __init__(self, max_run: int = 1 << 20) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []
        self.max_run = max_run

    @staticmethod
    def hashes(ids: list[str]) -> np.ndarray:
        return np.fromiter((hash(i) for i in ids), dtype=np.int64, count=len(ids))

    def lookup(self, h: np.ndarray) -> np.ndarray:
        """For each hash, the line it was first seen on, or 0 (not seen)."""
        out = np.zeros(len(h), dtype=np.int64)
        for hs, lines in self.runs:
            pos = np.minimum(np.searchsorted(hs, h), len(hs) - 1)
            hit = (hs[pos] == h) & (out == 0)
            out[hit] = lines[pos[hit]]
        return out

    def add(self, h: np.ndarray, lines: np.ndarray) -> None:
        order = np.argsort(h, kind="stable")
        self.runs.append((h[order], lines[order].astype(np.int32)))
        while (len(self.runs) > 1 and len(self.runs[-2][0]) <= 2 * len(self.runs[-1][0])
               and len(self.runs[-2][0]) + len(self.runs[-1][0]) <= self.max_run):
            (h1, l1), (h2, l2) = self.runs.pop(-2), self.runs.pop()
            hs, ls = np.concatenate([h1, h2]), np.concatenate([l1, l2])
            order = np.argsort(hs, kind="stable")  # two sorted runs: timsort merges them in linear time
            self.runs.append((hs[order], ls[order]))

    @property
    def nbytes(self) -> int:
        return sum(h.nbytes + l.nbytes for h, l in self.runs)


def _report_state(report: ValidationReport | None) -> dict:
    if report is None:
        return {"by_file": [], "examples": []}
    return {"by_file": [[p, k, n] for (p, k), n in sorted(report.by_file.items())],
            "examples": [[e.kind, e.path, e.line, e.message, e.fix] for e in report.examples]}


def _replay(report: ValidationReport | None, state: dict) -> None:
    """Count again what reading the corpus counted the first time (so a rerun warns and reports the same)."""
    if report is None:
        return
    for path, kind, n in state["by_file"]:
        report.counts[kind] += n
        report.by_file[(path, kind)] += n
    for kind, path, line, message, fix in state["examples"]:
        if len(report.examples) < report.max_examples:
            report.examples.append(Problem(kind, path, line, message, fix))


def source_settings(path: Path, docs_per_shard: int, max_docs: int | None, policy: str) -> dict:
    st = path.stat()
    return {"file": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "docs_per_shard": docs_per_shard, "max_docs": max_docs, "policy": policy, "format": FORMAT_VERSION}


def prepare_corpus(path: Path, out_dir: str | os.PathLike, docs_per_shard: int = 50_000,
                   max_docs: int | None = None, report: ValidationReport | None = None,
                   policy: str = "accept", progress: bool = True) -> dict:
    """Cut ``path`` into ``corpus-NNNNN.parquet`` shards of ``docs_per_shard`` documents in ``out_dir``; when the
    manifest there was made from the same file (size, mtime) with the same settings, nothing is read again."""
    if docs_per_shard < 1:
        raise DataError(None, None, f"docs_per_shard must be >= 1, got {docs_per_shard}.", "pass a positive size.")
    out = Path(out_dir)
    settings = source_settings(path, docs_per_shard, max_docs, policy)
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        old = read_json(manifest_path)
        if old.get("settings") == settings and all((out / s["file"]).is_file() for s in old["shards"]):
            _replay(report, old.get("problems", _report_state(None)))
            return old
    before = _report_state(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        manifest = _write_shards(path, tmp, docs_per_shard, max_docs, report, progress)
        manifest["settings"] = settings
        state = _report_state(report)
        seen_before = {(p, k) for p, k, _ in before["by_file"]}
        manifest["problems"] = {"by_file": [r for r in state["by_file"] if (r[0], r[1]) not in seen_before],
                                "examples": [e for e in state["examples"] if (e[1], e[0]) not in seen_before]}
        write_json(tmp / "manifest.json", manifest)
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _write_shards(path: Path, out: Path, docs_per_shard: int, max_docs: int | None,
                  report: ValidationReport | None, progress: bool) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    from retriever.data.beir import flag_duplicate
    from retriever.data.parquet import hash_documents

    limit = max_docs if max_docs is not None else float("inf")
    content = hashlib.sha256()
    seen = SeenIds()
    shards: list[dict] = []
    written = 0
    pending: list[Document] = []
    pending_ids: dict[str, int] = {}  # id -> line, for the documents of the shard being filled
    bar = tqdm(desc=f"prepare {path.name}", unit="doc", disable=not progress, mininterval=2.0)

    shard_ids: dict[str, set[str]] = {}  # the last shard whose ids were read back

    def is_written(doc_id: str, line: int) -> bool:
        """Confirm a hash match: is ``doc_id`` in the shard that holds ``line``?"""
        name = next(s for s in shards if s["first_line"] <= line <= s["last_line"])["file"]
        if name not in shard_ids:
            shard_ids.clear()
            shard_ids[name] = set(pq.read_table(out / name, columns=["id"]).column("id").to_pylist())
        return doc_id in shard_ids[name]

    def flush() -> None:
        nonlocal written
        if not pending:
            return
        first_seen = seen.lookup(SeenIds.hashes([d.id for d in pending]))
        keep, lines = [], []
        for doc, first in zip(pending, first_seen):
            line = pending_ids[doc.id]
            if first and is_written(doc.id, int(first)):
                flag_duplicate(report, str(path), line, doc.id, int(first))
                continue
            keep.append(doc)
            lines.append(line)
        if keep:
            hash_documents(content, keep)
            name = f"corpus-{len(shards):05d}.parquet"
            table = pa.table({"id": pa.array([d.id for d in keep], pa.string()),
                              "title": pa.array([d.title for d in keep], pa.string()),
                              "text": pa.array([d.text for d in keep], pa.string())})
            with atomic_path(out / name) as tmp:
                pq.write_table(table, tmp)
            seen.add(SeenIds.hashes([d.id for d in keep]), np.asarray(lines, dtype=np.int64))
            shards.append({"file": name, "count": len(keep), "first": written, "first_line": lines[0],
                           "last_line": lines[-1]})
            written += len(keep)
            bar.update(len(keep))
        pending.clear()
        pending_ids.clear()

    for lineno, doc in iter_documents(path, report):
        if doc.id in pending_ids:
            flag_duplicate(report, str(path), lineno, doc.id, pending_ids[doc.id])
            continue
        pending_ids[doc.id] = lineno
        pending.append(doc)
        if len(pending) >= docs_per_shard or written + len(pending) >= limit:
            flush()
            if written >= limit:
                break
    flush()
    bar.close()
    if not written:
        raise DataError(str(path), None, "no valid documents.",
                        "check that this is a BEIR corpus.jsonl or an MS MARCO collection.tsv.")
    log.info("prepared %d documents from %s into %d shards (duplicate-id table %.1f MB)", written, path,
             len(shards), seen.nbytes / 2**20)
    return {"kind": "corpus", "num_docs": written, "docs_per_shard": docs_per_shard, "shards": shards,
            "data_hash": content.hexdigest()[:16], "source": str(path)}
