"""The pretraining loop: batches of corpus texts in a seeded order per epoch, views from the task, the
group-wise contrastive loss, checkpoints every ``checkpoint_every`` steps and resume (same determinism as
fine-tuning: order seeded by (seed, epoch), sampling and dropout by (seed, step))."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from retriever.pretraining.spans import check_corpus
from retriever.pretraining.tasks import PretrainConfig, make_views
from retriever.training.checkpoint import TrainState, checkpoint, resume
from retriever.training.contrastive import batch_order, embedding_fn
from retriever.training.optim import make_optimizer, take_step

log = logging.getLogger("densepipe.pretrain")


class PretrainTrainer:
    def __init__(self, model, config: PretrainConfig, texts: Sequence[str], out_dir: str | os.PathLike,
                 fingerprint: str, report: Callable[[dict], None] | None = None, rank: int = 0,
                 world_size: int = 1, crash_at: int | None = None):
        if config.task == "span":
            check_corpus(list(texts), config.spans)
        elif not texts:
            check_corpus([], config.spans)
        self.model, self.config, self.texts = model, config, list(texts)
        self.out, self.fingerprint, self.report = Path(out_dir), fingerprint, report
        self.rank, self.world_size, self.crash_at = rank, world_size, crash_at
        self.batches_per_epoch = len(batch_order(len(self.texts), config.batch_size, config.seed, 0))
        self.total_steps = config.epochs * self.batches_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)

    def fit(self) -> TrainState:
        import torch

        from retriever.losses.span_prediction import GroupwiseSpanLoss, SpanLossConfig

        cfg = self.config
        module = getattr(self.model, "module", self.model)
        saved_len = module.max_seq_length
        module.max_seq_length = cfg.max_seq_length
        loss_fn = GroupwiseSpanLoss(SpanLossConfig(cfg.temperature))
        mlm, head, saved = None, None, module
        if cfg.mlm_weight > 0:
            from retriever.pretraining.mlm import MaskedLM

            mlm = MaskedLM(module, cfg.mlm_probability, cfg.seed)
            head = mlm.head
            if self.world_size > 1:  # the head's gradients are averaged across workers like the encoder's
                head = mlm.apply_head = torch.nn.parallel.DistributedDataParallel(head)
            saved = torch.nn.ModuleDict({"encoder": module, "mlm_head": mlm.head})  # the head resumes too
        trained = self.model if head is None else torch.nn.ModuleList([self.model, head])
        opt, sched = make_optimizer(trained, cfg.lr, cfg.weight_decay, self.total_steps, cfg.warmup)
        state = resume(self.out, self.fingerprint, saved, opt, sched)
        encode = by_length(embedding_fn(self.model))
        started = time.perf_counter() - state.seconds
        self.model.train()
        while state.step < self.total_steps:
            epoch, index = divmod(state.step, self.batches_per_epoch)
            batch = batch_order(len(self.texts), cfg.batch_size, cfg.seed, epoch)[index][self.rank::self.world_size]
            rng = np.random.default_rng([cfg.seed, 2, state.step])
            torch.manual_seed(cfg.seed * 1_000_003 + state.step)
            anchors, views, owner = make_views([self.texts[i] for i in batch], cfg, rng)
            anchor_vectors = encode(anchors)
            loss = loss_fn(anchor_vectors, encode(views), torch.as_tensor(owner, device=anchor_vectors.device))
            extra = {"views": len(views)}
            if mlm is not None:
                generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + state.step)
                mlm_loss = mlm.loss(self.model, [self.texts[i] for i in batch], generator)
                extra["contrastive"], extra["mlm"] = round(float(loss.detach()), 6), round(float(mlm_loss.detach()), 6)
                loss = loss + cfg.mlm_weight * mlm_loss
            loss.backward()
            entry = take_step(opt, sched, state, started, epoch, loss, **extra)
            if self.report is not None:
                self.report(entry)
            if self.rank == 0 and (state.step % cfg.checkpoint_every == 0 or state.step == self.total_steps):
                checkpoint(self.out, self.fingerprint, saved, opt, sched, state)
            if self.crash_at is not None and state.step >= self.crash_at:
                os.kill(os.getpid(), 9)
        self.model.eval()
        module.max_seq_length = saved_len
        return state


def by_length(encode: Callable, chunk: int = 32) -> Callable:
    """``encode`` over texts sorted by length in chunks of ``chunk``, put back in order: spans from one word to a
    paragraph padded to the longest in one batch would cost every span the paragraph's length."""
    import torch

    def run(texts: Sequence[str]):
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        parts = [encode([texts[i] for i in order[s:s + chunk]]) for s in range(0, len(order), chunk)]
        out = torch.cat(parts)
        return out[torch.as_tensor(np.argsort(order))]

    return run
