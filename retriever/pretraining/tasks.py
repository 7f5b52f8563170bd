"""Self-supervised contrastive tasks behind one interface: each turns a batch of documents into anchors, views
and the owner (anchor index) of every view, scored by the group-wise contrastive loss.

- ``span``    contrastive span prediction (COSTA, Ma et al., SIGIR 2022): anchor = the document, views = its
              random spans at several granularities; other documents' spans are the negatives.
- ``dropout`` dropout noise as the augmentation (SimCSE, Gao et al., EMNLP 2021): the same text twice, two
              dropout masks.
- ``ict``     inverse cloze task (Lee et al., ACL 2019): a random sentence is the pseudo-query, the rest of
              its passage the view (the sentence is left in with a small probability, as ICT does).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from retriever.pretraining.spans import SpanConfig, _sentence_bounds, sample_spans
from retriever.types import ConfigError

TASKS = ("span", "dropout", "ict")


@dataclass(frozen=True)
class PretrainConfig:
    # ict: the first of SciFact's dev ranking that loses no zero-shot quality on CISI (span and span + MLM lead
    # SciFact's dev and lose 3.7-3.8 points on CISI's test; benchmarks/pretrain.py, README "Pretraining")
    task: str = "ict"
    epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-5  # picked on SciFact dev (train queries): 2e-5 moved MiniLM too far (benchmarks/pretrain.py)
    warmup: float = 0.1
    weight_decay: float = 0.01
    temperature: float = 0.05
    max_seq_length: int = 128
    spans: SpanConfig = field(default_factory=SpanConfig)
    ict_keep_probability: float = 0.1
    mlm_weight: float = 0.0  # > 0 adds COSTA's masked-language-modelling term on the batch's documents
    mlm_probability: float = 0.15
    max_steps: int | None = None
    checkpoint_every: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"pretraining task must be one of {TASKS}, got {self.task!r}.")
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError("pretraining epochs must be >= 1 and batch_size >= 2 (other documents are the "
                              "negatives).")
        if self.max_seq_length < 8 or self.lr <= 0:
            raise ConfigError("pretraining max_seq_length must be >= 8 and lr > 0.")
        if self.mlm_weight < 0 or not 0 < self.mlm_probability < 1:
            raise ConfigError(f"pretraining mlm_weight must be >= 0 and 0 < mlm_probability < 1, got "
                              f"{self.mlm_weight} and {self.mlm_probability}.")

    def to_dict(self) -> dict:
        return asdict(self)


def make_views(texts: list[str], config: PretrainConfig, rng: np.random.Generator
               ) -> tuple[list[str], list[str], list[int]]:
    """(anchors, views, owner) for one batch of document texts."""
    if config.task == "dropout":
        return list(texts), list(texts), list(range(len(texts)))
    if config.task == "span":
        views, owner = [], []
        for i, text in enumerate(texts):
            for span in sample_spans(text, config.spans, rng):
                views.append(span.text)
                owner.append(i)
        return list(texts), views, owner
    anchors, views = [], []
    for text in texts:
        words = text.split()
        bounds = _sentence_bounds(text)
        if len(bounds) < 2:  # one sentence: its first half asks for its second half
            cut = max(1, len(words) // 2)
            anchors.append(" ".join(words[:cut]))
            views.append(" ".join(words[cut:]) or text)
            continue
        pick = int(rng.integers(0, len(bounds)))
        start, end = bounds[pick]
        anchors.append(" ".join(words[start:end]))
        keep = rng.random() < config.ict_keep_probability
        views.append(text if keep else " ".join(words[:start] + words[end:]))
    return anchors, views, list(range(len(texts)))
