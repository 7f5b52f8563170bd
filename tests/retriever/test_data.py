"""Readers: every validation case through the public API (strict raises, lenient counts) and the CLI."""

from __future__ import annotations

import gzip
import json

import pytest

from pipelines.cli import main
from retriever.data import (ValidationReport, load_beir, read_corpus, read_qrels, read_queries, read_run,
                            read_topics, resolve_dataset, write_run)
from retriever.types import DataError
from tests.conftest import DATA, SCIFACT, need_data, write_beir


def _lines(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.mark.parametrize("line,needle", [
    ('{"_id": "a", "text": "ok"', "malformed JSON"),
    ('["not", "an", "object"]', "expected a JSON object"),
    ('{"title": "t", "text": "no id"}', "missing or empty '_id'"),
    ('{"_id": "b", "title": "only a title"}', "has no 'text' field"),
    ('{"_id": "c", "title": "", "text": "   "}', "empty title and text"),
    ('{"_id": "d", "text": ["a list"]}', "'text' is not a string"),
])
def test_corpus_errors_name_file_line_and_fix(tmp_path, line, needle):
    path = _lines(tmp_path, "corpus.jsonl", ['{"_id": "0", "text": "fine"}', line])
    with pytest.raises(DataError) as e:
        read_corpus(path)
    msg = str(e.value)
    assert needle in msg and f"{path}:2" in msg and "Fix:" in msg


def test_duplicate_ids_point_at_first_occurrence(tmp_path):
    path = _lines(tmp_path, "corpus.jsonl", ['{"_id": "7", "text": "a"}', '{"_id": "8", "text": "b"}',
                                             '{"_id": "7", "text": "c"}'])
    with pytest.raises(DataError, match=r"corpus.jsonl:3: duplicate id '7' \(first seen on line 1\)"):
        read_corpus(path)


def test_lenient_mode_counts_and_skips(tmp_path):
    path = _lines(tmp_path, "corpus.jsonl", ['{"_id": "1", "text": "a"}', '{bad', '{"_id": "1", "text": "dup"}',
                                             '{"_id": "2", "text": ""}', '', '{"_id": "3", "title": "T", "text": ""}'])
    report = ValidationReport()
    corpus = read_corpus(path, report)
    # the empty document is kept (an accepted record-level problem), the corrupt line and the duplicate skipped
    assert sorted(corpus) == ["1", "2", "3"] and corpus["1"].text == "a" and corpus["3"].joined() == "T"
    assert corpus["2"].joined() == ""
    assert report.counts == {"malformed_json": 1, "duplicate_id": 1, "empty_document": 1}
    assert report.total == 3 and not report.ok and report.corrupt == 2


def test_the_default_policy_accepts_record_level_problems_and_stops_at_corruption(tmp_path):
    path = _lines(tmp_path, "corpus.jsonl", ['{"_id": "1", "text": ""}', '{"_id": "2", "text": "b"}', '{bad'])
    report = ValidationReport(accept_only=True)
    with pytest.raises(DataError, match=r"corpus.jsonl:3: malformed JSON"):
        read_corpus(path, report)
    assert report.counts == {"empty_document": 1}


def test_queries_errors(tmp_path):
    path = _lines(tmp_path, "queries.jsonl", ['{"_id": "q1", "text": "x"}', '{"_id": "q2", "text": ""}'])
    with pytest.raises(DataError, match=r"queries.jsonl:2: query 'q2' has empty text"):
        read_queries(path)  # strict (no report): even an accepted problem is an error
    path = _lines(tmp_path, "q2.jsonl", ['{"_id": "q1"}'])
    with pytest.raises(DataError, match="no string 'text' field"):
        read_queries(path)


def test_qrels_errors(tmp_path):
    bad_cols = _lines(tmp_path, "a.tsv", ["query-id\tcorpus-id\tscore", "q1\td1"])
    with pytest.raises(DataError, match=r"a.tsv:2: expected 3 columns"):
        read_qrels(bad_cols)
    bad_grade = _lines(tmp_path, "b.tsv", ["q1\td1\t1", "q1\td2\thigh"])
    with pytest.raises(DataError, match=r"b.tsv:2: relevance 'high' is not an integer"):
        read_qrels(bad_grade)
    dup = _lines(tmp_path, "c.tsv", ["q1\td1\t1", "q1\td1\t2"])
    with pytest.raises(DataError, match="judges document 'd1' twice"):
        read_qrels(dup)


def test_qrels_unknown_ids(tmp_path):
    folder = write_beir(tmp_path / "ds", [{"_id": "d1", "text": "a"}], [{"_id": "q1", "text": "x"}],
                        [("q1", "d1", 1), ("q1", "d404", 1)])
    with pytest.raises(DataError, match="document 'd404', which is not in the corpus"):
        load_beir(folder)
    folder = write_beir(tmp_path / "ds2", [{"_id": "d1", "text": "a"}], [{"_id": "q1", "text": "x"}],
                        [("q1", "d1", 1), ("q9", "d1", 1)])
    with pytest.raises(DataError, match="query 'q9', which is not in the queries"):
        load_beir(folder)
    report = ValidationReport()
    ds = load_beir(folder, report=report)
    assert ds.qrels == {"q1": {"d1": 1}} and report.counts == {"unknown_query": 1}


def test_missing_split_names_the_choices(tmp_path):
    folder = write_beir(tmp_path / "ds", [{"_id": "d1", "text": "a"}], [{"_id": "q1", "text": "x"}],
                        [("q1", "d1", 1)], split="train")
    with pytest.raises(DataError, match=r"no qrels for split 'test'.*\['train'\]"):
        load_beir(folder, "test")


def test_tsv_topics_and_run_round_trip(tmp_path):
    topics = _lines(tmp_path, "t.tsv", ["1\tfirst query", "2\tsecond"])
    assert read_topics(topics) == {"1": "first query", "2": "second"}
    with pytest.raises(DataError, match=r"t2.tsv:1: expected '<id>\\t<query>'"):
        read_topics(_lines(tmp_path, "t2.tsv", ["no tab here"]))
    gz = tmp_path / "t.tsv.gz"
    gz.write_bytes(gzip.compress(b"5\tzipped\n"))
    assert read_topics(gz) == {"5": "zipped"}
    run = {"q1": {"a": 1.5, "b": 2.0, "c": 2.0}, "q2": {"x": 0.1}}
    write_run(run, tmp_path / "run.trec")
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert lines[0].split()[:4] == ["q1", "Q0", "c", "1"]  # trec_eval order: ties by doc id descending
    assert read_run(tmp_path / "run.trec") == {"q1": {"c": 2.0, "b": 2.0, "a": 1.5}, "q2": {"x": 0.1}}
    with pytest.raises(DataError, match=r"r.trec:1: expected 6 columns"):
        read_run(_lines(tmp_path, "r.trec", ["q1 Q0 d1 1 0.5"]))


def test_real_trec_and_msmarco_files():
    tq = DATA / "topics-qrels"
    need_data(tq)
    dev = read_topics(tq / "topics.msmarco-passage.dev-subset.txt")
    assert len(dev) == 6980
    qrels = read_qrels(tq / "qrels.msmarco-passage.dev-subset.txt")
    assert set(qrels) <= set(dev)
    dl19 = read_qrels(tq / "qrels.dl19-passage.txt")
    assert len(dl19) == 43 and max(r for docs in dl19.values() for r in docs.values()) == 3
    assert len(read_topics(tq / "topics.beir-v1.0.0-scifact.test.tsv.gz")) == 300
    assert read_qrels(tq / "qrels.beir-v1.0.0-scifact.test.txt") == read_qrels(SCIFACT / "qrels" / "test.tsv")


def test_scifact_loads_clean():
    need_data(SCIFACT)
    report = ValidationReport()
    ds = load_beir(SCIFACT, "test", report)
    assert report.ok and len(ds.corpus) == 5183 and len(ds.queries) == 300
    assert sum(len(v) for v in ds.qrels.values()) == 339


def test_resolve_by_name_and_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DRP_DATA_DIR", str(tmp_path))
    (tmp_path / "mine").mkdir()
    assert resolve_dataset("mine") == tmp_path / "mine"
    with pytest.raises(DataError, match="unknown dataset 'nosuch'"):
        resolve_dataset("nosuch")
    with pytest.raises(DataError, match="is not present locally"):
        resolve_dataset("nfcorpus", download=False)


def test_cli_data_check_reports_every_problem(tmp_path, capsys):
    folder = write_beir(tmp_path / "ds", [{"_id": "d1", "text": "a"}, {"_id": "d1", "text": "b"},
                                          {"_id": "d2", "text": ""}],
                        [{"_id": "q1", "text": "x"}, {"_id": "q2"}], [("q1", "d1", 1), ("q1", "d9", 1)])
    with open(folder / "corpus.jsonl", "a") as f:
        f.write("{oops\n")
    assert main(["data", "check", str(folder)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["problems"] == {"duplicate_id": 1, "empty_document": 1, "malformed_json": 1, "missing_text": 1,
                               "unknown_document": 1}
    assert out["accepted"] == 2 and out["corrupt"] == 3
    assert any("corpus.jsonl:4: malformed JSON" in e for e in out["examples"])


def test_cli_data_check_single_files(tmp_path, capsys):
    if SCIFACT.is_dir():
        assert main(["data", "check", str(SCIFACT / "queries.jsonl")]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["kind"] == "queries" and out["records"] == 1109 and out["ok"]
    bad = _lines(tmp_path, "qrels.tsv", ["q1\td1\t1", "q1\td1"])
    assert main(["data", "check", str(bad)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "qrels" and out["problems"] == {"malformed_qrels": 1}


def test_cli_errors_are_clean(tmp_path, capsys):
    bad = _lines(tmp_path, "run.trec", ["q1 Q0 d1 1 notanumber x"])
    qrels = _lines(tmp_path, "qrels.tsv", ["q1\td1\t1"])
    assert main(["evaluate", "--qrels", str(qrels), "--run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "run.trec:1: score 'notanumber' is not a number" in err and "Traceback" not in err
