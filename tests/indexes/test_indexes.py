"""FAISS layer: memory estimates against FAISS's own serialized sizes, budgets, variants against brute force,
and the exact sharded merge."""

from __future__ import annotations

import numpy as np
import pytest

from indexes import (IndexSpec, MemoryBudgetError, ShardedIndex, build_index, estimate_memory, load_index,
                     merge_topk, parse_bytes, save_index)
from retriever.types import ConfigError


def _data(n=6000, d=64, nq=40, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((32, d))
    xb = (centers[rng.integers(0, 32, n)] + 0.6 * rng.standard_normal((n, d))).astype("float32")
    xq = (centers[rng.integers(0, 32, nq)] + 0.6 * rng.standard_normal((nq, d))).astype("float32")
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    return xb, xq


def _brute(xb, xq, k):
    scores = xq @ xb.T
    I = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, I, axis=1), I


def _recall(I, gt):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(I, gt)])


@pytest.mark.parametrize("factory,floor,params", [
    ("Flat", 1.0, ""), ("SQfp16", 0.99, ""), ("SQ8", 0.9, ""), ("SQ4", 0.6, ""), ("PQ16", 0.35, ""),
    ("OPQ16,PQ16", 0.35, ""), ("IVF{nlist},Flat", 0.9, "nprobe=16"), ("IVF{nlist},PQ16", 0.4, "nprobe=16"),
    ("HNSW32,Flat", 0.95, "efSearch=64"), ("PQ16x4fs", 0.18, ""),
])
def test_variants_recall_against_brute_force(factory, floor, params):
    xb, xq = _data()
    _, gt = _brute(xb, xq, 10)
    index, info = build_index(xb, IndexSpec(factory, search_params=params))
    _, I = index.search(xq, 10)
    assert _recall(I, gt) >= floor, factory
    import faiss

    actual = len(faiss.serialize_index(index))
    assert abs(info.estimate.index_bytes - actual) / actual < 0.03, (factory, info.estimate.index_bytes, actual)


def test_budget_refuses_before_training_with_numbers():
    xb, _ = _data(n=2000)
    with pytest.raises(MemoryBudgetError) as e:
        build_index(xb, IndexSpec("Flat"), memory_budget=100_000)
    err = e.value
    assert err.needed >= 2000 * 64 * 4 and err.budget == 100_000
    assert "raise --memory-budget to at least" in str(err)
    # training on the 2,000 vectors dominates PQ8's peak; the budget covers it
    index, _ = build_index(xb, IndexSpec("PQ8"), memory_budget=1_200_000)
    assert index.ntotal == 2000


def test_estimate_scales_and_bad_factory():
    flat = estimate_memory("Flat", 384, 1_000_000)
    assert flat.index_bytes == 1_536_000_000
    pq = estimate_memory("IVF4000,PQ48", 384, 1_000_000)
    # 48 code bytes + 8 id bytes per vector, 4000 x 384 float centroids, 48 x 256 x 8 floats of codebook
    assert pq.index_bytes == 56 * 1_000_000 + 4 * 384 * 4000 + 4 * 48 * 256 * 8
    with pytest.raises(ConfigError, match="invalid FAISS factory string"):
        estimate_memory("NotAnIndex", 64, 10)


def test_parse_bytes():
    assert parse_bytes("50MB") == 50_000_000 and parse_bytes("2GiB") == 2**31 and parse_bytes(7) == 7
    assert parse_bytes("1.5k") == 1500
    with pytest.raises(ConfigError):
        parse_bytes("lots")


def test_sharded_flat_equals_single_and_brute_force():
    import faiss

    xb, xq = _data(n=5000)
    D_ref, I_ref = _brute(xb, xq, 50)
    single = faiss.IndexFlatIP(xb.shape[1])
    single.add(xb)
    D1, I1 = ShardedIndex([single]).search(xq, 50)
    shards = []
    for part in np.array_split(xb, 4):
        idx = faiss.IndexFlatIP(xb.shape[1])
        idx.add(part)
        shards.append(idx)
    for merge, threads in ((True, 1), (False, 1), (False, 4)):
        sharded = ShardedIndex(shards, threads=threads, merge=merge)
        assert sharded.merged == merge and sharded.ntotal == 5000
        D4, I4 = sharded.search(xq, 50)
        assert (I4 == I1).all() and np.allclose(D4, D1, atol=1e-5)
    assert (I1 == I_ref).all() and np.allclose(D1, D_ref, atol=1e-5)


def test_shards_trained_together_merge_exactly():
    from indexes.build import sample_for_training, train_index

    xb, xq = _data(n=4000)
    spec = IndexSpec("IVF{nlist},SQ8", search_params="nprobe=8")
    trained, _ = train_index(sample_for_training(xb, 4000, 0), spec, len(xb))
    raw, _ = build_index(xb, spec, trained=trained)
    parts = [build_index(p, spec, trained=trained, n_total=len(xb))[0] for p in np.array_split(xb, 3)]
    D_raw, I_raw = raw.search(xq, 20)
    for merge in (True, False):
        sh = ShardedIndex(parts, shared_quantizer=True, merge=merge)
        D, I = sh.search(xq, 20)
        assert sh.merged == merge and (I == I_raw).all() and np.allclose(D, D_raw, atol=1e-5)
    # shards trained apart are never merged (their quantizers differ)
    apart = [build_index(p, IndexSpec("SQ8"))[0] for p in np.array_split(xb, 2)]
    assert not ShardedIndex(apart).merged


def test_merge_ties_missing_and_short_shards():
    D = [np.array([[0.9, 0.5]], "float32"), np.array([[0.9, -np.inf]], "float32")]
    I = [np.array([[1, 2]]), np.array([[10, -1]])]
    Dm, Im = merge_topk(D, I, 4)
    assert Im.tolist() == [[1, 10, 2, -1]]  # a tie at 0.9 goes to the lower shard; a missing hit goes last
    Dl, Il = merge_topk([np.array([[0.1, 0.3]], "float32")], [np.array([[4, 5]])], 3, metric="l2")
    assert Il.tolist() == [[4, 5, -1]] and np.isinf(Dl[0, 2])


def test_save_load_plain_faiss(tmp_path):
    import faiss

    xb, xq = _data(n=500)
    index, _ = build_index(xb, IndexSpec("SQ8"))
    ids = [f"doc{i}" for i in range(500)]
    save_index(tmp_path / "ix", index, ids, {"spec": "SQ8"})
    plain = faiss.read_index(str(tmp_path / "ix" / "index.faiss"))
    assert plain.ntotal == 500
    loaded, loaded_ids, manifest = load_index(tmp_path / "ix")
    assert loaded_ids == ids and manifest["ntotal"] == 500
    assert (loaded.search(xq, 5)[1] == index.search(xq, 5)[1]).all()


def test_windows_of_a_document_score_it_by_the_best_maxp_equals_brute_force():
    """A document held as several vectors (its windows) ranks by its best window: the searcher's top k documents
    and their scores equal the brute-force maximum over each document's windows, over two index parts; a
    document's ``score`` is that maximum too."""
    import faiss

    from pipelines.search import DenseSearcher, best_per_doc, first_rows, search_depth

    xb, xq = _data(n=3000, d=32, nq=30, seed=3)
    rng = np.random.default_rng(3)
    owner = np.repeat(np.arange(900), rng.integers(1, 7, size=900))[:3000]  # 1 to 6 windows a document
    assert len(owner) == 3000
    ids = [f"d{o}" for o in owner]
    parts = []
    cut = int(np.searchsorted(owner, owner[1500]))  # parts split between documents, as shards are
    for part in (xb[:cut], xb[cut:]):
        idx = faiss.IndexFlatIP(xb.shape[1])
        idx.add(part)
        parts.append(idx)
    searcher = DenseSearcher(None, ShardedIndex(parts), ids)
    assert searcher.per_doc == int(np.bincount(owner).max()) > 1
    k = 40
    run = searcher.search_vectors([f"q{i}" for i in range(len(xq))], xq, k)
    scores = xq @ xb.T
    best = np.full((len(xq), owner.max() + 1), -np.inf)
    np.maximum.at(best, (slice(None), owner), scores)  # per query, each document's best window
    for i in range(len(xq)):
        top = np.argsort(-best[i], kind="stable")[:k]
        assert list(run[f"q{i}"]) == [f"d{j}" for j in top]
        assert np.allclose(list(run[f"q{i}"].values()), best[i, top], atol=1e-5)
    assert search_depth(k, 6, 3000) == 235 and search_depth(k, 1, 3000) == k and search_depth(1000, 6, 3000) == 3000
    assert best_per_doc([("a", 3.0), ("b", 2.0), ("a", 1.0), ("c", 0.5)], 2) == {"a": 3.0, "b": 2.0}
    assert first_rows(["a", "a", "b", "c", "c"]).tolist() == [0, 2, 3]


def test_maxp_score_of_a_document_is_its_best_window():
    import faiss

    from pipelines.search import DenseSearcher

    class Fixed:
        def encode_queries(self, texts):
            return np.array([[1.0, 0.0]], dtype=np.float32)

    xb = np.array([[0.2, 1.0], [0.9, 0.1], [0.5, 0.5]], dtype=np.float32)
    index = faiss.IndexFlatIP(2)
    index.add(xb)
    searcher = DenseSearcher(Fixed(), ShardedIndex([index]), ["a", "a", "b"])
    assert searcher.score("q", ["a", "b"], "query") == pytest.approx([0.9, 0.5])
    assert searcher.search({"q": "query"}, 5) == {"q": pytest.approx({"a": 0.9, "b": 0.5})}
