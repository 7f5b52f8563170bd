"""Sharded search vs one raw FAISS index of the same type over the same vectors, side by side in one run.

Reports QPS of each and the ratio (sharded / raw), and checks that the sharded results equal the raw ones for
exact (Flat) indexes. Vectors: the SciFact embeddings the encode stage cached (when present) and seeded
synthetic 384-d vectors (clustered, unit norm) for a larger collection.

    python benchmarks/sharded_search.py [--synthetic-n 100000] [--shards 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from provenance import provenance  # noqa: E402 (benchmarks/ on the path first)


def synthetic(n: int, d: int, nq: int, seed: int = 0, rank: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors with the low intrinsic dimension of text embeddings: a random linear map of a ``rank``-d
    Gaussian latent plus 10% isotropic noise (pure isotropic noise in 384-d would make every neighbour
    equally far and no index, exact or not, meaningful)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((rank, d)).astype("float32") / np.sqrt(rank)

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, d), dtype=np.float32)
        for start in range(0, m, 100_000):  # in chunks, to keep the temporaries small
            b = min(100_000, m - start)
            x = rng.standard_normal((b, rank), dtype=np.float32) @ W
            x += 0.1 * rng.standard_normal((b, d), dtype=np.float32)
            out[start:start + b] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return draw(n), draw(nq)


def best_qps(fn, nq: int, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return nq / min(times)


def compare(name: str, xb: np.ndarray, xq: np.ndarray, factory: str, params: str, shards: int, k: int,
            repeats: int) -> dict:
    from indexes import IndexSpec, ShardedIndex, build_index
    from indexes.build import sample_for_training, train_index

    spec = IndexSpec(factory, search_params=params)
    raw, info = build_index(xb, spec)
    # shards are trained once, together, as the index stage does; the trained empty index is the raw one's
    trained = None
    if info.train_s > 0:
        trained, _ = train_index(sample_for_training(xb, info.train_n, spec.seed), spec, len(xb))
    parts = [build_index(part, spec, trained=trained, n_total=len(xb))[0] for part in np.array_split(xb, shards)]
    sharded = ShardedIndex(parts, shared_quantizer=trained is not None)
    unmerged = ShardedIndex(parts, shared_quantizer=trained is not None, merge=False)
    D_raw, I_raw = raw.search(xq, k)
    D_sh, I_sh = sharded.search(xq, k)
    D_un, I_un = unmerged.search(xq, k)
    qps_raw = best_qps(lambda: raw.search(xq, k), len(xq), repeats)
    qps_sh = best_qps(lambda: sharded.search(xq, k), len(xq), repeats)
    qps_un = best_qps(lambda: unmerged.search(xq, k), len(xq), repeats)
    row = {"vectors": name, "n": len(xb), "d": xb.shape[1], "queries": len(xq), "k": k, "factory": spec.resolve(
        len(xb)), "search_params": params, "shards": shards, "merged_on_load": sharded.merged,
        "qps_raw_faiss": round(qps_raw, 1), "qps_sharded": round(qps_sh, 1),
        "ratio_sharded_over_raw": round(qps_sh / qps_raw, 3),
        "qps_shard_by_shard_topk_merge": round(qps_un, 1), "ratio_shard_by_shard_over_raw": round(qps_un / qps_raw, 3),
        "shard_by_shard_same_result_set": round(float(np.mean([len(set(a) & set(b)) / k
                                                                for a, b in zip(I_raw, I_un)])), 6)}
    # equal ranks, and equal result sets (a rank can swap between two scores 1e-7 apart: BLAS sums in another
    # order over a shard than over the whole matrix)
    row["same_id_at_same_rank"] = round(float((I_raw == I_sh).mean()), 6)
    row["same_result_set"] = round(float(np.mean([len(set(a) & set(b)) / k for a, b in zip(I_raw, I_sh)])), 6)
    row["max_score_diff"] = float(np.abs(D_raw - D_sh).max())
    return row


def scifact_vectors():
    from pipelines.workspace import work_root
    from retriever.data.embeddings import read_embeddings

    for folder in sorted((work_root() / "scifact" / "embeddings").glob("*")):
        if (folder / "manifest.json").is_file():
            _, shards = read_embeddings(folder)
            return np.concatenate([s[1] for s in shards])
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic-n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", default=str(HERE / "results" / "sharded_search.json"))
    a = ap.parse_args()
    rows = []
    xs = scifact_vectors()
    if xs is not None:
        rng = np.random.default_rng(1)
        xq = xs[rng.integers(0, len(xs), a.queries)] + 0.05 * rng.standard_normal((a.queries, xs.shape[1]),
                                                                                  dtype=np.float32)
        rows.append(compare("scifact-minilm", xs, xq, "Flat", "", a.shards, a.k, a.repeats))
    xb, xq = synthetic(a.synthetic_n, 384, a.queries)
    rows.append(compare("synthetic", xb, xq, "Flat", "", a.shards, a.k, a.repeats))
    rows.append(compare("synthetic", xb, xq, "IVF{nlist},Flat", "nprobe=16", a.shards, a.k, a.repeats))
    rows.append(compare("synthetic", xb, xq, "HNSW32,Flat", "efSearch=128", a.shards, a.k, a.repeats))
    result = {"benchmark": "sharded_search", "rows": rows, "cpus": os.cpu_count(),
              **provenance("sharded_search.py")}
    Path(a.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
