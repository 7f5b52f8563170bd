"""Where stages keep their outputs: one folder per dataset under the work root, one per model below it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from retriever.data import ValidationReport, load_beir, resolve_dataset
from retriever.data.beir import BeirDataset
from retriever.data.parquet import write_corpus_shards, write_queries
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

    def embeddings_dir(self, model: str) -> Path:
        """Where ``model``'s corpus vectors live; a model whose documents route to its base model shares the base's."""
        model = document_encoder(resolve_model(model)) or model
        return self.folder / "embeddings" / f"{slug(model)}-{model_hash(resolve_model(model))}"


def prepare(dataset: str, split: str = "test", docs_per_shard: int = 50_000, root: Path | None = None,
            report: ValidationReport | None = None, max_docs: int | None = None) -> Prepared:
    """Read and validate a BEIR dataset and write its corpus as Parquet shards (skipped when unchanged).
    ``report``: where problems are counted; None: the data policy's (accepted record-level problems are counted
    and warned about, corruption raises; see ``retriever/data/validation.py``)."""
    from retriever.data.validation import policy_report, warn_accepted

    source = resolve_dataset(dataset)
    if report is None:
        report = policy_report()
    ds = load_beir(source, split, report)
    warn_accepted(report, f"{source.name} ({split})")
    if max_docs is not None:
        ds = _slice(ds, max_docs)
    folder, corpus_dir = write_corpus(ds.corpus, source, docs_per_shard, max_docs, root)
    write_queries(ds.queries, folder / f"queries-{split}.parquet")
    return Prepared(ds, folder, corpus_dir)


def write_corpus(corpus, source: Path, docs_per_shard: int, max_docs: int | None = None,
                 root: Path | None = None) -> tuple[Path, Path]:
    """Write a dataset's (already sliced) corpus as Parquet shards in its work folder, skipped when unchanged;
    returns (the dataset's work folder, the shard folder)."""
    name = source.name if max_docs is None else f"{source.name}-first{max_docs}"
    folder = (root or work_root()) / slug(name)
    corpus_dir = folder / f"corpus-{docs_per_shard}"
    write_corpus_shards(corpus, corpus_dir, docs_per_shard, source=str(source))
    return folder, corpus_dir


def _slice(ds: BeirDataset, max_docs: int) -> BeirDataset:
    """The first ``max_docs`` documents, with qrels and queries cut to match (for quick runs and tests)."""
    corpus = dict(list(ds.corpus.items())[:max_docs])
    qrels = {q: {d: r for d, r in docs.items() if d in corpus} for q, docs in ds.qrels.items()}
    qrels = {q: docs for q, docs in qrels.items() if docs}
    return BeirDataset(ds.name, ds.split, corpus, {q: ds.queries[q] for q in qrels}, qrels)
