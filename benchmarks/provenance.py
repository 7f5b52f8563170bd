"""What every benchmark JSON records about how it was made: the command, the git commit (and whether the tree had
uncommitted changes), library versions and the machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("densepipe", "torch", "sentence-transformers", "transformers", "faiss-cpu", "faiss-gpu-cu12", "ray",
            "pyarrow", "pyserini", "pytrec-eval-terrier", "numpy", "onnx", "onnxruntime", "openvino")


def provenance(script: str, argv: list[str] | None = None) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return {"command": f"python benchmarks/{script} " + " ".join(sys.argv[1:] if argv is None else argv),
            # dirty: code changed since the commit (results files being written do not count)
            "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results")),
            "versions": versions, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                              "platform": platform.platform()}}


def choose(csv: str, known, what: str) -> list[str]:
    """The comma-separated names of a benchmark's option, each one of ``known``; an unknown one ends the script."""
    names = csv.split(",")
    if set(names) - set(known):
        sys.exit(f"unknown {what} {sorted(set(names) - set(known))}; choose from {list(known)}")
    return names
