"""The training stage: build examples from mined tables (or qrels alone), hold out queries, fine-tune on Ray
Train's TorchTrainer (one worker here by default; ``engine="local"`` runs the same task in-process), and save a
sentence-transformers folder with its training record, loss log and loss curve beside it.

Output folder layout::

    OUTPUT/checkpoint/checkpoint.pt   resumable state (removed once the model is saved)
    OUTPUT/model/                     SentenceTransformer(OUTPUT/model) loads it; densepipe_training.json inside
    OUTPUT/loss.json, OUTPUT/loss.png the loss per step and the held-out metrics
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retriever.atomic import read_json, write_json
from retriever.encoders import TRAINING_INFO, EncoderConfig, model_hash, resolve_model
from retriever.training.contrastive import ContrastiveTrainer, TrainConfig, TrainState
from retriever.training.examples import (TrainingExample, examples_from_mined, examples_from_qrels,
                                         examples_hash, split_held_out)
from retriever.types import ConfigError, Document

from pipelines.runtime import RayEnv

log = logging.getLogger("densepipe.train")


@dataclass(frozen=True)
class TrainJob:
    dataset: str
    output: str
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    split: str = "train"
    pairs: tuple[str, ...] = ()  # mined Parquet tables; none: (query, positive) pairs from the qrels
    held_out: float = 0.1  # fraction of training queries kept aside to evaluate during training
    eval_docs: int = 1000  # tower="both": held-out evaluation ranks the judged documents + this many others
    config: TrainConfig = field(default_factory=TrainConfig)
    engine: str = "ray"  # "ray" (TorchTrainer) or "local"
    num_workers: int = 1
    ray: RayEnv = RayEnv()  # with storage, workers train in node-local folders and rank 0 uploads the model
    docs_per_shard: int = 50_000
    max_docs: int | None = None
    embeddings: str | None = None  # tower="query": the base model's corpus embeddings (default: the work cache's)
    doc_encoder: EncoderConfig | None = None  # ... and the settings they were encoded with (default: the model's)
    teacher: str | None = None  # loss = "distill": a TREC run of the training queries whose scores are the targets

    def __post_init__(self) -> None:
        if self.engine not in ("ray", "local"):
            raise ConfigError(f"train engine must be 'ray' or 'local', got {self.engine!r}.")
        if self.num_workers < 1:
            raise ConfigError("train num_workers must be >= 1.")
        if not 0 <= self.held_out < 1:
            raise ConfigError(f"train held_out must be in [0, 1), got {self.held_out}.")
        if (self.config.loss == "distill") != bool(self.teacher):
            raise ConfigError("train: the distill loss learns from a teacher run and a teacher run is only read by "
                              "it: set loss = 'distill' with teacher = a TREC run of the training queries "
                              "(`densepipe generate-queries --teacher` writes one), or neither.")


@dataclass
class TrainTask:
    """Everything one training worker needs, picklable, so Ray can ship it; ``run`` is the worker's body."""

    job: TrainJob
    fingerprint: str
    examples: list[TrainingExample]
    held_out: dict  # query id -> {doc id: grade}
    query_text: dict
    doc_text: dict
    positives: dict
    doc_ids: list[str] | None = None  # tower="query": fixed document vectors, in this order
    doc_matrix: np.ndarray | None = None
    crash_at: int | None = None
    output_dir: str | None = None  # where this worker writes (a node-local folder with storage); None: job.output
    base_name: str | None = None  # the base model as the driver names it (workers may hold a fetched copy)
    teacher: dict | None = None  # the distill loss's run, the training queries' entries only

    def run(self, rank: int = 0, world_size: int = 1, report=None) -> TrainState:
        import torch
        from sentence_transformers import SentenceTransformer

        job, out = self.job, Path(self.output_dir or self.job.output)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = prepare_distributed(SentenceTransformer(resolve_model(job.model), device=device), world_size)
        vectors = None
        if self.doc_matrix is not None:
            vectors = ({d: i for i, d in enumerate(self.doc_ids)}, self.doc_matrix)
        trainer = ContrastiveTrainer(model, job.config, self.examples, self.query_text, self.doc_text,
                                     self.positives, out / "checkpoint", self.fingerprint, vectors,
                                     self._evaluator() if self.held_out else None, report, rank, world_size,
                                     self.crash_at, self.teacher)
        state = trainer.fit()
        if rank == 0:
            self._save(getattr(model, "module", model), state)
        return state

    def _evaluator(self):
        """Held-out nDCG@10 and Recall@100: exact search over the whole corpus's fixed vectors (tower="query"),
        or over the held-out queries' judged documents + ``eval_docs`` sampled others, re-encoded by the model
        being trained (tower="both": a re-ranking figure, higher than a full-corpus one)."""
        from retriever.eval import evaluate

        qids = sorted(self.held_out)
        if self.doc_matrix is not None:
            doc_ids, fixed = self.doc_ids, self.doc_matrix
        else:
            judged = {d for q in qids for d in self.held_out[q]}
            others = sorted(set(self.doc_text) - judged)
            rng = np.random.default_rng(self.job.config.seed)
            sample = rng.choice(len(others), size=min(self.job.eval_docs, len(others)), replace=False)
            doc_ids, fixed = sorted(judged | {others[i] for i in sample}), None

        def run(model) -> dict:
            from retriever.encoders import BiEncoder

            enc = BiEncoder(EncoderConfig(self.job.model, batch_size=64), model=model)
            xq = enc.encode_queries([self.query_text[q] for q in qids])
            xb = fixed if fixed is not None else enc.encode_documents(
                [Document(id=d, text=self.doc_text[d]) for d in doc_ids])
            scores = xq @ xb.T
            top = np.argsort(-scores, axis=1)[:, :100]
            results = {q: {doc_ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(qids)}
            res = evaluate(self.held_out, results, ["ndcg@10", "recall@100"])
            out = {k.replace("@", "_at_"): round(v, 5) for k, v in res.aggregate.items()}
            from retriever.eval.geometry import geometry

            # alignment of the held-out judged pairs, uniformity of the documents searched and of the queries
            return {**out, **geometry(xq, qids, xb, doc_ids, self.held_out, seed=self.job.config.seed)}

        return run

    def _save(self, model, state: TrainState) -> None:
        from sentence_transformers import SentenceTransformer

        job = self.job
        if job.config.tower == "query":
            from sentence_transformers.models import Router

            base = SentenceTransformer(resolve_model(job.model), device="cpu")
            router = Router.for_query_document(query_modules=list(model._modules.values()),
                                               document_modules=list(base._modules.values()))
            model = SentenceTransformer(modules=[router], device="cpu", similarity_fn_name=base.similarity_fn_name)
        save_trained(model, Path(self.output_dir or job.output), self.record(state), state,
                     f"{job.model} on {job.dataset} ({job.config.loss}, tower={job.config.tower})")

    def record(self, state: TrainState) -> dict:
        from pipelines.encode import _versions

        job = self.job
        info = {"fingerprint": self.fingerprint, "base_model": self.base_name or job.model,
                "base_model_hash": model_hash(resolve_model(job.model)), "dataset": job.dataset,
                "split": job.split, "pairs": list(job.pairs), "examples": len(self.examples),
                "examples_hash": examples_hash(self.examples), "held_out_queries": len(self.held_out),
                "config": job.config.to_dict(), "steps": state.step, "train_seconds": round(state.seconds, 1),
                "final_loss": state.losses[-1]["loss"] if state.losses else None, "held_out_evals": state.evals,
                "engine": job.engine, "num_workers": job.num_workers, "versions": _versions()}
        if job.config.tower == "query":
            info["document_encoder"] = self.base_name or job.model
            info["document_encoder_hash"] = info["base_model_hash"]
        if job.teacher:
            info["teacher"] = {"run": job.teacher, "queries": len(self.teacher or {})}
        if job.config.learn_temperature and state.losses:  # where the learned temperature ended
            info["final_temperature"] = state.losses[-1].get("temperature")
        return info


def absolute_paths(job):
    """The job with its output (and a local model folder) as absolute paths."""
    from dataclasses import replace

    model = Path(job.model).expanduser()
    return replace(job, output=str(Path(job.output).expanduser().resolve()),
                   model=str(model.resolve()) if model.is_dir() else job.model)


def save_trained(model, out: Path, info: dict, state: TrainState, title: str) -> None:
    """OUT/model (a sentence-transformers folder with its training record inside), OUT/loss.json, OUT/loss.png;
    the folder appears whole (written aside, then renamed) and the checkpoint goes once it is there."""
    from retriever.training.curves import plot_losses

    final, tmp = out / "model", out / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp))
    write_json(tmp / TRAINING_INFO, info)
    if info.get("document_encoder"):
        _query_tower_card(tmp, info)
    write_json(out / "loss.json", {"losses": state.losses, "evals": state.evals})
    plot_losses(state.losses, out / "loss.png", title, state.evals)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    shutil.rmtree(out / "checkpoint", ignore_errors=True)


def _query_tower_card(folder: Path, info: dict) -> None:
    """A query-tower model routes queries and documents to different weights; plain ``encode()`` takes the
    document route. Say so at the top of the folder's model card."""
    card = folder / "README.md"
    rest = card.read_text() if card.is_file() else ""
    card.write_text(f"""# Query tower fine-tuned by densepipe

Queries go to the fine-tuned weights, documents to the base model's ({info["document_encoder"]}), so the
corpus vectors of the base model are reused as they are. **Use the query route for queries**:

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{folder.parent.name}/model")
q = model.encode_query(["what causes malaria?"])        # the fine-tuned query weights
d = model.encode_document(["Malaria is caused by ..."])  # the base model's document weights
```

Plain `model.encode(...)` takes the document route (the base model): it returns document vectors, not query
vectors. Training record: `densepipe_training.json`.

""" + rest)


def _fingerprint(job: TrainJob, examples: list[TrainingExample], held: list[str], teacher: dict | None = None) -> str:
    config = job.config.fingerprint_dict()
    parts = [config, examples_hash(examples), held, model_hash(resolve_model(job.model)), job.eval_docs]
    if teacher is not None:
        parts.append(hashlib.sha256(json.dumps(teacher, sort_keys=True).encode()).hexdigest())
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_task(job: TrainJob, crash_at: int | None = None) -> TrainTask:
    """Read the data, build and validate the examples, hold out queries, and (tower="query") load the base
    model's cached corpus vectors."""
    from retriever.mining import read_mined
    from pipelines.workspace import prepare

    prep = prepare(job.dataset, job.split, job.docs_per_shard, max_docs=job.max_docs)
    ds = prep.dataset
    if job.pairs:
        examples = examples_from_mined([(p, read_mined(p)) for p in job.pairs], ds.queries, ds.corpus, ds.qrels)
    else:
        examples = examples_from_qrels(ds.qrels, ds.queries, ds.corpus, f"{job.dataset} qrels/{job.split}")
    if job.config.negatives > 0 and not any(e.negative_ids for e in examples):
        raise ConfigError("train negatives > 0 needs mined pairs (--pairs from `densepipe mine`); "
                          "or set negatives = 0 for in-batch negatives only.")
    train, held = split_held_out(examples, job.held_out, job.config.seed)
    positives = {q: {d: r for d, r in docs.items() if r > 0} for q, docs in ds.qrels.items()}  # with grades
    used = {e.query_id for e in examples}
    # document texts travel to the workers only when documents are encoded there (tower="both")
    doc_text = {d: doc.joined(" ") for d, doc in ds.corpus.items()} if job.config.tower == "both" else {}
    teacher = None
    if job.teacher:
        from retriever.data import read_run

        wanted = {e.query_id for e in train}
        teacher = {q: hits for q, hits in read_run(job.teacher).items() if q in wanted}
    task = TrainTask(job, _fingerprint(job, train, held, teacher), train, {q: ds.qrels[q] for q in held},
                     {q: ds.queries[q] for q in used}, doc_text, positives, crash_at=crash_at, teacher=teacher)
    if job.config.tower == "query":
        from pipelines.encode import corpus_vectors

        doc_encoder = job.doc_encoder or EncoderConfig(job.model)
        doc_encoder.one_vector_per_document("training against fixed document vectors (tower = 'query')")
        emb = job.embeddings or prep.embeddings_dir(job.model)
        task.doc_ids, task.doc_matrix = corpus_vectors(prep.corpus_dir, emb, doc_encoder)
    return task


def finished(output: str, fingerprint: str) -> dict | None:
    """The record of the model in OUTPUT/model when it was made with exactly this fingerprint."""
    info = Path(output) / "model" / TRAINING_INFO
    if info.is_file():
        recorded = read_json(info)
        if recorded.get("fingerprint") == fingerprint:
            return recorded
    return None


def run_training(job: TrainJob, crash_at: int | None = None) -> dict:
    """Train (or skip when the output already holds this exact training's model); returns the training record."""
    job = absolute_paths(job)  # Ray Train workers run in their own working directory
    t0 = time.perf_counter()
    task = build_task(job, crash_at)
    done = finished(job.output, task.fingerprint)
    if done is not None:
        log.info("train: %s already holds this model; skipped", job.output)
        return {**done, "skipped": True, "model": str(Path(job.output) / "model")}
    log.info("train: %d examples, %d held-out queries, %s", len(task.examples), len(task.held_out), job.config)
    if job.engine == "local":
        task.run(report=log_progress)
    else:
        run_on_ray(task, "train")
    info = read_json(Path(job.output) / "model" / TRAINING_INFO)
    return {**info, "skipped": False, "wall_seconds": round(time.perf_counter() - t0, 1),
            "model": str(Path(job.output) / "model")}


def log_progress(entry: dict) -> bool:
    """Log every 10th step and every evaluation; True when it logged (Ray reports the same entries)."""
    held = {k: v for k, v in entry.items() if k.startswith("heldout_")}
    if entry["step"] % 10 == 0 or held:
        log.warning("train step %d (epoch %d): loss %.4f%s", entry["step"], entry["epoch"], entry["loss"],
                    "".join(f", {k} {v}" for k, v in held.items()))
        return True
    return False


def prepare_distributed(model, world_size: int):
    """Wrap the model in DistributedDataParallel when there are several workers. Parameters that a step does not
    use (the BERT pooler that sentence-transformers never calls, a head that sits out a step) are allowed, instead
    of DDP's "Expected to have finished reduction" crash at the first step."""
    if world_size <= 1:
        return model
    from ray.train.torch import prepare_model

    return prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})


def run_on_ray(task, name: str) -> None:
    """The one Ray Train launcher (fine-tuning and pretraining): ``task.run(rank, world_size, report)`` on
    ``task.job.num_workers`` TorchTrainer workers, each asking for ``cpus_per_worker`` CPUs (default 1) and a GPU
    when the cluster has them, checked against the nodes first; the task goes to the object store once.

    Without storage the workers write ``job.output`` directly (one machine, or a shared filesystem). With a
    storage root (``job.ray.storage``) each worker trains in a node-local folder, Ray Train keeps its run state under
    the storage root, rank 0 uploads the finished model there, and the driver brings it down into ``job.output``:
    nothing assumes the driver's disk is the workers' disk."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipelines.runtime import Storage, check_fits

    job = task.job
    job.ray.start()
    request = job.ray.request(job.num_workers)
    check_fits(request, job.num_workers, name)
    storage = Storage(job.ray.storage) if job.ray.storage else None
    key = f"{name}/{task.fingerprint}"
    model_uri = None
    if storage is not None and Path(job.model).is_dir():
        from retriever.encoders import model_hash

        stamp = model_hash(job.model)
        model_uri = storage.publish_dir(job.model, f"models/{Path(job.model).name}-{stamp}", stamp)
    task.base_name = job.model
    ref = ray.put(task)
    root = storage.root if storage else None

    def loop(config: dict) -> None:
        import tempfile

        import ray.train

        from pipelines.runtime import Storage

        ctx = ray.train.get_context()
        work = ray.get(config["task"])
        if config["model_uri"]:  # a model folder of the driver's, published to the storage
            from dataclasses import replace

            from pipelines.runtime import fetch_dir

            work.job = replace(work.job, model=str(fetch_dir(config["model_uri"])))
        if config["storage"]:
            work.output_dir = str(Path(tempfile.gettempdir()) / "densepipe-train" / config["key"].replace("/", "-"))
        work.run(ctx.get_world_rank(), ctx.get_world_size(),
                 report=lambda entry: log_progress(entry) and ray.train.report(entry))
        if config["storage"] and ctx.get_world_rank() == 0:
            Storage(config["storage"]).publish_dir(work.output_dir, config["key"], stamp=work.fingerprint)

    out = Path(job.output)
    if storage is None:
        run_config = RunConfig(name=name, storage_path=str((out / "ray").resolve()))
    elif storage.is_local:
        run_config = RunConfig(name=name, storage_path=str(Path(storage.root) / "ray-train"))
    else:
        run_config = RunConfig(name=name, storage_path=f"{storage.base}/ray-train", storage_filesystem=storage.fs)
    resources = {k: v for k, v in request.items() if v}
    trainer = TorchTrainer(loop, train_loop_config={"task": ref, "storage": root, "key": key,
                                                               "model_uri": model_uri},
                           scaling_config=ScalingConfig(num_workers=job.num_workers, use_gpu=request["GPU"] > 0,
                                                        resources_per_worker=resources),
                           run_config=run_config)
    trainer.fit()
    if storage is not None:
        _bring_down(storage.uri(key), out)


def _bring_down(uri: str, out: Path) -> None:
    """Copy a published training folder (model, loss log and curve) into ``out``; the model folder appears whole."""
    from pipelines.runtime import fetch_dir

    local = fetch_dir(uri)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(local / "model", tmp)
    for name in ("loss.json", "loss.png"):
        if (local / name).is_file():
            shutil.copy2(local / name, out / name)
    shutil.rmtree(out / "model", ignore_errors=True)
    tmp.rename(out / "model")
