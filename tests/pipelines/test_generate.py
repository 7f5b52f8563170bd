"""Label-free training pairs: query cleaning, prompts, document sampling, title pairs, the round-trip filter
against brute force, and the path end to end on a dataset folder that holds a corpus and nothing else (no
queries, no qrels): generate (cached: the rerun generates nothing), mine, train; and inside ``densepipe run``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retriever.synthetic import (Pair, clean_query, render_query_prompt, round_trip, sample_documents,
                                 title_pairs)
from retriever.types import ConfigError, Document
from tests.conftest import run_cli, write_beir
from tests.retriever.test_hyde import _FakeOpenAI, fake_server  # noqa: F401 (the fixture)


@pytest.mark.parametrize("text,expected", [
    ("What causes malaria in children?", "What causes malaria in children?"),
    ("Question: Does vitamin D reduce fractures?\n\nSome explanation.", "Does vitamin D reduce fractures?"),
    ("Here is the question:\n\n\"How do stem cells divide?\"", "How do stem cells divide?"),
    ("The answer to this question is: What limits insulin signalling?", "What limits insulin signalling?"),
    ("Some preamble line\nQuery: sleep apnea treatment outcomes", "sleep apnea treatment outcomes"),
    ("1. What is the function of E3-14.7K?\n2. Another one?", "What is the function of E3-14.7K?"),
    ('A: "What limits mosquito control in the field?"', "What limits mosquito control in the field?"),
    # the "claim" prompt's lead-ins
    ("The claim is that larval control of malaria vectors works.", "larval control of malaria vectors works."),
    ('The claim supported by the abstract is: "Obesity raises insulin resistance."',
     "Obesity raises insulin resistance."),
    ("This claim supports the claim that BMI-1 antibodies mark cervical cancer.",
     "BMI-1 antibodies mark cervical cancer."),
    ('The claim that the abstract supports is "Oncofetal genes are silent in adult liver."',
     "Oncofetal genes are silent in adult liver."),
    ("What is the claim that vitamin D prevents fractures?", "What is the claim that vitamin D prevents fractures?"),
    ("The answer to the question is:", None),
    ("No.", None),
    ("Can you explain the story of the story of the story of the story of the story", None),
    ("", None),
    (" ".join(["word"] * 80), None),
])
def test_clean_query(text, expected):
    assert clean_query(text) == expected


def test_query_prompt_cuts_the_document_at_a_word_boundary():
    prompt = render_query_prompt("question", "A title", "alpha beta gamma delta epsilon", max_chars=25)
    assert "Passage: A title. alpha beta gamma\nQuestion:" in prompt
    assert render_query_prompt("Doc={document}!", "", "x  y", 100) == "Doc=x y!"
    with pytest.raises(ConfigError, match="unknown query prompt"):
        render_query_prompt("no-slot", "t", "x", 10)


def test_sampling_is_seeded_and_skips_empty_documents():
    docs = [Document(str(i), f"text {i}" if i % 5 else "  ") for i in range(50)]
    a, empty = sample_documents(docs, 10, seed=3)
    b, _ = sample_documents(docs, 10, seed=3)
    assert empty == 10 and [d.id for d in a] == [d.id for d in b] and len(a) == 10
    assert all(int(d.id) % 5 for d in a) and [int(d.id) for d in a] == sorted(int(d.id) for d in a)
    assert len(sample_documents(docs, None, 0)[0]) == 40


def test_title_pairs_skip_short_titles_and_titles_the_text_repeats():
    docs = [Document("a", "We studied bones.", "Vitamin D and bone density"),
            Document("b", "Text.", "Short title"),
            Document("c", "Stem cell niches in bone are studied here.", "Stem cell niches in bone"),
            Document("d", "", "Malaria vaccine trial results")]
    assert title_pairs(docs) == [Pair("title-a", "Vitamin D and bone density", "a", "title")]


def test_round_trip_keeps_exactly_the_sources_within_k():
    """Seeded vectors, exact search: a pair survives iff its source document's brute-force rank is <= k under
    every retriever given."""
    import faiss

    rng = np.random.default_rng(0)
    docs = rng.standard_normal((60, 16)).astype(np.float32)
    sources = rng.integers(0, 60, size=40)
    pairs = [Pair(f"q{i}", f"query {i}", f"d{s}", "generated") for i, s in enumerate(sources)]
    rankings, expected_ranks = {}, {}
    for name, noise in (("a", 1.0), ("b", 2.0)):
        xq = (docs[sources] + noise * rng.standard_normal((40, 16))).astype(np.float32)
        index = faiss.IndexFlatIP(16)
        index.add(docs)
        _, top = index.search(xq, 5)
        rankings[name] = {f"q{i}": [f"d{j}" for j in row] for i, row in enumerate(top)}
        scores = xq @ docs.T
        own = scores[np.arange(40), sources]
        expected_ranks[name] = 1 + (scores > own[:, None]).sum(axis=1)
    kept, ranks = round_trip(pairs, rankings, k=5)
    want = [p for i, p in enumerate(pairs) if all(expected_ranks[n][i] <= 5 for n in rankings)]
    assert kept == want and 0 < len(kept) < len(pairs)
    for name in rankings:
        assert ranks[name] == [int(r) if r <= 5 else None for r in expected_ranks[name]]
    only_a, _ = round_trip(pairs, {"a": rankings["a"]}, k=5)
    assert len(only_a) >= len(kept)
    with pytest.raises(ConfigError):
        round_trip(pairs, rankings, k=0)


def _corpus_only(folder: Path) -> Path:
    """A dataset folder with a corpus and nothing else: 10 topics x 4 documents, one empty document."""
    topics = ["protein folding", "cancer immunotherapy", "vitamin d", "malaria vaccine", "gut microbiome",
              "insulin resistance", "stem cells", "antibiotic resistance", "sleep apnea", "air pollution"]
    folder.mkdir(parents=True)
    rows = [{"_id": f"d{t}-{j}", "title": "", "text": f"{topic} study {j} in patients cohort {j}"}
            for t, topic in enumerate(topics) for j in range(4)]
    rows.append({"_id": "empty", "title": "", "text": ""})
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_label_free_path_opens_no_judgments(tmp_path, capsys, fake_server):  # noqa: F811
    """generate-queries -> mine -> train on a folder without queries or qrels; unusable and generic generations
    are counted and dropped; the filter's kept pairs are exactly those whose source ranks within k; a rerun asks
    the generator nothing; the teacher run (BM25 fused with the dense model) labels every kept query and the
    distill loss trains on it."""
    data = _corpus_only(tmp_path / "corpus-only")
    pairs = tmp_path / "pairs"
    args = ["generate-queries", "--dataset", str(data), "--generator", fake_server, "--endpoint-model", "echo",
            "--docs", "0", "--filter", "dense", "--k", "2", "--output", str(pairs), "--teacher", "--teacher-depth", "5"]
    first = run_cli(capsys, *args)
    assert first["sampled_documents"] == 40 and first["empty_documents_skipped"] == 1
    # "cohort 3" documents get a heading only, "cohort 2" ones a generic query shared by ten documents
    assert first["generation"]["generated"] == 40 and first["generation"]["unusable"] == 20
    candidates = [json.loads(line) for line in (pairs / "candidates.jsonl").read_text().splitlines()]
    assert len(candidates) == 20 == first["candidates"]
    kept = [c for c in candidates if c["rank_dense"] is not None and c["rank_dense"] <= 2]
    assert [c["kept"] for c in candidates] == [c in kept for c in candidates] and 0 < len(kept) == first["kept"]
    qrels = (pairs / "qrels" / "train.tsv").read_text().splitlines()[1:]
    assert sorted(qrels) == sorted(f"{c['query_id']}\t{c['doc_id']}\t1" for c in kept)
    assert (pairs / "corpus.jsonl").resolve() == (data / "corpus.jsonl").resolve()
    served = len(_FakeOpenAI.requests)
    again = run_cli(capsys, *args)
    assert len(_FakeOpenAI.requests) == served and again["generation"]["generated"] == 0
    assert again["generation"]["cached"] == 40 and again["kept"] == first["kept"]

    mined = run_cli(capsys, "mine", "--dataset", str(pairs), "--retriever", "dense", "--depth", "10",
                    "--num-negatives", "2", "--output", str(tmp_path / "mined.parquet"))
    assert mined["examples"] == len(kept)
    trained = run_cli(capsys, "train", "--dataset", str(pairs), "--pairs", str(tmp_path / "mined.parquet"),
                      "--engine", "local", "--tower", "query", "--epochs", "1", "--batch-size", "4",
                      "--negatives", "2", "--held-out", "0", "--output", str(tmp_path / "tuned"))
    assert trained["examples"] == len(kept) and trained["steps"] >= 1
    assert (tmp_path / "tuned" / "model" / "config_sentence_transformers.json").is_file() or \
        (tmp_path / "tuned" / "model" / "modules.json").is_file()
    from retriever.data import read_run

    teacher = read_run(pairs / "teacher.trec")
    assert set(teacher) == {c["query_id"] for c in kept} and all(0 < len(h) <= 10 for h in teacher.values())
    assert first["teacher"]["queries"] == len(kept) and first["teacher"]["source_missing"] == 0
    distilled = run_cli(capsys, "train", "--dataset", str(pairs), "--pairs", str(tmp_path / "mined.parquet"),
                        "--engine", "local", "--tower", "query", "--epochs", "1", "--batch-size", "4",
                        "--negatives", "2", "--held-out", "0", "--loss", "distill", "--teacher",
                        str(pairs / "teacher.trec"), "--teacher-temperature", "2", "--output", str(tmp_path / "d"))
    assert distilled["steps"] == trained["steps"] and distilled["fingerprint"] != trained["fingerprint"]
    record = json.loads((tmp_path / "d" / "model" / "densepipe_training.json").read_text())
    assert record["teacher"]["queries"] == len(kept) and record["config"]["teacher_temperature"] == 2.0
    from pipelines.cli import main

    base = ["train", "--dataset", str(pairs), "--engine", "local", "--output", str(tmp_path / "x")]
    assert main(base + ["--loss", "distill"]) == 2 and "teacher" in capsys.readouterr().err
    assert main(base + ["--teacher", str(pairs / "teacher.trec")]) == 2 and "distill" in capsys.readouterr().err
    assert not (data / "qrels").exists() and not (data / "queries.jsonl").exists()


def test_generate_refuses_when_no_pair_survives(tmp_path, capsys, fake_server):  # noqa: F811
    from pipelines.cli import main

    data = _corpus_only(tmp_path / "c")
    code = main(["generate-queries", "--dataset", str(data), "--generator", fake_server, "--endpoint-model", "broken",
                 "--docs", "5", "--filter", "none", "--output", str(tmp_path / "p")])
    assert code != 0 and "no pair survived" in capsys.readouterr().err


def test_run_trains_on_generated_pairs_when_the_dataset_has_no_train_split(tiny_model, tmp_path, capsys,
                                                                         fake_server):  # noqa: F811
    """[generate] in a run: mine and train read the generated pairs (the dataset has a test split only), the
    search is evaluated on the test judgments, and the report says what was generated and kept; docs = 0 samples
    every document."""
    corpus = [json.loads(line) for line in (_corpus_only(tmp_path / "src") / "corpus.jsonl").read_text().splitlines()]
    queries = [{"_id": f"q{t}", "text": f"topic {t} study 0"} for t in range(10)]
    data = write_beir(tmp_path / "test-only", corpus, queries, [(f"q{t}", f"d{t}-0", 1) for t in range(10)])
    out = tmp_path / "run"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[run]\ndataset = "{data}"\noutput = "{out}"\n[encode]\nmodel = "{tiny_model}"\n'
                   'engine = "local"\n[dense]\nk = 10\n'
                   f'[generate]\ngenerator = "{fake_server}"\nendpoint_model = "echo"\ndocs = 0\nfilter = []\n'
                   '[mine]\nretrievers = ["dense"]\ndepth = 10\nnum_negatives = 2\nmargin = 0\n'
                   '[train]\ntower = "query"\nepochs = 1\nbatch_size = 4\nnegatives = 2\nengine = "local"\n'
                   'held_out = 0\n[index]\nfactory = "Flat"\n[search]\nk = 10\n')
    result = run_cli(capsys, "run", str(cfg))
    assert list(result["stages"]) == ["prepare", "encode", "dense", "generate", "mine", "train", "index", "search"]
    generated = json.loads((out / "stages" / "generate.json").read_text())
    assert generated["sampled_documents"] == len(corpus) - 1 == 40  # all but the empty one
    train = json.loads((out / "stages" / "train.json").read_text())
    assert train["examples"] == generated["kept"] == sum(
        1 for _ in open(out / "test-only-generated" / "qrels" / "train.tsv")) - 1
    assert result["metrics"]["search"]["num_queries"] == 10
    report = (out / "report.md").read_text()
    assert "## Label-free training pairs" in report and "(no round-trip filter)" in report
    assert isinstance(generated["seconds"], float) and set(generated["timing"]) == {"generate", "filter"}
    assert all(s["skipped"] for s in run_cli(capsys, "run", str(cfg))["stages"].values())


@pytest.mark.ray
def test_generation_on_ray_actors_equals_in_process(tmp_path, capsys, fake_server):  # noqa: F811
    data = _corpus_only(tmp_path / "c")
    common = ["generate-queries", "--dataset", str(data), "--generator", fake_server, "--endpoint-model", "echo",
              "--docs", "12", "--filter", "none", "--gen-batch-size", "2"]
    local = run_cli(capsys, *common, "--output", str(tmp_path / "local"))
    ray = run_cli(capsys, *common, "--engine", "ray", "--num-workers", "2", "--output", str(tmp_path / "ray"))
    assert ray["generation"]["generated"] == 12 and ray["generation"]["failed_batches"] == 0
    assert (tmp_path / "ray" / "qrels" / "train.tsv").read_text() == (tmp_path / "local" / "qrels" / "train.tsv").read_text()
    assert ray["kept"] == local["kept"] > 0
