"""Compression variants for memory-constrained deployment, the Pareto front of memory vs quality, and the
budget planner that picks on it.

A variant is a named FAISS factory string plus the ParameterSpace strings to sweep; "binary" is the one
non-factory variant: sign bits of each dimension, searched by Hamming distance (``IndexBinaryFlat``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from indexes.spec import fmt_bytes
from retriever.types import DensepipeError


@dataclass(frozen=True)
class Variant:
    name: str
    factory: str  # FAISS factory string, or "binary"
    search_params: tuple[str, ...] = ("",)  # one result row per entry


def default_variants(d: int, nprobes: tuple[int, ...] = (1, 4, 16, 64)) -> list[Variant]:
    """Flat, fp16, SQ8, SQ4, PQ m in {8..96}, OPQ+PQ, 4-bit fast-scan PQ, IVF-PQ (nprobe sweep), HNSW over PQ
    codes, and sign bits — each only where the dimension allows."""
    out = [Variant("flat", "Flat"), Variant("fp16", "SQfp16"), Variant("sq8", "SQ8"), Variant("sq4", "SQ4")]
    ms = [m for m in (8, 16, 24, 32, 48, 96) if d % m == 0]
    out += [Variant(f"pq{m}", f"PQ{m}") for m in ms]
    out += [Variant(f"opq{m}", f"OPQ{m},PQ{m}") for m in ms if m >= 16]
    out += [Variant(f"pq{m}x4fs", f"PQ{m}x4fs") for m in ms if m >= 32]
    if 48 in ms:
        out.append(Variant("ivf-pq48", "IVF{nlist},PQ48", tuple(f"nprobe={p}" for p in nprobes)))
        out.append(Variant("hnsw32-pq48", "HNSW32,PQ48", ("efSearch=128",)))
    if d % 8 == 0:
        out.append(Variant("binary", "binary"))
    return out


class SignBitIndex:
    """Sign-bit codes (d/8 bytes a vector) searched by Hamming distance; the score is d - 2 * Hamming, which is
    the inner product of the ±1 codes, so larger is better as with inner-product indexes."""

    def __init__(self, d: int):
        import faiss

        if d % 8:
            raise ValueError(f"binary codes need d divisible by 8, got {d}")
        self.d = d
        self.index = faiss.IndexBinaryFlat(d)

    @staticmethod
    def encode(x: np.ndarray) -> np.ndarray:
        return np.packbits(np.asarray(x) > 0, axis=1)

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def add(self, xb: np.ndarray) -> None:
        self.index.add(self.encode(xb))

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        H, I = self.index.search(self.encode(xq), k)
        return (self.d - 2 * H).astype(np.float32), I

    def serialized_bytes(self) -> int:
        import faiss

        return len(faiss.serialize_index_binary(self.index))


@dataclass
class SweepRow:
    name: str
    factory: str
    search_params: str
    bytes_per_vector: float
    index_bytes: int
    build_s: float
    qps: float
    metrics: dict[str, float] = field(default_factory=dict)
    pareto: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "factory": self.factory, "search_params": self.search_params,
                "bytes_per_vector": round(self.bytes_per_vector, 2), "index_bytes": self.index_bytes,
                "build_s": round(self.build_s, 3), "qps": round(self.qps, 1), **self.metrics, "pareto": self.pareto}


def mark_pareto(rows: list[SweepRow], metric: str = "ndcg@10") -> list[SweepRow]:
    """Mark the rows no other row beats on both memory (smaller) and quality (higher)."""
    ordered = sorted(rows, key=lambda r: (r.index_bytes, -r.metrics[metric]))
    best = -np.inf
    for r in ordered:
        r.pareto = r.metrics[metric] > best
        best = max(best, r.metrics[metric])
    return rows


class BudgetTooSmallError(DensepipeError):
    def __init__(self, budget: float, smallest: SweepRow, per_vector: bool):
        unit = "bytes per vector" if per_vector else "bytes"
        need = smallest.bytes_per_vector if per_vector else smallest.index_bytes
        self.budget, self.needed = budget, need
        shown = f"{need:g} bytes per vector" if per_vector else fmt_bytes(need)
        super().__init__(f"no measured variant fits a budget of {budget:g} {unit}: the smallest, "
                         f"{smallest.name!r}, needs {shown}. Fix: raise the budget to at least that.")


def pick(rows: list[SweepRow], budget: float, per_vector: bool = False, metric: str = "ndcg@10") -> SweepRow:
    """The best-quality row on the Pareto front within the budget (total index bytes, or bytes per vector)."""
    if not rows:
        raise DensepipeError("no sweep rows to pick from: run the compression sweep first.")
    size = (lambda r: r.bytes_per_vector) if per_vector else (lambda r: r.index_bytes)
    mark_pareto(rows, metric)
    fits = [r for r in rows if r.pareto and size(r) <= budget]
    if not fits:
        raise BudgetTooSmallError(budget, min(rows, key=size), per_vector)
    return max(fits, key=lambda r: (r.metrics[metric], -size(r)))
