"""Corpus and queries as Parquet shards: the unit of work of the later stages.

Shard assignment is deterministic (contiguous runs in input order), every shard is written atomically,
and a manifest records the shards and a hash of the content they were made from.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from collections.abc import Mapping
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from retriever.atomic import atomic_path, read_json, write_json
from retriever.types import Corpus, DataError, Document, Queries

MANIFEST = "manifest.json"


def corpus_hash(corpus: Corpus) -> str:
    """Content hash of a corpus (ids, titles and texts in order)."""
    h = hashlib.sha256()
    for doc in corpus.values():
        for part in (doc.id, doc.title, doc.text):
            h.update(part.encode())
            h.update(b"\x00")
    return h.hexdigest()[:16]


def queries_hash(queries: Queries) -> str:
    h = hashlib.sha256()
    for qid, text in queries.items():
        h.update(f"{qid}\x00{text}\x00".encode())
    return h.hexdigest()[:16]


def write_corpus_shards(corpus: Corpus, out_dir: str | os.PathLike, docs_per_shard: int = 50_000,
                        source: str = "") -> dict:
    """Write ``corpus`` as ``corpus-NNNNN.parquet`` shards; skip the work when the manifest already matches."""
    if docs_per_shard < 1:
        raise DataError(None, None, f"docs_per_shard must be >= 1, got {docs_per_shard}.", "pass a positive size.")
    out = Path(out_dir)
    data_hash = corpus_hash(corpus)
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        old = read_json(manifest_path)
        if old.get("data_hash") == data_hash and old.get("docs_per_shard") == docs_per_shard and all(
                (out / s["file"]).is_file() for s in old["shards"]):
            return old
    docs = list(corpus.values())
    shards = []
    for start in range(0, len(docs), docs_per_shard):
        chunk = docs[start:start + docs_per_shard]
        name = f"corpus-{len(shards):05d}.parquet"
        table = pa.table({
            "id": pa.array([d.id for d in chunk], pa.string()),
            "title": pa.array([d.title for d in chunk], pa.string()),
            "text": pa.array([d.text for d in chunk], pa.string()),
        })
        with atomic_path(out / name) as tmp:
            pq.write_table(table, tmp)
        shards.append({"file": name, "count": len(chunk), "first": start})
    manifest = {"kind": "corpus", "num_docs": len(docs), "docs_per_shard": docs_per_shard, "shards": shards,
                "data_hash": data_hash, "source": source}
    write_json(manifest_path, manifest)
    return manifest


def read_manifest(folder: str | os.PathLike) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DataError(str(path), None, "no shard manifest: this folder was not written by densepipe (or the "
                        "write did not finish).", "run `densepipe prepare` (or the stage that makes it) again.")
    return read_json(path)


def iter_corpus_shards(folder: str | os.PathLike) -> Iterator[tuple[dict, list[Document]]]:
    folder = Path(folder)
    for shard in read_manifest(folder)["shards"]:
        table = pq.read_table(folder / shard["file"])
        cols = table.to_pydict()
        yield shard, [Document(id=i, title=t, text=x) for i, t, x in zip(cols["id"], cols["title"], cols["text"])]


def read_corpus_shards(folder: str | os.PathLike) -> Corpus:
    return {d.id: d for _, docs in iter_corpus_shards(folder) for d in docs}


class ShardCorpus(Mapping):
    """A prepared corpus as a read-only mapping id -> Document over its Parquet shards.

    Its size and content hash come from the manifest; ``batches`` streams documents a shard at a time and
    ``present`` checks ids by reading only the id column, so neither holds the corpus. Any other access (a
    lookup, iteration) reads every shard into memory once: the stages that need all texts at hand (training,
    HyDE) pay for it, search and indexing do not.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self._docs: Corpus | None = None

    @property
    def data_hash(self) -> str:
        return self.manifest["data_hash"]

    def __len__(self) -> int:
        return int(self.manifest["num_docs"])

    def _all(self) -> Corpus:
        if self._docs is None:
            self._docs = read_corpus_shards(self.folder)
        return self._docs

    def __getitem__(self, doc_id: str) -> Document:
        return self._all()[doc_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._all()

    def batches(self, size: int) -> Iterator[list[Document]]:
        """Documents in corpus order, ``size`` at a time, one shard in memory at a time."""
        for _, docs in iter_corpus_shards(self.folder):
            for start in range(0, len(docs), size):
                yield docs[start:start + size]

    def present(self, ids: set[str]) -> set[str]:
        """The members of ``ids`` that are documents of the corpus (reads the id column only)."""
        import pyarrow.compute as pc

        if not ids:
            return set()
        wanted = pa.array(sorted(ids), pa.string())
        found: set[str] = set()
        for shard in self.manifest["shards"]:
            col = pq.read_table(self.folder / shard["file"], columns=["id"]).column("id")
            found.update(col.filter(pc.is_in(col, value_set=wanted)).to_pylist())
        return found


def write_queries(queries: Queries, path: str | os.PathLike) -> None:
    table = pa.table({"id": pa.array(list(queries), pa.string()), "text": pa.array(list(queries.values()), pa.string())})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_queries_parquet(path: str | os.PathLike) -> Queries:
    cols = pq.read_table(path).to_pydict()
    return dict(zip(cols["id"], cols["text"]))


def read_parquet_uri(uri: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file by local path or by any pyarrow filesystem URI (s3://bucket/key?endpoint_override=…)."""
    if "://" not in uri:
        return pq.read_table(uri, columns=columns)
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(uri)
    return pq.read_table(path, filesystem=fs, columns=columns)
