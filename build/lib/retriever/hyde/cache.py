"""Generations cached in Parquet, one row per (generator, prompt, sampling settings, sample index): a rerun
reads them back instead of generating, and N samples are the first N of the cached ones, so N = 1, 4, 8 share
their generations. New rows go into a new part file, written under a temporary name and renamed."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from retriever.atomic import atomic_path


def generation_key(generator: str, settings: dict, prompt: str, sample: int) -> str:
    blob = json.dumps([generator, settings, prompt, sample], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class GenerationCache:
    def __init__(self, folder: str | os.PathLike):
        import pyarrow.parquet as pq

        self.folder = Path(folder)
        self.entries: dict[str, str] = {}
        for part in sorted(self.folder.glob("part-*.parquet")):
            table = pq.read_table(part, columns=["key", "text"]).to_pydict()
            self.entries.update(zip(table["key"], table["text"]))

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def put(self, rows: list[dict]) -> None:
        """``rows``: dicts with key, text, generator, prompt, sample."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not rows:
            return
        table = pa.table({c: [r[c] for r in rows] for c in ("key", "text", "generator", "prompt", "sample")})
        name = f"part-{time.time_ns():020d}-{os.getpid()}.parquet"
        with atomic_path(self.folder / name) as tmp:
            pq.write_table(table, tmp)
        self.entries.update((r["key"], r["text"]) for r in rows)
