"""The quick config end to end, three ways, side by side in one run: in-process (every engine local), on the local
Ray densepipe starts itself, and on a simulated two-node Ray cluster (``ray.cluster_utils.Cluster``, one CPU per
node) with the run's artifacts on an S3-compatible server (moto's standalone server on 127.0.0.1). Wall time of
each and whether the metrics are identical. Writes benchmarks/results/cluster.json.

    python benchmarks/cluster.py [--config configs/quick.toml] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RAY_SECTIONS = ("encode", "mine", "train", "pretrain")


def _toml(config: dict) -> str:
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    return "".join(f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in section.items()) + "\n"
                   for name, section in config.items())


def variant(base: dict, engine: str, workers: int, train_workers: int, output: str) -> dict:
    config = {name: dict(section) for name, section in base.items()}
    config["run"]["output"] = output
    for name in RAY_SECTIONS:
        if name in config:
            config[name]["engine"] = engine
            n = train_workers if name in ("train", "pretrain") else workers
            config[name]["num_workers"] = n if engine == "ray" else 1
    return config


def run(config: dict, folder: Path, extra: list[str], env: dict) -> dict:
    path = folder / "config.toml"
    path.write_text(_toml(config))
    cmd = [sys.executable, "-m", "pipelines.cli", "run", str(path), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout)
    return {"wall_s": round(wall, 1), "metrics": result["metrics"],
            "stage_seconds": {k: v["seconds"] for k, v in result["stages"].items()},
            "command": "densepipe run CONFIG " + " ".join(a if "://" not in a else "s3://…" for a in extra)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("ray", "torch", "sentence-transformers", "faiss-cpu", "pyarrow", "moto")}


def _max_diff(a: dict, b: dict) -> float:
    diffs = [abs(a[s][m] - b[s][m]) for s in a for m in a[s]
             if isinstance(a[s][m], float) and s in b and m in b[s]]
    return max(diffs) if diffs else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "quick.toml"))
    ap.add_argument("--workers", type=int, default=2, help="Ray workers of encode and mine")
    ap.add_argument("--train-workers", type=int, default=1,
                    help="Ray Train workers (with 2, the in-batch negatives are gathered, but each worker draws its "
                         "own dropout masks, so the weights differ from one worker's by dropout noise)")
    ap.add_argument("--output", default=str(HERE / "results" / "cluster.json"))
    args = ap.parse_args()
    base = tomllib.loads(Path(args.config).read_text())
    tmp = Path(tempfile.mkdtemp(prefix="densepipe-cluster-bench-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "DRP_NODE_CACHE": str(tmp / "node-cache")}
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                           "DRP_NODE_CACHE")})
    rows = {}
    for name, engine in (("in-process", "local"), ("local Ray", "ray")):
        folder = tmp / name.replace(" ", "-")
        folder.mkdir()
        row_env = {**env, "DRP_WORK_DIR": str(folder / "work")}
        rows[name] = run(variant(base, engine, args.workers, args.train_workers, str(folder / "run")), folder, [], row_env)
        print(name, rows[name]["wall_s"], "s", flush=True)

    import boto3
    from ray.cluster_utils import Cluster

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cluster = None
    try:
        for _ in range(100):
            try:
                boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket="densepipe-bench")
                break
            except Exception:
                time.sleep(0.2)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        folder = tmp / "cluster"
        folder.mkdir()
        storage = f"s3://densepipe-bench/run?endpoint_override=127.0.0.1:{port}&scheme=http"
        rows["2-node cluster + S3"] = run(variant(base, "ray", args.workers, args.train_workers, str(folder / "run")), folder,
                                          ["--ray-address", cluster.address, "--storage", storage],
                                          {**env, "DRP_WORK_DIR": str(folder / "work")})
        print("cluster", rows["2-node cluster + S3"]["wall_s"], "s", flush=True)
    finally:
        if cluster is not None:
            cluster.shutdown()
        server.terminate()
    ref = rows["in-process"]
    for r in rows.values():
        r["ratio_wall_to_in_process"] = round(r["wall_s"] / ref["wall_s"], 2)
        r["max_metric_diff_vs_in_process"] = round(_max_diff(r["metrics"], ref["metrics"]), 6)
    sys.path.insert(0, str(HERE))
    from provenance import provenance

    out = {**provenance("cluster.py"), "config": args.config, "workers": args.workers,
           "train_workers": args.train_workers, "versions_extra": _versions(), "rows": rows}
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    for name, r in rows.items():
        print(f"| {name} | {r['wall_s']} | {r['ratio_wall_to_in_process']} | {r['max_metric_diff_vs_in_process']} |")


if __name__ == "__main__":
    main()
