"""Running a benchmark script again in a fresh process: a cold start for a timing, or a setting (an environment
variable, a thread count) that must be in place before its imports. The child prints its result as its last line,
one JSON object."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run_child(script: str, *args: str, env: dict | None = None) -> dict:
    """``python script --child *args`` with ``env`` added to this environment; its last stdout line, parsed. A
    failed child stops the benchmark with the end of its stderr."""
    proc = subprocess.run([sys.executable, script, "--child", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"{os.path.basename(script)} --child {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
