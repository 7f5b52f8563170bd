"""Run fusion against hand computations, ties included, and the CLI on real runs."""

from __future__ import annotations

import math

import pytest

from retriever.eval.fusion import convex, fuse, rrf
from retriever.types import ConfigError

A = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 2.0}, "q2": {"d9": 1.0}}
B = {"q1": {"d2": 0.9, "d4": 0.5}}


def test_rrf_by_hand_with_tied_scores_and_tied_fused_scores():
    out = rrf([A, B], k=60)
    # A's tie d2/d3 at 2.0 is ranked as trec_eval reads it: d3 (higher id) at 2, d2 at 3
    expect = {"d1": 1 / 61, "d3": 1 / 62, "d2": 1 / 63 + 1 / 61, "d4": 1 / 62}
    assert out["q1"].keys() == expect.keys()
    assert all(math.isclose(out["q1"][d], v) for d, v in expect.items())
    # d3 and d4 tie at 1/62: written in trec_eval's order (id descending), so d4 before d3
    from retriever.data.trec import sorted_hits

    assert [d for d, _ in sorted_hits(out["q1"])] == ["d2", "d1", "d4", "d3"]
    assert out["q2"] == {"d9": 1 / 61}  # a query only one run has is fused from that run
    weighted = rrf([A, B], k=0, weights=[2.0, 0.5])
    assert math.isclose(weighted["q1"]["d2"], 2 / 3 + 0.5 / 1)


def test_convex_minmax_and_zscore_by_hand():
    out = convex([A, B], weights=[0.3, 0.7], norm="minmax")
    # A -> d1 1, d2 0, d3 0; B -> d2 1, d4 0; a document missing from a run takes that run's lowest (0)
    assert out["q1"] == pytest.approx({"d1": 0.3, "d2": 0.7, "d3": 0.0, "d4": 0.0})
    z = convex([A, B], norm="zscore")
    sd_a = math.sqrt(2 / 9)
    hi, lo = (3 - 7 / 3) / sd_a, (2 - 7 / 3) / sd_a  # A's z-scores; B's are +1 / -1
    assert z["q1"] == pytest.approx({"d1": hi - 1, "d2": lo + 1, "d3": lo - 1, "d4": lo - 1})
    assert convex([{"q": {"a": 5.0, "b": 5.0}}, {"q": {"a": 1.0}}], norm="minmax")["q"] == {"a": 0.0, "b": 0.0}


def test_depth_limits_what_is_fused_and_kept():
    out = fuse([A, B], "rrf", depth=1)
    assert out["q1"].keys() == {"d2"}  # A's top d1 and B's top d2 tie at 1/61: d2 is kept (id descending)
    assert math.isclose(out["q1"]["d2"], 1 / 61) and len(out["q1"]) == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"runs": [A]}, "at least two runs"),
    ({"runs": [A, B], "weights": [1.0]}, "one weight per run"),
    ({"runs": [A, B], "weights": [0.0, 0.0]}, "not all 0"),
    ({"runs": [A, B], "method": "borda"}, "must be one of"),
    ({"runs": [A, B], "method": "convex", "norm": "l2"}, "must be one of"),
])
def test_bad_fusion_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        fuse(**kwargs)


def test_fuse_cli_on_two_runs(tmp_path, capsys):
    from retriever.data import write_run
    from tests.conftest import run_cli

    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td4\t1\nq1\td2\t1\n")
    write_run(A, tmp_path / "a.trec")
    write_run(B, tmp_path / "b.trec")
    out = run_cli(capsys, "fuse", "--runs", str(tmp_path / "a.trec"), str(tmp_path / "b.trec"), "--output",
                  str(tmp_path / "f.trec"), "--qrels", str(qrels), "--metrics", "ndcg@10,recall@2", "--method", "rrf")
    from retriever.data import read_run

    assert read_run(tmp_path / "f.trec")["q1"] == pytest.approx(rrf([A, B])["q1"], rel=1e-4)  # as written
    assert out["fused"]["recall@2"] == 0.5 and out["inputs"][1]["recall@2"] == 1.0
    # the default is the [fuse] stage's: convex over z-scores, equal weights
    run_cli(capsys, "fuse", "--runs", str(tmp_path / "a.trec"), str(tmp_path / "b.trec"), "--output",
            str(tmp_path / "z.trec"))
    assert read_run(tmp_path / "z.trec")["q1"] == pytest.approx(convex([A, B], norm="zscore")["q1"], abs=1e-6)
