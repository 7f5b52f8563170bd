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
from retriever.memory import peak_rss_bytes
from retriever.sparse.java import prepare_pyserini
from retriever.types import DataError, Queries, Run


@dataclass(frozen=True)
class BM25Config:
    k1: float = 0.9  # Anserini's defaults, used by the BEIR regressions
    b: float = 0.4
    threads: int = max(1, os.cpu_count() or 1)
    remove_query: bool = False  # drop a hit whose id equals the query id (Anserini's -removeQuery)
    heap_mb: int | None = None  # the JVM's heap; None: from the index's size (see java_heap_mb)


def flat_contents(title: str, text: str) -> str:
    """Anserini's BeirFlatCollection joins title and text with a newline."""
    return f"{title}\n{text}"


def java_heap_mb(num_docs: int) -> int:
    """The JVM heap for indexing ``num_docs`` documents: Lucene's in-memory buffer (flushed to segments when full)
    plus room for the merge and the JVM itself, 1 GB up to about 500k documents, growing to 4 GB at 7M and more."""
    return int(min(4096, max(1024, 768 + num_docs // 2000)))


def build_lucene_index(corpus, index_dir: str | os.PathLike, threads: int = 1, batch_size: int = 2_000,
                       heap_mb: int | None = None) -> Path:
    """Index ``corpus`` (a dict of Documents, or a ``ShardCorpus`` streamed a shard at a time) with Lucene; a
    finished index of the same corpus is reused, a partial one rebuilt. The JVM's heap is ``heap_mb``
    (default: from the corpus size, see ``java_heap_mb``); the indexing child's peak memory is recorded."""
    index_dir = Path(index_dir)
    stamp = index_dir / "densepipe.json"
    data_hash = getattr(corpus, "data_hash", None) or corpus_hash(corpus)
    if stamp.is_file() and read_json(stamp).get("data_hash") == data_hash:
        return index_dir
    heap = heap_mb or java_heap_mb(len(corpus))
    tmp = index_dir.with_name(f".{index_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if hasattr(corpus, "batches"):
        batches = corpus.batches(batch_size)
    else:
        docs = list(corpus.values())
        batches = (docs[i:i + batch_size] for i in range(0, len(docs), batch_size))
    empty = 0
    with Isolated("retriever.sparse.bm25:LuceneIndexWorker", str(tmp), threads, heap, what="BM25 indexing",
                  hint=_JVM_HINT) as worker:
        with tqdm(total=len(corpus), desc="bm25 index", unit="doc", mininterval=2.0) as bar:
            for batch in batches:
                empty += worker.call("add", [{"id": d.id, "contents": flat_contents(d.title, d.text)}
                                             for d in batch])
                bar.update(len(batch))
        worker.call("close")
        peak, max_heap = worker.call("peak_rss"), worker.call("max_heap")
    write_json(tmp / "densepipe.json", {"data_hash": data_hash, "num_docs": len(corpus), "empty_docs": empty,
                                        "contents": "title\\ntext", "java_heap_mb": heap,
                                        "jvm_max_heap_mb": round(max_heap / 2**20),
                                        "indexing_peak_rss_mb": round(peak / 2**20, 1)})
    if index_dir.exists():
        shutil.rmtree(index_dir)
    os.replace(tmp, index_dir)
    return index_dir


def _jvm_max_heap() -> int:
    """The running JVM's heap limit in bytes, as the JVM itself reports it."""
    from jnius import autoclass

    return int(autoclass("java.lang.Runtime").getRuntime().maxMemory())


_JVM_HINT = "Pyserini's JVM runs there; rerun, and if it repeats, report the JVM's hs_err file named above."


class LuceneIndexWorker:
    """Runs in the isolated child: Pyserini's LuceneIndexer."""

    def __init__(self, index_dir: str, threads: int, heap_mb: int):
        prepare_pyserini(heap_mb)
        from pyserini.index.lucene import LuceneIndexer

        # Lucene's in-memory buffer: half the heap (Anserini's own default, 4 GB, needs a heap larger than that)
        self._indexer = LuceneIndexer(args=["-index", index_dir, "-memoryBuffer", str(max(64, heap_mb // 2))],
                                      threads=threads)

    peak_rss = staticmethod(peak_rss_bytes)  # the isolated child's own: the JVM and its heap
    max_heap = staticmethod(_jvm_max_heap)

    def add(self, batch: list[dict]) -> int:
        """Index a batch; return how many had no text (Lucene keeps them, with no terms to match)."""
        self._indexer.add_batch_dict(batch)
        return sum(1 for d in batch if not d["contents"].strip())

    def close(self) -> None:
        self._indexer.close()


class LuceneSearchWorker:
    """Runs in the isolated child: Pyserini's LuceneSearcher with BM25."""

    def __init__(self, index_dir: str, k1: float, b: float, heap_mb: int):
        prepare_pyserini(heap_mb)
        from pyserini.search.lucene import LuceneSearcher

        self._searcher = LuceneSearcher(index_dir)
        self._searcher.set_bm25(k1, b)

    def search(self, texts: list[str], qids: list[str], k: int, threads: int) -> dict[str, list[tuple[str, float]]]:
        hits = self._searcher.batch_search(texts, qids, k=k, threads=threads)
        return {q: [(h.docid, float(h.score)) for h in hits.get(q, [])] for q in qids}

    peak_rss = staticmethod(peak_rss_bytes)  # the isolated child's own: the JVM and its heap
    max_heap = staticmethod(_jvm_max_heap)


class BM25Searcher:
    """A ``Searcher`` over a Lucene index; the JVM lives in a child process for as long as the searcher does."""

    def __init__(self, index_dir: str | os.PathLike, config: BM25Config = BM25Config()):
        if not (Path(index_dir) / "densepipe.json").is_file() and not any(Path(index_dir).glob("segments_*")):
            raise DataError(str(index_dir), None, "not a Lucene index.", "build it with `densepipe bm25` first.")
        self.config = config
        stamp = Path(index_dir) / "densepipe.json"
        heap = config.heap_mb or java_heap_mb(read_json(stamp).get("num_docs", 0) if stamp.is_file() else 0)
        self._worker = Isolated("retriever.sparse.bm25:LuceneSearchWorker", str(index_dir), config.k1, config.b,
                                heap, what="BM25 search", hint=_JVM_HINT)

    def peak_rss(self) -> int:
        """The search child's peak memory in bytes so far (the JVM's)."""
        return self._worker.call("peak_rss")

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
