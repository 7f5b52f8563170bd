"""The default job's figures, as the README quotes them: `densepipe run configs/scifact.toml` (what `make run` runs),
or the stage records of a run folder that such a run finished (``--from-run``, e.g. a fresh clone's
``runs/scifact`` after ``make run``). Writes benchmarks/results/default_job.json: each stage's metrics and
seconds, and how the run was made.

    python benchmarks/default_job.py [--config configs/scifact.toml]
    python benchmarks/default_job.py --from-run ../clone/runs/scifact --how "make run, fresh clone"
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def read_run(folder: Path) -> dict:
    stages = {}
    for path in sorted((folder / "stages").glob("*.json")):
        record = json.loads(path.read_text())
        stages[path.stem] = {k: record[k] for k in ("seconds", "metrics", "key", "geometry") if k in record}
        if "rows" in record:  # the compression sweep
            stages[path.stem]["rows"] = record["rows"]
        if "picked" in record:
            stages[path.stem]["picked"] = record["picked"]
    return stages


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "scifact.toml"))
    ap.add_argument("--from-run", default=None, help="a finished run folder to read instead of running")
    ap.add_argument("--how", default=None, help="how that run was made (recorded)")
    ap.add_argument("--wall-s", type=float, default=None, help="its wall time, if measured outside")
    ap.add_argument("--output", default=str(HERE / "results" / "default_job.json"))
    a = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from provenance import provenance

    if a.from_run:
        folder, wall = Path(a.from_run), a.wall_s
    else:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", a.config], check=True,
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
        wall = round(time.perf_counter() - t0, 1)
        folder = Path(json.loads(out.stdout)["run"])
        if not folder.is_absolute():
            folder = ROOT / folder
    record = {**provenance("default_job.py"), "how": a.how or f"densepipe run {a.config}", "run_folder": str(folder),
              "wall_s": wall, "stages": read_run(folder)}
    Path(a.output).write_text(json.dumps(record, indent=2) + "\n")
    for stage, r in record["stages"].items():
        m = r.get("metrics", {})
        print(f"{stage:14s} {r.get('seconds', ''):>8}  ndcg@10 {m.get('ndcg@10', '')}  mrr@10 {m.get('mrr@10', '')}  "
              f"recall@100 {m.get('recall@100', '')}")


if __name__ == "__main__":
    main()
