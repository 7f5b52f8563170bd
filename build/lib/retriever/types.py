"""The data contracts between stages, after BEIR's corpus / queries / qrels / results dicts.

A ``Corpus`` maps document ids to ``Document``s, ``Queries`` map query ids to text, ``Qrels`` map
query id -> document id -> graded relevance, and a ``Run`` maps query id -> document id -> score.
Stages never modify a caller's collection in place: they return new ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str = ""

    def joined(self, sep: str = " ") -> str:
        """Title and text as one string (the title is dropped when empty)."""
        if self.title:
            return f"{self.title}{sep}{self.text}" if self.text else self.title
        return self.text


Corpus = dict[str, Document]
Queries = dict[str, str]
Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]


@runtime_checkable
class Encoder(Protocol):
    """Separate query and document paths (Tevatron's encode_query / encode_passage)."""

    @property
    def dim(self) -> int: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_documents(self, docs: Sequence[Document]) -> np.ndarray: ...


@runtime_checkable
class Searcher(Protocol):
    """Anything that ranks documents for queries: BM25, a FAISS index, a sharded index."""

    def search(self, queries: Queries, k: int) -> Run: ...


@runtime_checkable
class Generator(Protocol):
    """A text generator for query expansion (HyDE)."""

    name: str  # identifies the model (and its weights) in cache keys

    def settings(self) -> dict: ...  # the other settings that change what it writes (length, top-p, chat)

    def generate(self, prompts: Sequence[str], n: int, temperature: float, seed: int) -> list[list[str]]: ...


class DensepipeError(Exception):
    """Base class of every error densepipe raises on purpose."""


class DataError(DensepipeError):
    """Bad input data, reported with the file, the line and how to fix it."""

    def __init__(self, path: str | None, line: int | None, problem: str, fix: str = ""):
        self.path, self.line, self.problem, self.fix = path, line, problem, fix
        where = f"{path}:{line}" if path and line else (path or "input")
        msg = f"{where}: {problem}"
        if fix:
            msg += f" Fix: {fix}"
        super().__init__(msg)


class ConfigError(DensepipeError):
    """A configuration that cannot work, named before any work starts."""
