"""BEIR folders: corpus.jsonl, queries.jsonl and qrels/{split}.tsv, read with validation."""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from retriever.data.validation import ValidationReport, flag
from retriever.types import Corpus, DataError, Document, Qrels, Queries


class TextLines:
    """A text file's lines, decoded as UTF-8 one line at a time so that a bad byte is a DataError naming file,
    line and column (not a bare UnicodeDecodeError); a leading byte-order mark is dropped, and CRLF endings read
    as LF. Iterate inside ``with``."""

    def __init__(self, path: Path, report: ValidationReport | None = None):
        self.path, self.report = path, report
        self._f = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")

    def __enter__(self) -> "TextLines":
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()

    def __iter__(self) -> Iterator[str]:
        for lineno, raw in enumerate(self._f, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:  # corruption: an error, or counted and skipped (--skip-malformed)
                flag(self.report, "not_utf8", str(self.path), lineno, f"byte 0x{raw[e.start]:02x} at column "
                     f"{e.start + 1} is not UTF-8.", "re-save the file as UTF-8 (for a Latin-1 file: "
                     f"iconv -f latin1 -t utf-8 {self.path.name} > fixed), or pass --skip-malformed.")
                continue
            yield line[:-2] + "\n" if line.endswith("\r\n") else line


def open_text(path: str | os.PathLike, report: ValidationReport | None = None) -> TextLines:
    """Open a text file (UTF-8, transparently gunzipping ``.gz``); a missing file is a DataError; a line that is
    not UTF-8 is flagged into ``report`` (an error when strict)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(str(p), None, "file not found.", "check the path (datasets resolve under $DRP_DATA_DIR).")
    return TextLines(p, report)


def iter_jsonl(path: str | os.PathLike, report: ValidationReport | None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; malformed lines are flagged."""
    path = str(path)
    with open_text(path, report) as f:
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
        flag_duplicate(report, path, lineno, rid, seen[rid])
        return None
    return rid


def iter_corpus_jsonl(path: str | os.PathLike, report: ValidationReport | None = None
                      ) -> Iterator[tuple[int, Document]]:
    """Stream a BEIR corpus.jsonl as (line number, Document), one record at a time; problems with a record are
    flagged (a record with no id or no text is skipped). Repeated ids are the caller's to check."""
    path = str(path)
    for lineno, obj in iter_jsonl(path, report):
        did = _string_field(obj, "_id")
        if did is None or not did.strip():
            flag(report, "missing_id", path, lineno, "missing or empty '_id'.",
                 "give every record a unique string '_id'.")
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
        if not text.strip() and not title.strip():  # accepted: still a document, it just matches nothing lexically
            flag(report, "empty_document", path, lineno, f"document {did!r} has empty title and text (kept).",
                 "drop the document or fill in its text; --skip-malformed counts it, --strict refuses it.")
        yield lineno, Document(id=did, text=text, title=title)


def flag_duplicate(report: ValidationReport | None, path: str, lineno: int, rid: str, first: int) -> None:
    flag(report, "duplicate_id", path, lineno, f"duplicate id {rid!r} (first seen on line {first}).",
         "make ids unique, or drop the repeated record.")


def read_corpus(path: str | os.PathLike, report: ValidationReport | None = None) -> Corpus:
    """Read a BEIR corpus.jsonl into memory: ``{"_id", "title"?, "text"}`` per line (the streaming preparation in
    ``retriever/data/stream.py`` reads large corpora without holding them)."""
    path = str(path)
    corpus: Corpus = {}
    seen: dict[str, int] = {}
    for lineno, doc in iter_corpus_jsonl(path, report):
        if doc.id in seen:
            flag_duplicate(report, path, lineno, doc.id, seen[doc.id])
            continue
        seen[doc.id] = lineno
        corpus[doc.id] = doc
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
        if not text.strip():  # accepted: searched as it is (it finds nothing lexically)
            flag(report, "empty_query", path, lineno, f"query {qid!r} has empty text (kept).",
                 "drop the query or fill in its text.")
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
    with open_text(path, report) as f:
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
            if (qid, did) in seen:  # accepted: the last judgment wins, as BEIR's loader reads the file
                flag(report, "duplicate_judgment", path, lineno,
                     f"query {qid!r} judges document {did!r} twice (first on line {seen[(qid, did)]}; the last "
                     "one counts).", "keep one judgment per (query, document) pair.")
            seen[(qid, did)] = lineno
            qrels.setdefault(qid, {})[did] = grade
    if not qrels:
        raise DataError(path, None, "no judgments.", "check that this is a qrels file.")
    return qrels


def corpus_positives(qrels: Qrels, corpus: Corpus) -> Qrels:
    """Qrels restricted to documents in the corpus (for training and mining, which need the document's text)."""
    out = {q: {d: r for d, r in docs.items() if d in corpus} for q, docs in qrels.items()}
    return {q: docs for q, docs in out.items() if docs}


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
            if corpus is not None and did not in corpus:  # accepted: kept for evaluation, never retrieved
                flag(report, "unknown_document", path, None,
                     f"qrels for query {qid!r} name document {did!r}, which is not in the corpus (kept: it counts "
                     "as relevant and is never retrieved, as in trec_eval).",
                     "add the document to the corpus, or remove the judgment.")
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
