"""The MS MARCO / TREC DL path: an MS MARCO-style folder (collection.tsv, queries.dev.tsv, TREC qrels) through
``densepipe prepare`` and ``bm25`` -> ``evaluate``, MS MARCO's run format and its official MRR@10 checked by hand,
TREC DL topics and graded qrels given as files with relevance level 2, and the JVM's bounded heap."""

from __future__ import annotations

import pytest

from retriever.data import read_qrels
from retriever.eval import evaluate
from retriever.eval.metrics import msmarco_mrr
from tests.conftest import run_cli

PASSAGES = ["apple orchard harvest", "banana split dessert", "cherry blossom festival",
            "apple banana smoothie recipe", "the quick brown fox", "apple pie"]


@pytest.fixture()
def marco(tmp_path):
    folder = tmp_path / "marco"
    folder.mkdir()
    (folder / "collection.tsv").write_text("".join(f"{i}\t{p}\n" for i, p in enumerate(PASSAGES)))
    (folder / "queries.dev.tsv").write_text("1\tcherry festival\n2\tapple banana\n3\tzebra\n4\tnot judged\n")
    # q1's passage ranks 1st (the only match); q2's 2nd (p3 matches both words; p1's "banana" is rarer than the
    # "apple" of p0 and p5); q3's is never retrieved (no word in common)
    (folder / "qrels.dev.tsv").write_text("1 0 2 1\n2 0 1 1\n3 0 4 1\n")
    return folder


def test_msmarco_mrr_by_hand():
    qrels = {"a": {"x": 1}, "b": {"y": 1}, "c": {"z": 1}, "d": {"w": 0}}  # d has no relevant passage: not judged
    run = {"a": {"x": 3.0, "q": 1.0}, "b": {"p": 5.0, "o": 4.0, "y": 3.0}}  # c is missing from the run
    assert msmarco_mrr(qrels, run) == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert msmarco_mrr(qrels, run, k=2) == pytest.approx(1 / 3)  # y at rank 3 is past the cutoff


@pytest.mark.java
def test_an_ms_marco_folder_through_prepare_bm25_and_evaluate(marco, tmp_path, capsys):
    prep = run_cli(capsys, "prepare", "--dataset", str(marco), "--split", "dev", "--docs-per-shard", "4")
    assert prep["documents"] == 6 and prep["shards"] == 2 and prep["queries"] == 3
    out = run_cli(capsys, "bm25", "--dataset", str(marco), "--split", "dev", "--output", str(tmp_path / "run.tsv"),
                  "--run-format", "msmarco", "--k", "10")
    lines = [line.split("\t") for line in (tmp_path / "run.tsv").read_text().splitlines()]
    assert lines[0] == ["1", "2", "1"] and all(len(cols) == 3 for cols in lines)  # qid, pid, rank
    assert [cols[1] for cols in lines if cols[0] == "2"][:2] == ["3", "1"]
    # official MRR@10: (1 + 1/2 + 0) / 3 judged queries; trec_eval's recip_rank averages over the 2 answered
    assert out["metrics"]["mrr@10_msmarco"] == pytest.approx(0.5)
    assert out["metrics"]["mrr@10"] == pytest.approx(0.75) and out["metrics"]["num_queries"] == 2
    memory = out["memory"]
    assert memory["java_heap_mb"] == 1024 and memory["index_peak_rss_mb"] > 0 and memory["search_peak_rss_mb"] > 0


@pytest.mark.java
def test_trec_dl_topics_and_graded_qrels_with_relevance_level_2(marco, tmp_path, capsys):
    (tmp_path / "topics.tsv").write_text("2\tapple banana\n")
    # graded as TREC DL: p3 3, p5 2, p1 1, p4 2 (p4 is never retrieved)
    (tmp_path / "qrels.txt").write_text("2 0 3 3\n2 0 5 2\n2 0 1 1\n2 0 4 2\n")
    common = ["bm25", "--dataset", str(marco), "--topics", str(tmp_path / "topics.tsv"), "--qrels",
              str(tmp_path / "qrels.txt"), "--output", str(tmp_path / "dl.trec"), "--java-heap", "256"]
    level1 = run_cli(capsys, *common)
    level2 = run_cli(capsys, *common, "--relevance-level", "2")
    assert level1["metrics"]["recall@1000"] == pytest.approx(3 / 4)  # p3, p5, p1 of 4 judged relevant
    assert level2["metrics"]["recall@1000"] == pytest.approx(2 / 3)  # p3, p5 of p3, p5, p4
    assert level2["relevance_level"] == 2
    assert level1["metrics"]["ndcg@10"] == level2["metrics"]["ndcg@10"]  # nDCG uses the grades themselves
    qrels = read_qrels(tmp_path / "qrels.txt")
    assert evaluate(qrels, {"2": {"3": 3.0, "5": 2.0}}, ["recall@1000"], relevance_level=2).aggregate[
        "recall@1000"] == pytest.approx(2 / 3)
    heap = level1["memory"]  # the JVM's own report of its heap limit (a little under -Xmx: survivor space)
    assert heap["java_heap_mb"] == 256 and 200 <= heap["jvm_max_heap_mb"] <= 256
