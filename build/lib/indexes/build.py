"""Build a FAISS index from vectors: estimate and budget check, training on a seeded sample, adding in chunks.

GPU FAISS is used when ``faiss.get_num_gpus() > 0`` (faiss-gpu installed and a GPU present) for the index types
FAISS can clone to a GPU; the result is always brought back to a CPU index, so it saves and loads anywhere.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from indexes.spec import IndexSpec, MemoryEstimate, check_budget, estimate_memory, training_size
from retriever.types import ConfigError

log = logging.getLogger("densepipe.index")


@dataclass(frozen=True)
class BuildInfo:
    factory: str
    n: int
    d: int
    train_n: int
    train_s: float
    add_s: float
    gpu: bool
    estimate: MemoryEstimate

    def to_dict(self) -> dict:
        return {"factory": self.factory, "n": self.n, "d": self.d, "train_n": self.train_n,
                "train_s": round(self.train_s, 3), "add_s": round(self.add_s, 3), "gpu": self.gpu,
                "estimate": self.estimate.to_dict()}


def gpu_available() -> bool:
    import faiss

    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def apply_search_params(index, params: str) -> None:
    """Set ParameterSpace parameters ("nprobe=16,efSearch=64") on a CPU index."""
    import faiss

    if params:
        try:
            faiss.ParameterSpace().set_index_parameters(index, params)
        except RuntimeError as e:
            raise ConfigError(f"search parameters {params!r} do not apply to this index: "
                              f"{str(e).strip().splitlines()[-1]}") from e


def sample_for_training(xb: np.ndarray, train_n: int, seed: int) -> np.ndarray:
    """A seeded uniform sample of ``train_n`` rows (all of them when train_n >= n), in index order."""
    n = len(xb)
    if train_n >= n:
        return xb
    return xb[np.sort(np.random.default_rng(seed).choice(n, size=train_n, replace=False))]


def _to_gpu(index, factory: str):
    import faiss

    try:
        return faiss.index_cpu_to_all_gpus(index), True
    except (RuntimeError, AttributeError) as e:  # not every index type has a GPU version
        log.info("index %s stays on the CPU: %s", factory, str(e).strip().splitlines()[-1])
        return index, False


def train_index(sample: np.ndarray, spec: IndexSpec, n_total: int, use_gpu: bool | None = None):
    """An empty index trained on ``sample``, sized (nlist) for ``n_total`` vectors. Returns (index, seconds)."""
    import faiss

    factory = spec.resolve(n_total)
    index = faiss.index_factory(sample.shape[1], factory, spec.faiss_metric())
    t0 = time.perf_counter()
    if not index.is_trained:
        log.info("training %s on %d vectors", factory, len(sample))
        gpu = gpu_available() if use_gpu is None else use_gpu
        work, on_gpu = _to_gpu(index, factory) if gpu else (index, False)
        work.train(np.ascontiguousarray(sample, dtype=np.float32))
        index = faiss.index_gpu_to_cpu(work) if on_gpu else work
    return index, time.perf_counter() - t0


def build_index(xb: np.ndarray, spec: IndexSpec, memory_budget: int | None = None, use_gpu: bool | None = None,
                chunk: int = 65_536, progress: bool = False, trained=None, n_total: int | None = None):
    """Return (trained and filled CPU index, BuildInfo). Refuses before training when over the budget.

    ``trained``: an empty trained index to fill instead of training one (shards of one collection share it);
    ``n_total``: the size of the whole collection, which sizes the index (nlist), when ``xb`` is one shard.
    """
    import faiss

    xb = np.ascontiguousarray(xb, dtype=np.float32)
    if xb.ndim != 2 or len(xb) == 0:
        raise ConfigError(f"build_index needs a non-empty 2-d array, got shape {xb.shape}.")
    n, d = xb.shape
    n_total = n_total or n
    factory = spec.resolve(n_total)
    train_n = training_size(factory, n_total, spec.train_size) if trained is None else 0
    estimate = estimate_memory(factory, d, n, spec.metric, train_n)
    check_budget(estimate, memory_budget)
    if trained is None:
        index, train_s = train_index(sample_for_training(xb, train_n, spec.seed), spec, n_total, use_gpu)
    else:
        index, train_s = faiss.clone_index(trained), 0.0
    gpu = gpu_available() if use_gpu is None else use_gpu
    work, on_gpu = _to_gpu(index, factory) if gpu else (index, False)
    t1 = time.perf_counter()
    for start in tqdm(range(0, n, chunk), desc=f"add {factory}", unit="chunk", disable=not progress):
        work.add(xb[start:start + chunk])
    add_s = time.perf_counter() - t1
    index = faiss.index_gpu_to_cpu(work) if on_gpu else work
    apply_search_params(index, spec.search_params)
    return index, BuildInfo(factory, n, d, min(train_n, n_total), train_s, add_s, on_gpu, estimate)
