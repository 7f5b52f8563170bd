"""Hard-negative mining from any ``Searcher`` (BM25, dense), with false-negative filtering."""

from retriever.mining.negatives import MinedExample, MiningConfig, MiningReport, mine_negatives, read_mined, \
    write_mined

__all__ = ["MinedExample", "MiningConfig", "MiningReport", "mine_negatives", "read_mined", "write_mined"]
