"""Encode stage: the plain callable, resumption after SIGKILL, and Ray's retry of a dying worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipelines.encode import EncodeBatch, EncodeConfig, chunk_plan, encode_corpus, shard_chunks, text_lengths
from pipelines.workspace import prepare
from retriever.data.embeddings import read_embeddings
from retriever.encoders import BiEncoder, EncoderConfig

ROOT = Path(__file__).resolve().parents[2]


def _emb(folder):
    _, shards = read_embeddings(folder)
    ids = [i for s in shards for i in s[0]]
    return ids, np.concatenate([s[1] for s in shards])


def test_encode_batch_is_plain_and_matches_encoder(scifact_slice):
    prep = prepare(str(scifact_slice), docs_per_shard=64)
    docs = list(prep.dataset.corpus.values())[:8]
    fn = EncodeBatch(EncoderConfig())
    out = fn({"id": np.array([d.id for d in docs], dtype=object), "title": np.array([d.title for d in docs], dtype=object),
              "text": np.array([d.text for d in docs], dtype=object)})
    direct = BiEncoder(EncoderConfig()).encode_documents(docs)
    assert out["id"].tolist() == [d.id for d in docs]
    assert np.allclose(out["vector"], direct, atol=1e-5)
    assert np.allclose(np.linalg.norm(out["vector"], axis=1), 1, atol=1e-5)


def test_local_encode_skips_finished_shards(scifact_slice, tmp_path):
    prep = prepare(str(scifact_slice), docs_per_shard=64, max_docs=130)
    cfg = EncodeConfig(EncoderConfig(), engine="local")
    first = encode_corpus(prep.corpus_dir, tmp_path / "emb", cfg, progress=False)
    assert first["last_run"]["docs"] == 130 and len(first["shards"]) == 3
    again = encode_corpus(prep.corpus_dir, tmp_path / "emb", cfg, progress=False)
    assert again["last_run"]["docs"] == 0
    # a changed setting that changes the vectors redoes every shard
    changed = encode_corpus(prep.corpus_dir, tmp_path / "emb",
                            EncodeConfig(EncoderConfig(max_seq_length=32), engine="local"), progress=False)
    assert changed["last_run"]["docs"] == 130


def test_a_changed_backend_re_encodes_and_old_shards_count_as_torch(scifact_slice, tmp_path):
    import json

    prep = prepare(str(scifact_slice), docs_per_shard=64, max_docs=100)
    torch_cfg = EncodeConfig(EncoderConfig(), engine="local")
    encode_corpus(prep.corpus_dir, tmp_path / "emb", torch_cfg, progress=False)
    for shard in (tmp_path / "emb").glob("emb-*.json"):  # a shard written before backends existed
        meta = json.loads(shard.read_text())
        assert meta["backend"] == "torch"
        for key in ("backend", "quantize", "model_dtype"):
            meta.pop(key)
        shard.write_text(json.dumps(meta))
    assert encode_corpus(prep.corpus_dir, tmp_path / "emb", torch_cfg, progress=False)["last_run"]["docs"] == 0
    _, x_torch = _emb(tmp_path / "emb")
    onnx_cfg = EncodeConfig(EncoderConfig(backend="onnx"), engine="local")
    redone = encode_corpus(prep.corpus_dir, tmp_path / "emb", onnx_cfg, progress=False)
    assert redone["last_run"]["docs"] == 100 and {s["backend"] for s in redone["shards"]} == {"onnx"}
    assert encode_corpus(prep.corpus_dir, tmp_path / "emb", onnx_cfg, progress=False)["last_run"]["docs"] == 0
    _, x_onnx = _emb(tmp_path / "emb")
    assert (x_torch * x_onnx).sum(1).min() > 1 - 1e-5


def test_sigkill_midway_then_resume_equals_uninterrupted(scifact_slice, tmp_path):
    env = {**os.environ, "DRP_WORK_DIR": str(tmp_path / "work"), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pipelines.cli", "encode", "--dataset", str(scifact_slice), "--engine", "local",
           "--docs-per-shard", "16", "--max-docs", "120", "--output", str(tmp_path / "killed")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "killed").glob("emb-*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list((tmp_path / "killed").glob("emb-*.json")))
    assert 2 <= done_before < 8, "the kill should land midway"
    assert not (tmp_path / "killed" / "manifest.json").exists()
    with pytest.raises(Exception, match="incomplete"):
        read_embeddings(tmp_path / "killed")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert f'"docs": {120 - 16 * done_before}' in out.stdout  # only the unfinished shards were encoded
    prep = prepare(str(scifact_slice), docs_per_shard=16, max_docs=120)
    encode_corpus(prep.corpus_dir, tmp_path / "clean", EncodeConfig(EncoderConfig(), engine="local"), progress=False)
    ids_a, xa = _emb(tmp_path / "killed")
    ids_b, xb = _emb(tmp_path / "clean")
    assert ids_a == ids_b and len(set(ids_a)) == 120
    assert np.allclose(xa, xb, atol=1e-6)


def test_chunks_group_rows_by_length_and_vectors_return_to_shard_order(scifact_slice, tmp_path):
    """Each shard's rows are cut, longest first, into chunks of similar length; every row is in exactly one, and
    the shard is written in its own row order with each document's own vector."""
    from retriever.data.parquet import iter_corpus_shards

    prep = prepare(str(scifact_slice), docs_per_shard=50, max_docs=90)
    shard, docs = next(iter_corpus_shards(prep.corpus_dir))
    plan = shard_chunks(Path(prep.corpus_dir) / shard["file"], 16)
    assert [len(c) for c in plan] == [16, 16, 16, 2]
    rows = np.concatenate(plan)
    assert sorted(rows.tolist()) == list(range(50))
    lengths = [len(docs[r].title) + len(docs[r].text) for r in rows]
    assert lengths == sorted(lengths, reverse=True) and rows.tolist() != list(range(50))
    # the local engine plans from the documents in memory: the same chunks as from the shard's columns
    in_memory = chunk_plan(text_lengths([d.title for d in docs], [d.text for d in docs]), 16)
    assert [c.tolist() for c in in_memory] == [c.tolist() for c in plan]
    encode_corpus(prep.corpus_dir, tmp_path / "emb", EncodeConfig(EncoderConfig(), engine="local",
                                                                   rows_per_ray_batch=16), progress=False)
    ids, x = _emb(tmp_path / "emb")
    assert ids == [d.id for _, shard_docs in iter_corpus_shards(prep.corpus_dir) for d in shard_docs]
    direct = BiEncoder(EncoderConfig()).encode_documents(docs[:5])
    assert np.allclose(x[:5], direct, atol=1e-5)


@pytest.mark.ray
def test_ray_encode_survives_a_dying_worker(scifact_slice, tmp_path):
    """An actor that dies mid-batch is restarted and its batch retried: nothing lost, nothing duplicated."""
    import ray

    prep = prepare(str(scifact_slice), docs_per_shard=50, max_docs=150)
    marker = tmp_path / "crashed-once"
    cfg = EncodeConfig(EncoderConfig(), engine="ray", num_workers=1, rows_per_ray_batch=25)
    try:
        manifest = encode_corpus(prep.corpus_dir, tmp_path / "ray", cfg, progress=False, fail_once_file=str(marker))
        assert marker.exists(), "the fault was injected"
        assert manifest["last_run"]["docs"] == 150
        # the same stage, resumed: nothing left to do, and no Ray job started for it
        assert encode_corpus(prep.corpus_dir, tmp_path / "ray", cfg, progress=False)["last_run"]["docs"] == 0
    finally:
        ray.shutdown()
    encode_corpus(prep.corpus_dir, tmp_path / "local", EncodeConfig(EncoderConfig(), engine="local"), progress=False)
    ids_r, xr = _emb(tmp_path / "ray")
    ids_l, xl = _emb(tmp_path / "local")
    assert ids_r == ids_l and len(set(ids_r)) == 150
    assert np.allclose(xr, xl, atol=1e-5)


def test_segments_are_windows_of_the_documents_own_text(scifact_slice):
    """segment_tokens: windows of that many tokens every stride tokens, cut from the text at token boundaries;
    the first starts with the document, the last ends with it; a short document is one window, an empty one an
    empty window."""
    from retriever.types import Document

    enc = BiEncoder(EncoderConfig(segment_tokens=16, segment_stride=10))
    prep = prepare(str(scifact_slice), docs_per_shard=64)
    long_doc = max(prep.dataset.corpus.values(), key=lambda d: len(d.text))
    docs = [long_doc, Document("short", "Aspirin lowers fever."), Document("empty", "")]
    pieces, owner = enc.segments(docs)
    text = long_doc.joined(" ")
    n = len(enc.model.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
    windows = 1 + -(-(n - 16) // 10)
    assert owner.tolist() == [0] * windows + [1, 2]
    assert pieces[-2:] == ["Aspirin lowers fever.", ""]
    assert text.startswith(pieces[0]) and text.endswith(pieces[windows - 1])
    at = 0
    for piece in pieces[:windows]:  # in order, overlapping, each within the model's window
        start = text.index(piece, at)
        at = start + 1
        assert 0 < len(enc.model.tokenizer(piece, add_special_tokens=False)["input_ids"]) <= 16 + 2
    vectors, owners = enc.encode_document_segments(docs)
    assert vectors.shape == (len(pieces), enc.dim) and owners.tolist() == owner.tolist()
    assert np.allclose(vectors[windows], enc.encode_documents(docs[1:2])[0], atol=1e-5)  # the whole document
    titled = BiEncoder(EncoderConfig(segment_tokens=16, segment_stride=10, segment_title=True), model=enc.model)
    pieces_t, owner_t = titled.segments(docs)
    body = pieces_t[:owner_t.tolist().count(0)]
    assert all(p.startswith(long_doc.title + " ") for p in body)
    assert long_doc.text.startswith(body[0][len(long_doc.title) + 1:])
    assert pieces_t[-2:] == ["Aspirin lowers fever.", ""]  # no title: the text's windows as before
    with pytest.raises(Exception, match="does not fit"):
        BiEncoder(EncoderConfig(segment_tokens=300))  # all-MiniLM-L6-v2 reads 256 tokens
    with pytest.raises(Exception, match="segment_stride"):
        EncoderConfig(segment_tokens=16, segment_stride=17)


def test_segmented_encode_writes_each_documents_windows_in_shard_order(scifact_slice, tmp_path):
    """Chunks are encoded longest first; every document's windows come back to its row, in order, under its id,
    and a changed window size re-encodes."""
    from retriever.data.parquet import iter_corpus_shards

    prep = prepare(str(scifact_slice), docs_per_shard=40, max_docs=60)
    encoder = EncoderConfig(segment_tokens=64)
    cfg = EncodeConfig(encoder, engine="local", rows_per_ray_batch=16)
    encode_corpus(prep.corpus_dir, tmp_path / "emb", cfg, progress=False)
    ids, x = _emb(tmp_path / "emb")
    docs = [d for _, shard_docs in iter_corpus_shards(prep.corpus_dir) for d in shard_docs]
    enc = BiEncoder(encoder)
    pieces, owner = enc.segments(docs)
    assert ids == [docs[i].id for i in owner] and len(ids) > len(docs)
    assert np.allclose(x, enc._encode(pieces, "document", False), atol=1e-5)
    again = encode_corpus(prep.corpus_dir, tmp_path / "emb", EncodeConfig(EncoderConfig(segment_tokens=32),
                                                                         engine="local"), progress=False)
    assert again["last_run"]["docs"] == 60
