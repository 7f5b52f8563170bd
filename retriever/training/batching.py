"""How training examples are grouped into batches.

- ``batch_order``: a seeded random permutation per epoch (the default).
- ``cluster_batches``: examples whose positive documents are neighbours in embedding space share a batch, so the
  in-batch negatives are hard ones (the batching of contextual document embeddings: Morris & Rush, 2024,
  "Contextual Document Embeddings", which clusters the training set and draws each batch from one cluster).
  The examples' positive-document vectors (the base model's) are clustered once by spherical k-means into
  about n / batch_size clusters (at most 1,024: past ~32k examples a cluster spans several batches); each epoch
  shuffles the clusters and the examples inside them (seeded by (seed, epoch)), lays them end to end and cuts
  batches, so a batch holds one cluster or the ends of two."""

from __future__ import annotations

import numpy as np


def batch_order(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches of one epoch (the last, smaller one dropped: in-batch negatives want full batches)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)] or [order]


MAX_CLUSTERS = 1024  # beyond ~32k examples at batch 32, clusters hold several batches' worth (still neighbours)
SAMPLE_PER_CLUSTER = 256  # the centres are fitted on at most this many points per cluster, then all assigned
CHUNK = 65_536  # rows scored against the centres at a time (memory: CHUNK x k floats)


def _nearest(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Index of the most similar centre for each row, in chunks of rows."""
    return np.concatenate([np.argmax(x[i:i + CHUNK] @ c.T, axis=1) for i in range(0, len(x), CHUNK)])


def spherical_kmeans(x: np.ndarray, k: int, seed: int, iterations: int = 20) -> np.ndarray:
    """Cluster labels of the rows of ``x`` (cosine k-means, k-means++ seeding), k at most MAX_CLUSTERS.

    The seeding keeps each point's similarity to its nearest centre so far (one matrix-vector product per new
    centre, not one per centre chosen so far); past SAMPLE_PER_CLUSTER points per cluster the centres are fitted on
    a seeded sample, as faiss's k-means does, and every row is then assigned to its nearest centre. So the cost
    is O(n d k) with k <= 1024, and memory O(n d), for a training set of millions of examples."""
    x = np.asarray(x, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    k = max(1, min(k, len(x), MAX_CLUSTERS))
    fit = x
    if len(x) > SAMPLE_PER_CLUSTER * k:
        fit = x[np.sort(rng.choice(len(x), SAMPLE_PER_CLUSTER * k, replace=False))]
    first = rng.integers(len(fit))
    c = np.empty((k, x.shape[1]), dtype=np.float32)
    c[0] = fit[first]
    best = fit @ c[0]  # each point's similarity to its nearest centre so far
    for j in range(1, k):
        dist = np.clip(1 - best, 0, None)
        total = dist.sum()
        c[j] = fit[rng.choice(len(fit), p=dist / total)] if total > 0 else fit[rng.integers(len(fit))]
        np.maximum(best, fit @ c[j], out=best)
    labels = _nearest(fit, c)
    for _ in range(1, iterations):
        for j in range(k):
            members = fit[labels == j]
            if len(members):
                m = members.sum(axis=0)
                c[j] = m / max(np.linalg.norm(m), 1e-12)
        labels = _nearest(fit, c)
    return labels if fit is x else _nearest(x, c)


def cluster_batches(labels: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """One epoch's batches from cluster ``labels`` (one per example): clusters in a seeded order, examples
    shuffled inside each, cut into full batches (the last, smaller one dropped, as ``batch_order`` does)."""
    rng = np.random.default_rng([seed, epoch, 7])
    clusters = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    order = np.concatenate([rng.permutation(clusters[i]) for i in rng.permutation(len(clusters))])
    n = len(order)
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)] or [order]
