"""Alignment and uniformity against hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from retriever.eval.geometry import alignment, geometry, positive_pairs, uniformity

E1, E2, E3 = np.eye(3)


def test_alignment_by_hand():
    assert alignment(np.array([E1, E1]), np.array([E1, E2])) == pytest.approx((0 + 2) / 2)  # ||e1 - e2||² = 2
    assert alignment(np.array([E1]), np.array([-E1])) == pytest.approx(4.0)
    assert alignment(np.array([E1]), np.array([E2]), alpha=1) == pytest.approx(math.sqrt(2))
    assert alignment(np.array([[3.0, 0, 0]]), np.array([[0, 0.5, 0]])) == pytest.approx(2.0)  # normalised first


def test_uniformity_by_hand():
    assert uniformity(np.array([E1, E2])) == pytest.approx(-4.0)  # one pair at squared distance 2, t = 2
    three = uniformity(np.array([E1, -E1, E2]))  # squared distances 4, 2, 2
    assert three == pytest.approx(math.log((math.exp(-8) + 2 * math.exp(-4)) / 3))
    assert uniformity(np.array([E1, E1, E1])) == pytest.approx(0.0)  # collapsed: the worst value
    rng = np.random.default_rng(0)
    spread, bunched = rng.normal(size=(500, 16)), rng.normal(size=(500, 16)) * 0.1 + 1.0
    assert uniformity(spread) < uniformity(bunched)
    # the sample is seeded: the same value twice, and close to the full set's
    assert uniformity(spread, max_vectors=200) == uniformity(spread, max_vectors=200)
    assert abs(uniformity(spread, max_vectors=200) - uniformity(spread)) < 0.05


def test_geometry_uses_only_judged_positive_pairs_present():
    qids, doc_ids = ["q1", "q2"], ["a", "b", "c"]
    qrels = {"q1": {"a": 1, "b": 0, "zz": 2}, "q2": {"c": 2}}
    rows, cols = positive_pairs(qids, doc_ids, qrels)
    assert rows.tolist() == [0, 1] and cols.tolist() == [0, 2]  # grade 0 and a missing document are skipped
    xq, xd = np.array([E1, E2]), np.array([E1, E3, E2])
    out = geometry(xq, qids, xd, doc_ids, qrels)
    assert out["alignment"] == 0.0 and out["uniformity_queries"] == -4.0
    assert out["uniformity_docs"] == pytest.approx(-4.0)
