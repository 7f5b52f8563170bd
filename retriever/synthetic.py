"""Training pairs for a corpus without labels: queries generated for sampled documents (the generator writes a
query a document answers; GPL, InPars and Promptagator's route), a round-trip filter that keeps a generated query
only when a retriever ranks its source document within the top k for it (InPars-v2, Promptagator), and weak pairs
from the documents' own structure (title -> text, the cheap signal cpt-text and E5's pretraining used).

Everything here reads documents only. ``write_pairs`` writes the pairs as a BEIR folder (the corpus linked, the
generated queries, ``qrels/train.tsv`` holding the generated pairs), which the mining and training stages read
like any training split: no judgment of the collection is ever opened on this path."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retriever.atomic import atomic_path
from retriever.types import ConfigError, Document

# One instruction per kind of collection; ``{document}`` is replaced by the (truncated) document. The reply is a
# single line: the first line of what comes back is kept.
QUERY_PROMPTS = {
    "question": "Write one question that the following passage answers. Reply with the question only.\n"
                "Passage: {document}\nQuestion:",
    "claim": "Write one short scientific claim that the following abstract supports. Reply with the claim only.\n"
             "Abstract: {document}\nClaim:",
    "search": "Write one search query that a researcher would type to find the following document. Reply with "
              "the query only.\nDocument: {document}\nQuery:",
}

_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")  # a list item's marker
_LABEL = re.compile(r"^\s*(?:question|query|claim|search query|answer|q|a)\s*[:：]\s*", re.I)
_NAMED = re.compile(r"\b(?:claim|question|query)\b", re.I)  # a lead-in names what it introduces
# "The claim is that X", "This claim supports the claim that X": a lead-in of a few words naming the claim
_LEAD_IN = re.compile(r"^(?:[\w'’,]+\s+){0,6}?(?:claim|question|query)\b(?:\s+[\w'’,]+){0,6}?\s+(?:is|that)\s+"
                      r"(?:that\s+)?", re.I)
_QUOTED = re.compile(r"[\"“]([^\"“”]+)[\"”]")


def render_query_prompt(template: str, title: str, text: str, max_chars: int) -> str:
    """``template``: a name in QUERY_PROMPTS or a literal template containing ``{document}``; the document is
    its title and text, cut to ``max_chars`` at a word boundary."""
    body = QUERY_PROMPTS.get(template, template)
    if "{document}" not in body:
        raise ConfigError(f"unknown query prompt {template!r}: use one of {sorted(QUERY_PROMPTS)} or a template "
                          "with {document}.")
    doc = f"{title}. {text}" if title else text
    doc = " ".join(doc.split())
    if len(doc) > max_chars:
        doc = doc[:max_chars + 1].rsplit(" ", 1)[0]  # a word ending at max_chars is kept
    return body.replace("{document}", doc)


def clean_query(text: str, min_words: int = 3, max_words: int = 64) -> str | None:
    """The query in a generation: the first line that carries a label ("Question: ...", "A: ..."), else the
    first line that is not a heading (ending in ":"), without its label, list marker, quotes or a lead-in before
    a question ("The question is: What ...?") or naming a claim ("The claim is that X", 'The claim the abstract
    supports is "X"'); None when nothing usable is left (empty, too short, too long, or a loop: fewer distinct
    words than half its words)."""
    lines = [_MARKER.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.endswith(":")]
    labelled = [line for line in lines if _LABEL.match(line)]
    for line in labelled[:1] or lines[:1]:
        line = _LABEL.sub("", line).strip()
        head, sep, tail = line.rpartition(": ")
        if sep and len(tail.split()) >= min_words and (tail.rstrip().endswith("?") or _NAMED.search(head)):
            line = tail  # "The question is: What ...?", "The claim supported by the abstract is: X"
        quoted = _QUOTED.search(line)
        if quoted and len(quoted.group(1).split()) >= min_words and _NAMED.search(line[:quoted.start()]):
            line = quoted.group(1)  # 'The claim that the abstract supports is "X"'
        elif not line.rstrip().endswith("?"):
            line = _LEAD_IN.sub("", line, count=1)  # "The claim is that X" (a question keeps its words)
        line = line.strip().strip("\"'“”‘’`").strip()
        words = line.lower().split()
        if min_words <= len(words) <= max_words and len(set(words)) >= len(words) / 2:  # not a loop of words
            return line
    return None


@dataclass(frozen=True)
class Pair:
    query_id: str
    query: str
    doc_id: str
    source: str  # "generated" or "title"


def sample_documents(documents: Iterable[Document], count: int | None, seed: int) -> tuple[list[Document], int]:
    """(``count`` documents drawn without replacement, seeded, in corpus order; documents skipped as empty).
    ``count`` None: every non-empty document."""
    docs, empty = [], 0
    for d in documents:
        if (d.title or "").strip() or (d.text or "").strip():
            docs.append(d)
        else:
            empty += 1
    if count is not None and count < len(docs):
        keep = np.sort(np.random.default_rng(seed).choice(len(docs), size=count, replace=False))
        docs = [docs[i] for i in keep]
    return docs, empty


def title_pairs(documents: Iterable[Document], min_words: int = 3) -> list[Pair]:
    """A title of at least ``min_words`` words -> its document, unless the text merely starts with it."""
    out = []
    for d in documents:
        title = " ".join((d.title or "").split())
        text = " ".join((d.text or "").split())
        if len(title.split()) >= min_words and text and not text.lower().startswith(title.lower()):
            out.append(Pair(f"title-{d.id}", title, d.id, "title"))
    return out


def round_trip(pairs: Sequence[Pair], rankings: Mapping[str, Mapping[str, Sequence[str]]], k: int
               ) -> tuple[list[Pair], dict[str, list[int | None]]]:
    """Keep a pair only if every retriever in ``rankings`` (name -> query id -> ranked doc ids) ranks its source
    document within the top ``k`` for its query. Returns (kept pairs, name -> the source's 1-based rank per pair,
    None when outside the ranking)."""
    if k < 1:
        raise ConfigError(f"round-trip k must be >= 1, got {k}.")
    ranks: dict[str, list[int | None]] = {}
    for name, ranking in rankings.items():
        col = []
        for p in pairs:
            ids = list(ranking.get(p.query_id, ()))
            col.append(ids.index(p.doc_id) + 1 if p.doc_id in ids else None)
        ranks[name] = col
    kept = [p for i, p in enumerate(pairs) if all(r[i] is not None and r[i] <= k for r in ranks.values())]
    return kept, ranks


def write_pairs(folder: str | os.PathLike, corpus: str | os.PathLike, pairs: Sequence[Pair]) -> Path:
    """A BEIR folder of the pairs: ``corpus.jsonl`` (a link to the collection's corpus file, same name),
    ``queries.jsonl`` and ``qrels/train.tsv`` (each pair judged 1). Each file is written under a temporary name
    and renamed."""
    folder, corpus = Path(folder), Path(corpus).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / corpus.name
    if not (link.is_symlink() and link.resolve() == corpus):
        with atomic_path(link) as tmp:
            os.symlink(corpus, tmp)
    seen: dict[str, str] = {}
    for p in pairs:
        if seen.setdefault(p.query_id, p.query) != p.query:
            raise ValueError(f"query id {p.query_id!r} given two texts")
    with atomic_path(folder / "queries.jsonl") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for qid, text in seen.items():
                f.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    with atomic_path(folder / "qrels" / "train.tsv") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for p in pairs:
                f.write(f"{p.query_id}\t{p.doc_id}\t1\n")
    return folder
