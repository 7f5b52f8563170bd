"""Self-supervised contrastive pretraining on unlabelled corpus text: contrastive span prediction (COSTA),
dropout views (SimCSE) and the inverse cloze task (ICT)."""

from retriever.pretraining.loop import PretrainTrainer
from retriever.pretraining.spans import Granularity, Span, SpanConfig, check_corpus, sample_spans
from retriever.pretraining.tasks import TASKS, PretrainConfig, make_views

__all__ = ["TASKS", "Granularity", "PretrainConfig", "PretrainTrainer", "Span", "SpanConfig", "check_corpus",
           "make_views", "sample_spans"]
