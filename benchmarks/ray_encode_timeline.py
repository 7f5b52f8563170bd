"""Where the Ray encode stage's seconds go, against the local engine: the stage end to end on both engines, with
the work inside timed (the local engine's model load and encoder calls; on Ray, when the actor's process starts,
its imports and model load, each chunk call, the gaps between calls and the tail after the last one), plus the CPU
that Ray's own processes use on an idle cluster. Engines alternate (local ray ray local) since the machine drifts;
``--ray-env`` adds Ray runs under other settings (e.g. ``RAY_enable_metrics_collection=0``).

    python benchmarks/ray_encode_timeline.py --docs 3000 [--backend onnx] [--ray-env RAY_worker_niceness=0 ...]

Each run is a fresh child process (nothing imported before the stage starts, as for a user's command). Results:
benchmarks/results/ray_encode_timeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from childproc import run_child

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "results" / "ray_encode_timeline.json"
BACKENDS = {"onnx": {"backend": "onnx"}, "openvino-bf16": {"backend": "openvino", "model_dtype": "bfloat16"},
            "torch": {"backend": "torch"}}


def child_run(engine: str, backend: str, docs: int, out: str) -> dict:
    """One encode stage, timed from inside (runs in a fresh child)."""
    import shutil

    import pipelines.encode as enc
    from pipelines.runtime import RayEnv
    from pipelines.workspace import prepare
    from retriever.encoders import EncoderConfig

    prep = prepare("scifact", "test", max_docs=docs)
    marks: list = []

    class TimedBatch(enc.EncodeBatch):  # the local engine's model load and calls
        def __init__(self, *a, **k):
            t = time.time()
            super().__init__(*a, **k)
            marks.append(("init", t, time.time()))

        def __call__(self, batch):
            t = time.time()
            out = super().__call__(batch)
            marks.append(("call", t, time.time()))
            return out

    class TimedChunks(enc.EncodeChunks):  # the actor's (defined here, so Ray ships it by value)
        def __init__(self, *a, **k):
            self.t_init = time.time()
            super().__init__(*a, **k)
            self.t_ready = time.time()

        def __call__(self, uri, rows):
            t = time.time()
            out = super().__call__(uri, rows)
            out["timing"] = {"init": [self.t_init, self.t_ready], "call": [t, time.time()]}
            return out

    env = RayEnv()
    if engine == "ray":
        import ray

        env.start()
        enc.EncodeChunks = TimedChunks
        get = ray.get

        def timed_get(ref, *a, **k):
            value = get(ref, *a, **k)
            if isinstance(value, dict) and "timing" in value:
                marks.append(("init", *value["timing"]["init"]))
                marks.append(("call", *value["timing"]["call"]))
            return value

        ray.get = timed_get
    else:
        enc.EncodeBatch = TimedBatch
    shutil.rmtree(out, ignore_errors=True)
    cfg = enc.EncodeConfig(EncoderConfig(batch_size=16, **BACKENDS[backend]), engine=engine, num_workers=1, ray=env)
    t0 = time.time()
    enc.encode_corpus(prep.corpus_dir, out, cfg, progress=False)
    t1 = time.time()
    init = [m for m in marks if m[0] == "init"][0]
    calls = sorted(m[1:] for m in marks if m[0] == "call")
    return {"engine": engine, "seconds": round(t1 - t0, 2), "model_ready_after_s": round(init[2] - t0, 2),
            "process_start_s": round(init[1] - t0, 2), "imports_and_model_load_s": round(init[2] - init[1], 2),
            "encoding_s": round(sum(b - a for a, b in calls), 2),
            "gaps_between_calls_s": round(sum(max(0.0, calls[i + 1][0] - calls[i][1])
                                              for i in range(len(calls) - 1)), 2),
            "after_last_call_s": round(t1 - calls[-1][1], 2), "calls": len(calls),
            "ray_env": {k: v for k, v in os.environ.items() if k.startswith("RAY_") and k not in (
                "RAY_DEDUP_LOGS", "RAY_USAGE_STATS_ENABLED")}}


def idle_daemon_cpu(seconds: float = 30.0) -> dict:
    """CPU seconds used by Ray's processes (not the driver) while a fresh private cluster sits idle."""
    from pipelines.runtime import init_ray

    tick = os.sysconf("SC_CLK_TCK")

    def ray_cpu() -> dict[str, tuple[str, int]]:
        out = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if "ray" in cmd and int(pid) != os.getpid():
                out[pid] = (cmd.split()[0].rsplit("/", 1)[-1] if not cmd.startswith("ray::") else cmd.split()[0],
                            int(stat[11]) + int(stat[12]))
        return out

    t = time.perf_counter()
    init_ray(None)
    started = time.perf_counter() - t
    time.sleep(5)  # past the start-up work
    before = ray_cpu()
    time.sleep(seconds)
    after = ray_cpu()
    import ray

    ray.shutdown()
    used = sum(v[1] - before[p][1] for p, v in after.items() if p in before) / tick
    return {"init_s": round(started, 2), "window_s": seconds, "ray_processes": len(after),
            "cpu_s_in_window": round(used, 2), "share_of_one_core": round(used / seconds, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--backend", choices=list(BACKENDS), default="onnx")
    ap.add_argument("--ray-env", nargs="*", default=[], help="NAME=VALUE: one more Ray run with each setting")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        print(json.dumps(idle_daemon_cpu() if kind == "idle" else child_run(kind, a.backend, a.docs, rest[0])))
        return
    sys.path.insert(0, str(HERE))
    from provenance import provenance

    made = provenance("ray_encode_timeline.py")
    out = str(Path(os.environ.get("TMPDIR", "/tmp")) / "densepipe-ray-timeline")
    common = ["--docs", str(a.docs), "--backend", a.backend]
    runs = []
    for engine in ("local", "ray", "ray", "local"):
        runs.append(run_child(__file__, engine, out, *common))
        print(json.dumps(runs[-1]), flush=True)
    for setting in a.ray_env:
        name, _, value = setting.partition("=")
        runs.append(run_child(__file__, "ray", out, *common, env={name: value}))
        print(json.dumps(runs[-1]), flush=True)
    mean = lambda xs: round(sum(xs) / len(xs), 2)  # noqa: E731
    by = {e: [r for r in runs[:4] if r["engine"] == e] for e in ("local", "ray")}
    result = {"benchmark": "ray_encode_timeline", "dataset": "scifact", "docs": a.docs, "backend": a.backend,
              "runs": runs, "idle_cluster": run_child(__file__, "idle", *common),
              "mean": {e: {k: mean([r[k] for r in rs]) for k in ("seconds", "process_start_s",
                                                                  "imports_and_model_load_s", "encoding_s",
                                                                  "gaps_between_calls_s", "after_last_call_s")}
                       for e, rs in by.items()}, **made}
    result["ray_over_local"] = round(result["mean"]["local"]["seconds"] / result["mean"]["ray"]["seconds"], 3)
    OUTPUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("mean", "ray_over_local", "idle_cluster")}, indent=2))


if __name__ == "__main__":
    main()
