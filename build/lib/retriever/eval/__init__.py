"""Metrics over runs and qrels with trec_eval semantics; paired significance tests."""

from retriever.eval.metrics import DEFAULT_METRICS, EvalResult, drop_self_hits, evaluate, parse_metric, truncate
from retriever.eval.significance import PairedTest, paired_test

__all__ = ["DEFAULT_METRICS", "EvalResult", "PairedTest", "drop_self_hits", "evaluate", "paired_test",
           "parse_metric", "truncate"]
