"""Compression: sign-bit codes, the Pareto front and the budget planner, PQ parameter round trips."""

from __future__ import annotations

import numpy as np
import pytest

from indexes import IndexSpec, build_index
from indexes.compress import BudgetTooSmallError, SignBitIndex, SweepRow, default_variants, mark_pareto, pick
from indexes.pq_params import extract_pq, with_centroids
from tests.indexes.test_indexes import _brute, _data, _recall


def _row(name, size, ndcg, per_vector=None):
    return SweepRow(name, name, "", per_vector if per_vector is not None else size / 100, size, 0.0, 0.0,
                    {"ndcg@10": ndcg})


def test_planner_on_a_hand_made_front():
    rows = [_row("flat", 1536, 0.65), _row("sq8", 384, 0.649), _row("pq48", 48, 0.62), _row("pq16", 16, 0.50),
            _row("bad", 400, 0.40), _row("pq8", 8, 0.30)]
    mark_pareto(rows)
    assert [r.name for r in rows if r.pareto] == ["flat", "sq8", "pq48", "pq16", "pq8"]
    assert pick(rows, 1600).name == "flat"
    assert pick(rows, 1000).name == "sq8"
    assert pick(rows, 383).name == "pq48"
    assert pick(rows, 48).name == "pq48"
    assert pick(rows, 0.5, per_vector=True).name == "pq48"  # per_vector of pq48 is 0.48
    with pytest.raises(BudgetTooSmallError) as e:
        pick(rows, 7)
    assert e.value.needed == 8 and "needs 8 B" in str(e.value) and "raise the budget" in str(e.value)


def test_sign_bits_recall_and_size():
    xb, xq = _data(n=3000, d=64)
    _, gt = _brute(xb, xq, 10)
    index = SignBitIndex(64)
    index.add(xb)
    D, I = index.search(xq, 10)
    assert index.ntotal == 3000 and _recall(I, gt) >= 0.28  # measured 0.32 on this seeded data
    assert (np.diff(D, axis=1) <= 0).all()  # larger score first
    assert index.serialized_bytes() < 3000 * 8 + 200


def test_default_variants_respect_the_dimension():
    names = [v.name for v in default_variants(384)]
    assert {"flat", "fp16", "sq8", "sq4", "pq8", "pq96", "opq48", "ivf-pq48", "hnsw32-pq48", "binary"} <= set(names)
    assert "pq96" not in [v.name for v in default_variants(100)]


@pytest.mark.parametrize("factory", ["PQ8", "OPQ8,PQ8"])
def test_pq_params_round_trip(factory):
    xb, xq = _data(n=3000, d=32)
    index, _ = build_index(xb, IndexSpec(factory))
    p = extract_pq(index)
    assert p.centroids.shape == (8, 256, 4) and p.codes.shape == (3000, 8)
    assert (p.rotation is not None) == factory.startswith("OPQ")
    same = with_centroids(index, p.centroids)
    assert (same.search(xq, 10)[1] == index.search(xq, 10)[1]).all()
    # the reconstruction from (rotation, centroids, codes) is what FAISS scores
    recon = p.centroids[np.arange(8), p.codes].reshape(3000, 32)
    q = xq @ p.rotation.T if p.rotation is not None else xq
    D, I = index.search(xq, 5)
    assert np.allclose(D, np.take_along_axis(q @ recon.T, I, axis=1), atol=1e-4)
    moved = with_centroids(index, p.centroids * 2)
    assert np.allclose(moved.search(xq, 5)[0], 2 * D, atol=1e-4)
