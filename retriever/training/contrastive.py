"""Supervised contrastive fine-tuning of a sentence-transformers bi-encoder.

Each step takes a batch of (query, positive, hard negatives); the loss (``retriever/losses``: InfoNCE, debiased,
decoupled, supervised-contrastive, graded, or distillation from a teacher run's scores; optionally through a
gradient cache) sees every positive and negative of the batch as candidates for every query, with a query's other
known positives masked out (or, for the multi-positive losses, added and counted as positives). Optional: a learned
temperature, a momentum queue of earlier batches' documents (``queue.py``), MoCHi's synthetic hard negatives, and
cluster-formed batches (``batching.py``). Two ways to train:

- ``tower="both"`` — one shared encoder for queries and documents (DPR, sentence-transformers'
  MultipleNegativesRankingLoss); the corpus must be re-encoded afterwards.
- ``tower="query"`` — documents keep the vectors the base model gave them (precomputed, fixed) and only the
  query encoder learns, as JPQ (Zhan et al., CIKM 2021) does for its query tower: no re-encoding, so cheap to
  train and to deploy; the saved model routes documents to the base weights.

Deterministic and resumable: the batch order of epoch e is a permutation seeded by (seed, e), the negatives and
dropout of step s are seeded by (seed, s), and a checkpoint every ``checkpoint_every`` steps holds the model,
optimizer, scheduler, logs, learned temperature, queue and momentum weights, so a killed run resumed from its checkpoint ends where an unbroken one would.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from retriever.training.batching import batch_order, cluster_batches, spherical_kmeans
from retriever.training.checkpoint import TrainState, checkpoint, resume
from retriever.training.examples import TrainingExample
from retriever.training.optim import make_optimizer, take_step
from retriever.types import ConfigError

log = logging.getLogger("densepipe.train")


LOSSES = ("infonce", "debiased", "dcl", "supcon", "graded", "distill")
MULTI_POSITIVE = ("supcon", "graded")  # losses that take every judged positive of a query as a candidate


@dataclass(frozen=True)
class TrainConfig:
    """Defaults: the recipe picked on SciFact's held-out training queries (benchmarks/finetune.py), with the
    temperature learned at its own learning rate and cluster-formed batches (benchmarks/losses.py: the first of
    SciFact's held-out ranking that does not lose on CISI's test queries)."""
    epochs: int = 5
    batch_size: int = 32
    lr: float = 5e-5
    warmup: float = 0.1  # fraction of all steps with a linear warm-up, then linear decay to 0
    weight_decay: float = 0.01
    loss: str = "infonce"  # one of LOSSES (retriever/losses: infonce, debiased, dcl, supcon, graded)
    temperature: float = 0.05
    tau_plus: float = 0.1  # class prior of the debiased loss
    symmetric: bool = False  # also document -> query (InfoNCE only)
    negatives: int = 8  # mined hard negatives per query per step; 0 = in-batch negatives only
    tower: str = "query"  # "query" (documents keep the base model's vectors) or "both" (one shared encoder)
    max_seq_length: int | None = 128  # token limit while training (documents are truncated); None: the model's
    grad_cache_chunk: int | None = None  # embed in chunks of this size through a gradient cache; None: at once
    checkpoint_every: int = 25  # steps
    eval_every: int = 0  # steps between held-out evaluations; 0: after each epoch
    max_steps: int | None = None  # stop early (smoke runs)
    seed: int = 0
    # the contrastive toolbox (ADDED_FIELDS: each one's value before it existed)
    learn_temperature: bool = True  # temperature as a parameter, starting at `temperature`
    temperature_lr: float | None = 1e-2  # its learning rate (None: lr; at 5e-5 it barely moves in a fine-tuning run)
    max_positives: int = 8  # supcon / graded: a query's other judged positives added as candidates, at most
    graded_gain: str = "exponential"  # graded: 2^grade - 1, or "linear"
    queue_size: int = 0  # MoCo: earlier batches' documents as extra negatives (0: no queue)
    queue_momentum: float = 0.999  # tower="both": the momentum encoder that fills the queue
    queue_margin: float | None = 0.95  # drop queue entries above margin x the own positive's score (0/None: none)
    mix_negatives: int = 0  # MoCHi: synthetic negatives mixed from two of the hardest, per query
    mix_query: int = 0  # MoCHi: synthetic negatives mixed from the query and one of the hardest
    mix_pool: int = 16  # MoCHi: how many of the hardest negatives are mixed
    batching: str = "cluster"  # or "random": "cluster" puts queries whose positives are neighbours in one batch
    teacher_temperature: float = 1.0  # distill: the temperature of the teacher's softmax over the candidates
    teacher_weight: float = 1.0  # distill: the teacher's share of the target (the rest on the own positive)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"train loss must be one of {', '.join(LOSSES)}; got {self.loss!r}.")
        if self.tower not in ("both", "query"):
            raise ConfigError(f"train tower must be 'both' or 'query', got {self.tower!r}.")
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError("train epochs must be >= 1 and batch_size >= 2 (in-batch negatives need two).")
        if self.negatives < 0 or self.lr <= 0 or not 0 <= self.warmup < 1:
            raise ConfigError("train negatives must be >= 0, lr > 0 and warmup in [0, 1).")
        if self.symmetric and self.loss != "infonce":
            raise ConfigError("symmetric is an InfoNCE option; set loss = 'infonce' or symmetric = false.")
        if self.checkpoint_every < 1:
            raise ConfigError("train checkpoint_every must be >= 1.")
        if self.batching not in ("random", "cluster"):
            raise ConfigError(f"train batching must be 'random' or 'cluster', got {self.batching!r}.")
        if self.queue_size < 0 or self.mix_negatives < 0 or self.mix_query < 0 or self.max_positives < 0:
            raise ConfigError("train queue_size, mix_negatives, mix_query and max_positives must be >= 0.")
        if self.mix_negatives or self.mix_query:
            self.mix_config()  # validates the pool
        if self.queue_size:
            from retriever.losses import ContrastiveOptions

            ContrastiveOptions(queue_margin=self.queue_margin or None)
            if not 0 <= self.queue_momentum < 1:
                raise ConfigError(f"train queue_momentum must be in [0, 1), got {self.queue_momentum}.")
        if self.temperature_lr is not None and self.temperature_lr <= 0:
            raise ConfigError(f"train temperature_lr must be > 0, got {self.temperature_lr}.")
        if self.loss == "distill":
            from retriever.losses import DistillConfig

            DistillConfig(self.temperature, self.teacher_temperature, self.teacher_weight)
            if self.queue_size or self.mix_negatives or self.mix_query:
                raise ConfigError("the distill loss scores candidates by the teacher's run, which cannot score a "
                                  "queue's entries or MoCHi's mixed negatives: set queue_size and mix_* to 0.")
        if self.loss == "graded" and self.graded_gain not in ("linear", "exponential"):
            raise ConfigError(f"train graded_gain must be 'linear' or 'exponential', got {self.graded_gain!r}.")

    def mix_config(self):
        from retriever.losses import MixConfig

        return MixConfig(self.mix_negatives, self.mix_query, self.mix_pool)

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint_dict(self) -> dict:
        """What identifies the weights: every field but checkpointing, with the toolbox's fields left out while at
        the value they had before they existed (so models trained then keep their fingerprint)."""
        out = {k: v for k, v in self.to_dict().items() if k != "checkpoint_every"}
        for name, before in ADDED_FIELDS.items():
            if out[name] == before or (name == "temperature_lr" and not self.learn_temperature):  # unused then
                del out[name]
        return out


ADDED_FIELDS = {  # field -> the behaviour before it existed (not today's default)
    "learn_temperature": False, "temperature_lr": None, "max_positives": 8, "graded_gain": "exponential",
    "queue_size": 0, "queue_momentum": 0.999, "queue_margin": 0.95, "mix_negatives": 0, "mix_query": 0,
    "mix_pool": 16, "batching": "random", "teacher_temperature": 1.0, "teacher_weight": 1.0}


def build_loss(config: TrainConfig):
    from retriever.losses import (ContrastiveOptions, DebiasedInfoNCE, DebiasedInfoNCEConfig, DecoupledConfig,
                                  DecoupledInfoNCE, DistillConfig, Distillation, GradedConfig, GradedContrastive,
                                  InfoNCE, InfoNCEConfig, SupCon, SupConConfig)

    options = ContrastiveOptions(config.learn_temperature,
                                 config.mix_config() if config.mix_negatives or config.mix_query else None,
                                 (config.queue_margin or None) if config.queue_size else None)
    if config.loss == "debiased":
        return DebiasedInfoNCE(DebiasedInfoNCEConfig(config.temperature, config.tau_plus), options)
    if config.loss == "dcl":
        return DecoupledInfoNCE(DecoupledConfig(config.temperature), options)
    if config.loss == "supcon":
        return SupCon(SupConConfig(config.temperature), options)
    if config.loss == "distill":
        return Distillation(DistillConfig(config.temperature, config.teacher_temperature, config.teacher_weight),
                            options)
    if config.loss == "graded":
        return GradedContrastive(GradedConfig(config.temperature, config.graded_gain), options)
    return InfoNCE(InfoNCEConfig(config.temperature, config.symmetric), options)


def sample_negatives(example: TrainingExample, k: int, rng: np.random.Generator) -> list[str]:
    if k == 0 or not example.negative_ids:
        return []
    pick = rng.choice(len(example.negative_ids), size=min(k, len(example.negative_ids)), replace=False)
    return [example.negative_ids[i] for i in sorted(pick)]


def positive_mask(query_ids: Sequence[str], doc_ids: Sequence[str], positives: Mapping[str, set]):
    """(B, D) True where column c is a known positive of row r's query other than its own (column r)."""
    import torch

    return torch.tensor([[c != r and d in positives.get(q, ()) for c, d in enumerate(doc_ids)]
                         for r, q in enumerate(query_ids)], dtype=torch.bool)


def embedding_fn(model):
    """texts -> embeddings with gradients, normalized when the model is scored by cosine (as at search time)."""
    import torch
    import torch.nn.functional as F

    module = getattr(model, "module", model)  # under DistributedDataParallel
    prepare = getattr(module, "preprocess", None) or module.tokenize  # renamed in sentence-transformers 6
    device = next(module.parameters()).device
    normalize = (getattr(module, "similarity_fn_name", None) or "cosine") == "cosine"

    def encode(texts: Sequence[str]) -> torch.Tensor:
        features = {k: v.to(device) if hasattr(v, "to") else v for k, v in prepare(list(texts)).items()}
        emb = model(features)["sentence_embedding"]
        return F.normalize(emb, dim=-1) if normalize else emb

    return encode


class ContrastiveTrainer:
    """``model``: a SentenceTransformer (trained in place). ``query_text`` / ``doc_text`` map ids to texts;
    ``doc_vectors`` (ids -> row, matrix) is required for ``tower="query"``. ``positives``: every known positive
    per query (for masking; a {doc id: grade} mapping per query feeds the graded loss, a set counts grade 1).
    ``teacher``: the distill loss's pseudo-labels, a run (query id -> {doc id: score}) holding every training
    query; a document the run does not list for a query scores the query's lowest listed score, as fusion fills a
    one-sided hit. ``evaluate(model) -> dict`` runs on held-out data; ``report(dict)`` receives progress (Ray
    Train's ``report`` in a worker). ``crash_at``: kill the process after this step (tests)."""

    def __init__(self, model, config: TrainConfig, examples: Sequence[TrainingExample],
                 query_text: Mapping[str, str], doc_text: Mapping[str, str] | Callable[[str], str],
                 positives: Mapping[str, set], out_dir: str | os.PathLike, fingerprint: str,
                 doc_vectors: tuple[Mapping[str, int], np.ndarray] | None = None,
                 evaluate: Callable[[object], dict] | None = None, report: Callable[[dict], None] | None = None,
                 rank: int = 0, world_size: int = 1, crash_at: int | None = None,
                 teacher: Mapping[str, Mapping[str, float]] | None = None):
        if config.tower == "query" and doc_vectors is None:
            raise ConfigError("tower='query' trains against fixed document vectors: pass doc_vectors.")
        if not examples:
            raise ConfigError("no training examples.")
        if world_size > 1 and config.grad_cache_chunk:
            raise ConfigError("grad_cache_chunk works with one training worker; with several, the batch is split "
                              "between them already: leave grad_cache_chunk unset or use num_workers = 1.")
        if (config.loss == "distill") != (teacher is not None):
            raise ConfigError("a teacher run goes with loss = 'distill' and the distill loss needs one: pass both "
                              "or neither.")
        if teacher is not None:
            missing = sorted({e.query_id for e in examples if not teacher.get(e.query_id)})
            if missing:
                raise ConfigError(f"the teacher run scores no document for {len(missing)} training queries (e.g. "
                                  f"{missing[:3]}): make the run from the same training queries.")
        self.teacher = teacher
        self.model, self.config, self.examples = model, config, list(examples)
        self.query_text, self.positives = query_text, positives
        self.doc_text = doc_text if callable(doc_text) else doc_text.__getitem__
        self.doc_vectors = doc_vectors
        self.out = Path(out_dir)
        self.fingerprint, self.evaluate, self.report = fingerprint, evaluate, report
        self.rank, self.world_size, self.crash_at = rank, world_size, crash_at
        self.batches_per_epoch = len(batch_order(len(self.examples), config.batch_size, config.seed, 0))
        self.total_steps = config.epochs * self.batches_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)

    # -- pieces -----------------------------------------------------------------------------------------------
    def _fixed(self, ids: Sequence[str]):
        import torch

        rows, xb = self.doc_vectors
        device = next(getattr(self.model, "module", self.model).parameters()).device
        return torch.as_tensor(xb[[rows[d] for d in ids]], dtype=torch.float32, device=device)

    def _global_batch_loss(self, loss_fn, encode, qids, pos_ids, negs, mask, loss_kwargs):
        """The loss over the global batch: this worker encodes its slice (one forward pass, as
        DistributedDataParallel wants), the other workers' embeddings are gathered (see ``distributed.py``)."""
        from retriever.training.distributed import gather_rows, rank_slices

        slices = rank_slices(len(qids), self.world_size)
        mine = slices[self.rank]
        neg_start = np.cumsum([0] + [len(n) for n in negs])
        neg_order = [[int(neg_start[j]) + k for j in s for k in range(len(negs[j]))] for s in slices]
        texts = [self.query_text[qids[j]] for j in mine]
        if self.config.tower == "both":
            texts += [self.doc_text(pos_ids[j]) for j in mine] + [self.doc_text(d) for j in mine for d in negs[j]]
        emb = encode(texts)
        n_q, n_neg = len(mine), len(neg_order[self.rank])
        q = gather_rows(emb[:n_q], [len(s) for s in slices], self.rank, [j for s in slices for j in s])
        neg_ids = [d for n in negs for d in n]
        if self.config.tower == "query":
            p, n = self._fixed(pos_ids), self._fixed(neg_ids) if neg_ids else None
        else:
            p = gather_rows(emb[n_q:2 * n_q], [len(s) for s in slices], self.rank, [j for s in slices for j in s])
            n = gather_rows(emb[2 * n_q:2 * n_q + n_neg], [len(o) for o in neg_order], self.rank,
                            [i for o in neg_order for i in o]) if neg_ids else None
        if n is not None and n.shape[0] == 0:
            n = None
        return loss_fn(q, p, n, mask=mask, **loss_kwargs)

    def _other_positives(self, qids: Sequence[str], pos_ids: Sequence[str], rng: np.random.Generator
                         ) -> list[list[str]]:
        """Multi-positive losses: each row's other judged positives (at most ``max_positives``, drawn when there
        are more), as extra candidates; ones the batch already holds are not repeated."""
        have, out = set(pos_ids), []
        known = self.doc_vectors[0] if self.config.tower == "query" else None  # id -> row of the fixed vectors
        for q, p in zip(qids, pos_ids):
            others = sorted(d for d in self.positives.get(q, ()) if d != p and d not in have
                            and (known is None or d in known))
            if len(others) > self.config.max_positives:
                others = [others[i] for i in sorted(rng.choice(len(others), self.config.max_positives, replace=False))]
            have.update(others)
            out.append(others)
        return out

    def _relevance(self, qids: Sequence[str], doc_ids: Sequence[str]):
        """(B, D) the judged grade of each column's document for each row's query (0: not judged)."""
        import torch

        def grade(q: str, d: str) -> float:
            known = self.positives.get(q, ())
            return float(known.get(d, 0)) if isinstance(known, Mapping) else float(d in known)

        return torch.tensor([[grade(q, d) for d in doc_ids] for q in qids], dtype=torch.float32)

    def _teacher_scores(self, qids: Sequence[str], doc_ids: Sequence[str]):
        """(B, D) the teacher run's score of each column's document for each row's query (unlisted: the query's
        lowest listed score)."""
        import torch

        rows = []
        for q in qids:
            scores = self.teacher[q]
            floor = min(scores.values())
            rows.append([float(scores.get(d, floor)) for d in doc_ids])
        return torch.tensor(rows, dtype=torch.float32)

    def _cluster_labels(self, encode) -> np.ndarray:
        """Cluster batching: the examples' positive documents, embedded by the model before any training (the
        fixed vectors with tower="query"), clustered once — the same clusters when a run resumes."""
        import torch

        ids = [e.positive_id for e in self.examples]
        if self.config.tower == "query":
            x = self._fixed(ids).cpu().numpy()
        else:
            self.model.eval()
            with torch.no_grad():
                x = torch.cat([encode([self.doc_text(d) for d in ids[i:i + 64]])
                               for i in range(0, len(ids), 64)]).cpu().numpy()
        k = max(1, len(ids) // self.config.batch_size)
        return spherical_kmeans(x, k, self.config.seed)

    def _batches(self, epoch: int) -> list[np.ndarray]:
        cfg = self.config
        if self._labels is not None:
            return cluster_batches(self._labels, cfg.batch_size, cfg.seed, epoch)
        return batch_order(len(self.examples), cfg.batch_size, cfg.seed, epoch)

    # -- the loop ---------------------------------------------------------------------------------------------
    def fit(self) -> TrainState:
        import torch

        from retriever.losses import GradCache, GradCacheConfig
        from retriever.encoders.bi_encoder import embedding_dimension
        from retriever.training.queue import MomentumEncoder, NegativeQueue

        cfg = self.config
        module = getattr(self.model, "module", self.model)
        saved_len = module.max_seq_length
        if cfg.max_seq_length:
            module.max_seq_length = cfg.max_seq_length
        encode = embedding_fn(self.model)
        device = next(module.parameters()).device
        self._labels = self._cluster_labels(encode) if cfg.batching == "cluster" else None
        loss_fn = build_loss(cfg).to(device)
        cache = GradCache(loss_fn, GradCacheConfig(cfg.grad_cache_chunk)) if cfg.grad_cache_chunk else None
        opt, sched = make_optimizer(self.model, cfg.lr, cfg.weight_decay, self.total_steps, cfg.warmup,
                                    list(loss_fn.parameters()), cfg.temperature_lr)
        extras: dict = {"loss": loss_fn}
        queue = momentum = None
        if cfg.queue_size:
            queue = extras["queue"] = NegativeQueue(cfg.queue_size, embedding_dimension(module))
            if cfg.tower == "both":
                momentum = extras["momentum"] = MomentumEncoder(module, cfg.queue_momentum)
                key_encode = embedding_fn(momentum.model)
        state = resume(self.out, self.fingerprint, module, opt, sched, extras)
        if self.evaluate is not None and state.step == 0 and not state.evals:  # the starting point, for the curve
            self.model.eval()
            with torch.no_grad():
                state.evals.append({"step": 0, "epoch": 0, **self.evaluate(module)})
        started = time.perf_counter() - state.seconds
        self.model.train()
        while state.step < self.total_steps:
            epoch, index = divmod(state.step, self.batches_per_epoch)
            batch = self._batches(epoch)[index]
            rng = np.random.default_rng([cfg.seed, 1, state.step])
            torch.manual_seed(cfg.seed * 1_000_003 + state.step)  # dropout and mixing of this step, resumable
            rows = [self.examples[i] for i in batch]
            qids = [e.query_id for e in rows]
            pos_ids = [e.positive_id for e in rows]
            negs = [sample_negatives(e, cfg.negatives, rng) for e in rows]  # the whole batch's, on every worker
            if cfg.loss in MULTI_POSITIVE:
                negs = [n + [d for d in o if d not in n] for n, o in zip(negs, self._other_positives(qids, pos_ids, rng))]
            neg_ids = [d for n in negs for d in n]
            mask = positive_mask(qids, pos_ids + neg_ids, self.positives).to(device)
            loss_kwargs = {}
            if cfg.loss == "graded":
                loss_kwargs["relevance"] = self._relevance(qids, pos_ids + neg_ids).to(device)
            elif cfg.loss == "distill":
                loss_kwargs["relevance"] = self._teacher_scores(qids, pos_ids + neg_ids).to(device)
            if queue is not None and len(queue):
                loss_kwargs["queue"] = queue.tensor(device)
                loss_kwargs["queue_mask"] = queue.mask_for(qids, self.positives).to(device)
            if self.world_size > 1:
                loss = self._global_batch_loss(loss_fn, encode, qids, pos_ids, negs, mask, loss_kwargs)
                (loss * self.world_size).backward()  # DDP averages over workers: the sum is the global gradient
                for p in loss_fn.parameters():  # ... but the loss's own parameters are not DDP's: undo the factor
                    if p.grad is not None:
                        p.grad /= self.world_size
            else:
                queries = [self.query_text[q] for q in qids]
                if cfg.tower == "query":
                    docs = [self._fixed(pos_ids), self._fixed(neg_ids) if neg_ids else None]
                else:
                    docs = [(encode, [self.doc_text(d) for d in pos_ids]),
                            (encode, [self.doc_text(d) for d in neg_ids]) if neg_ids else None]
                if cache is not None:
                    loss = cache.step([(encode, queries), *docs], mask=mask, **loss_kwargs)
                else:
                    tensors = [g if g is None or isinstance(g, torch.Tensor) else g[0](g[1]) for g in docs]
                    loss = loss_fn(encode(queries), *tensors, mask=mask, **loss_kwargs)
                    loss.backward()
            logged = {"temperature": round(float(loss_fn.temperature().detach()), 5)} if cfg.learn_temperature else {}
            entry = take_step(opt, sched, state, started, epoch, loss, **logged)
            if queue is not None:
                keys = pos_ids + neg_ids
                if momentum is not None:
                    momentum.update(module)
                    with torch.no_grad():
                        vectors = torch.cat([key_encode([self.doc_text(d) for d in keys[i:i + 64]])
                                             for i in range(0, len(keys), 64)])
                else:
                    vectors = self._fixed(keys)
                queue.push(keys, vectors)
            end_of_epoch = state.step % self.batches_per_epoch == 0 or state.step == self.total_steps
            if self.evaluate is not None and (end_of_epoch if not cfg.eval_every
                                              else state.step % cfg.eval_every == 0 or
                                              state.step == self.total_steps):
                self.model.eval()
                with torch.no_grad():
                    metrics = self.evaluate(module)
                self.model.train()
                state.evals.append({"step": state.step, "epoch": epoch + 1, **metrics})
                entry = {**entry, **{f"heldout_{k}": v for k, v in metrics.items()}}
            if self.report is not None:
                self.report(entry)
            if self.rank == 0 and (state.step % cfg.checkpoint_every == 0 or end_of_epoch):
                checkpoint(self.out, self.fingerprint, module, opt, sched, state, extras)
            if self.crash_at is not None and state.step >= self.crash_at:
                os.kill(os.getpid(), 9)  # a hard kill, as the OOM killer or a lost node would
        self.model.eval()
        module.max_seq_length = saved_len
        return state
