"""BEIR folders: corpus.jsonl, queries.jsonl and qrels/{split}.tsv, read with validation."""

from __future__ import annotations

import gzip
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from retriever.data.validation import ValidationReport, flag
from retriever.types import Corpus, DataError, Document, Qrels, Queries


def open_text(path: str | os.PathLike) -> io.TextIOBase:
    """Open a text file, transparently gunzipping ``.gz``; a missing file is a DataError."""
    p = Path(path)
    if not p.is_file():
        raise DataError(str(p), None, "file not found.", "check the path (datasets resolve under $DRP_DATA_DIR).")
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8")
    return open(p, encoding="utf-8")


def iter_jsonl(path: str | os.PathLike, report: ValidationReport | None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; malformed lines are flagged."""
    path = str(path)
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                flag(report, "malformed_json", path, lineno, f"malformed JSON ({e.msg} at column {e.colno}).",
                     "make each line one complete JSON object.")
                continue
            if not isinstance(obj, dict):
                flag(report, "malformed_json", path, lineno, f"expected a JSON object, got {type(obj).__name__}.",
                     "make each line one JSON object with '_id' and 'text'.")
                continue
            yield lineno, obj


def _string_field(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) else None


def _record_id(obj: dict, path: str, lineno: int, seen: dict[str, int], report: ValidationReport | None) -> str | None:
    rid = _string_field(obj, "_id")
    if rid is None or not rid.strip():
        flag(report, "missing_id", path, lineno, "missing or empty '_id'.", "give every record a unique string '_id'.")
        return None
    if rid in seen:
        flag(report, "duplicate_id", path, lineno, f"duplicate id {rid!r} (first seen on line {seen[rid]}).",
             "make ids unique, or drop the repeated record.")
        return None
    return rid


def read_corpus(path: str | os.PathLike, report: ValidationReport | None = None) -> Corpus:
    """Read a BEIR corpus.jsonl: ``{"_id", "title"?, "text"}`` per line."""
    path = str(path)
    corpus: Corpus = {}
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path, report):
        did = _record_id(obj, path, lineno, seen, report)
        if did is None:
            continue
        if "text" not in obj:
            flag(report, "missing_text", path, lineno, f"document {did!r} has no 'text' field.",
                 "add a 'text' field (it may be empty only when 'title' is not).")
            continue
        text, title = _string_field(obj, "text"), _string_field(obj, "title") or ""
        if text is None:
            flag(report, "missing_text", path, lineno, f"document {did!r}: 'text' is not a string.",
                 "store the text as a JSON string.")
            continue
        if not text.strip() and not title.strip():
            flag(report, "empty_text", path, lineno, f"document {did!r} has empty title and text.",
                 "drop the document or fill in its text.")
            continue
        seen[did] = lineno
        corpus[did] = Document(id=did, text=text, title=title)
    if not corpus:
        raise DataError(path, None, "no valid documents.", "check that this is a BEIR corpus.jsonl.")
    return corpus


def read_queries(path: str | os.PathLike, report: ValidationReport | None = None) -> Queries:
    """Read a BEIR queries.jsonl: ``{"_id", "text"}`` per line."""
    path = str(path)
    queries: Queries = {}
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path, report):
        qid = _record_id(obj, path, lineno, seen, report)
        if qid is None:
            continue
        text = _string_field(obj, "text")
        if text is None:
            flag(report, "missing_text", path, lineno, f"query {qid!r} has no string 'text' field.",
                 "add the query text as 'text'.")
            continue
        if not text.strip():
            flag(report, "empty_text", path, lineno, f"query {qid!r} has empty text.",
                 "drop the query or fill in its text.")
            continue
        seen[qid] = lineno
        queries[qid] = text
    if not queries:
        raise DataError(path, None, "no valid queries.", "check that this is a BEIR queries.jsonl.")
    return queries


def read_qrels(path: str | os.PathLike, report: ValidationReport | None = None) -> Qrels:
    """Read qrels: BEIR TSV (``query-id corpus-id score``, header optional) or TREC (``qid iter docid rel``)."""
    path = str(path)
    qrels: Qrels = {}
    seen: dict[tuple[str, str], int] = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            cols = line.split("\t") if "\t" in line else line.split()
            cols = [c.strip() for c in cols]
            if len(cols) not in (3, 4):
                flag(report, "malformed_qrels", path, lineno,
                     f"expected 3 columns (query-id, corpus-id, score) or 4 (TREC), found {len(cols)}.",
                     "write one judgment per line, tab-separated.")
                continue
            qid, did, rel = (cols[0], cols[1], cols[2]) if len(cols) == 3 else (cols[0], cols[2], cols[3])
            try:
                grade = int(rel)
            except ValueError:
                if lineno == 1:  # header line, e.g. "query-id corpus-id score"
                    continue
                flag(report, "malformed_qrels", path, lineno, f"relevance {rel!r} is not an integer.",
                     "use integer grades (0 = not relevant).")
                continue
            if (qid, did) in seen:
                flag(report, "duplicate_judgment", path, lineno,
                     f"query {qid!r} judges document {did!r} twice (first on line {seen[(qid, did)]}).",
                     "keep one judgment per (query, document) pair.")
                continue
            seen[(qid, did)] = lineno
            qrels.setdefault(qid, {})[did] = grade
    if not qrels:
        raise DataError(path, None, "no judgments.", "check that this is a qrels file.")
    return qrels


def check_qrels_ids(qrels: Qrels, queries: Queries, corpus: Corpus | None, path: str,
                    report: ValidationReport | None = None) -> Qrels:
    """Return qrels restricted to known queries and documents; unknown ids are flagged."""
    clean: Qrels = {}
    for qid, docs in qrels.items():
        if qid not in queries:
            flag(report, "unknown_query", path, None, f"qrels name query {qid!r}, which is not in the queries.",
                 "add the query, or remove its judgments.")
            continue
        kept = {}
        for did, rel in docs.items():
            if corpus is not None and did not in corpus:
                flag(report, "unknown_document", path, None,
                     f"qrels for query {qid!r} name document {did!r}, which is not in the corpus.",
                     "add the document to the corpus, or remove the judgment.")
                continue
            kept[did] = rel
        if kept:
            clean[qid] = kept
    return clean


@dataclass(frozen=True)
class BeirDataset:
    name: str
    split: str
    corpus: Corpus
    queries: Queries  # only the queries judged in this split
    qrels: Qrels


def load_beir(folder: str | os.PathLike, split: str = "test", report: ValidationReport | None = None,
              with_corpus: bool = True) -> BeirDataset:
    """Load a BEIR folder; queries are restricted to those judged in ``split``."""
    root = Path(folder)
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise DataError(str(qrels_path), None, f"no qrels for split {split!r}.",
                        f"choose one of {splits}." if splits else "check that this is a BEIR folder.")
    corpus = read_corpus(root / "corpus.jsonl", report) if with_corpus else None
    queries = read_queries(root / "queries.jsonl", report)
    qrels = check_qrels_ids(read_qrels(qrels_path, report), queries, corpus, str(qrels_path), report)
    judged = {qid: queries[qid] for qid in qrels}
    return BeirDataset(name=root.name, split=split, corpus=corpus or {}, queries=judged, qrels=qrels)
