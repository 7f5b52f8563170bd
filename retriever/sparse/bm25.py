"""BM25 through Pyserini (Lucene), indexed as Pyserini's BEIR "flat" regressions do: title and text joined."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from retriever.atomic import read_json, write_json
from retriever.data.parquet import corpus_hash
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
    prepare_pyserini()
    from pyserini.index.lucene import LuceneIndexer

    tmp = index_dir.with_name(f".{index_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    indexer = LuceneIndexer(str(tmp), threads=threads)
    docs = list(corpus.values())
    for start in tqdm(range(0, len(docs), batch_size), desc="bm25 index", unit="batch"):
        indexer.add_batch_dict([{"id": d.id, "contents": flat_contents(d.title, d.text)}
                                for d in docs[start:start + batch_size]])
    indexer.close()
    write_json(tmp / "densepipe.json", {"data_hash": data_hash, "num_docs": len(docs), "contents": "title\\ntext"})
    if index_dir.exists():
        shutil.rmtree(index_dir)
    os.replace(tmp, index_dir)
    return index_dir


class BM25Searcher:
    """A ``Searcher`` over a Lucene index."""

    def __init__(self, index_dir: str | os.PathLike, config: BM25Config = BM25Config()):
        if not (Path(index_dir) / "densepipe.json").is_file() and not any(Path(index_dir).glob("segments_*")):
            raise DataError(str(index_dir), None, "not a Lucene index.", "build it with `densepipe bm25` first.")
        prepare_pyserini()
        from pyserini.search.lucene import LuceneSearcher

        self.config = config
        self._searcher = LuceneSearcher(str(index_dir))
        self._searcher.set_bm25(config.k1, config.b)

    def search(self, queries: Queries, k: int = 1000, batch_size: int = 512) -> Run:
        qids = list(queries)
        run: Run = {}
        extra = 1 if self.config.remove_query else 0
        for start in tqdm(range(0, len(qids), batch_size), desc="bm25 search", unit="batch"):
            chunk = qids[start:start + batch_size]
            hits = self._searcher.batch_search([queries[q] for q in chunk], chunk, k=k + extra,
                                               threads=self.config.threads)
            for qid in chunk:
                row = {h.docid: float(h.score) for h in hits.get(qid, [])
                       if not (self.config.remove_query and h.docid == qid)}
                run[qid] = dict(list(row.items())[:k])
        return run
