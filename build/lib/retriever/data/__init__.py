"""Readers and writers for BEIR, MS MARCO and TREC formats, with validation; Parquet shards of text."""

from retriever.data.beir import BeirDataset, check_qrels_ids, load_beir, read_corpus, read_qrels, read_queries
from retriever.data.resolve import data_dir, resolve_dataset
from retriever.data.trec import read_collection, read_run, read_topics, sorted_hits, write_run
from retriever.data.validation import Problem, ValidationReport

__all__ = [
    "BeirDataset", "Problem", "ValidationReport", "check_qrels_ids", "data_dir", "load_beir", "read_collection",
    "read_corpus", "read_qrels", "read_queries", "read_run", "read_topics", "resolve_dataset", "sorted_hits",
    "write_run",
]
