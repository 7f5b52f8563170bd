"""End to end through the CLI on a small slice of real SciFact: BM25, dense, encode -> index -> search."""

from __future__ import annotations

import pytest

from pipelines.cli import main
from retriever.data import read_run
from tests.conftest import run_cli as _run_cli


@pytest.mark.java
def test_bm25_cli_and_evaluate(scifact_slice, tmp_path, capsys):
    out = _run_cli(capsys, "bm25", "--dataset", str(scifact_slice), "--output", str(tmp_path / "bm25.trec"),
                   "--k", "100")
    # 40 queries over their judged documents plus 230 distractors: BM25 finds most of them at the top
    assert out["metrics"]["num_queries"] == 40 and out["metrics"]["ndcg@10"] > 0.75
    run = read_run(tmp_path / "bm25.trec")
    assert len(run) == 40 and all(len(h) <= 100 for h in run.values())
    ev = _run_cli(capsys, "evaluate", "--qrels", str(scifact_slice / "qrels" / "test.tsv"), "--run",
                  str(tmp_path / "bm25.trec"), "--metrics", "ndcg@10,recall@100")
    assert ev["ndcg@10"] == pytest.approx(out["metrics"]["ndcg@10"], abs=1e-6)


def test_dense_then_sharded_index_search(scifact_slice, tmp_path, capsys):
    n_docs = sum(1 for _ in open(scifact_slice / "corpus.jsonl"))
    per_shard = -(-n_docs // 4)  # four shards
    dense = _run_cli(capsys, "dense", "--dataset", str(scifact_slice), "--output", str(tmp_path / "dense.trec"),
                     "--docs-per-shard", str(per_shard))
    assert dense["metrics"]["ndcg@10"] > 0.75
    emb = dense["embeddings"]
    runs = {}
    for name, extra in (("one", ["--merged"]), ("four", [])):
        idx = _run_cli(capsys, "index", "--embeddings", emb, "--output", str(tmp_path / name), "--factory", "Flat",
                       *extra)
        assert len(idx["parts"]) == (1 if name == "one" else 4)
        res = _run_cli(capsys, "search", "--dataset", str(scifact_slice), "--index", str(tmp_path / name),
                       "--output", str(tmp_path / f"{name}.trec"))
        runs[name] = (read_run(tmp_path / f"{name}.trec"), res["metrics"])
    one, four = runs["one"][0], runs["four"][0]
    assert one.keys() == four.keys()
    for qid in one:
        assert list(one[qid]) == list(four[qid])  # same documents in the same order
        assert all(abs(one[qid][d] - four[qid][d]) < 1e-5 for d in one[qid])
    assert runs["one"][1]["ndcg@10"] == runs["four"][1]["ndcg@10"] == dense["metrics"]["ndcg@10"]


def test_index_budget_refusal_through_cli(scifact_slice, tmp_path, capsys):
    dense = _run_cli(capsys, "encode", "--dataset", str(scifact_slice), "--engine", "local", "--max-docs", "100")
    code = main(["index", "--embeddings", dense["embeddings"], "--output", str(tmp_path / "ix"), "--factory", "Flat",
                 "--memory-budget", "10kB"])
    err = capsys.readouterr().err
    assert code == 2 and "needs about 153.60 kB" in err and "raise --memory-budget" in err
    assert not (tmp_path / "ix" / "manifest.json").exists()


def test_mine_dense_negatives_through_cli(scifact_slice, tmp_path, capsys):
    from retriever.mining import read_mined

    out = _run_cli(capsys, "mine", "--dataset", str(scifact_slice), "--split", "test", "--retriever", "dense",
                   "--depth", "30", "--num-negatives", "4", "--output", str(tmp_path / "pairs.parquet"))
    report = out["report"]
    assert report["queries"] == 40 and report["pairs"] >= 40 and out["examples"] == report["pairs"]
    assert report["dropped_known_positive"] >= 1 and report["pairs_without_positive_score"] == 0
    mined = read_mined(tmp_path / "pairs.parquet")
    from retriever.data import load_beir

    qrels = load_beir(scifact_slice).qrels
    for ex in mined:
        assert not set(ex.negative_ids) & set(qrels[ex.query_id])  # never a judged positive
        assert all(s <= 0.95 * ex.positive_score + 1e-6 for s in ex.negative_scores)


@pytest.mark.ray
def test_mining_on_ray_shards_equals_one_process(scifact_slice, tmp_path, capsys):
    from retriever.mining import read_mined

    common = ["mine", "--dataset", str(scifact_slice), "--split", "test", "--retriever", "dense", "--depth", "30",
              "--num-negatives", "4"]
    local = _run_cli(capsys, *common, "--output", str(tmp_path / "local.parquet"))
    ray = _run_cli(capsys, *common, "--output", str(tmp_path / "ray.parquet"), "--engine", "ray",
                   "--num-workers", "2", "--queries-per-shard", "15")
    assert ray["shards"] == 3 and ray["report"] == local["report"]
    a, b = read_mined(tmp_path / "ray.parquet"), read_mined(tmp_path / "local.parquet")
    assert [(e.query_id, e.positive_id, e.negative_ids) for e in a] == \
        [(e.query_id, e.positive_id, e.negative_ids) for e in b]  # scores differ in the 7th digit (batching)
    assert all(abs(x - y) < 1e-5 for ea, eb in zip(a, b) for x, y in zip(ea.negative_scores, eb.negative_scores))


def test_leaderboard_table_with_a_missing_dataset(scifact_slice, tmp_path, capsys):
    out = _run_cli(capsys, "leaderboard", "--datasets", f"{scifact_slice},./no-such-dataset", "--no-bm25",
                   "--output", str(tmp_path / "lb"))
    ok, missing = out["rows"]
    assert 0.6 < ok["model"] <= 1 and "dataset folder not found" in missing["unavailable"]
    assert out["average"]["model"] == round(ok["model"], 4)
    table = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "| ./no-such-dataset | n/a | n/a |" in table and "| **average** |" in table
