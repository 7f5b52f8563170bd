"""MS MARCO / TREC formats: TSV collections and topics, TREC qrels (via beir.read_qrels) and run files."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from retriever.atomic import atomic_path
from retriever.data.beir import flag_duplicate, open_text
from retriever.data.validation import ValidationReport, flag
from retriever.types import Corpus, DataError, Document, Queries, Run


def iter_id_text_tsv(path: str, report: ValidationReport | None, what: str) -> Iterator[tuple[int, str, str]]:
    """Stream ``<id>\\t<text>`` lines as (line number, id, text); malformed lines are flagged. Repeated ids are the
    caller's to check."""
    with open_text(path, report) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            rid, sep, text = line.partition("\t")
            rid = rid.strip()
            if not sep or not rid:
                flag(report, "malformed_tsv", path, lineno, f"expected '<id>\\t<{what}>', found no tab.",
                     f"separate the id and the {what} with one tab.")
                continue
            if not text.strip():  # accepted: an empty passage is still a passage, an empty query still a query
                flag(report, "empty_query" if what == "query" else "empty_document", path, lineno,
                     f"{what} {rid!r} has empty text (kept).", f"drop the line or fill in the {what}.")
            yield lineno, rid, text.strip()


def iter_collection_tsv(path: str | os.PathLike, report: ValidationReport | None = None
                        ) -> Iterator[tuple[int, Document]]:
    """Stream an MS MARCO passage collection (``pid\\tpassage``) as (line number, Document)."""
    for lineno, pid, text in iter_id_text_tsv(str(path), report, "passage"):
        yield lineno, Document(id=pid, text=text)


def _read_id_text_tsv(path: str, report: ValidationReport | None, what: str) -> dict[str, tuple[int, str]]:
    rows: dict[str, tuple[int, str]] = {}
    for lineno, rid, text in iter_id_text_tsv(path, report, what):
        if rid in rows:
            flag_duplicate(report, path, lineno, rid, rows[rid][0])
            continue
        rows[rid] = (lineno, text)
    if not rows:
        raise DataError(path, None, f"no valid {what} lines.", f"expected '<id>\\t<{what}>' per line.")
    return rows


def read_topics(path: str | os.PathLike, report: ValidationReport | None = None) -> Queries:
    """Read TSV topics (``qid\\tquery``, optionally gzipped), as MS MARCO and Anserini ship them."""
    return {qid: text for qid, (_, text) in _read_id_text_tsv(str(path), report, "query").items()}


def read_collection(path: str | os.PathLike, report: ValidationReport | None = None) -> Corpus:
    """Read an MS MARCO passage collection (``pid\\tpassage``)."""
    rows = _read_id_text_tsv(str(path), report, "passage")
    return {pid: Document(id=pid, text=text) for pid, (_, text) in rows.items()}


def sorted_hits(hits: Mapping[str, float]) -> list[tuple[str, float]]:
    """Hits in trec_eval's order: score descending, ties broken by document id descending."""
    return sorted(hits.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)


def write_run(run: Run, path: str | os.PathLike, tag: str = "densepipe", k: int | None = None) -> None:
    """Write a TREC run file atomically: ``qid Q0 docid rank score tag``."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for qid in sorted(run):
            for rank, (did, score) in enumerate(sorted_hits(run[qid])[:k], start=1):
                f.write(f"{qid} Q0 {did} {rank} {score:.6f} {tag}\n")


def write_msmarco_run(run: Run, path: str | os.PathLike, k: int | None = None) -> None:
    """Write a run in MS MARCO's format atomically: ``qid<TAB>docid<TAB>rank``, ranks from 1 in trec_eval's order
    (what MS MARCO's evaluation script reads)."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for qid in sorted(run):
            for rank, (did, _) in enumerate(sorted_hits(run[qid])[:k], start=1):
                f.write(f"{qid}\t{did}\t{rank}\n")


def read_run(path: str | os.PathLike, report: ValidationReport | None = None) -> Run:
    """Read a TREC run file (six whitespace-separated columns)."""
    path = str(path)
    run: Run = {}
    with open_text(path, report) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            cols = line.split()
            if len(cols) != 6:
                flag(report, "malformed_run", path, lineno, f"expected 6 columns (qid Q0 docid rank score tag), "
                     f"found {len(cols)}.", "write runs in TREC format.")
                continue
            try:
                score = float(cols[4])
            except ValueError:
                flag(report, "malformed_run", path, lineno, f"score {cols[4]!r} is not a number.",
                     "the fifth column must be the score.")
                continue
            hits = run.setdefault(cols[0], {})
            if cols[2] in hits:
                flag(report, "duplicate_hit", path, lineno, f"query {cols[0]!r} retrieves {cols[2]!r} twice.",
                     "list each document once per query.")
                continue
            hits[cols[2]] = score
    if not run:
        raise DataError(path, None, "empty run.", "check the file.")
    return run
