"""Contrastive training: gradient cache equals the plain loss's gradients; examples, masks and held-out splits;
a killed training run resumes from its checkpoint to the same weights an unbroken run reaches."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from retriever.losses import DebiasedInfoNCE, GradCache, GradCacheConfig, InfoNCE, InfoNCEConfig
from retriever.mining import MinedExample
from retriever.training import TrainConfig, examples_from_mined, split_held_out
from retriever.training.contrastive import batch_order, positive_mask
from retriever.types import ConfigError, DataError


class ToyEncoder(torch.nn.Module):
    """Texts -> fixed random features -> linear -> dropout -> unit vectors."""

    def __init__(self, dropout: float):
        super().__init__()
        self.proj = torch.nn.Linear(16, 8)
        self.drop = torch.nn.Dropout(dropout)

    def forward(self, texts):
        feats = torch.stack([torch.as_tensor(np.random.default_rng(zlib.crc32(t.encode())).normal(size=16),
                                             dtype=torch.float32) for t in texts])
        return torch.nn.functional.normalize(self.drop(self.proj(feats)), dim=-1)


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("loss", [InfoNCE(InfoNCEConfig(0.1, symmetric=True)), DebiasedInfoNCE()])
def test_grad_cache_equals_full_batch_gradients(loss):
    torch.manual_seed(0)
    model = ToyEncoder(dropout=0.0)
    q, p, n = [f"q{i}" for i in range(6)], [f"p{i}" for i in range(6)], [f"n{i}" for i in range(12)]
    mask = torch.zeros(6, 18, dtype=torch.bool)
    mask[0, 3] = True
    full = loss(model(q), model(p), model(n), mask=mask)
    full.backward()
    expected = _grads(model).clone()
    model.zero_grad()
    cached = GradCache(loss, GradCacheConfig(chunk_size=4)).step([(model, q), (model, p), (model, n)], mask=mask)
    assert torch.allclose(cached, full.detach(), atol=1e-6)
    assert torch.allclose(_grads(model), expected, atol=1e-6)


def test_grad_cache_equals_full_batch_gradients_with_a_teacher():
    """The distill loss's teacher scores travel through the cache like the graded loss's grades."""
    from retriever.losses import DistillConfig, Distillation

    torch.manual_seed(0)
    model = ToyEncoder(dropout=0.0)
    q, p, n = [f"q{i}" for i in range(6)], [f"p{i}" for i in range(6)], [f"n{i}" for i in range(6)]
    teacher = torch.randn(6, 12)
    loss = Distillation(DistillConfig(0.1, teacher_temperature=2.0, teacher_weight=0.7))
    full = loss(model(q), model(p), model(n), relevance=teacher)
    full.backward()
    expected = _grads(model).clone()
    model.zero_grad()
    cached = GradCache(loss, GradCacheConfig(chunk_size=4)).step([(model, q), (model, p), (model, n)],
                                                                relevance=teacher)
    assert torch.allclose(cached, full.detach(), atol=1e-6)
    assert torch.allclose(_grads(model), expected, atol=1e-6)


def test_grad_cache_equals_full_batch_gradients_with_the_toolbox():
    """SupCon with a queue, MoCHi points and a learned temperature through the cache: same loss and gradients
    (model and temperature) as the full batch; the mixing draws are replayed from the same generator state."""
    from retriever.losses import ContrastiveOptions, MixConfig, SupCon, SupConConfig

    model = ToyEncoder(dropout=0.0)
    q, p, n = [f"q{i}" for i in range(6)], [f"p{i}" for i in range(6)], [f"n{i}" for i in range(6)]
    mask = torch.zeros(6, 12, dtype=torch.bool)
    mask[0, 7] = True
    queue = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    queue_mask = torch.zeros(6, 5, dtype=torch.bool)
    queue_mask[1, 2] = True
    options = ContrastiveOptions(learn_temperature=True, mix=MixConfig(3, 1, pool=4), queue_margin=0.95)
    loss = SupCon(SupConConfig(0.1), options)
    torch.manual_seed(5)
    full = loss(model(q), model(p), model(n), mask=mask, queue=queue, queue_mask=queue_mask)
    full.backward()
    expected, t_grad = _grads(model).clone(), loss.temperature.log_t.grad.clone()
    model.zero_grad()
    loss.zero_grad()
    torch.manual_seed(5)
    cached = GradCache(loss, GradCacheConfig(chunk_size=4)).step([(model, q), (model, p), (model, n)], mask=mask,
                                                                queue=queue, queue_mask=queue_mask)
    assert torch.allclose(cached, full.detach(), atol=1e-6)
    assert torch.allclose(_grads(model), expected, atol=1e-6)
    assert torch.allclose(loss.temperature.log_t.grad, t_grad, atol=1e-6)


def test_grad_cache_replays_dropout_masks():
    """With dropout, the cached step must equal a graph-building step that drew the same masks chunk by chunk."""
    model = ToyEncoder(dropout=0.5)
    q, p = [f"q{i}" for i in range(6)], [f"p{i}" for i in range(6)]
    loss = InfoNCE()
    torch.manual_seed(3)
    ref = loss(torch.cat([model(q[:4]), model(q[4:])]), torch.cat([model(p[:4]), model(p[4:])]))
    ref.backward()
    expected = _grads(model).clone()
    model.zero_grad()
    torch.manual_seed(3)
    got = GradCache(loss, GradCacheConfig(chunk_size=4)).step([(model, q), (model, p)])
    assert torch.allclose(got, ref.detach(), atol=1e-6)
    assert torch.allclose(_grads(model), expected, atol=1e-6)


def test_fixed_document_vectors_pass_through_the_cache():
    model = ToyEncoder(dropout=0.0)
    docs = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    q = [f"q{i}" for i in range(4)]
    loss = InfoNCE()
    full = loss(model(q), docs)
    full.backward()
    expected = _grads(model).clone()
    model.zero_grad()
    GradCache(loss, GradCacheConfig(chunk_size=3)).step([(model, q), docs, None])
    assert torch.allclose(_grads(model), expected, atol=1e-6)


def test_mined_tables_merge_and_validate():
    queries, docs = {"q1": "a", "q2": "b"}, {f"d{i}": i for i in range(6)}
    bm25 = [MinedExample("q1", "d0", ("d1", "d2"), (1.0, 0.5), 2.0, "bm25")]
    dense = [MinedExample("q1", "d0", ("d2", "d3"), (0.5, 0.4), 0.9, "dense"),
             MinedExample("q2", "d5", ("d4",), (0.1,), 0.2, "dense")]
    out = examples_from_mined([("bm25.parquet", bm25), ("dense.parquet", dense)], queries, docs)
    assert [(e.query_id, e.positive_id, e.negative_ids) for e in out] == [
        ("q1", "d0", ("d1", "d2", "d3")), ("q2", "d5", ("d4",))]
    with pytest.raises(DataError, match="dense.parquet.*row 1.*not in the corpus.*same corpus"):
        examples_from_mined([("dense.parquet", [MinedExample("q1", "d0", ("d9",), (0.1,), 1.0, "dense")])],
                            queries, docs)
    with pytest.raises(DataError, match="x.parquet.*unknown query id"):
        examples_from_mined([("x.parquet", [MinedExample("q7", "d0", (), (), None, "bm25")])], queries, docs)
    with pytest.raises(DataError, match="not judged relevant"):
        examples_from_mined([("x.parquet", bm25)], queries, docs, qrels={"q1": {"d1": 1}})


def test_held_out_split_is_by_query_and_masks_known_positives():
    from retriever.training import TrainingExample

    examples = [TrainingExample(f"q{i // 2}", f"d{i}") for i in range(40)]
    train, held = split_held_out(examples, 0.25, seed=1)
    assert len(held) == 5 and not {e.query_id for e in train} & set(held)
    assert len(train) == 30
    mask = positive_mask(["q1", "q2"], ["a", "b", "c"], {"q1": {"a", "b"}, "q2": {"a"}})
    assert mask.tolist() == [[False, True, False], [True, False, False]]
    batches = batch_order(10, 4, seed=0, epoch=0)
    assert [len(b) for b in batches] == [4, 4] and batch_order(10, 4, 0, 0)[0].tolist() == batches[0].tolist()


def test_train_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="tower"):
        TrainConfig(tower="docs")
    with pytest.raises(ConfigError, match="symmetric"):
        TrainConfig(loss="debiased", symmetric=True)
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=1)
