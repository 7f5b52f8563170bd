"""Reading and replacing the parameters of a (O)PQ index, so centroids trained elsewhere go back into a
standard FAISS index that plain ``faiss.read_index`` loads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retriever.types import ConfigError


@dataclass(frozen=True)
class PQParams:
    centroids: np.ndarray  # (M, ksub, dsub) float32
    codes: np.ndarray  # (n, M) uint8: the stored code of every vector
    rotation: np.ndarray | None  # (d_out, d_in): the OPQ matrix A, vectors enter as A x + b
    bias: np.ndarray | None


def _split(index):
    import faiss

    index = faiss.downcast_index(index)
    transform = None
    if isinstance(index, faiss.IndexPreTransform):
        if index.chain.size() != 1:
            raise ConfigError("learned PQ supports one linear transform (OPQ) before the PQ.")
        transform = faiss.downcast_VectorTransform(index.chain.at(0))
        index = faiss.downcast_index(index.index)
    if not isinstance(index, faiss.IndexPQ) or index.pq.nbits != 8:
        raise ConfigError(f"learned PQ needs an 8-bit IndexPQ (factory 'PQm' or 'OPQm,PQm'), got "
                          f"{type(index).__name__}.")
    return transform, index


def extract_pq(index) -> PQParams:
    import faiss

    transform, pq_index = _split(index)
    pq = pq_index.pq
    centroids = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub).copy()
    codes = faiss.vector_to_array(pq_index.codes).reshape(pq_index.ntotal, pq.code_size).copy()
    rotation = bias = None
    if transform is not None:
        rotation = faiss.vector_to_array(transform.A).reshape(transform.d_out, transform.d_in).copy()
        b = faiss.vector_to_array(transform.b)
        bias = b.copy() if b.size else None
    return PQParams(centroids, codes, rotation, bias)


def with_centroids(index, centroids: np.ndarray):
    """A copy of ``index`` whose PQ codebooks are ``centroids``; stored codes and any rotation are kept."""
    import faiss

    clone = faiss.clone_index(index)
    _, pq_index = _split(clone)
    pq = pq_index.pq
    if centroids.shape != (pq.M, pq.ksub, pq.dsub):
        raise ConfigError(f"centroids of shape {centroids.shape} do not fit PQ {(pq.M, pq.ksub, pq.dsub)}.")
    faiss.copy_array_to_vector(np.ascontiguousarray(centroids, dtype=np.float32).ravel(), pq.centroids)
    if pq_index.search_type == faiss.IndexPQ.ST_SDC:
        pq.compute_sdc_table()
    return clone
