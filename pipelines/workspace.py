"""Where stages keep their outputs: one folder per dataset under the work root, one per model below it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from retriever.data import ValidationReport, resolve_dataset
from retriever.data.beir import BeirDataset
from retriever.data.parquet import write_queries
from retriever.data.resolve import user_dir
from retriever.encoders import document_encoder, model_hash, resolve_model


def work_root() -> Path:
    """$DRP_WORK_DIR, or ~/.cache/densepipe/work."""
    return user_dir("DRP_WORK_DIR", "work")


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip("/")).strip("_")[-60:]


@dataclass(frozen=True)
class Prepared:
    dataset: BeirDataset
    folder: Path  # the dataset's work folder
    corpus_dir: Path  # corpus Parquet shards

    @property
    def data_hash(self) -> str:
        return self.dataset.corpus.data_hash

    def lucene_index(self, threads: int = 1, heap_mb: int | None = None) -> Path:
        """The corpus's Lucene index (Pyserini's flat BEIR layout), built once per corpus content."""
        from retriever.sparse import build_lucene_index

        return build_lucene_index(self.dataset.corpus, self.folder / "lucene-flat", threads=threads, heap_mb=heap_mb)

    def embeddings_dir(self, model: str, encoder=None) -> Path:
        """Where ``model``'s corpus vectors live; a model whose documents route to its base model shares the base's.
        Documents cut into windows (``encoder``'s segment settings) live in a folder of their own."""
        model = document_encoder(resolve_model(model)) or model
        windows = ""
        if encoder is not None and encoder.segment_tokens:
            windows = f"-w{encoder.segment_tokens}s{encoder.stride}" + ("t" if encoder.segment_title else "")
        return self.folder / "embeddings" / f"{slug(model)}-{model_hash(resolve_model(model))}{windows}"


def prepare(dataset: str, split: str = "test", docs_per_shard: int = 50_000, root: Path | None = None,
            report: ValidationReport | None = None, max_docs: int | None = None, topics: str | None = None,
            qrels: str | None = None, need_qrels: bool = True, labels: bool = True) -> Prepared:
    """Validate a dataset and cut its corpus into Parquet shards, streaming (skipped when the corpus file and the
    settings are unchanged); read its queries and the ``split``'s judgments.

    ``dataset``: a BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) or an MS MARCO-style folder
    (collection.tsv, queries.SPLIT.tsv, qrels.SPLIT.tsv), or a BEIR name; ``topics`` / ``qrels``: files that
    replace the folder's queries / judgments (TREC DL topics and qrels). The queries kept are the judged ones.
    ``report``: where problems are counted; None: the data policy's (accepted record-level problems are counted
    and warned about, corruption raises; see ``retriever/data/validation.py``). The corpus stays on disk:
    ``dataset.corpus`` is a ``ShardCorpus``. ``labels=False``: the corpus alone; no queries or judgments are
    opened, whatever the folder holds (the label-free path)."""
    from retriever.data.beir import check_qrels_ids
    from retriever.data.parquet import ShardCorpus
    from retriever.data.stream import corpus_file, prepare_corpus
    from retriever.data.validation import data_policy, policy_report, warn_accepted

    source = resolve_dataset(dataset)
    if report is None:
        report = policy_report()
    # the work folder belongs to the corpus: a folder whose corpus file links another's (the label-free pairs
    # folder) shares its corpus shards, Lucene index and embeddings
    corpus_path = corpus_file(source)
    owner = corpus_path.resolve().parent.name if corpus_path.is_symlink() else source.name
    name = owner if max_docs is None else f"{owner}-first{max_docs}"
    folder = (root or work_root()) / slug(name)
    corpus_dir = folder / f"corpus-{docs_per_shard}"
    prepare_corpus(corpus_path, corpus_dir, docs_per_shard, max_docs, report, data_policy())
    corpus = ShardCorpus(corpus_dir)
    queries, judgments, qrels_path = (read_queries_qrels(source, split, report, topics, qrels, need_qrels) if labels
                                      else ({}, None, ""))
    if judgments is not None:
        found = corpus.present({d for docs in judgments.values() for d in docs})
        if max_docs is None:  # a judged document missing from the corpus is flagged (and kept, as trec_eval does)
            judgments = check_qrels_ids(judgments, queries, found, qrels_path, report)
        else:  # a slice: judgments of documents outside it are dropped, with the queries left without any
            judgments = check_qrels_ids(judgments, queries, None, qrels_path, report)
            judgments = {q: {d: r for d, r in docs.items() if d in found} for q, docs in judgments.items()}
            judgments = {q: docs for q, docs in judgments.items() if docs}
        queries = {q: queries[q] for q in judgments}
    warn_accepted(report, f"{source.name} ({split})")
    if queries:
        write_queries(queries, folder / (f"queries-{split}.parquet" if owner == source.name
                                         else f"queries-{slug(source.name)}-{split}.parquet"))
    return Prepared(BeirDataset(source.name, split, corpus, queries, judgments or {}), folder, corpus_dir)


def _first_file(folder: Path, names: list[str]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def read_queries_qrels(source: Path, split: str, report: ValidationReport | None, topics: str | None = None,
                       qrels: str | None = None, need_qrels: bool = True):
    """(queries, judgments or None, the judgments' path) of a BEIR or MS MARCO-style folder, or of the given
    topics / qrels files."""
    from retriever.data import read_qrels, read_queries, read_topics
    from retriever.types import DataError

    if topics:
        q_path = Path(topics)
    else:
        q_path = _first_file(source, ["queries.jsonl", "queries.jsonl.gz", f"queries.{split}.tsv",
                                      f"queries.{split}.tsv.gz", f"topics.{split}.tsv", f"topics.{split}.txt",
                                      "queries.tsv", "queries.tsv.gz"])
        if q_path is None and not need_qrels:  # a corpus alone (pretraining, or preparing a label-free corpus)
            return {}, None, ""
        if q_path is None:
            raise DataError(str(source), None, f"no queries for split {split!r} (queries.jsonl, queries.{split}.tsv, "
                            f"topics.{split}.tsv or queries.tsv).", "add the queries file, or pass --topics FILE.")
    read = read_queries if ".jsonl" in q_path.name else read_topics
    queries = read(q_path, report)
    if qrels:
        r_path = Path(qrels)
    else:
        r_path = _first_file(source, [f"qrels/{split}.tsv", f"qrels.{split}.tsv", f"qrels.{split}.txt"])
    if r_path is None:
        if not need_qrels:
            return queries, None, ""
        splits = sorted(p.stem for p in (source / "qrels").glob("*.tsv")) if (source / "qrels").is_dir() else []
        raise DataError(str(source / "qrels" / f"{split}.tsv"), None, f"no qrels for split {split!r}.",
                        f"choose one of {splits}." if splits else
                        f"add qrels/{split}.tsv (BEIR) or qrels.{split}.tsv (MS MARCO), or pass --qrels FILE.")
    return queries, read_qrels(r_path, report), str(r_path)
