"""The pretraining stage: a corpus's Parquet text shards (no queries, no qrels) -> a self-supervised
contrastive task -> a sentence-transformers folder, on Ray Train (or in-process), with checkpoints, a loss
curve and the pretraining record beside the model. Output layout as the training stage's."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retriever.atomic import read_json
from retriever.encoders import TRAINING_INFO, model_hash, resolve_model
from retriever.pretraining import PretrainConfig, PretrainTrainer
from retriever.training.contrastive import TrainState
from retriever.types import ConfigError

from pipelines.runtime import RayEnv
from pipelines.train import absolute_paths, finished, log_progress, prepare_distributed, run_on_ray, save_trained

log = logging.getLogger("densepipe.pretrain")


@dataclass(frozen=True)
class PretrainJob:
    dataset: str
    output: str
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    config: PretrainConfig = field(default_factory=PretrainConfig)
    max_texts: int | None = None  # a seeded sample of the corpus (CPU budgets); None: every document
    engine: str = "ray"
    num_workers: int = 1
    ray: RayEnv = RayEnv()  # as TrainJob's: with storage, workers write node-local folders, rank 0 uploads
    docs_per_shard: int = 50_000
    max_docs: int | None = None

    def __post_init__(self) -> None:
        if self.engine not in ("ray", "local"):
            raise ConfigError(f"pretrain engine must be 'ray' or 'local', got {self.engine!r}.")


@dataclass
class PretrainTask:
    job: PretrainJob
    texts: list[str]
    fingerprint: str
    crash_at: int | None = None
    output_dir: str | None = None  # as TrainTask's
    base_name: str | None = None

    def run(self, rank: int = 0, world_size: int = 1, report=None) -> TrainState:
        import torch
        from sentence_transformers import SentenceTransformer

        job, out = self.job, Path(self.output_dir or self.job.output)
        model = SentenceTransformer(resolve_model(job.model), device="cuda" if torch.cuda.is_available() else "cpu")
        model = prepare_distributed(model, world_size)
        state = PretrainTrainer(model, job.config, self.texts, out / "checkpoint", self.fingerprint,
                                report, rank, world_size, self.crash_at).fit()
        if rank == 0:
            from pipelines.encode import _versions

            info = {"fingerprint": self.fingerprint, "base_model": self.base_name or job.model,
                    "base_model_hash": model_hash(resolve_model(job.model)), "dataset": job.dataset,
                    "texts": len(self.texts), "config": job.config.to_dict(), "steps": state.step,
                    "train_seconds": round(state.seconds, 1), "final_loss": state.losses[-1]["loss"],
                    "labels_used": "none (corpus text only)", "engine": job.engine, "versions": _versions()}
            save_trained(getattr(model, "module", model), out, info, state,
                         f"{job.config.task} pretraining of {job.model} on {job.dataset}")
        return state


def corpus_texts(job: PretrainJob) -> list[str]:
    """The corpus alone (a folder with just corpus.jsonl will do), through its Parquet shards."""
    from pipelines.workspace import prepare

    prep = prepare(job.dataset, docs_per_shard=job.docs_per_shard, max_docs=job.max_docs, need_qrels=False)
    texts = [d.joined(" ") for batch in prep.dataset.corpus.batches(10_000) for d in batch]
    texts = [t for t in texts if t.strip()]
    if job.max_texts is not None and job.max_texts < len(texts):
        pick = np.random.default_rng(job.config.seed).choice(len(texts), size=job.max_texts, replace=False)
        texts = [texts[i] for i in sorted(pick)]
    return texts


def run_pretraining(job: PretrainJob, crash_at: int | None = None) -> dict:
    job = absolute_paths(job)  # Ray Train workers run in their own working directory
    t0 = time.perf_counter()
    texts = corpus_texts(job)
    blob = json.dumps([job.config.to_dict(), job.model, model_hash(resolve_model(job.model)),
                       hashlib.sha256("\n".join(texts).encode()).hexdigest()], sort_keys=True, default=str)
    task = PretrainTask(job, texts, hashlib.sha256(blob.encode()).hexdigest()[:16], crash_at)
    info_path = Path(job.output) / "model" / TRAINING_INFO
    done = finished(job.output, task.fingerprint)
    if done is not None:
        return {**done, "skipped": True, "model": str(info_path.parent)}
    if job.engine == "local":
        task.run(report=log_progress)
    else:
        run_on_ray(task, "pretrain")
    return {**read_json(info_path), "skipped": False, "model": str(info_path.parent),
            "wall_seconds": round(time.perf_counter() - t0, 1)}
