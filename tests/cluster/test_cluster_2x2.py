"""Two nodes of two CPUs each: the default request (one worker of one CPU) no longer asks for the cluster's total,
four workers spread over both nodes, and a worker of more CPUs than any node has is refused at once."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.encode import EncodeConfig, encode_corpus
from pipelines.runtime import ClusterError, RayEnv
from pipelines.workspace import prepare
from retriever.encoders import EncoderConfig
from tests.cluster.test_cluster import _emb

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def two_by_two():
    import ray
    from ray.cluster_utils import Cluster

    from pipelines.runtime import init_ray

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    try:
        init_ray(cluster.address)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.parametrize("workers", [1, 4])
def test_encode_with_one_and_four_workers_equals_local(two_by_two, scifact_slice, tmp_path, workers):
    prep = prepare(str(scifact_slice), docs_per_shard=40, max_docs=160)
    cfg = EncodeConfig(EncoderConfig(), engine="ray", num_workers=workers, rows_per_ray_batch=20,
                       ray=RayEnv(two_by_two.address))
    manifest = encode_corpus(prep.corpus_dir, tmp_path / "ray", cfg, progress=False)
    assert manifest["last_run"]["docs"] == 160 and manifest["last_run"]["cpus_per_worker"] == 1.0
    if workers == 4:  # two one-CPU workers per two-CPU node: both nodes work
        assert len(manifest["last_run"]["nodes"]) == 2
    encode_corpus(prep.corpus_dir, tmp_path / "local", EncodeConfig(EncoderConfig(), engine="local"), progress=False)
    (ids_r, xr), (ids_l, xl) = _emb(tmp_path / "ray"), _emb(tmp_path / "local")
    assert ids_r == ids_l and np.allclose(xr, xl, atol=1e-5)


def test_a_worker_larger_than_any_node_is_refused(two_by_two, scifact_slice, tmp_path):
    prep = prepare(str(scifact_slice), docs_per_shard=40, max_docs=40)
    cfg = EncodeConfig(EncoderConfig(), engine="ray", ray=RayEnv(two_by_two.address, cpus_per_worker=3))
    with pytest.raises(ClusterError, match=r"\{'CPU': 3\.0\}.*CPU 2.*CPU 2.*lower --cpus-per-worker to at most"):
        encode_corpus(prep.corpus_dir, tmp_path / "x", cfg, progress=False)
