"""Corpus and queries as Parquet shards: the unit of work of the later stages.

Shard assignment is deterministic (contiguous runs in input order), every shard is written atomically,
and a manifest records the shards and a hash of the content they were made from; ``stream.prepare_corpus``
writes them, ``ShardCorpus`` reads them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from collections.abc import Mapping
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from retriever.atomic import atomic_path, read_json
from retriever.types import Corpus, DataError, Document, Queries

MANIFEST = "manifest.json"


def hash_documents(h, docs: Iterable[Document]) -> None:
    """Feed documents (ids, titles and texts in order) into the hash ``h``: the content hash of a corpus, whether
    it is held in memory (``corpus_hash``) or streamed a shard at a time (``stream.prepare_corpus``)."""
    for doc in docs:
        for part in (doc.id, doc.title, doc.text):
            h.update(part.encode())
            h.update(b"\x00")


def corpus_hash(corpus: Corpus) -> str:
    """Content hash of a corpus (ids, titles and texts in order)."""
    h = hashlib.sha256()
    hash_documents(h, corpus.values())
    return h.hexdigest()[:16]


def queries_hash(queries: Queries) -> str:
    h = hashlib.sha256()
    for qid, text in queries.items():
        h.update(f"{qid}\x00{text}\x00".encode())
    return h.hexdigest()[:16]


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
