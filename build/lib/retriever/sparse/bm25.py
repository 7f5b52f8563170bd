"""BM25 through Pyserini (Lucene), indexed as Pyserini's BEIR "flat" regressions do: title and text joined.

The JVM never runs in the caller's process: indexing and searching happen in an ``Isolated`` child (see
``retriever/isolated.py``), so the JVM owns its signals there whatever the caller starts later (Ray installs
fatal-signal handlers that turn the JVM's internal SIGSEGVs into aborts), and a JVM crash is a ``WorkerCrashed``
error naming the signal instead of the death of the pipeline."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from retriever.atomic import read_json, write_json
from retriever.data.parquet import corpus_hash
from retriever.isolated import Isolated
from retriever.sparse.java import prepare_pyserini
from retriever.types import Corpus, DataError, Queries, Run


@dataclass(frozen=True)
class BM25Config:
    k1: float = 0.9  # Anserini's defaults, used by the BEIR regressions
    b: float = 0.4
    threads: int = max(1, os.cpu_count() or 1)
    remove_query: bool = False  # drop a hit whose id equals the query id (Anserini's -removeQuery)


def flat_contents(title: str, text: str) -> str:
    """Anserini's BeirFlatCollection joins title and text with a newline."""
    return f"{title}\n{text}"


def build_lucene_index(corpus: Corpus, index_dir: str | os.PathLike, threads: int = 1,
                       batch_size: int = 2_000) -> Path:
    """Index ``corpus`` with Lucene; a finished index of the same corpus is reused, a partial one rebuilt."""
    index_dir = Path(index_dir)
    stamp = index_dir / "densepipe.json"
    data_hash = corpus_hash(corpus)
    if stamp.is_file() and read_json(stamp).get("data_hash") == data_hash:
        return index_dir
    tmp = index_dir.with_name(f".{index_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    docs = list(corpus.values())
    empty = 0
    with Isolated("retriever.sparse.bm25:LuceneIndexWorker", str(tmp), threads, what="BM25 indexing",
                  hint=_JVM_HINT) as worker:
        for start in tqdm(range(0, len(docs), batch_size), desc="bm25 index", unit="batch"):
            empty += worker.call("add", [{"id": d.id, "contents": flat_contents(d.title, d.text)}
                                         for d in docs[start:start + batch_size]])
        worker.call("close")
    write_json(tmp / "densepipe.json", {"data_hash": data_hash, "num_docs": len(docs), "empty_docs": empty,
                                        "contents": "title\\ntext"})
    if index_dir.exists():
        shutil.rmtree(index_dir)
    os.replace(tmp, index_dir)
    return index_dir


_JVM_HINT = "Pyserini's JVM runs there; rerun, and if it repeats, report the JVM's hs_err file named above."


class LuceneIndexWorker:
    """Runs in the isolated child: Pyserini's LuceneIndexer."""

    def __init__(self, index_dir: str, threads: int):
        prepare_pyserini()
        from pyserini.index.lucene import LuceneIndexer

        self._indexer = LuceneIndexer(index_dir, threads=threads)

    def add(self, batch: list[dict]) -> int:
        """Index a batch; return how many had no text (Lucene keeps them, with no terms to match)."""
        self._indexer.add_batch_dict(batch)
        return sum(1 for d in batch if not d["contents"].strip())

    def close(self) -> None:
        self._indexer.close()


class LuceneSearchWorker:
    """Runs in the isolated child: Pyserini's LuceneSearcher with BM25."""

    def __init__(self, index_dir: str, k1: float, b: float):
        prepare_pyserini()
        from pyserini.search.lucene import LuceneSearcher

        self._searcher = LuceneSearcher(index_dir)
        self._searcher.set_bm25(k1, b)

    def search(self, texts: list[str], qids: list[str], k: int, threads: int) -> dict[str, list[tuple[str, float]]]:
        hits = self._searcher.batch_search(texts, qids, k=k, threads=threads)
        return {q: [(h.docid, float(h.score)) for h in hits.get(q, [])] for q in qids}


class BM25Searcher:
    """A ``Searcher`` over a Lucene index; the JVM lives in a child process for as long as the searcher does."""

    def __init__(self, index_dir: str | os.PathLike, config: BM25Config = BM25Config()):
        if not (Path(index_dir) / "densepipe.json").is_file() and not any(Path(index_dir).glob("segments_*")):
            raise DataError(str(index_dir), None, "not a Lucene index.", "build it with `densepipe bm25` first.")
        self.config = config
        self._worker = Isolated("retriever.sparse.bm25:LuceneSearchWorker", str(index_dir), config.k1, config.b,
                                what="BM25 search", hint=_JVM_HINT)

    def search(self, queries: Queries, k: int = 1000, batch_size: int = 512) -> Run:
        qids = list(queries)
        run: Run = {}
        extra = 1 if self.config.remove_query else 0
        for start in tqdm(range(0, len(qids), batch_size), desc="bm25 search", unit="batch"):
            chunk = qids[start:start + batch_size]
            hits = self._worker.call("search", [queries[q] for q in chunk], chunk, k + extra, self.config.threads)
            for qid in chunk:
                row = {d: s for d, s in hits[qid] if not (self.config.remove_query and d == qid)}
                run[qid] = dict(list(row.items())[:k])
        return run

    def close(self) -> None:
        self._worker.close()
