"""Learned product quantization: train PQ codebooks (and optionally the query encoder) for ranking.

Two objectives, over fixed document codes (every document keeps its PQ code; only the centroids move, so
the result is still a standard PQ index):

- ``jpq`` — after JPQ (Zhan et al., CIKM 2021, "Jointly Optimizing Query Encoder and Product Quantization to
  Improve Retrieval Performance"): labelled (query, positive) pairs; InfoNCE of the query against the
  positive's *quantized* vector vs hard negatives that the PQ index itself ranks high; the query encoder is
  fine-tuned together with the centroids.
- ``distill`` — label-free, after Distill-VQ (Xiao et al., SIGIR 2022): the flat index is the teacher; the
  listwise KL between the teacher's and the quantized index's score distributions over candidate documents
  trains the centroids. Queries need no labels (unjudged queries and documents as pseudo-queries).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from retriever.types import ConfigError

log = logging.getLogger("densepipe.learned_pq")


@dataclass(frozen=True)
class LearnedPQConfig:
    mode: str = "distill"  # "distill" (label-free) or "jpq" (labelled, trains the query encoder too)
    epochs: int = 4
    batch_size: int = 32
    lr_centroids: float = 2e-4
    lr_encoder: float = 2e-5
    temperature: float = 0.05  # softmax temperature on inner-product scores (unit vectors)
    candidates: int = 100  # per query: teacher top-k (distill) / PQ-ranked hard negatives (jpq)
    negatives: int = 16  # hard negatives sampled per query (jpq)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("distill", "jpq"):
            raise ConfigError(f"learned PQ mode must be 'distill' or 'jpq', got {self.mode!r}.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("learned PQ epochs and batch_size must be >= 1.")


def _rotate(x, rotation, bias):
    import torch

    out = x @ torch.as_tensor(rotation).T if rotation is not None else x
    return out + torch.as_tensor(bias) if bias is not None else out


def reconstruct(centroids, codes):
    """Quantized vectors: centroid ``codes[i, m]`` of sub-space m, concatenated over m."""
    import torch

    M = centroids.shape[0]
    parts = centroids[torch.arange(M), codes.long()]  # (n, M, dsub)
    return parts.reshape(codes.shape[0], -1)


def distill_centroids(centroids: np.ndarray, codes: np.ndarray, xb: np.ndarray, xq: np.ndarray,
                      config: LearnedPQConfig, rotation: np.ndarray | None = None,
                      bias: np.ndarray | None = None) -> tuple[np.ndarray, list[float]]:
    """Label-free: fit the centroids so quantized scores rank like exact scores. Returns (centroids, losses)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    C = torch.nn.Parameter(torch.tensor(centroids, dtype=torch.float32))
    codes_t = torch.as_tensor(codes)
    xq_t = _rotate(torch.as_tensor(xq, dtype=torch.float32), rotation, bias)
    teacher = torch.as_tensor(xq, dtype=torch.float32) @ torch.as_tensor(xb, dtype=torch.float32).T
    top = teacher.topk(min(config.candidates, xb.shape[0]), dim=1).indices
    opt = torch.optim.Adam([C], lr=config.lr_centroids)
    losses = []
    for epoch in range(config.epochs):
        order = rng.permutation(len(xq))
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            idx = torch.as_tensor(order[start:start + config.batch_size])
            cand = top[idx]  # (b, c)
            recon = reconstruct(C, codes_t)  # (n, d)
            student = torch.einsum("bd,bcd->bc", xq_t[idx], recon[cand])
            t = teacher[idx].gather(1, cand)
            loss = F.kl_div(F.log_softmax(student / config.temperature, dim=1),
                            F.log_softmax(t / config.temperature, dim=1), log_target=True, reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(order))
        log.info("distill epoch %d: loss %.5f", epoch + 1, losses[-1])
    return C.detach().numpy(), losses


def jpq_train(centroids: np.ndarray, codes: np.ndarray, model, queries: Sequence[str],
              positives: Sequence[Sequence[int]], config: LearnedPQConfig, rotation: np.ndarray | None = None,
              bias: np.ndarray | None = None) -> tuple[np.ndarray, list[float]]:
    """Labelled: train centroids and the query encoder (a SentenceTransformer, updated in place) with InfoNCE
    over the positive's quantized vector, PQ-ranked hard negatives and in-batch positives."""
    import torch
    import torch.nn.functional as F

    if len(queries) != len(positives) or not queries:
        raise ConfigError("jpq_train needs one list of positive document positions per query, and some queries.")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    C = torch.nn.Parameter(torch.tensor(centroids, dtype=torch.float32))
    codes_t = torch.as_tensor(codes)
    params = [{"params": [C], "lr": config.lr_centroids},
              {"params": [p for p in model.parameters() if p.requires_grad], "lr": config.lr_encoder}]
    opt = torch.optim.AdamW(params, weight_decay=0.0)

    def encode(texts, grad: bool):
        prepare = getattr(model, "preprocess", None) or model.tokenize  # renamed in sentence-transformers 6
        features = prepare(list(texts))
        with torch.set_grad_enabled(grad):
            return _rotate(model(features)["sentence_embedding"], rotation, bias)

    def hard_negatives() -> list[np.ndarray]:
        model.eval()
        with torch.no_grad():
            recon = reconstruct(C, codes_t)
            q = torch.cat([encode(queries[i:i + 128], False) for i in range(0, len(queries), 128)])
            ranked = (q @ recon.T).topk(min(config.candidates, recon.shape[0]), dim=1).indices.numpy()
        return [np.array([d for d in row if d not in set(pos)]) for row, pos in zip(ranked, positives)]

    losses = []
    for epoch in range(config.epochs):
        negs = hard_negatives()  # refreshed each epoch from the current codebooks and encoder
        model.train()
        order = rng.permutation(len(queries))
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            pos = [int(rng.choice(positives[i])) for i in batch]
            neg = [int(d) for i in batch for d in rng.choice(negs[i], size=min(config.negatives, len(negs[i])),
                                                            replace=False)]
            docs = torch.as_tensor(pos + neg)
            recon = reconstruct(C, codes_t[docs])
            q = encode([queries[i] for i in batch], True)
            scores = q @ recon.T / config.temperature  # (b, b + negatives): in-batch positives and all negatives
            # a document that is a positive of this query is never its negative (in-batch duplicates included)
            own = [set(positives[i]) for i in batch]
            mask = torch.tensor([[int(d) in own[r] and c != r for c, d in enumerate(docs.tolist())]
                                 for r in range(len(batch))])
            scores = scores.masked_fill(mask, float("-inf"))
            labels = torch.arange(len(batch))
            loss = F.cross_entropy(scores, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        losses.append(total / len(order))
        log.info("jpq epoch %d: loss %.5f", epoch + 1, losses[-1])
    model.eval()
    return C.detach().numpy(), losses
