"""The training stage end to end on a toy dataset and a tiny model: kill and resume, skip when done, the saved
folder loads with plain sentence-transformers, frozen-document training reuses the base vectors, bad pairs
files and configs are clear errors, and the Ray Train path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.train import TrainJob, run_training
from retriever.training import TrainConfig
from retriever.types import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _job(toy_beir, tiny_model, out, **cfg) -> TrainJob:
    config = TrainConfig(**{"tower": "both", "epochs": 2, "batch_size": 4, "lr": 1e-3, "negatives": 0,
                            "checkpoint_every": 2, "max_seq_length": 32, **cfg})
    return TrainJob(str(toy_beir), str(out), str(tiny_model), "train", held_out=0.2, eval_docs=10,
                    config=config, engine="local")


def _weights(folder: Path) -> dict:
    from safetensors.numpy import load_file

    return {k: v for f in sorted(folder.rglob("model.safetensors")) for k, v in load_file(f).items()}


def _crash_after_step(job: TrainJob, step: int) -> None:
    """Train in a child process that SIGKILLs itself after ``step``."""
    code = (f"from pipelines.train import TrainJob, run_training\nfrom pipelines.runtime import RayEnv\n"
            f"from retriever.training import TrainConfig\n"
            f"job = {job!r}\nrun_training(job, crash_at={step})\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]


def test_killed_training_resumes_to_the_same_weights(toy_beir, tiny_model, tmp_path):
    job = _job(toy_beir, tiny_model, tmp_path / "killed")
    _crash_after_step(job, 3)
    assert (tmp_path / "killed" / "checkpoint" / "checkpoint.pt").is_file()
    assert not (tmp_path / "killed" / "model").exists()  # nothing half-written looks finished
    resumed = run_training(job)
    assert resumed["steps"] == 8 and not resumed["skipped"]
    run_training(_job(toy_beir, tiny_model, tmp_path / "unbroken"))
    a, b = _weights(tmp_path / "killed" / "model"), _weights(tmp_path / "unbroken" / "model")
    assert a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert [e["loss"] for e in json.loads((tmp_path / "killed" / "loss.json").read_text())["losses"]] == \
        [e["loss"] for e in json.loads((tmp_path / "unbroken" / "loss.json").read_text())["losses"]]
    assert not (tmp_path / "killed" / "checkpoint").exists()
    assert run_training(job)["skipped"]  # the same job again is free
    assert (tmp_path / "killed" / "loss.png").stat().st_size > 0
    changed = _job(toy_beir, tiny_model, tmp_path / "killed", lr=5e-4)
    assert not run_training(changed)["skipped"]


TOOLBOX = {"loss": "graded", "learn_temperature": True, "queue_size": 12, "queue_momentum": 0.9,
           "mix_negatives": 2, "mix_query": 1, "mix_pool": 4, "batching": "cluster"}


def test_toolbox_options_train_and_resume_to_the_same_weights(toy_beir, tiny_model, tmp_path):
    """A learned temperature, a momentum queue, MoCHi points and cluster batches all live in the checkpoint: a
    run killed after step 3 and resumed ends where an unbroken one does, temperature and queue included."""
    job = _job(toy_beir, tiny_model, tmp_path / "killed", **TOOLBOX)
    _crash_after_step(job, 3)
    import torch

    # the checkpoint of step 2 (every 2 steps): two batches of 4 documents queued
    extras = torch.load(tmp_path / "killed" / "checkpoint" / "checkpoint.pt", weights_only=False)["extras"]
    assert len(extras["queue"]["ids"]) == 8 and set(extras) == {"loss", "queue", "momentum"}
    resumed = run_training(job)
    unbroken = run_training(_job(toy_beir, tiny_model, tmp_path / "unbroken", **TOOLBOX))
    assert resumed["steps"] == unbroken["steps"] == 8
    a, b = _weights(tmp_path / "killed" / "model"), _weights(tmp_path / "unbroken" / "model")
    assert a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-6) for k in a)
    logs = [json.loads((tmp_path / d / "loss.json").read_text())["losses"] for d in ("killed", "unbroken")]
    assert [e["loss"] for e in logs[0]] == [e["loss"] for e in logs[1]]
    temps = [e["temperature"] for e in logs[1]]
    assert temps == [e["temperature"] for e in logs[0]] and temps[-1] != TrainConfig.temperature
    # the query tower with the multi-positive loss and a queue of fixed document vectors trains too
    info = run_training(_job(toy_beir, tiny_model, tmp_path / "q", tower="query", epochs=1, loss="supcon",
                             queue_size=8, batching="cluster"))
    assert info["steps"] > 0 and np.isfinite(info["final_loss"])


def test_frozen_documents_route_to_the_base_and_reuse_its_vectors(toy_beir, tiny_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    from pipelines.workspace import prepare

    info = run_training(_job(toy_beir, tiny_model, tmp_path / "q", tower="query", epochs=1))
    assert info["document_encoder"] == str(tiny_model)
    tuned, base = SentenceTransformer(info["model"], device="cpu"), SentenceTransformer(str(tiny_model), device="cpu")
    texts = ["vitamin d in patients", "gut microbiome"]
    assert np.allclose(tuned.encode_document(texts), base.encode_document(texts), atol=1e-6)
    assert not np.allclose(tuned.encode_query(texts), base.encode_query(texts), atol=1e-4)
    prep = prepare(str(toy_beir), "train")
    assert prep.embeddings_dir(info["model"]) == prep.embeddings_dir(str(tiny_model))
    card = (Path(info["model"]) / "README.md").read_text()  # plain encode() takes the document route: said so
    assert "encode_query" in card and "document route" in card
    assert [e["step"] for e in info["held_out_evals"]][0] == 0


def test_bad_pairs_files_and_configs_are_clear_errors(toy_beir, tiny_model, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.cli import main

    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({c: pa.array([], pa.string()) for c in
                             ("query_id", "positive_id", "negative_ids", "negative_scores", "positive_score",
                              "source")}), empty)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_text("not parquet\n")
    for path, message in ((empty, "empty"), (garbage, "not a readable Parquet"), (tmp_path / "no.parquet",
                                                                                  "not found")):
        args = ["train", "--dataset", str(toy_beir), "--model", str(tiny_model), "--output", str(tmp_path / "o"),
                "--engine", "local", "--pairs", str(path)]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert str(path) in err and message in err and "Fix:" in err
    with pytest.raises(ConfigError, match="needs mined pairs"):
        run_training(_job(toy_beir, tiny_model, tmp_path / "n", negatives=2))
    with pytest.raises(ConfigError, match="held_out"):
        TrainJob(str(toy_beir), str(tmp_path / "h"), str(tiny_model), held_out=1.5)


@pytest.mark.ray
def test_training_on_ray_train_equals_the_local_engine(toy_beir, tiny_model, tmp_path, capsys, monkeypatch):
    from tests.conftest import run_cli

    monkeypatch.chdir(tmp_path)  # a relative output: Ray Train workers run in another working directory
    args = ["train", "--dataset", str(toy_beir), "--model", str(tiny_model), "--negatives", "0", "--epochs", "1",
            "--batch-size", "4", "--lr", "1e-3"]
    out = run_cli(capsys, *args, "--output", "ray-out")
    local = run_cli(capsys, *args, "--engine", "local", "--output", "local-out")
    assert out["steps"] == local["steps"] == 4
    a, b = _weights(tmp_path / "ray-out" / "model"), _weights(tmp_path / "local-out" / "model")
    assert a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert out["final_loss"] == pytest.approx(local["final_loss"], rel=1e-6)


def _train_in_child(job: TrainJob, extra: str = "") -> subprocess.Popen:
    code = (f"from pipelines.train import TrainJob, run_training\nfrom pipelines.runtime import RayEnv\n"
            f"from retriever.training import TrainConfig\n"
            f"{extra}job = {job!r}\nrun_training(job)\n")
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_killed_from_outside_at_any_moment_resumes_to_the_same_weights(toy_beir, tiny_model, tmp_path):
    """SIGKILL from another process at moments that do not line up with steps (seeded), then resume."""
    import random
    import signal
    import time

    unbroken = _job(toy_beir, tiny_model, tmp_path / "unbroken", epochs=3, checkpoint_every=1)
    run_training(unbroken)
    rng = random.Random(7)
    job = _job(toy_beir, tiny_model, tmp_path / "killed", epochs=3, checkpoint_every=1)
    for _ in range(2):
        proc = _train_in_child(job)
        deadline = time.time() + 120
        while time.time() < deadline and not (tmp_path / "killed" / "checkpoint" / "checkpoint.pt").exists() \
                and not (tmp_path / "killed" / "model").exists():
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert run_training(job)["steps"] == 12
    a, b = _weights(tmp_path / "killed" / "model"), _weights(tmp_path / "unbroken" / "model")
    assert all(np.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_killed_in_the_middle_of_a_checkpoint_write_keeps_the_previous_checkpoint(toy_beir, tiny_model, tmp_path):
    """The third checkpoint write dies half-way (a partial file, then SIGKILL): the resumed run starts from the
    second checkpoint and still ends on the unbroken run's weights."""
    job = _job(toy_beir, tiny_model, tmp_path / "killed", checkpoint_every=1)
    die = ("import os, signal, torch\nimport retriever.training.checkpoint as ck\n_save = torch.save\ncalls = []\n"
           "def dying_save(obj, path, *a, **k):\n"
           "    calls.append(1)\n"
           "    if len(calls) == 3:\n"
           "        open(path, 'wb').write(b'half a checkpoint')\n"
           "        os.kill(os.getpid(), signal.SIGKILL)\n"
           "    return _save(obj, path, *a, **k)\n"
           "torch.save = dying_save\n")
    proc = _train_in_child(job, die)
    proc.wait(timeout=300)
    assert proc.returncode == -9, proc.stderr.read()[-2000:]
    import torch

    assert torch.load(tmp_path / "killed" / "checkpoint" / "checkpoint.pt", weights_only=False)["state"]["step"] == 2
    resumed = run_training(job)
    run_training(_job(toy_beir, tiny_model, tmp_path / "unbroken", checkpoint_every=1))
    assert resumed["steps"] == 8
    a, b = _weights(tmp_path / "killed" / "model"), _weights(tmp_path / "unbroken" / "model")
    assert all(np.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_cli_trains_with_the_api_recipe():
    """`densepipe train` and `densepipe pretrain` default to their config classes' values (the measured recipe),
    and --negatives defaults to in-batch only when no mined pairs are given."""
    from pipelines.cli import build_parser
    from retriever.pretraining import PretrainConfig

    ap = build_parser()
    a = ap.parse_args(["train", "--dataset", "d", "--output", "o"])
    recipe = TrainConfig()
    assert (a.tower, a.epochs, a.lr, a.batch_size, a.seed) == (recipe.tower, recipe.epochs, recipe.lr,
                                                               recipe.batch_size, recipe.seed)
    assert a.negatives is None and recipe.tower == "query" and recipe.negatives == 8
    p = ap.parse_args(["pretrain", "--dataset", "d", "--output", "o"])
    assert (p.epochs, p.lr, p.temperature, p.task) == (PretrainConfig.epochs, PretrainConfig.lr,
                                                       PretrainConfig.temperature, PretrainConfig.task)
    assert (a.learn_temperature, a.temperature_lr, a.batching) == (recipe.learn_temperature, recipe.temperature_lr,
                                                                   recipe.batching) == (True, 1e-2, "cluster")


def test_cli_and_config_defaults_come_from_the_config_classes():
    """Mining and BM25 options default to MiningConfig's and BM25Config's values, in the CLI and in [mine]/[bm25]."""
    from pipelines.cli import build_parser
    from pipelines.config import BM25Section, MineSection
    from retriever.mining import MiningConfig
    from retriever.sparse import BM25Config

    ap = build_parser()
    m = ap.parse_args(["mine", "--dataset", "d", "--output", "o"])
    cfg = MiningConfig()
    assert (m.depth, m.num_negatives, m.margin, m.margin_mode, m.seed, (m.rank_start, m.rank_end)) == \
        (cfg.depth, cfg.num_negatives, cfg.margin, cfg.margin_mode, cfg.seed, cfg.rank_range)
    assert (m.k1, m.b) == (BM25Config.k1, BM25Config.b) == (BM25Section.k1, BM25Section.b)
    b = ap.parse_args(["bm25", "--dataset", "d", "--output", "o"])
    assert (b.k1, b.b) == (BM25Config.k1, BM25Config.b)
    assert (MineSection.depth, MineSection.num_negatives, MineSection.margin) == (cfg.depth, cfg.num_negatives,
                                                                                 cfg.margin)
    assert m.split == "train" and "default: train" in ap._subparsers._group_actions[0].choices["mine"].format_help()


def test_options_a_command_would_ignore_are_not_offered():
    from pipelines.cli import build_parser

    ap = build_parser()
    for argv in (["search", "--dataset", "d", "--index", "i", "--output", "o"],
                 ["hyde", "--dataset", "d", "--output", "o"], ["leaderboard", "--datasets", "d"]):
        with pytest.raises(SystemExit):
            ap.parse_args([*argv, "--docs-per-shard", "10"])
    with pytest.raises(SystemExit):
        ap.parse_args(["search", "--dataset", "d", "--index", "i", "--output", "o", "--dtype", "float16"])
    for command in ("encode", "mine", "train", "hyde"):
        text = ap._subparsers._group_actions[0].choices[command].format_help()
        assert "for this command" in " ".join(text.split()) and "encode stage" not in text


def test_bm25_parameters_reach_bm25_mining(monkeypatch, tmp_path):
    """[bm25] k1 and b (and --k1/--b) are the ones the mining searcher gets, and they are part of its stage key."""
    import retriever.sparse as sparse
    from pipelines.config import load_config
    from pipelines.mine import MineJob, MineShard
    from pipelines.run import PipelineRun

    seen = {}

    class Capture:
        def __init__(self, index_dir, config):
            seen["config"] = config

    monkeypatch.setattr(sparse, "BM25Searcher", Capture)
    MineShard(MineJob("d", "o", retriever="bm25", bm25_k1=1.2, bm25_b=0.75), str(tmp_path), None)
    assert (seen["config"].k1, seen["config"].b) == (1.2, 0.75)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[run]\ndataset = "scifact"\n[bm25]\nk1 = 1.2\n[encode]\n[mine]\nretrievers = ["bm25"]\n'
                   '[train]\nnegatives = 2\n')
    assert "bm25" in PipelineRun(load_config(cfg)).upstream("mine")
