"""The bi-encoder: a sentence-transformers model with separate query and document paths."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from retriever.encoders.registry import resolve_model
from retriever.types import ConfigError, Document


@dataclass(frozen=True)
class EncoderConfig:
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    batch_size: int = 64
    max_seq_length: int | None = None  # None: the model's saved value
    device: str | None = None  # None: cuda when available, else cpu
    title_sep: str = " "  # BEIR's and MTEB's convention for "title text"
    dtype: str = "float32"  # of the stored vectors: float32 or float16
    threads: int | None = None  # CPU intra-op threads (torch, ONNX Runtime, OpenVINO); None: the library's default
    backend: str = "torch"  # torch | onnx | openvino (retriever.encoders.backends)
    quantize: str = "none"  # none | int8 (onnx only)
    model_dtype: str = "float32"  # the model's compute type: float32 | bfloat16 | float16 (GPU), not the vectors'
    bucket: str = "tokens"  # batches of similar token length across each call ("tokens") or sentence-transformers'
    # own ordering by character length ("chars")
    segment_tokens: int | None = None  # documents: one vector per window of this many tokens (MaxP search: a
    # document scores its best window); None: one vector per document, truncated at max_seq_length
    segment_stride: int | None = None  # tokens between window starts; None: half a window (windows overlap by half)
    segment_title: bool = False  # windows of the text, each led by the document's title (as MS MARCO's segmented
    # documents are); False: windows of title + text, the title in the first only

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"encoder batch_size must be >= 1, got {self.batch_size}.")
        if self.dtype not in ("float32", "float16"):
            raise ConfigError(f"encoder dtype must be float32 or float16, got {self.dtype!r}.")
        if self.bucket not in ("tokens", "chars"):
            raise ConfigError(f"encoder bucket must be 'tokens' or 'chars', got {self.bucket!r}.")
        if self.segment_tokens is not None and self.segment_tokens < 8:
            raise ConfigError(f"encoder segment_tokens must be >= 8 (or unset), got {self.segment_tokens}.")
        if self.segment_stride is not None and not (
                self.segment_tokens and 1 <= self.segment_stride <= self.segment_tokens):
            raise ConfigError(f"encoder segment_stride must be between 1 and segment_tokens, got "
                              f"{self.segment_stride} (segment_tokens {self.segment_tokens}).")
        from retriever.encoders.backends import check_backend

        check_backend(self.backend, self.quantize, self.model_dtype, self.device)

    def to_dict(self) -> dict:
        return asdict(self)

    def one_vector_per_document(self, what: str) -> None:
        """Refuse windows (``segment_tokens``) where ``what`` needs a single vector per document."""
        if self.segment_tokens:
            raise ConfigError(f"{what} works on one vector per document; this encoder writes a vector per window "
                              f"(segment_tokens = {self.segment_tokens}): leave segment_tokens unset.")

    @property
    def stride(self) -> int | None:
        """Tokens between document windows (None: documents are not segmented)."""
        if not self.segment_tokens:
            return None
        return self.segment_stride or max(1, self.segment_tokens // 2)


def model_hash(folder: str) -> str:
    """Content hash of a local model folder (every file's name and bytes, except a ``.cache`` folder inside it);
    the hub name for remote models. Only the part of a path below the folder is looked at, so a model that itself
    lives under ``~/.cache`` is hashed whole. Remembered per (file, size, mtime), so a model retrained in place is
    hashed afresh."""
    root = Path(folder)
    if not root.is_dir():
        return hashlib.sha256(folder.encode()).hexdigest()[:16]
    stats = []
    for rel in sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file()):
        if ".cache" not in rel.parts:
            st = (root / rel).stat()
            stats.append((str(rel), st.st_size, st.st_mtime_ns))
    return _content_hash(str(root), tuple(stats))


@lru_cache(maxsize=16)
def _content_hash(root: str, stats: tuple) -> str:
    h = hashlib.sha256()
    for rel, _, _ in stats:
        h.update(rel.encode())
        with open(Path(root) / rel, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()[:16]


TRAINING_INFO = "densepipe_training.json"


def document_encoder(folder: str) -> str | None:
    """The base model that encodes *documents* for a model fine-tuned with frozen documents (``tower="query"``):
    its document route is the base's weights, recorded with their hash, so its corpus vectors are the base
    model's and are reused. None for any other model (or when the base installed here is not the one trained
    against)."""
    info = Path(folder) / TRAINING_INFO
    if not info.is_file():
        return None
    import json

    recorded = json.loads(info.read_text())
    base, expected = recorded.get("document_encoder"), recorded.get("document_encoder_hash")
    if not base or not expected:
        return None
    return base if model_hash(resolve_model(base)) == expected else None


def document_model_hash(folder: str) -> str:
    base = document_encoder(folder)
    return model_hash(resolve_model(base) if base else folder)


def embedding_dimension(model) -> int:
    """A SentenceTransformer's output dimension (sentence-transformers 6 renamed the method)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


class BiEncoder:
    """Implements the ``Encoder`` protocol over a SentenceTransformer.

    Normalization follows the model's saved similarity: a model scored by cosine gets unit vectors (so inner
    product search equals cosine), unless it already ends in a Normalize module; a dot-product model is left as is.
    """

    def __init__(self, config: EncoderConfig = EncoderConfig(), model=None):
        self.config = config
        if model is None:
            from sentence_transformers import SentenceTransformer

            from retriever.encoders.backends import apply_backend, require

            require(config.backend)  # before loading anything: a missing package is named at once
            if config.threads:
                import torch

                torch.set_num_threads(config.threads)
            self.path = resolve_model(config.model)
            model = SentenceTransformer(self.path, device=config.device)
            self.runtime = apply_backend(model, model_hash(self.path), config.backend, config.quantize,
                                         config.model_dtype, config.threads)
        else:
            self.path = getattr(model, "_densepipe_path", config.model)
            self.runtime = {"backend": "torch", "quantize": "none", "model_dtype": "float32", "precision": None}
        self.model = model
        if config.max_seq_length:
            model.max_seq_length = config.max_seq_length
        similarity = getattr(model, "similarity_fn_name", None) or "cosine"
        has_normalize = any(type(m).__name__ == "Normalize" for m in model)
        self.normalize = similarity == "cosine" and not has_normalize
        self.normalized = similarity == "cosine"
        self.similarity = similarity
        limit = int(model.max_seq_length or 512)
        if config.segment_tokens and config.segment_tokens + 2 > limit:
            raise ConfigError(f"segment_tokens = {config.segment_tokens} does not fit the model's {limit}-token "
                              f"input with its two special tokens: use at most {limit - 2}.")

    @property
    def dim(self) -> int:
        return embedding_dimension(self.model)

    @property
    def fingerprint(self) -> str:
        return model_hash(self.path)

    def describe(self) -> dict:
        return {"model": self.config.model, "path": self.path, "model_hash": self.fingerprint, "dim": self.dim,
                "similarity": self.similarity, "normalized": self.normalized,
                "max_seq_length": int(self.model.max_seq_length), "dtype": self.config.dtype, **self.runtime}

    def _encode(self, texts: Sequence[str], kind: str, show_progress: bool) -> np.ndarray:
        fn = self.model.encode_query if kind == "query" else self.model.encode_document
        texts = list(texts)
        size = self.config.batch_size
        if self.config.bucket == "chars" or len(texts) <= size:
            vectors = fn(texts, batch_size=size, convert_to_numpy=True, normalize_embeddings=self.normalize,
                         show_progress_bar=show_progress)
            return np.ascontiguousarray(vectors, dtype=np.float32)
        # sentence-transformers orders a call's texts by characters; ordering by tokens (after truncation) packs
        # batches tighter, so each batch is encoded by a call of its own, then the order is restored
        from tqdm.auto import tqdm

        order = np.argsort(-self._token_lengths(texts), kind="stable")
        out = None
        for start in tqdm(range(0, len(texts), size), desc="batches", disable=not show_progress):
            rows = order[start:start + size]
            part = fn([texts[i] for i in rows], batch_size=size, convert_to_numpy=True,
                      normalize_embeddings=self.normalize, show_progress_bar=False)
            if out is None:
                out = np.empty((len(texts), part.shape[1]), dtype=np.float32)
            out[rows] = part
        return out

    def _token_lengths(self, texts: list[str]) -> np.ndarray:
        """Each text's length in tokens, capped at the model's limit (no padding, no tensors: cheap)."""
        try:
            tokenizer = self.model.tokenizer
        except (AttributeError, ValueError, TypeError):  # a Router of several tokenizers: characters will do
            tokenizer = None
        limit = int(self.model.max_seq_length or 512)
        if tokenizer is None:
            return np.array([len(t) for t in texts])
        ids = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=limit)["input_ids"]
        return np.array([len(x) for x in ids])

    def encode_queries(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        return self._encode(texts, "query", show_progress)

    def encode_documents(self, docs: Sequence[Document], show_progress: bool = False) -> np.ndarray:
        return self._encode([d.joined(self.config.title_sep) for d in docs], "document", show_progress)

    def segments(self, docs: Sequence[Document]) -> tuple[list[str], np.ndarray]:
        """Each document cut into windows of ``segment_tokens`` tokens starting every ``stride`` tokens (the last
        window ends at the document's end; a document that fits is one window, an empty one an empty window):
        the windows' texts, cut from the document's own text at token boundaries (with ``segment_title``, from its
        text alone, each window led by its title), and each window's document (its position in ``docs``), in
        document order."""
        size, stride, sep = self.config.segment_tokens, self.config.stride, self.config.title_sep
        titled = [self.config.segment_title and bool(d.title) for d in docs]
        bodies = [d.text if t else d.joined(sep) for d, t in zip(docs, titled)]
        tokenizer = self.model.tokenizer
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(f"segment_tokens needs a fast tokenizer (token offsets); {self.config.model}'s is not.")
        spans = tokenizer(bodies, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        pieces, owner = [], []
        for i, (doc, text, offsets) in enumerate(zip(docs, bodies, spans["offset_mapping"])):
            start = 0
            while True:
                end = min(start + size, len(offsets))
                piece = text[offsets[start][0]:offsets[end - 1][1]] if offsets else text
                pieces.append(doc.joined(sep) if not offsets else f"{doc.title}{sep}{piece}" if titled[i] else piece)
                owner.append(i)
                if end >= len(offsets):
                    break
                start += stride
        return pieces, np.asarray(owner, dtype=np.int64)

    def encode_document_segments(self, docs: Sequence[Document], show_progress: bool = False
                                 ) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, document of each vector): one vector per window (``segments``), or one per document when
        the encoder does not segment."""
        if not self.config.segment_tokens:
            return self.encode_documents(docs, show_progress), np.arange(len(docs), dtype=np.int64)
        pieces, owner = self.segments(docs)
        return self._encode(pieces, "document", show_progress), owner


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)
