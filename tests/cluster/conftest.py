"""A simulated multi-node Ray cluster (``ray.cluster_utils.Cluster``: two nodes of one CPU each, as separate raylets
with their own resources) and a real S3-compatible server on 127.0.0.1 (moto's standalone server), one of each per
test module. The driver joins the cluster by its address, as a user's ``--ray-address`` would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

BUCKET = "densepipe-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """moto's standalone S3 server; yields the endpoint ``127.0.0.1:PORT`` with a fresh bucket."""
    pytest.importorskip("moto", reason="pip install 'moto[server]' (the [test] extra)")
    import boto3

    port = _free_port()
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ[key] = value  # inherited by the cluster's raylets and workers started below
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
    deadline = time.time() + 30
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("moto's S3 server did not start")
            time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture()
def s3_root(s3_server) -> str:
    """A fresh storage root on the S3 server, as a user would pass it to --storage."""
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}?endpoint_override={s3_server}&scheme=http"


@pytest.fixture(scope="module")
def two_nodes(s3_server, tmp_path_factory):
    """Two Ray nodes of one CPU each; the driver is connected to it for the module's tests."""
    import ray
    from ray.cluster_utils import Cluster

    from pipelines.runtime import init_ray

    if ray.is_initialized():
        ray.shutdown()
    os.environ["DRP_NODE_CACHE"] = str(tmp_path_factory.mktemp("node-cache"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        init_ray(cluster.address)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def node_ids() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


ROOT = Path(__file__).resolve().parents[2]
