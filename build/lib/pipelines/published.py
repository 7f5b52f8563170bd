"""Published nDCG@10 figures (BEIR test splits) shown beside ours in reports and leaderboards.

- BM25 flat (title and text in one field, k1 0.9, b 0.4): Anserini's BEIR (v1.0.0) regressions,
  ``src/main/resources/regression/beir-v1.0.0-<name>.flat.yaml``, the figures Pyserini's BEIR page reproduces.
- all-MiniLM-L6-v2: the MTEB leaderboard (SciFact only here: the figure our own run reproduces exactly).
- bge-small-en-v1.5: its model card / MTEB (SciFact).
"""

from __future__ import annotations

BM25_FLAT = {"scifact": 0.6789, "nfcorpus": 0.3218, "fiqa": 0.2361, "arguana": 0.3970, "scidocs": 0.1490,
             "trec-covid": 0.5947}
MODELS = {"sentence-transformers/all-MiniLM-L6-v2": {"scifact": 0.6451},
          "BAAI/bge-small-en-v1.5": {"scifact": 0.7127}}


def published(dataset: str, system: str) -> float | None:
    """``system``: "bm25" or a model name."""
    if system == "bm25":
        return BM25_FLAT.get(dataset)
    return MODELS.get(system, {}).get(dataset)
