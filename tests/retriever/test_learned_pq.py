"""Learned PQ: distillation improves the quantized ranking on seeded data; bad configs are errors."""

from __future__ import annotations

import pytest

from indexes import IndexSpec, build_index
from indexes.pq_params import extract_pq, with_centroids
from retriever.training.learned_pq import LearnedPQConfig, distill_centroids
from retriever.types import ConfigError
from tests.indexes.test_indexes import _brute, _data, _recall


def test_distillation_lowers_loss_and_raises_recall():
    xb, xq = _data(n=3000, d=32, nq=300, seed=3)
    train_q, test_q = xq[:200], xq[200:]
    index, _ = build_index(xb, IndexSpec("PQ4"))
    p = extract_pq(index)
    _, gt = _brute(xb, test_q, 10)
    before = _recall(index.search(test_q, 10)[1], gt)
    C, losses = distill_centroids(p.centroids, p.codes, xb, train_q,
                                  LearnedPQConfig(epochs=6, lr_centroids=2e-3, candidates=50))
    after = _recall(with_centroids(index, C).search(test_q, 10)[1], gt)
    assert losses[-1] < losses[0]
    assert after > before + 0.02, (before, after)


def test_bad_learned_pq_config():
    with pytest.raises(ConfigError, match="mode"):
        LearnedPQConfig(mode="magic")
    with pytest.raises(ConfigError, match="epochs"):
        LearnedPQConfig(epochs=0)
