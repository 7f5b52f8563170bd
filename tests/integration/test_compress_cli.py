"""The compression sweep, planner and learned PQ through the CLI on a slice of SciFact; exports load with plain
faiss and sentence-transformers."""

from __future__ import annotations

import json


from pipelines.cli import main
from tests.conftest import run_cli as _run_cli


def test_compress_sweep_outputs_and_planner(scifact_slice, tmp_path, capsys):
    out = _run_cli(capsys, "compress", "--dataset", str(scifact_slice), "--output", str(tmp_path / "sw"),
                   "--variants", "flat,fp16,sq8,pq32x4fs,binary", "--bytes-per-vector", "400")
    assert out["variants"] == 5 and out["pareto"]
    assert out["picked"]["bytes_per_vector"] <= 400 and out["picked"]["name"] in out["pareto"]
    sweep = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    flat = next(r for r in sweep["rows"] if r["name"] == "flat")
    assert flat["bytes_per_vector"] == 1536 and flat["ndcg@10"] > 0.75
    front = [r for r in sweep["rows"] if r["pareto"]]
    for r in sweep["rows"]:  # every row off the front is matched or beaten by a smaller-or-equal front row
        assert r["pareto"] or any(f["index_bytes"] <= r["index_bytes"] and f["ndcg@10"] >= r["ndcg@10"]
                                  for f in front)
    assert (tmp_path / "sw" / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "| flat | 1536 |" in (tmp_path / "sw" / "sweep.md").read_text()
    plan = _run_cli(capsys, "plan", "--sweep", str(tmp_path / "sw" / "sweep.json"), "--memory-budget", "10GB")
    assert plan["picked"]["name"] in out["pareto"]
    assert main(["plan", "--sweep", str(tmp_path / "sw" / "sweep.json"), "--memory-budget", "100"]) == 2
    err = capsys.readouterr().err
    assert "no measured variant fits a budget of 100 bytes" in err and "raise the budget" in err
    assert main(["compress", "--dataset", str(scifact_slice), "--output", str(tmp_path / "x"), "--variants",
                 "flat,zip"]) == 2
    assert "unknown variants ['zip']" in capsys.readouterr().err


def test_learned_pq_jpq_exports_standard_artifacts(scifact_slice, tmp_path, capsys):
    import faiss
    from sentence_transformers import SentenceTransformer

    # the slice has only a test split: train on it here (the benchmark trains on SciFact's train split)
    out = _run_cli(capsys, "learned-pq", "--dataset", str(scifact_slice), "--train-split", "test", "--mode", "jpq",
                   "--factory", "PQ8", "--epochs", "1", "--output", str(tmp_path / "lpq"))
    assert len(out["losses"]) == 1
    # trained and evaluated on the same queries: learning the codebooks and the query encoder must help there
    assert out["metrics"]["ndcg@10"] > out["metrics_before"]["ndcg@10"]
    index = faiss.read_index(str(tmp_path / "lpq" / "index" / "index.faiss"))
    model = SentenceTransformer(str(tmp_path / "lpq" / "query_encoder"), device="cpu")
    D, I = index.search(model.encode(["vitamin D"], normalize_embeddings=False), 5)
    assert (I >= 0).all()


def test_learned_pq_rejects_non_pq_index(scifact_slice, tmp_path, capsys):
    assert main(["learned-pq", "--dataset", str(scifact_slice), "--train-split", "test", "--mode", "distill",
                 "--factory", "SQ8", "--output", str(tmp_path / "x")]) == 2
    assert "needs an 8-bit IndexPQ" in capsys.readouterr().err


def test_plan_on_a_synthetic_sweep_uses_its_own_metric(capsys):
    """A sweep over synthetic vectors has recall against exact search, not nDCG: the planner picks by it."""
    from pathlib import Path

    sweep = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "compression_synthetic_1000000" / \
        "sweep.json"
    out = _run_cli(capsys, "plan", "--sweep", str(sweep), "--memory-budget", "100MB")
    assert out["metric"] == "recall@10_vs_exact" and out["picked"]["index_bytes"] <= 100e6


def test_index_with_a_wrong_embeddings_path_says_so(tmp_path, capsys):
    assert main(["index", "--embeddings", str(tmp_path / "nowhere"), "--output", str(tmp_path / "ix")]) == 2
    err = capsys.readouterr().err
    assert "no such embeddings folder" in err and "rerun" not in err
