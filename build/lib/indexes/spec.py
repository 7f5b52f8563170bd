"""Index specs: a FAISS factory string plus a ParameterSpace string, named presets, and memory estimates.

The estimate instantiates the (untrained) index from its factory string and reads FAISS's own sizes: bytes per
stored vector (codes, ids, graph links) and fixed bytes (coarse centroids, codebooks, rotation matrices), plus
the working set of training. It is checked before any training starts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from retriever.types import ConfigError, DensepipeError

# Named presets: quantization variants are factory strings, not a flag per knob. {nlist} is filled from n.
PRESETS: dict[str, str] = {
    "flat": "Flat",
    "fp16": "SQfp16",
    "sq8": "SQ8",
    "sq4": "SQ4",
    "hnsw32": "HNSW32,Flat",
    "ivf-flat": "IVF{nlist},Flat",
    "pq48": "PQ48",
    "opq48": "OPQ48,PQ48",
    "ivf-pq48": "IVF{nlist},PQ48",
    "pq48x4fs": "PQ48x4fs",
}


@dataclass(frozen=True)
class IndexSpec:
    factory: str = "Flat"  # a FAISS index_factory string or a preset name
    metric: str = "ip"  # "ip" (inner product; cosine on unit vectors) or "l2"
    search_params: str = ""  # a faiss ParameterSpace string, e.g. "nprobe=16" or "efSearch=128"
    train_size: int | None = None  # vectors sampled for training; None: enough for the index's quantizers
    seed: int = 0

    def __post_init__(self) -> None:
        if self.metric not in ("ip", "l2"):
            raise ConfigError(f"index metric must be 'ip' or 'l2', got {self.metric!r}.")

    def resolve(self, n: int) -> str:
        """The concrete factory string for ``n`` vectors (preset expanded, {nlist} filled)."""
        factory = PRESETS.get(self.factory.lower(), self.factory)
        if "{nlist}" in factory:
            factory = factory.replace("{nlist}", str(default_nlist(n)))
        return factory

    def faiss_metric(self) -> int:
        import faiss

        return faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2


def default_nlist(n: int) -> int:
    """About 4 sqrt(n) inverted lists, keeping >= 39 training points per centroid (FAISS's own warning bound)."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39 if n >= 39 else 1))


def training_size(factory: str, n: int, requested: int | None) -> int:
    """Vectors to train on: the request, else 64 points per IVF centroid and 256 per PQ centroid (capped at n)."""
    if requested is not None:
        return min(n, requested)
    need = 0
    if m := re.search(r"IVF(\d+)", factory):
        need = max(need, 64 * int(m.group(1)))
    if m := re.search(r"PQ\d+(?:x(\d+))?", factory):
        need = max(need, 256 * 2 ** int(m.group(1) or 8))
    if "SQ" in factory or "OPQ" in factory:
        need = max(need, 65_536)
    return min(n, max(need, 1))


class MemoryBudgetError(DensepipeError):
    """The index would not fit the memory budget; carries the numbers."""

    def __init__(self, factory: str, n: int, needed: int, budget: int):
        self.factory, self.n, self.needed, self.budget = factory, n, needed, budget
        super().__init__(f"index {factory!r} over {n:,} vectors needs about {fmt_bytes(needed)} "
                         f"({needed:,} bytes) but the memory budget is {fmt_bytes(budget)} ({budget:,} bytes). "
                         f"Fix: raise --memory-budget to at least {fmt_bytes(needed)}, or pick a smaller variant "
                         f"(e.g. 'IVF{{nlist}},PQ48', 'PQ48x4fs', 'SQ8').")


@dataclass(frozen=True)
class MemoryEstimate:
    factory: str
    n: int
    d: int
    bytes_per_vector: float
    fixed_bytes: int
    train_bytes: int

    @property
    def index_bytes(self) -> int:
        return int(self.fixed_bytes + self.bytes_per_vector * self.n)

    @property
    def peak_bytes(self) -> int:
        """The index plus the training working set (training happens before the codes are added)."""
        return max(self.index_bytes, self.fixed_bytes + self.train_bytes)

    def to_dict(self) -> dict:
        return {"factory": self.factory, "n": self.n, "d": self.d, "bytes_per_vector": self.bytes_per_vector,
                "fixed_bytes": self.fixed_bytes, "train_bytes": self.train_bytes, "index_bytes": self.index_bytes,
                "peak_bytes": self.peak_bytes}


def _vector_bytes(index) -> tuple[float, int]:
    """(bytes per vector, fixed bytes) of an index, walking FAISS's wrappers."""
    import faiss

    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        fixed = 0
        for i in range(index.chain.size()):
            vt = faiss.downcast_VectorTransform(index.chain.at(i))
            fixed += 4 * vt.d_in * vt.d_out + 4 * vt.d_out
        per, inner_fixed = _vector_bytes(index.index)
        return per, fixed + inner_fixed
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        per, fixed = _vector_bytes(index.index)
        return per + 8, fixed
    if isinstance(index, faiss.IndexHNSW):
        per, fixed = _vector_bytes(index.storage)
        m = index.hnsw.nb_neighbors(1)
        # level 0 keeps 2M links, a node reaches level l >= 1 with probability about M^-l (M links each)
        links = 2 * m + m / max(m - 1, 1)
        return per + 4 * links + 12, fixed
    if isinstance(index, faiss.IndexIVF):
        fixed = _codebook_bytes(index)  # the coarse centroids are counted in estimate_memory
        if isinstance(index, faiss.IndexIVFPQ) and index.metric_type == faiss.METRIC_L2 and index.by_residual:
            fixed += 4 * index.nlist * index.pq.M * index.pq.ksub  # precomputed residual tables
        return float(index.code_size + 8), fixed
    fixed = _codebook_bytes(index)
    code_size = getattr(index, "code_size", None)
    if code_size is None:
        code_size = index.sa_code_size()
    return float(code_size), fixed


def _codebook_bytes(index) -> int:
    pq = getattr(index, "pq", None)
    if pq is not None:
        return 4 * pq.M * pq.ksub * pq.dsub
    sq = getattr(index, "sq", None)
    if sq is not None:
        return 8 * index.d
    return 0


def estimate_memory(factory: str, d: int, n: int, metric: str = "ip", train_n: int | None = None) -> MemoryEstimate:
    """Memory of ``factory`` over ``n`` vectors of dimension ``d``, without training anything."""
    import faiss

    metric_type = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    try:
        index = faiss.index_factory(d, factory, metric_type)
    except RuntimeError as e:
        raise ConfigError(f"invalid FAISS factory string {factory!r} for d={d}: {str(e).strip().splitlines()[-1]}"
                          ) from e
    per, fixed = _vector_bytes(index)
    inner = faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexIVF):
        fixed += 4 * d * inner.nlist  # coarse centroids, added by training
    if train_n is None:
        train_n = training_size(factory, n, None) if not index.is_trained else 0
    return MemoryEstimate(factory, n, d, per, int(fixed), int(2 * 4 * d * train_n))


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "k": 10**3, "m": 10**6, "g": 10**9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str | int) -> int:
    """'50MB' -> 50_000_000, '2GiB' -> 2_147_483_648, 1234 -> 1234."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ConfigError(f"cannot read {text!r} as a size; write e.g. 50MB, 1.5GiB or a byte count.")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def check_budget(estimate: MemoryEstimate, budget: int | None) -> None:
    if budget is not None and estimate.peak_bytes > budget:
        raise MemoryBudgetError(estimate.factory, estimate.n, estimate.peak_bytes, budget)
