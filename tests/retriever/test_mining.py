"""Hard-negative mining: planted false negatives are filtered and counted; the table round-trips."""

from __future__ import annotations

import pytest

from retriever.mining import MiningConfig, mine_negatives, read_mined, write_mined
from retriever.types import ConfigError, DataError


class FixedSearcher:
    """A Searcher returning a fixed ranking: doc 'dK' scores 1 - K/100."""

    def __init__(self, run):
        self.run = run

    def search(self, queries, k):
        return {q: dict(list(self.run[q].items())[:k]) for q in queries}


def _ranking(n=40):
    return {f"d{i}": 1.0 - i / 100 for i in range(n)}


def test_known_positives_and_near_ties_are_dropped():
    run = {"q1": _ranking()}
    qrels = {"q1": {"d3": 1, "d0": 2}}  # d0 is judged relevant; d3 is the positive we mine for, too
    cfg = MiningConfig(depth=40, rank_range=(1, 40), num_negatives=5, margin=0.99)
    examples, report = mine_negatives({"q1": "x"}, qrels, FixedSearcher(run), cfg)
    ex3 = next(e for e in examples if e.positive_id == "d3")
    # for positive d3 (0.97): d0, d3 are positives; d1 (0.99), d2 (0.98) exceed 0.99 * 0.97 = 0.9603
    assert not {"d0", "d1", "d2", "d3"} & set(ex3.negative_ids) and len(ex3.negative_ids) == 5
    assert report.pairs == 2 and report.dropped_known_positive == 4
    assert report.dropped_margin == 2 + 0  # d1, d2 for d3; nothing scores above 0.99 * 1.0 for d0
    assert all(s <= 0.99 * ex3.positive_score for s in ex3.negative_scores)


def test_absolute_margin_rank_range_and_no_filter():
    run = {"q": _ranking()}
    qrels = {"q": {"d10": 1}}
    cfg = MiningConfig(depth=40, rank_range=(20, 30), num_negatives=20, margin=0.05, margin_mode="absolute")
    (ex,), report = mine_negatives({"q": "x"}, qrels, FixedSearcher(run), cfg)
    # dropped by margin: scores above 0.90 - 0.05 = 0.85, i.e. d0..d14 except d10 (a positive)
    assert report.dropped_margin == 14 and set(ex.negative_ids) == {f"d{i}" for i in range(19, 29)}
    assert report.pairs_with_too_few_negatives == 1
    (ex,), report = mine_negatives({"q": "x"}, qrels, FixedSearcher(run), MiningConfig(margin=None, depth=40))
    assert report.dropped_margin == 0 and "d10" not in ex.negative_ids


def test_positive_missing_from_the_ranking_uses_score_fn():
    run = {"q": _ranking(10)}
    qrels = {"q": {"far": 1}}
    cfg = MiningConfig(depth=10, num_negatives=3, margin=1.0)
    _, report = mine_negatives({"q": "x"}, qrels, FixedSearcher(run), cfg)
    assert report.pairs_without_positive_score == 1
    (ex,), report = mine_negatives({"q": "x"}, qrels, FixedSearcher(run), cfg, score_fn=lambda q, ds: [0.95])
    assert ex.positive_score == 0.95 and report.dropped_margin == 5  # d0..d4 score above 0.95


def test_table_round_trip_and_bad_files(tmp_path):
    run = {"q1": _ranking(), "q2": _ranking()}
    examples, _ = mine_negatives({"q1": "a", "q2": "b"}, {"q1": {"d5": 1}, "q2": {"d7": 1}}, FixedSearcher(run),
                                 MiningConfig(depth=40), source="dense")
    write_mined(examples, tmp_path / "pairs.parquet")
    assert read_mined(tmp_path / "pairs.parquet") == [
        type(e)(e.query_id, e.positive_id, e.negative_ids, tuple(pytest.approx(s) for s in e.negative_scores),
                pytest.approx(e.positive_score), e.source) for e in examples]
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_mined(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="pairs file not found"):
        read_mined(tmp_path / "none.parquet")
    with pytest.raises(DataError, match="nothing was mined"):
        write_mined([], tmp_path / "empty.parquet")
    with pytest.raises(DataError, match="no query has a positive"):
        mine_negatives({"q": "x"}, {"q": {"d1": 0}}, FixedSearcher(run), MiningConfig())
    with pytest.raises(ConfigError, match="rank_range"):
        MiningConfig(rank_range=(5, 5))


def test_a_margin_that_empties_pairs_is_counted_and_warned_about():
    """A single-topic corpus: every candidate within 5% of the positive's score. The relative 0.95 margin drops
    them all, so the pair has nothing to train against: counted, and the warning names the way out."""
    from retriever.mining.negatives import mining_warnings

    run = {"q1": {f"d{i}": 0.90 - i / 1000 for i in range(20)}, "q2": _ranking()}
    qrels = {"q1": {"d0": 1}, "q2": {"d5": 1}}
    cfg = MiningConfig(depth=20, rank_range=(1, 20), num_negatives=4, margin=0.95)
    examples, report = mine_negatives({"q1": "a", "q2": "b"}, qrels, FixedSearcher(run), cfg)
    assert [e.query_id for e in examples] == ["q2"] and report.pairs_without_negatives == 1
    assert report.dropped_margin == 19 + 9  # q1: d1..d19 all above 0.95 * 0.90; q2: d0-d4, d6-d9 above 0.9025
    (warning,) = mining_warnings(report, cfg)
    assert warning.startswith("1 of 2 (query, positive) pairs have no negative left") and "--margin" in warning
    assert mining_warnings(mine_negatives({"q2": "b"}, {"q2": {"d5": 1}}, FixedSearcher(run), cfg)[1], cfg) == []
