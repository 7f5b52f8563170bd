"""Lexical retrieval: BM25 over a Lucene index through Pyserini."""

from retriever.sparse.bm25 import BM25Config, BM25Searcher, build_lucene_index

__all__ = ["BM25Config", "BM25Searcher", "build_lucene_index"]
