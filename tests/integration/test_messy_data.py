"""A collection with the defects of real ones (tests/data/messy: BOM, CRLF, empty documents, a judged document
missing from the corpus, judgments of an unknown query, a repeated judgment) runs through bm25 -> encode ->
search -> evaluate with the problems counted in each command's JSON; --strict refuses them; corruption (a
non-UTF-8 byte) is an error naming file and line, and --skip-malformed counts and skips it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.cli import main
from retriever.data import read_run
from tests.conftest import run_cli

MESSY = Path(__file__).resolve().parents[1] / "data" / "messy"
EXPECTED = {"duplicate_judgment": 1, "empty_document": 2, "unknown_document": 1, "unknown_query": 1}


@pytest.fixture(autouse=True)
def _default_policy(monkeypatch):
    monkeypatch.delenv("DRP_DATA_POLICY", raising=False)


@pytest.mark.java
def test_bm25_encode_search_evaluate_accept_the_record_level_problems(tmp_path, capsys, caplog):
    bm25 = run_cli(capsys, "bm25", "--dataset", str(MESSY), "--output", str(tmp_path / "bm25.trec"), "--k", "10")
    assert bm25["data_problems"] == EXPECTED
    assert "empty_document" in caplog.text and "unknown_document" in caplog.text  # warned on stderr
    # the judged document missing from the corpus stays relevant: q1 can find at most half of what is relevant
    assert bm25["metrics"]["num_queries"] == 6 and 0.5 < bm25["metrics"]["ndcg@10"] < 1.0
    enc = run_cli(capsys, "encode", "--dataset", str(MESSY), "--engine", "local", "--output", str(tmp_path / "emb"))
    assert enc["num_docs"] == 12 and enc["data_problems"] == EXPECTED  # the empty documents are encoded too
    dense = run_cli(capsys, "dense", "--dataset", str(MESSY), "--output", str(tmp_path / "dense.trec"))
    assert dense["metrics"]["num_queries"] == 6 and dense["metrics"]["ndcg@10"] > 0.5
    assert {"d3", "d7"} <= {d for hits in read_run(tmp_path / "dense.trec").values() for d in hits}
    ev = run_cli(capsys, "evaluate", "--qrels", str(MESSY / "qrels" / "test.tsv"), "--run",
                 str(tmp_path / "bm25.trec"), "--metrics", "ndcg@10,recall@10")
    assert ev["data_problems"] == {"duplicate_judgment": 1}
    assert ev["ndcg@10"] == pytest.approx(bm25["metrics"]["ndcg@10"], abs=1e-9)


def test_strict_refuses_the_first_record_level_problem(tmp_path, capsys):
    code = main(["encode", "--dataset", str(MESSY), "--engine", "local", "--strict", "--output", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert code == 2 and "corpus.jsonl:3: document 'd3' has empty title and text" in err
    import os

    assert "DRP_DATA_POLICY" not in os.environ  # --strict held for that command only, not for the next one
    assert "Traceback" not in err


def _latin1_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "latin1"
    shutil.copytree(MESSY, folder)
    raw = (folder / "corpus.jsonl").read_bytes()
    (folder / "corpus.jsonl").write_bytes(raw.replace("Café".encode(), b"Caf\xe9"))
    return folder


def test_a_non_utf8_byte_names_file_line_and_fix(tmp_path, capsys):
    folder = _latin1_copy(tmp_path)
    for argv in (["data", "check", str(folder)],
                 ["encode", "--dataset", str(folder), "--engine", "local", "--output", str(tmp_path / "e")]):
        code = main(argv)
        captured = capsys.readouterr()
        assert code in (1, 2) and "Traceback" not in captured.err
        text = captured.err + captured.out
        assert "corpus.jsonl:12" in text and "0xe9" in text and "UTF-8" in text and "iconv" in text


def test_skip_malformed_counts_and_skips_the_corrupt_line(tmp_path, capsys):
    folder = _latin1_copy(tmp_path)
    out = run_cli(capsys, "encode", "--dataset", str(folder), "--engine", "local", "--skip-malformed",
                  "--output", str(tmp_path / "e"))
    assert out["num_docs"] == 11 and out["data_problems"]["not_utf8"] == 1


def test_evaluate_refuses_a_run_that_shares_no_query_with_the_qrels(tmp_path, capsys):
    (tmp_path / "run.trec").write_text("x1 Q0 d1 1 1.0 t\n")
    code = main(["evaluate", "--qrels", str(MESSY / "qrels" / "test.tsv"), "--run", str(tmp_path / "run.trec")])
    err = capsys.readouterr().err
    assert code == 2 and "no query of the run is judged" in err


def test_search_refuses_a_model_that_does_not_match_the_index(tmp_path, capsys, tiny_model):
    enc = run_cli(capsys, "encode", "--dataset", str(MESSY), "--engine", "local", "--output", str(tmp_path / "emb"))
    run_cli(capsys, "index", "--embeddings", enc["embeddings"], "--output", str(tmp_path / "ix"), "--factory", "Flat")
    ok = run_cli(capsys, "search", "--dataset", str(MESSY), "--index", str(tmp_path / "ix"), "--output",
                 str(tmp_path / "ok.trec"))
    assert ok["metrics"]["num_queries"] == 6
    code = main(["search", "--dataset", str(MESSY), "--index", str(tmp_path / "ix"), "--model", str(tiny_model),
                 "--output", str(tmp_path / "bad.trec")])
    err = capsys.readouterr().err
    assert code == 2 and "384-dimensional" in err and "32-dimensional" in err and "Traceback" not in err


def test_prepare_command_cuts_the_corpus_into_shards(tmp_path, capsys):
    out = run_cli(capsys, "prepare", "--dataset", str(MESSY), "--docs-per-shard", "5")
    assert (out["documents"], out["shards"], out["queries"]) == (12, 3, 6)
    assert out["data_problems"] == EXPECTED and Path(out["corpus"]).is_dir()
    again = run_cli(capsys, "prepare", "--dataset", str(MESSY), "--docs-per-shard", "5")
    assert again["data_hash"] == out["data_hash"]


def test_a_file_read_by_several_stages_is_counted_once(caplog):
    """`densepipe run` prepares the same collection in several stages: its problems are listed once."""
    from pipelines.workspace import prepare
    from retriever.data.validation import accepted_problems, reset_accepted

    reset_accepted()
    prepare(str(MESSY))
    prepare(str(MESSY))
    assert accepted_problems() == EXPECTED
    assert caplog.text.count("empty_document") == 1
    reset_accepted()
