"""``densepipe run``: config validation before anything runs, stage caching, and the report."""

from __future__ import annotations

import re

import pytest

from pipelines.cli import main
from pipelines.config import load_config, parse_config
from retriever.types import ConfigError
from tests.conftest import run_cli


@pytest.mark.parametrize("data,needle", [
    ({"run": {"dataset": "x", "colour": "red"}}, "unknown key(s) ['colour'] in [run]"),
    ({"rerank": {}}, "unknown section(s) ['rerank']"),
    ({"run": {"max_docs": "ten"}}, "[run].max_docs must be int | None, got str 'ten'"),
    ({"index": {"factory": "Flat"}}, "stage [index] needs stage [encode]"),
    ({"encode": {"engine": "spark"}}, "[encode].engine must be 'ray' or 'local'"),
    ({"compress": {"variants": "flat"}, "encode": {}}, "[compress].variants must be"),
    ({"fuse": {}, "encode": {}, "dense": {}}, "stage [fuse] needs [bm25] and a dense run"),
    ({"fuse": {"weights": [1, "a"]}, "bm25": {}, "encode": {}, "dense": {}}, "[fuse].weights must be"),
    ({"fuse": {"weights": [1.0]}, "bm25": {}, "encode": {}, "dense": {}}, "two numbers (BM25, dense)"),
    ({"fuse": {"method": "borda"}, "bm25": {}, "encode": {}, "dense": {}}, "[fuse] method must be one of"),
])
def test_bad_configs_are_rejected_naming_the_key(data, needle):
    with pytest.raises(ConfigError) as e:
        parse_config(data, "cfg.toml")
    assert needle in str(e.value)


def test_shipped_configs_parse():
    for name in ("scifact", "quick"):
        cfg = load_config(f"configs/{name}.toml")
        assert cfg.stages() == ["bm25", "encode", "dense", "mine", "train", "index", "search", "fuse", "compress"]
    label_free = load_config("configs/scifact-label-free.toml")
    assert label_free.stages() == ["bm25", "encode", "dense", "generate", "mine", "train", "index", "search", "fuse"]


def test_cli_rejects_bad_config_before_running(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[run]\ndataset = "scifact"\noutput = "%s"\n[index]\nfactorry = "Flat"\n' % (tmp_path / "out"))
    assert main(["run", str(cfg)]) == 2
    assert "unknown key(s) ['factorry'] in [index]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.java
def test_run_caches_stages_and_redoes_only_what_changed(scifact_slice, tmp_path, capsys):
    out = tmp_path / "run"
    base = (f'[run]\ndataset = "{scifact_slice}"\noutput = "{out}"\n[bm25]\n[encode]\nengine = "local"\n'
            '[search]\nk = 100\n[fuse]\nmethod = "rrf"\nweights = [1, 2]\n'
            '[compress]\nvariants = ["flat", "sq8"]\nmemory_budget = "1GB"\n')
    cfg = tmp_path / "c.toml"
    cfg.write_text(base + '[index]\nfactory = "Flat"\n')
    plan = run_cli(capsys, "run", str(cfg), "--dry-run")
    assert [p["cached"] for p in plan["plan"]] == [False] * 7
    assert plan["estimates"]["index_memory_bytes"] == plan["estimates"]["documents"] * 384 * 4
    first = run_cli(capsys, "run", str(cfg))
    assert not any(s["skipped"] for s in first["stages"].values())
    assert first["metrics"]["search"]["ndcg@10"] > 0.75
    report = (out / "report.md").read_text()
    assert "| sentence-transformers/all-MiniLM-L6-v2 · Flat |" in report and "## Compression" in report
    n_docs = sum(1 for _ in open(scifact_slice / "corpus.jsonl"))
    assert f"{n_docs} documents, 40 queries" in report.splitlines()[0]
    assert "Picked under the 1GB budget: **" in report
    # [fuse]: BM25 and the search stage's run, by reciprocal ranks with weights 1 and 2
    from retriever.data import read_run
    from retriever.eval.fusion import rrf

    fused = read_run(out / "fused.trec")
    expect = rrf([read_run(out / "bm25.trec"), read_run(out / "dense.trec")], weights=[1, 2])
    assert fused.keys() == expect.keys()
    assert all(fused[q] == pytest.approx(expect[q], abs=1e-6) for q in expect)  # as written: 6 decimals
    assert "| BM25 + dense · RRF (k=60), weights 1:2 |" in report
    again = run_cli(capsys, "run", str(cfg))
    assert all(s["skipped"] for s in again["stages"].values())
    assert again["metrics"] == first["metrics"]
    cfg.write_text(base + '[index]\nfactory = "SQ8"\n')
    changed = run_cli(capsys, "run", str(cfg))
    redone = {k for k, s in changed["stages"].items() if not s["skipped"]}
    assert redone == {"index", "search", "fuse"}


def _two_splits(toy_beir, folder):
    """The toy set with each topic's first query in train and its second in test."""
    import shutil

    shutil.copytree(toy_beir, folder)
    train = (folder / "qrels" / "train.tsv").read_text().splitlines()
    for split, end in (("test", "-1"), ("train", "-0")):
        rows = [r for r in train[1:] if r.split("\t")[0].endswith(end)]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join([train[0]] + rows) + "\n")
    return folder


def test_run_with_mining_and_fine_tuning(toy_beir, tiny_model, tmp_path, capsys):
    """encode -> dense baseline -> mine -> train (frozen documents) -> index -> search, on a two-split toy set
    with a tiny model; a changed learning rate redoes train and search but not the index (same vectors)."""
    data = _two_splits(toy_beir, tmp_path / "toy2")
    out = tmp_path / "run"
    base = (f'[run]\ndataset = "{data}"\noutput = "{out}"\n[encode]\nmodel = "{tiny_model}"\nengine = "local"\n'
            '[dense]\nk = 10\n[mine]\nretrievers = ["dense"]\ndepth = 10\nnum_negatives = 2\nmargin = 0\n'
            '[index]\nfactory = "Flat"\n[search]\nk = 10\n')
    train_cfg = '[train]\ntower = "query"\nepochs = 2\nbatch_size = 4\nnegatives = 2\nengine = "local"\nheld_out = 0.2\n'
    cfg = tmp_path / "c.toml"
    cfg.write_text(base + train_cfg + "lr = 1e-3\n")
    first = run_cli(capsys, "run", str(cfg))
    assert list(first["stages"]) == ["prepare", "encode", "dense", "mine", "train", "index", "search"]
    report = (out / "report.md").read_text()
    assert "fine-tuned · Flat" in report and "![loss curve](train/loss.png)" in report
    assert re.search(r"the learned temperature went from 0\.05 to 0\.0\d+\.", report)  # the default learns it
    assert (out / "train" / "loss.png").is_file() and "<table>" in (out / "report.html").read_text()
    _report_renders_with_its_loss_curve(out / "report.html", tmp_path / "report.png")
    assert first["metrics"]["search"] != first["metrics"]["dense"]  # the trained query tower changed rankings
    # alignment and uniformity: of the base model on the split, and on the held-out queries before and after
    import json

    dense = json.loads((out / "stages" / "dense.json").read_text())["geometry"]
    assert 0 <= dense["alignment"] <= 4 and -4 <= dense["uniformity_docs"] <= 0
    evals = json.loads((out / "stages" / "train.json").read_text())["held_out_evals"]
    assert evals[0]["step"] == 0 and {"alignment", "uniformity_docs", "uniformity_queries"} <= set(evals[-1])
    assert evals[0]["alignment"] != evals[-1]["alignment"]  # training moved the queries
    assert evals[0]["uniformity_docs"] == evals[-1]["uniformity_docs"]  # documents are frozen (tower = query)
    header = next(line for line in report.splitlines() if line.startswith("| step |"))
    assert "## Embedding geometry" in report and {"alignment", "uniformity_docs"} <= set(header.split(" | "))
    assert all(s["skipped"] for s in run_cli(capsys, "run", str(cfg))["stages"].values())
    cfg.write_text(base + train_cfg + "lr = 5e-4\n")
    changed = run_cli(capsys, "run", str(cfg))
    assert {k for k, s in changed["stages"].items() if not s["skipped"]} == {"train", "search"}


def _report_renders_with_its_loss_curve(html, png) -> None:
    """The HTML report in a real headless browser: the page renders, and the loss curve image loads (its red
    held-out line is on the screenshot)."""
    import matplotlib.image
    import numpy as np

    from tests.conftest import screenshot

    pixels = matplotlib.image.imread(str(screenshot(html, png)))[..., :3]
    assert pixels.std() > 0.05, "a blank page"
    red = np.abs(pixels - np.array([214, 39, 40]) / 255).max(axis=-1) < 0.06  # matplotlib's C3
    assert red.sum() > 200, "the loss curve did not load"


@pytest.mark.parametrize("data,needle", [
    ({"encode": {}, "train": {"negatives": 2}}, "[train].negatives = 2 needs stage [mine]"),
    ({"encode": {}, "train": {"split": "test", "negatives": 0}}, "is the evaluation split"),
    ({"encode": {}, "mine": {"retrievers": ["splade"]}}, "[mine].retrievers must list"),
    ({"encode": {}, "train": {"tower": "doc", "negatives": 0}}, "tower must be"),
    ({"mine": {}}, "needs stage [encode]"),
    ({"encode": {}, "generate": {}}, "stage [generate] writes training pairs: it needs stage [train]"),
    ({"encode": {}, "generate": {"filter": ["splade"]}, "train": {"negatives": 0}}, "generate filter must be"),
    ({"encode": {}, "generate": {"sources": []}, "train": {"negatives": 0}}, "generate sources must be"),
    ({"encode": {}, "train": {"negatives": 0, "loss": "distill"}}, "'distill' needs a teacher run"),
    ({"encode": {}, "generate": {}, "train": {"negatives": 0, "loss": "distill"}}, "[generate].teacher = true"),
    ({"encode": {}, "train": {"negatives": 0, "teacher": "t.trec"}}, "read by the distill loss only"),
    ({"encode": {}, "train": {"negatives": 0, "loss": "distill", "teacher": "t.trec", "queue_size": 8}},
     "cannot score a queue"),
])
def test_bad_training_configs_are_rejected(data, needle):
    with pytest.raises(ConfigError) as e:
        parse_config(data, "cfg.toml")
    assert needle in str(e.value)


def test_a_run_with_windowed_documents_searches_them_by_their_best_window(toy_beir, tiny_model, tmp_path, capsys):
    """[encode] segment_tokens: the run's embeddings hold several vectors a document; the dense baseline and the
    index search return each document once, scored by its best window (both exact: the same runs), while mining
    and training read one vector per document, from a folder of whole-document vectors beside the windows."""
    from retriever.data import read_run
    from retriever.data.embeddings import read_embeddings

    data = _two_splits(toy_beir, tmp_path / "toy2")
    out = tmp_path / "run"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[run]\ndataset = "{data}"\noutput = "{out}"\n[encode]\nmodel = "{tiny_model}"\n'
                   'engine = "local"\nsegment_tokens = 8\nsegment_stride = 4\n[dense]\nk = 10\n[mine]\n'
                   'retrievers = ["dense"]\ndepth = 10\nnum_negatives = 2\nmargin = 0\n[train]\ntower = "query"\n'
                   'epochs = 1\nbatch_size = 4\nnegatives = 2\nengine = "local"\nheld_out = 0\n[index]\n'
                   'factory = "Flat"\n[search]\nk = 10\n')
    result = run_cli(capsys, "run", str(cfg))
    assert list(result["stages"]) == ["prepare", "encode", "dense", "mine", "train", "index", "search"]
    ids = {}
    for name in ("embeddings", "embeddings-whole"):
        _, shards = read_embeddings(out / name)
        ids[name] = [i for s in shards for i in s[0]]
    assert len(ids["embeddings"]) > len(set(ids["embeddings"])) == 40 == len(ids["embeddings-whole"])
    dense, search = read_run(out / "dense-base.trec"), read_run(out / "dense.trec")
    assert all(len(hits) == 10 for hits in search.values()) and set(dense) == set(search)
    with pytest.raises(ConfigError, match="one vector per document"):
        parse_config({"encode": {"segment_tokens": 96}, "compress": {}}, "cfg.toml")
    with pytest.raises(ConfigError, match="segment_stride"):
        parse_config({"encode": {"segment_tokens": 96, "segment_stride": 200}}, "cfg.toml")


def test_run_with_pretraining(scifact_slice, tiny_model, tmp_path, capsys):
    """[pretrain] runs first on the corpus text; encode and the dense baseline then use the pretrained model,
    and a changed pretraining setting redoes every stage that reads it."""
    out = tmp_path / "run"
    base = (f'[run]\ndataset = "{scifact_slice}"\noutput = "{out}"\n[encode]\nmodel = "{tiny_model}"\n'
            'engine = "local"\n[dense]\nk = 10\n[index]\nfactory = "Flat"\n[search]\nk = 10\n'
            '[pretrain]\ntask = "span"\nbatch_size = 4\nmax_seq_length = 32\nmax_texts = 16\nengine = "local"\n')
    cfg = tmp_path / "c.toml"
    cfg.write_text(base + "lr = 1e-3\n")
    first = run_cli(capsys, "run", str(cfg))
    assert list(first["stages"]) == ["prepare", "pretrain", "encode", "dense", "index", "search"]
    dense = (out / "stages" / "dense.json").read_text()
    assert str(out / "pretrain" / "model") in dense
    report = (out / "report.md").read_text()
    assert "## Pretraining" in report and "+ span pretraining · exact" in report
    cfg.write_text(base + "lr = 5e-4\n")
    changed = run_cli(capsys, "run", str(cfg))
    assert {k for k, s in changed["stages"].items() if not s["skipped"]} == {"pretrain", "encode", "dense", "index",
                                                                           "search"}
    with pytest.raises(ConfigError, match="needs stage \\[encode\\]"):
        parse_config({"pretrain": {}}, "cfg.toml")
    with pytest.raises(ConfigError, match="task must be"):
        parse_config({"encode": {}, "pretrain": {"task": "mlm"}}, "cfg.toml")
