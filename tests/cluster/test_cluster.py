"""The stages on a simulated two-node Ray cluster (one CPU per node) with their artifacts on a real S3 server:
work lands on both nodes, no worker reads a path of the driver's (corpus shards, the Lucene index, embeddings and
models travel through storage), outputs equal the local engine's, and impossible requests are refused at once."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from pipelines.encode import EncodeConfig, encode_corpus
from pipelines.runtime import ClusterError, Storage, check_fits, fetch_dir
from pipelines.workspace import prepare
from retriever.data.embeddings import read_embeddings
from retriever.encoders import EncoderConfig
from tests.cluster.conftest import node_ids

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
    prep = prepare(str(scifact_slice), docs_per_shard=60, max_docs=180)
    cfg = EncodeConfig(EncoderConfig(), engine="ray", num_workers=2, rows_per_ray_batch=30, storage=s3_root,
                       ray_address=two_nodes.address)
    manifest = encode_corpus(prep.corpus_dir, tmp_path / "ray", cfg, progress=False)
    assert manifest["last_run"]["docs"] == 180
    assert set(manifest["last_run"]["nodes"]) == node_ids(), "both nodes encoded"
    assert manifest["last_run"]["cpus_per_worker"] == 1.0
    encode_corpus(prep.corpus_dir, tmp_path / "local", EncodeConfig(EncoderConfig(), engine="local"), progress=False)
    ids_r, xr = _emb(tmp_path / "ray")
    ids_l, xl = _emb(tmp_path / "local")
    assert ids_r == ids_l and len(set(ids_r)) == 180
    assert np.allclose(xr, xl, atol=1e-5)


def test_encode_with_more_workers_than_fit_is_refused_before_any_work(two_nodes, scifact_slice, tmp_path):
    prep = prepare(str(scifact_slice), docs_per_shard=60, max_docs=60)
    cfg = EncodeConfig(EncoderConfig(), engine="ray", num_workers=4, ray_address=two_nodes.address)
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
                                 storage=s3_root, ray_address=two_nodes.address, **common))
    local_out = mine_pairs(MineJob(output=str(tmp_path / "local.parquet"), engine="local", **common))
    assert set(ray_out["nodes"]) == node_ids()
    assert ray_out["examples"] == local_out["examples"] > 0
    a, b = read_mined(tmp_path / "ray.parquet"), read_mined(tmp_path / "local.parquet")
    assert [(e.query_id, e.positive_id, e.negative_ids) for e in a] == \
        [(e.query_id, e.positive_id, e.negative_ids) for e in b]


def test_two_training_workers_on_two_nodes_equal_one_worker_on_the_global_batch(two_nodes, toy_beir, s3_root,
                                                                                  tmp_path_factory):
    """Cross-worker negatives: the loss each step is the one-worker loss over the same global batch, and the
    weights after training match (the gradients agree); rank 0's model comes back through S3."""
    from pipelines.train import TrainJob, run_training
    from retriever.training import TrainConfig
    from tests.conftest import build_tiny_model
    from tests.pipelines.test_train import _weights

    model = build_tiny_model(tmp_path_factory.mktemp("no-dropout"), dropout=0.0)
    out = tmp_path_factory.mktemp("train")
    cfg = TrainConfig(tower="both", epochs=2, batch_size=6, lr=1e-3, negatives=0, max_seq_length=32,
                      checkpoint_every=50)
    common = dict(dataset=str(toy_beir), model=str(model), split="train", held_out=0.0, config=cfg)
    two = run_training(TrainJob(output=str(out / "two"), engine="ray", num_workers=2, storage=s3_root,
                                ray_address=two_nodes.address, **common))
    one = run_training(TrainJob(output=str(out / "one"), engine="local", **common))
    assert two["num_workers"] == 2 and two["steps"] == one["steps"] == 6
    losses = [json.loads((out / n / "loss.json").read_text())["losses"] for n in ("two", "one")]
    assert [e["loss"] for e in losses[0]] == pytest.approx([e["loss"] for e in losses[1]], rel=1e-4)
    a, b = _weights(out / "two" / "model"), _weights(out / "one" / "model")
    assert a.keys() == b.keys()
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-4
    assert two["base_model"] == str(model)  # the driver's name, not the worker's fetched copy
