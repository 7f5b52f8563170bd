"""The JVM must own SIGSEGV, and Ray installs fatal-signal handlers of its own: with Ray started first, as
`densepipe run` does before BM25 mining, BM25 indexing and many searches in the same process must neither crash nor
ever load the JVM into this process (it lives in a child)."""

from __future__ import annotations

import sys

import pytest

from pipelines.workspace import prepare
from tests.conftest import run_cli

pytestmark = [pytest.mark.java, pytest.mark.ray]


def test_bm25_many_times_after_ray_started_in_this_process(scifact_slice, tmp_path, capsys):
    import ray

    from pipelines.runtime import init_ray
    from retriever.sparse import BM25Config, BM25Searcher, build_lucene_index

    init_ray(None, num_cpus=1)
    try:
        first = run_cli(capsys, "bm25", "--dataset", str(scifact_slice), "--output", str(tmp_path / "a.trec"))
        prep = prepare(str(scifact_slice))
        searcher = BM25Searcher(build_lucene_index(prep.dataset.corpus, prep.folder / "lucene-flat"), BM25Config())
        runs = [searcher.search(prep.dataset.queries, k=100) for _ in range(25)]  # enough to get the JIT going
        searcher.close()
        again = run_cli(capsys, "bm25", "--dataset", str(scifact_slice), "--output", str(tmp_path / "b.trec"))
    finally:
        ray.shutdown()
    assert all(r == runs[0] for r in runs) and len(runs[0]) == len(prep.dataset.queries)
    assert again["metrics"] == first["metrics"]
    assert "jnius" not in sys.modules and "pyserini.search.lucene" not in sys.modules, "the JVM ran in this process"
