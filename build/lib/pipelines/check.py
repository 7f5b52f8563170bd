"""``densepipe data check``: validate a BEIR folder or a single file, collecting every problem."""

from __future__ import annotations

from pathlib import Path

from retriever.data import ValidationReport, check_qrels_ids, read_corpus, read_qrels, read_queries, read_run, \
    read_topics
from retriever.data.beir import open_text
from retriever.types import DataError


def _guess_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return "queries" if "quer" in name else "corpus"
    with open_text(path, ValidationReport()) as f:  # bad bytes here are reported when the file is read
        first = next((line for line in f if line.strip()), "")
    cols = first.split("\t") if "\t" in first else first.split()
    if len(cols) == 6:
        return "run"
    if "qrels" in name or len(cols) in (3, 4):
        return "qrels"
    return "topics"


def _read(kind: str, path: Path, report: ValidationReport):
    readers = {"corpus": read_corpus, "queries": read_queries, "qrels": read_qrels, "run": read_run,
               "topics": read_topics}
    try:
        return readers[kind](path, report)
    except DataError as e:  # a file with nothing valid in it, or missing
        report.add_error(e)
        return {}


def check_path(path: str, split: str | None = None) -> tuple[ValidationReport, dict]:
    p = Path(path)
    report = ValidationReport()
    if p.is_dir():
        corpus = _read("corpus", p / "corpus.jsonl", report)
        queries = _read("queries", p / "queries.jsonl", report)
        splits = [split] if split else sorted(q.stem for q in (p / "qrels").glob("*.tsv"))
        summary = {"path": str(p), "documents": len(corpus), "queries": len(queries), "splits": {}}
        if not splits:
            report.add_error(DataError(str(p / "qrels"), None, "no qrels/*.tsv files.",
                                       "add qrels/<split>.tsv (query-id, corpus-id, score)."))
        for s in splits:
            qpath = p / "qrels" / f"{s}.tsv"
            qrels = _read("qrels", qpath, report)
            clean = check_qrels_ids(qrels, queries, corpus, str(qpath), report) if qrels else {}
            summary["splits"][s] = {"queries": len(clean), "judgments": sum(len(v) for v in clean.values())}
        return report, summary
    kind = _guess_kind(p) if p.is_file() else "missing"
    if kind == "missing":
        report.add_error(DataError(str(p), None, "no such file or folder.", "check the path."))
        return report, {"path": str(p)}
    records = _read(kind, p, report)
    return report, {"path": str(p), "kind": kind, "records": len(records)}
