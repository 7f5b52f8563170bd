"""How training examples are grouped into batches.

- ``batch_order``: a seeded random permutation per epoch (the default).
- ``cluster_batches``: examples whose positive documents are neighbours in embedding space share a batch, so the
  in-batch negatives are hard ones (the batching of contextual document embeddings: Morris & Rush, 2024,
  "Contextual Document Embeddings", which clusters the training set and draws each batch from one cluster).
  The examples' positive-document vectors (the base model's) are clustered once by spherical k-means into
  about n / batch_size clusters; each epoch shuffles the clusters and the examples inside them (seeded by
  (seed, epoch)), lays them end to end and cuts batches, so a batch holds one cluster or the ends of two."""

from __future__ import annotations

import numpy as np


def batch_order(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches of one epoch (the last, smaller one dropped: in-batch negatives want full batches)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)] or [order]


def spherical_kmeans(x: np.ndarray, k: int, seed: int, iterations: int = 20) -> np.ndarray:
    """Cluster labels of the rows of ``x`` (cosine k-means, k-means++ seeding)."""
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    k = max(1, min(k, len(x)))
    centers = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        dist = np.clip(1 - np.max(x @ np.stack(centers).T, axis=1), 0, None)
        total = dist.sum()
        centers.append(x[rng.choice(len(x), p=dist / total)] if total > 0 else x[rng.integers(len(x))])
    c = np.stack(centers)
    labels = np.zeros(len(x), dtype=np.int64)
    for _ in range(iterations):
        labels = np.argmax(x @ c.T, axis=1)
        for j in range(k):
            members = x[labels == j]
            if len(members):
                m = members.sum(axis=0)
                c[j] = m / max(np.linalg.norm(m), 1e-12)
    return labels


def cluster_batches(labels: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """One epoch's batches from cluster ``labels`` (one per example): clusters in a seeded order, examples
    shuffled inside each, cut into full batches (the last, smaller one dropped, as ``batch_order`` does)."""
    rng = np.random.default_rng([seed, epoch, 7])
    clusters = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    order = np.concatenate([rng.permutation(clusters[i]) for i in rng.permutation(len(clusters))])
    n = len(order)
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)] or [order]
