"""Encoder backends (ONNX Runtime, OpenVINO, torch bfloat16): the same vectors as torch, exported once, Router
models included, and clear errors for what cannot work."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from retriever.encoders import BiEncoder, EncoderConfig, resolve_model
from retriever.encoders import backends
from retriever.types import ConfigError, Document

DOCS = [Document(id=str(i), title=t, text=x) for i, (t, x) in enumerate([
    ("Gene expression", "Transcription factors bind promoter regions and regulate the expression of nearby genes."),
    ("", "Short."),
    ("Vaccines", "Randomised trials of the vaccine showed a reduction in hospital admissions among older adults, "
                 "with effects lasting at least two seasons and no excess of serious adverse events reported."),
    ("Neurons", "Dopamine release in the striatum follows reward prediction errors."),
    ("Cancer", "Tumour cells evade apoptosis; p53 mutations are among the most frequent alterations. " * 8),
])]
QUERIES = ["what regulates gene expression?", "do vaccines reduce hospital admissions in older adults", "p53"]


@pytest.fixture(scope="module")
def reference():
    enc = BiEncoder(EncoderConfig(batch_size=2))
    return enc.encode_documents(DOCS), enc.encode_queries(QUERIES)


@pytest.mark.parametrize("settings, tolerance", [
    ({"backend": "onnx"}, 1e-5),
    ({"backend": "openvino"}, 1e-5),
    ({"backend": "openvino", "model_dtype": "bfloat16"}, 1e-3),
    ({"backend": "torch", "model_dtype": "bfloat16"}, 1e-3),
    ({"backend": "onnx", "quantize": "int8"}, 2e-2),
])
def test_each_backend_gives_torchs_vectors(reference, settings, tolerance):
    enc = BiEncoder(EncoderConfig(batch_size=2, threads=1, **settings))
    docs, queries = enc.encode_documents(DOCS), enc.encode_queries(QUERIES)
    assert docs.dtype == np.float32 and docs.shape == reference[0].shape
    assert np.allclose(np.linalg.norm(docs, axis=1), 1, atol=1e-4)
    cosine = np.concatenate([(docs * reference[0]).sum(1), (queries * reference[1]).sum(1)])
    assert cosine.min() > 1 - tolerance, cosine
    # the ranking of documents for each query is the reference's
    assert ((queries @ docs.T).argmax(1) == (reference[1] @ reference[0].T).argmax(1)).all()
    info = enc.describe()
    assert info["backend"] == settings["backend"] and info["quantize"] == settings.get("quantize", "none")


def test_export_is_cached_by_model_content(tmp_path, monkeypatch):
    root = tmp_path / "exports"
    monkeypatch.setenv("DRP_EXPORT_CACHE", str(root))
    BiEncoder(EncoderConfig(backend="onnx"))
    folders = [p for p in root.iterdir()]
    assert len(folders) == 1 and not any(p.name.startswith(".") for p in folders)  # no half-written folder left
    record = json.loads((folders[0] / "export.json").read_text())
    assert record["inputs"] == ["input_ids", "attention_mask", "token_type_ids"] and record["quantize"] == "none"

    def refuse(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(backends, "_export_float", refuse)
    again = BiEncoder(EncoderConfig(backend="openvino"))  # OpenVINO reads the same exported file
    assert again.encode_queries(["x"]).shape == (1, 384)
    assert len(list(root.iterdir())) == 1
    with pytest.raises(AssertionError, match="exported again"):  # another setting is another export
        BiEncoder(EncoderConfig(backend="onnx", quantize="int8"))


def test_router_query_tower_model_runs_on_every_backend(tmp_path, monkeypatch):
    """A densepipe query-tower model (a Router: its own query transformer, the base's for documents) exports both
    transformers, and each route gives what torch gives."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Router

    monkeypatch.setenv("DRP_EXPORT_CACHE", str(tmp_path / "exports"))
    base = resolve_model("minilm")
    query = SentenceTransformer(base, device="cpu")
    with torch.no_grad():  # a query tower that differs from the document one
        for p in query[0].parameters():
            p.add_(torch.randn_like(p) * 0.02, alpha=1.0) if p.dim() > 1 else None
    docs = SentenceTransformer(base, device="cpu")
    model = SentenceTransformer(modules=[Router.for_query_document(query_modules=list(query._modules.values()),
                                                                   document_modules=list(docs._modules.values()))],
                                device="cpu", similarity_fn_name="cosine")
    model.save(str(tmp_path / "router"))
    torch_enc = BiEncoder(EncoderConfig(model=str(tmp_path / "router"), batch_size=2))
    ref_q, ref_d = torch_enc.encode_queries(QUERIES), torch_enc.encode_documents(DOCS)
    assert (ref_q * BiEncoder(EncoderConfig()).encode_queries(QUERIES)).sum(1).min() < 0.999  # routes differ
    for backend in ("onnx", "openvino"):
        enc = BiEncoder(EncoderConfig(model=str(tmp_path / "router"), batch_size=2, backend=backend))
        assert (enc.encode_queries(QUERIES) * ref_q).sum(1).min() > 1 - 1e-5
        assert (enc.encode_documents(DOCS) * ref_d).sum(1).min() > 1 - 1e-5
    assert len(list((tmp_path / "exports").iterdir())) == 2  # one graph per route, shared by both backends


def test_token_buckets_restore_the_order():
    texts = [d.joined(" ") for d in DOCS] * 3
    by_tokens = BiEncoder(EncoderConfig(batch_size=4))._encode(texts, "document", False)
    by_chars = BiEncoder(EncoderConfig(batch_size=4, bucket="chars"))._encode(texts, "document", False)
    assert np.allclose(by_tokens, by_chars, atol=1e-5)


def test_float16_on_an_unknown_device_is_checked_when_the_model_is_on_the_cpu():
    EncoderConfig(model_dtype="float16")  # device None: a GPU machine would put the model on cuda
    if not __import__("torch").cuda.is_available():
        with pytest.raises(ConfigError, match="for GPUs"):
            BiEncoder(EncoderConfig(model_dtype="float16"))


def test_a_missing_backend_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'densepipe\[openvino\]'"):
        BiEncoder(EncoderConfig(backend="openvino"))


@pytest.mark.parametrize("settings, message", [
    ({"backend": "openvino", "quantize": "int8"}, "offered with backend='onnx'"),
    ({"backend": "torch", "quantize": "int8"}, "per\ntensor|per tensor"),
    ({"backend": "onnx", "model_dtype": "bfloat16"}, "runs float32 on the CPU"),
    ({"backend": "torch", "model_dtype": "float16", "device": "cpu"}, "for GPUs"),
    ({"backend": "onnx", "device": "cuda"}, "runs on the CPU here"),
    ({"backend": "tensorrt"}, "must be one of"),
])
def test_combinations_that_cannot_work_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        EncoderConfig(**settings)
