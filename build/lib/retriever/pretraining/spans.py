"""Random spans of a document at several granularities, for contrastive span prediction. Lengths are in
words; a span is always a contiguous run of one document's words, so it never crosses into another document.
Sentence and paragraph spans are cut at sentence ends."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from retriever.types import ConfigError

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Granularity:
    name: str
    min_words: int
    max_words: int
    by_sentence: bool = False  # whole sentences only
    max_sentences: int | None = None  # with by_sentence: at most this many consecutive sentences (None: any)

    def __post_init__(self) -> None:
        if not 1 <= self.min_words <= self.max_words:
            raise ConfigError(f"span granularity {self.name!r}: need 1 <= min_words <= max_words, got "
                              f"{self.min_words}..{self.max_words}.")


def default_granularities() -> tuple[Granularity, ...]:
    return (Granularity("ngram", 1, 3), Granularity("phrase", 4, 12), Granularity("sentence", 6, 60, True, 1),
            Granularity("paragraph", 30, 150, True))


@dataclass(frozen=True)
class SpanConfig:
    granularities: tuple[Granularity, ...] = field(default_factory=default_granularities)
    spans_per_granularity: int = 1

    def __post_init__(self) -> None:
        if not self.granularities or self.spans_per_granularity < 1:
            raise ConfigError("span sampling needs at least one granularity and spans_per_granularity >= 1.")


@dataclass(frozen=True)
class Span:
    granularity: str
    start: int  # word offsets into the document, end exclusive
    end: int
    text: str


def check_corpus(texts: list[str], config: SpanConfig) -> None:
    """A span config that fits no document, or an empty corpus, is an error before any training."""
    if not texts:
        raise ConfigError("pretraining needs a non-empty corpus.")
    longest = max(len(t.split()) for t in texts)
    for g in config.granularities:
        if g.min_words > longest:
            raise ConfigError(f"span granularity {g.name!r} needs at least {g.min_words} words but the longest "
                              f"document has {longest}. Fix: lower min_words or drop the granularity.")


def sample_spans(text: str, config: SpanConfig, rng: np.random.Generator) -> list[Span]:
    """Spans of every granularity the document is long enough for (a shorter one skips that granularity)."""
    words = text.split()
    out: list[Span] = []
    sentences = _sentence_bounds(text) if any(g.by_sentence for g in config.granularities) else []
    for g in config.granularities:
        for _ in range(config.spans_per_granularity):
            span = _sentence_span(words, sentences, g, rng) if g.by_sentence else _word_span(words, g, rng)
            if span is not None:
                out.append(Span(g.name, span[0], span[1], " ".join(words[span[0]:span[1]])))
    return out


def _word_span(words: list[str], g: Granularity, rng: np.random.Generator) -> tuple[int, int] | None:
    if len(words) < g.min_words:
        return None
    length = int(rng.integers(g.min_words, min(g.max_words, len(words)) + 1))
    start = int(rng.integers(0, len(words) - length + 1))
    return start, start + length


def _sentence_bounds(text: str) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for sentence in _SENTENCE_END.split(text.strip()):
        n = len(sentence.split())
        if n:
            bounds.append((start, start + n))
            start += n
    return bounds


def _sentence_span(words, sentences, g: Granularity, rng: np.random.Generator) -> tuple[int, int] | None:
    """Runs of whole sentences whose length fits the granularity; a random one of them."""
    fits = []
    for i in range(len(sentences)):
        last = len(sentences) if g.max_sentences is None else min(len(sentences), i + g.max_sentences)
        for j in range(i, last):
            n = sentences[j][1] - sentences[i][0]
            if n > g.max_words:
                break
            if n >= g.min_words:
                fits.append((sentences[i][0], sentences[j][1]))
    if not fits:
        return None
    return fits[int(rng.integers(0, len(fits)))]
