"""The stages on a simulated two-node Ray cluster (one CPU per node) with their artifacts on a real S3 server:
work lands on both nodes, no worker reads a path of the driver's (corpus shards, the Lucene index, embeddings and
models travel through storage), outputs equal the local engine's, and impossible requests are refused at once."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from pipelines.encode import EncodeConfig, encode_corpus
from pipelines.runtime import ClusterError, RayEnv, Storage, check_fits, fetch_dir
from pipelines.workspace import prepare
from retriever.data.embeddings import read_embeddings
from retriever.encoders import EncoderConfig
from tests.cluster.conftest import node_ids
from tests.retriever.test_hyde import fake_server  # noqa: F401 (the fixture)

pytestmark = pytest.mark.ray


def _emb(folder):
    _, shards = read_embeddings(folder)
    return [i for s in shards for i in s[0]], np.concatenate([s[1] for s in shards])


def test_storage_round_trip_through_the_s3_server(two_nodes, s3_root, tmp_path):
    src = tmp_path / "folder"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(b"\x00\x01")
    storage = Storage(s3_root)
    uri = storage.publish_dir(src, "things/one", stamp="v1")
    assert uri.startswith("s3://") and "endpoint_override" in uri
    local = fetch_dir(uri, tmp_path / "cache")
    assert (local / "a.txt").read_text() == "alpha" and (local / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    assert fetch_dir(uri, tmp_path / "cache") == local  # cached per stamp
    with pytest.raises(ClusterError, match="not a finished upload"):
        fetch_dir(storage.uri("things/never-written"), tmp_path / "cache")


def test_impossible_requests_are_refused_at_once_with_the_numbers(two_nodes):
    t0 = time.perf_counter()
    with pytest.raises(ClusterError, match=r"1 worker\(s\) × \{'CPU': 2\.0\}.*CPU 1.*CPU 1.*--cpus-per-worker"):
        check_fits({"CPU": 2.0, "GPU": 0.0}, 1, "encode")
    with pytest.raises(ClusterError, match=r"3 worker\(s\).*room for 2.*--num-workers"):
        check_fits({"CPU": 1.0, "GPU": 0.0}, 3, "encode")
    check_fits({"CPU": 1.0, "GPU": 0.0}, 2, "encode")  # one per node fits
    assert time.perf_counter() - t0 < 5


def test_encode_on_both_nodes_from_s3_equals_local(two_nodes, scifact_slice, s3_root, tmp_path):
    """On the ONNX Runtime backend: each node's workers export (or reuse) the graph themselves."""
    prep = prepare(str(scifact_slice), docs_per_shard=60, max_docs=180)
    encoder = EncoderConfig(backend="onnx")
    cfg = EncodeConfig(encoder, engine="ray", num_workers=2, rows_per_ray_batch=30,
                       ray=RayEnv(two_nodes.address, storage=s3_root))
    manifest = encode_corpus(prep.corpus_dir, tmp_path / "ray", cfg, progress=False)
    assert manifest["last_run"]["docs"] == 180
    assert set(manifest["last_run"]["nodes"]) == node_ids(), "both nodes encoded"
    assert manifest["last_run"]["cpus_per_worker"] == 1.0
    assert {s["backend"] for s in manifest["shards"]} == {"onnx"}
    encode_corpus(prep.corpus_dir, tmp_path / "local", EncodeConfig(encoder, engine="local"), progress=False)
    ids_r, xr = _emb(tmp_path / "ray")
    ids_l, xl = _emb(tmp_path / "local")
    assert ids_r == ids_l and len(set(ids_r)) == 180
    assert np.allclose(xr, xl, atol=1e-5)


def test_encode_with_more_workers_than_fit_is_refused_before_any_work(two_nodes, scifact_slice, tmp_path):
    prep = prepare(str(scifact_slice), docs_per_shard=60, max_docs=60)
    cfg = EncodeConfig(EncoderConfig(), engine="ray", num_workers=4, ray=RayEnv(two_nodes.address))
    with pytest.raises(ClusterError, match="4 worker"):
        encode_corpus(prep.corpus_dir, tmp_path / "x", cfg, progress=False)
    assert not list((tmp_path / "x").glob("emb-*"))


@pytest.mark.java
@pytest.mark.parametrize("retriever", ["bm25", "dense"])
def test_mining_on_both_nodes_through_s3_equals_local(two_nodes, scifact_slice, s3_root, tmp_path, retriever):
    from pipelines.mine import MineJob, mine_pairs
    from retriever.mining import read_mined

    common = dict(dataset=str(scifact_slice), retriever=retriever, split="test", queries_per_shard=4,
                  max_docs=None)
    ray_out = mine_pairs(MineJob(output=str(tmp_path / "ray.parquet"), engine="ray", num_workers=2,
                                 ray=RayEnv(two_nodes.address, storage=s3_root), **common))
    local_out = mine_pairs(MineJob(output=str(tmp_path / "local.parquet"), engine="local", **common))
    assert set(ray_out["nodes"]) == node_ids()
    assert ray_out["examples"] == local_out["examples"] > 0
    a, b = read_mined(tmp_path / "ray.parquet"), read_mined(tmp_path / "local.parquet")
    assert [(e.query_id, e.positive_id, e.negative_ids) for e in a] == \
        [(e.query_id, e.positive_id, e.negative_ids) for e in b]


TOOLBOX = {"loss": "graded", "learn_temperature": True, "queue_size": 12, "queue_momentum": 0.9,
           "mix_negatives": 2, "mix_query": 1, "mix_pool": 4, "batching": "cluster"}


def _teacher_run(folder) -> str:
    """A teacher run for toy_beir's training queries that scores documents of other topics too (the in-batch
    columns another worker contributes) and leaves most unlisted (they take the query's lowest listed score)."""
    path = folder / "teacher.trec"
    lines = []
    for t in range(10):
        for j in range(2):
            hits = [(f"d{t}-0", 4.0), (f"d{(t + 1) % 10}-0", 2.0 + 0.5 * j), (f"d{(t + 3) % 10}-0", 1.0 - 0.25 * t)]
            lines += [f"q{t}-{j} Q0 {d} {r + 1} {s} teacher" for r, (d, s) in enumerate(hits)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("toolbox", [{}, TOOLBOX, {"loss": "distill", "teacher_temperature": 2.0}],
                         ids=["infonce", "toolbox", "distill"])
def test_two_training_workers_on_two_nodes_equal_one_worker_on_the_global_batch(two_nodes, toy_beir, s3_root,
                                                                                  tmp_path_factory, toolbox):
    """Cross-worker negatives: the loss each step is the one-worker loss over the same global batch, and the
    weights after training match (the gradients agree); rank 0's model comes back through S3. The same with the
    toolbox on: a learned temperature (outside DDP: its gradient must not count twice), a momentum queue, MoCHi
    points and cluster batches, identical on both workers; and with the distill loss, whose teacher run the driver
    reads and ships with the task, and whose targets over the gathered columns are the global batch's."""
    from pipelines.train import TrainJob, run_training
    from retriever.training import TrainConfig
    from tests.conftest import build_tiny_model
    from tests.pipelines.test_train import _weights

    model = build_tiny_model(tmp_path_factory.mktemp("no-dropout"), dropout=0.0)
    out = tmp_path_factory.mktemp("train")
    cfg = TrainConfig(tower="both", epochs=2, batch_size=6, lr=1e-3, negatives=0, max_seq_length=32,
                      checkpoint_every=50, **toolbox)
    teacher = _teacher_run(tmp_path_factory.mktemp("teacher")) if toolbox.get("loss") == "distill" else None
    common = dict(dataset=str(toy_beir), model=str(model), split="train", held_out=0.0, config=cfg, teacher=teacher)
    two = run_training(TrainJob(output=str(out / "two"), engine="ray", num_workers=2,
                                ray=RayEnv(two_nodes.address, storage=s3_root), **common))
    one = run_training(TrainJob(output=str(out / "one"), engine="local", **common))
    assert two["num_workers"] == 2 and two["steps"] == one["steps"] == 6
    losses = [json.loads((out / n / "loss.json").read_text())["losses"] for n in ("two", "one")]
    assert [e["loss"] for e in losses[0]] == pytest.approx([e["loss"] for e in losses[1]], rel=1e-4)
    a, b = _weights(out / "two" / "model"), _weights(out / "one" / "model")
    assert a.keys() == b.keys()
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-4
    assert two["base_model"] == str(model)  # the driver's name, not the worker's fetched copy
    if cfg.learn_temperature:  # the default since 2026-11-30, and the toolbox's
        assert [e["temperature"] for e in losses[0]] == pytest.approx([e["temperature"] for e in losses[1]],
                                                                       rel=1e-5)


def _cli(*args, env_extra=None, **kw):
    import os
    import subprocess
    import sys

    from tests.cluster.conftest import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_ctrl_c_during_cluster_encode_keeps_finished_shards_and_the_rerun_does_the_rest(two_nodes, scifact_slice,
                                                                                       s3_root, tmp_path):
    """A user's driver joins the cluster by address (the code travels in the runtime_env), reads through S3, is
    interrupted with SIGINT after a few shards: one line on stderr, no traceback, finished shards kept."""
    import signal

    out = tmp_path / "emb"
    args = ["encode", "--dataset", str(scifact_slice), "--docs-per-shard", "10", "--max-docs", "200",
            "--num-workers", "2", "--ray-address", two_nodes.address, "--storage", s3_root,
            "--output", str(out)]
    proc = _cli(*args, env_extra={"DRP_WORK_DIR": str(tmp_path / "work")})
    deadline = time.time() + 240
    while time.time() < deadline and len(list(out.glob("emb-*.json"))) < 3 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    kept = len(list(out.glob("emb-*.json")))
    assert proc.returncode == 130, stderr[-3000:]
    assert "densepipe: interrupted" in stderr and "Traceback" not in stderr
    assert 3 <= kept < 20, "the interrupt should land midway"
    assert not (out / "manifest.json").exists()
    again = _cli(*args, env_extra={"DRP_WORK_DIR": str(tmp_path / "work")})
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr[-3000:]
    result = json.loads(stdout)
    assert result["docs"] == 200 - 10 * kept  # only the unfinished shards
    ids, _ = _emb(out)
    assert len(ids) == len(set(ids)) == 200


def test_without_an_address_densepipe_never_joins_the_running_cluster(two_nodes):
    """The cluster of this module is running on this machine (Ray records it in its temp folder); a command
    without --ray-address starts its own Ray instead of joining it."""
    code = ("import ray\nfrom pipelines.runtime import init_ray\ninit_ray(None, num_cpus=1)\n"
            "print(ray.get_runtime_context().gcs_address)\nray.shutdown()\n")
    import subprocess
    import sys

    from tests.cluster.conftest import ROOT

    import os

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] != two_nodes.address


def test_a_cluster_address_that_does_not_answer_is_a_clear_error(scifact_slice, tmp_path):
    proc = _cli("encode", "--dataset", str(scifact_slice), "--max-docs", "20", "--ray-address", "127.0.0.1:1",
                "--output", str(tmp_path / "e"), env_extra={"DRP_WORK_DIR": str(tmp_path / "work")})
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 2 and "Traceback" not in stderr, stderr[-2000:]
    assert "--ray-address 127.0.0.1:1" in stderr


@pytest.mark.parametrize("engine", ["ray"])
def test_hyde_on_two_nodes_equals_local(two_nodes, scifact_slice, tmp_path, capsys, fake_server, engine):  # noqa: F811
    from tests.conftest import run_cli

    common = ["hyde", "--dataset", str(scifact_slice), "--generator", fake_server, "--endpoint-model", "smol",
              "--n", "2", "--max-queries", "6", "--gen-batch-size", "2", "--k", "100"]
    # two workers of one CPU each on two one-CPU nodes: one actor per node
    on_ray = run_cli(capsys, *common, "--engine", engine, "--num-workers", "2", "--ray-address",
                     two_nodes.address, "--output", str(tmp_path / "ray"))
    local = run_cli(capsys, *common, "--engine", "local", "--output", str(tmp_path / "local"))
    assert on_ray["report"]["generated"] == 12 and on_ray["report"]["failed_batches"] == 0
    assert on_ray["metrics"] == local["metrics"]


def test_generate_queries_on_two_nodes_equals_local(two_nodes, tmp_path, capsys, fake_server):  # noqa: F811
    from tests.conftest import run_cli
    from tests.pipelines.test_generate import _corpus_only

    data = _corpus_only(tmp_path / "c")
    common = ["generate-queries", "--dataset", str(data), "--generator", fake_server, "--endpoint-model", "echo",
              "--docs", "12", "--filter", "none", "--gen-batch-size", "2"]
    # two workers of one CPU each on two one-CPU nodes: one actor per node
    on_ray = run_cli(capsys, *common, "--engine", "ray", "--num-workers", "2", "--ray-address", two_nodes.address,
                     "--output", str(tmp_path / "ray"))
    local = run_cli(capsys, *common, "--output", str(tmp_path / "local"))
    assert on_ray["generation"]["generated"] == 12 and on_ray["generation"]["failed_batches"] == 0
    assert (tmp_path / "ray" / "qrels" / "train.tsv").read_text() == \
        (tmp_path / "local" / "qrels" / "train.tsv").read_text()
    assert on_ray["kept"] == local["kept"] > 0


def test_pretraining_on_two_nodes_through_s3(two_nodes, scifact_slice, s3_root, tmp_path, tiny_model):
    from sentence_transformers import SentenceTransformer

    from pipelines.pretrain import PretrainJob, run_pretraining
    from retriever.pretraining import PretrainConfig

    cfg = PretrainConfig(task="dropout", epochs=1, batch_size=8, max_seq_length=32, max_steps=3)
    info = run_pretraining(PretrainJob(str(scifact_slice), str(tmp_path / "pt"), str(tiny_model), cfg, max_texts=48,
                                       engine="ray", num_workers=2,
                                       ray=RayEnv(two_nodes.address, storage=s3_root)))
    assert info["steps"] == 3 and not info["skipped"]
    vec = SentenceTransformer(info["model"], device="cpu").encode(["a sentence"])
    assert vec.shape == (1, 32)


def test_a_published_model_folder_hashes_like_the_original(tmp_path, tiny_model):
    """The upload marker sits beside the folder, so a fetched (or, on a local storage root, the published) model
    folder has the original's content hash, and a query tower trained from it still reuses the base's vectors."""
    from retriever.encoders import model_hash

    storage = Storage(tmp_path / "storage")
    uri = storage.publish_dir(tiny_model, "models/tiny", stamp="1")
    assert model_hash(str(fetch_dir(uri))) == model_hash(str(tiny_model))


@pytest.mark.parametrize("factory,params", [("Flat", ""), ("IVF16,PQ8x4fs", "nprobe=4")])
def test_search_across_actors_on_both_nodes_equals_one_index(two_nodes, s3_root, tmp_path, factory, params):
    """An index of 4 parts held by 2 actors (one per node, each fetching only its parts from S3): the merged top
    k equals one index over the same folder, document for document and score for score (duplicated vectors make
    exact ties, and 4-bit codes many more: among hits tied at the k-th score, which make the cut is FAISS's
    choice in one index as in several)."""
    from indexes import IndexSpec
    from pipelines.index_stage import index_embeddings, load_sharded
    from pipelines.search import DenseSearcher
    from pipelines.shard_search import DistributedSearcher
    from retriever.data.embeddings import write_vectors

    rng = np.random.default_rng(0)
    xb = rng.standard_normal((2000, 16)).astype(np.float32)
    xb[1500:1510] = xb[10:20]  # exact ties across parts
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    ids = [f"doc{i}" for i in range(len(xb))]
    write_vectors(tmp_path / "emb", ((ids[i:i + 500], xb[i:i + 500]) for i in range(0, 2000, 500)))
    manifest = index_embeddings(tmp_path / "emb", tmp_path / "ix", IndexSpec(factory, search_params=params),
                                progress=False)
    assert len(manifest["parts"]) == 4 and manifest["single_file"] == "index.faiss"
    xq = np.concatenate([xb[10:20], rng.standard_normal((30, 16)).astype(np.float32)])
    qids = [f"q{i}" for i in range(len(xq))]
    index, all_ids, _ = load_sharded(tmp_path / "ix")
    expected = DenseSearcher(None, index, all_ids).search_vectors(qids, xq, 25)
    searcher = DistributedSearcher(tmp_path / "ix", None, 2, RayEnv(two_nodes.address, storage=s3_root))
    try:
        got = searcher.search_vectors(qids, xq, 25)
        info = searcher.actor_info()
    finally:
        searcher.close()
    assert set(got) == set(qids) and all(_same_up_to_ties(got[q], expected[q]) for q in qids)
    assert {r["node"] for r in info} == node_ids() and [r["parts"] for r in info] == [2, 2]
    assert sum(r["vectors"] for r in info) == 2000
    import faiss

    single = faiss.read_index(str(tmp_path / "ix" / "index.faiss"))  # the one-file copy: plain FAISS loads it
    assert single.ntotal == 2000


def test_windowed_documents_searched_across_actors_score_by_their_best_window(two_nodes, s3_root, tmp_path):
    """Documents encoded as windows on both nodes (segment_tokens, through S3), indexed in 3 parts held by 2
    actors: the merged run is one document per hit scored by its best window, equal to one index's MaxP run."""
    from indexes import IndexSpec
    from pipelines.index_stage import index_embeddings, load_sharded
    from pipelines.search import DenseSearcher
    from pipelines.shard_search import DistributedSearcher
    from retriever.data import load_beir
    from retriever.encoders import BiEncoder
    from tests.conftest import SCIFACT, need_data

    need_data(SCIFACT)
    ds = load_beir(SCIFACT, "test")
    keep = sorted(ds.corpus)[:90]
    folder = tmp_path / "beir"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": ds.corpus[d].title,
                                                             "text": ds.corpus[d].text}) + "\n" for d in keep))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "cancer"}) + "\n")
    prep = prepare(str(folder), docs_per_shard=30, need_qrels=False)
    encoder = EncoderConfig(segment_tokens=96)
    env = RayEnv(two_nodes.address, storage=s3_root)
    manifest = encode_corpus(prep.corpus_dir, tmp_path / "emb", EncodeConfig(encoder, num_workers=2,
                                                                             rows_per_ray_batch=15, ray=env),
                             progress=False)
    assert set(manifest["last_run"]["nodes"]) == node_ids(), "both nodes encoded"
    ids, xb = _emb(tmp_path / "emb")
    assert len(ids) > len(set(ids)) == 90  # windows
    index_embeddings(tmp_path / "emb", tmp_path / "ix", IndexSpec("Flat"), progress=False)
    xq = BiEncoder(encoder).encode_queries([ds.queries[q] for q in sorted(ds.queries)[:12]])
    qids = [f"q{i}" for i in range(len(xq))]
    index, all_ids, _ = load_sharded(tmp_path / "ix")
    expected = DenseSearcher(None, index, all_ids).search_vectors(qids, xq, 20)
    searcher = DistributedSearcher(tmp_path / "ix", None, 2, env)
    try:
        got = searcher.search_vectors(qids, xq, 20)
    finally:
        searcher.close()
    assert searcher.per_doc > 1
    best = {q: {} for q in qids}
    for row, d in enumerate(ids):
        for i, q in enumerate(qids):
            best[q][d] = max(best[q].get(d, -1.0), float(xq[i] @ xb[row]))
    for q in qids:
        assert len(got[q]) == 20 and list(got[q]) == list(expected[q])
        assert got[q] == pytest.approx({d: best[q][d] for d in got[q]}, abs=1e-5)
        assert min(got[q].values()) >= sorted(best[q].values())[-20] - 1e-6


def _same_up_to_ties(a: dict, b: dict) -> bool:
    """The same scores in the same order, and the same documents above the last (possibly tied) score."""
    sa, sb = sorted(a.values(), reverse=True), sorted(b.values(), reverse=True)
    if sa != sb:
        return False
    cut = sa[-1] if sa else None
    return {d for d, v in a.items() if v > cut} == {d for d, v in b.items() if v > cut} and all(
        b.get(d, v) == v for d, v in a.items())
