"""Streaming preparation: memory that does not grow with the corpus, reruns that read nothing, repeated ids found
across shards, the same content hash as the in-memory reader, MS MARCO TSV and gzip."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap

import pytest

from pipelines.workspace import prepare
from retriever.data.beir import read_corpus
from retriever.data.parquet import ShardCorpus, corpus_hash, read_corpus_shards
from retriever.data.stream import SeenIds
from retriever.types import DataError
from tests.conftest import ROOT, write_beir

WORDS = [f"w{i}" for i in range(5000)]


def _generate(path, n: int, seed: int = 0) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for i in range(n):
            words = " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), 40))
            f.write(json.dumps({"_id": f"d{i}", "title": f"t{i}", "text": words}) + "\n")


def _peak_rss_mb(folder, work) -> float:
    """Prepare ``folder`` in a fresh interpreter; its peak resident memory in MB."""
    code = textwrap.dedent(f"""
        from pathlib import Path
        from pipelines.workspace import prepare
        from retriever.memory import peak_rss_mb
        prepare({str(folder)!r}, docs_per_shard=5000, root=Path({str(work)!r}), need_qrels=False)
        print(peak_rss_mb())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return float(out.stdout.split()[-1])


def test_preparation_memory_does_not_grow_with_the_corpus(tmp_path):
    """10k and 200k documents (40 shards): reading the corpus into memory peaks ~100 MB higher for the larger (~500
    bytes a document, measured); streaming holds one shard and the id hashes (12 bytes a document)."""
    sizes = {}
    for n in (10_000, 200_000):
        folder = tmp_path / f"c{n}"
        folder.mkdir()
        _generate(folder / "corpus.jsonl", n)
        sizes[n] = _peak_rss_mb(folder, tmp_path / "work")
        manifest = json.loads((tmp_path / "work" / f"c{n}" / "corpus-5000" / "manifest.json").read_text())
        assert manifest["num_docs"] == n and len(manifest["shards"]) == n // 5000
    assert sizes[200_000] - sizes[10_000] < 30, sizes


def test_a_rerun_on_an_unchanged_file_reads_nothing_and_a_changed_file_is_read_again(tmp_path, monkeypatch):
    import os

    import retriever.data.stream as stream

    write_beir(tmp_path / "ds", [{"_id": f"d{i}", "text": f"text {i}"} for i in range(30)],
               [{"_id": "q1", "text": "text"}], [("q1", "d3", 1)])
    first = prepare(str(tmp_path / "ds"), docs_per_shard=8, root=tmp_path / "work")
    assert len(first.dataset.corpus) == 30 and len(first.dataset.corpus.manifest["shards"]) == 4

    def refuse(*a, **k):
        raise AssertionError("the corpus was read again")

    monkeypatch.setattr(stream, "_write_shards", refuse)
    again = prepare(str(tmp_path / "ds"), docs_per_shard=8, root=tmp_path / "work")
    assert again.data_hash == first.data_hash
    path = tmp_path / "ds" / "corpus.jsonl"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="read again"):
        prepare(str(tmp_path / "ds"), docs_per_shard=8, root=tmp_path / "work")


def test_streamed_shards_equal_the_in_memory_reader_with_the_same_hash(scifact_slice, tmp_path):
    prep = prepare(str(scifact_slice), docs_per_shard=37, root=tmp_path / "work")
    corpus = read_corpus(scifact_slice / "corpus.jsonl")
    assert read_corpus_shards(prep.corpus_dir) == corpus
    assert prep.data_hash == corpus_hash(corpus)
    assert isinstance(prep.dataset.corpus, ShardCorpus) and len(prep.dataset.corpus) == len(corpus)
    assert [d for batch in prep.dataset.corpus.batches(10) for d in batch] == list(corpus.values())
    sliced = prepare(str(scifact_slice), docs_per_shard=37, root=tmp_path / "work", max_docs=200)
    assert list(read_corpus_shards(sliced.corpus_dir)) == list(corpus)[:200]
    judged = {d for docs in sliced.dataset.qrels.values() for d in docs}
    assert judged and judged <= set(list(corpus)[:200])  # judgments outside the slice are dropped


def test_a_repeated_id_in_a_later_shard_is_flagged_with_its_first_line(tmp_path, monkeypatch):
    monkeypatch.setenv("DRP_DATA_POLICY", "skip-malformed")
    docs = [{"_id": f"d{i}", "text": f"text {i}"} for i in range(20)] + [{"_id": "d2", "text": "again"}]
    write_beir(tmp_path / "ds", docs, [{"_id": "q1", "text": "text"}], [("q1", "d3", 1)])
    from retriever.data.validation import policy_report

    report = policy_report()
    prep = prepare(str(tmp_path / "ds"), docs_per_shard=5, root=tmp_path / "work", report=report)
    assert len(prep.dataset.corpus) == 20 and prep.dataset.corpus["d2"].text == "text 2"  # the first one is kept
    assert report.counts["duplicate_id"] == 1
    assert "corpus.jsonl:21: duplicate id 'd2' (first seen on line 3)" in str(report.examples[0])
    monkeypatch.setenv("DRP_DATA_POLICY", "accept")
    with pytest.raises(DataError, match="corpus.jsonl:21: duplicate id 'd2'"):
        prepare(str(tmp_path / "ds"), docs_per_shard=5, root=tmp_path / "work2")


def test_seen_ids_find_earlier_ids_across_merged_runs():
    import numpy as np

    seen = SeenIds(max_run=400)
    for block in range(9):
        ids = [f"id{block}-{i}" for i in range(100)]
        seen.add(SeenIds.hashes(ids), np.arange(block * 100 + 1, block * 100 + 101))
    assert 2 < len(seen.runs) < 9 and max(len(h) for h, _ in seen.runs) <= 400  # merged as they grow, capped
    lines = seen.lookup(SeenIds.hashes(["id0-0", "id4-7", "id8-99", "never"]))
    assert lines.tolist() == [1, 408, 900, 0]


def test_an_ms_marco_collection_gzipped_or_not(tmp_path):
    rows = [f"{i}\tpassage number {i}" for i in range(12)] + ["12\t"]  # an empty passage is kept, and counted
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "collection.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "gz").mkdir()
    with gzip.open(tmp_path / "gz" / "collection.tsv.gz", "wt") as f:
        f.write("\n".join(rows) + "\n")
    a = prepare(str(tmp_path / "plain"), docs_per_shard=5, root=tmp_path / "w", need_qrels=False)
    b = prepare(str(tmp_path / "gz"), docs_per_shard=5, root=tmp_path / "w", need_qrels=False)
    assert a.data_hash == b.data_hash and len(a.dataset.corpus) == 13 and a.dataset.corpus["12"].text == ""
    assert a.dataset.queries == {} and a.dataset.qrels == {}  # a corpus alone prepares
