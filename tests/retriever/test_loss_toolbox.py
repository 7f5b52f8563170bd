"""The contrastive toolbox against hand computations on tiny tensors: SupCon with two positives, DCL, graded
targets, distillation from a teacher's scores, a learned temperature's gradient, the queue's contents and
false-negative filters, MoCHi's mixed points, and cluster-formed batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retriever.losses import (ContrastiveOptions, DecoupledConfig, DecoupledInfoNCE, DistillConfig, Distillation,
                              GradedConfig,
                              GradedContrastive, InfoNCE, InfoNCEConfig, MixConfig, SupCon, SupConConfig,
                              mix_hard_negatives)
from retriever.losses.base import candidates
from retriever.training import TrainConfig
from retriever.training.batching import cluster_batches, spherical_kmeans
from retriever.training.queue import MomentumEncoder, NegativeQueue
from retriever.types import ConfigError

T = 0.5


def _unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


# two queries; documents: their positives p0, p1, then one shared document n0
Q = _unit([1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
P = _unit([0.8, 0.6, 0.0], [0.0, 0.6, 0.8])
N = _unit([0.6, 0.0, 0.8])


def _logsumexp(values):
    return math.log(sum(math.exp(v) for v in values))


def test_supcon_puts_both_positives_in_the_numerator():
    mask = torch.tensor([[False, False, True], [False, False, False]])  # n0 is also a positive of query 0
    got = SupCon(SupConConfig(T))(Q, P, N, mask=mask)
    s = (Q @ torch.cat([P, N]).T / T).tolist()
    row0 = -((s[0][0] - _logsumexp(s[0])) + (s[0][2] - _logsumexp(s[0]))) / 2
    row1 = -(s[1][1] - _logsumexp(s[1]))
    assert got.item() == pytest.approx((row0 + row1) / 2, abs=1e-6)


def test_dcl_leaves_the_positive_out_of_the_denominator():
    mask = torch.tensor([[False, False, True], [False, False, False]])  # n0 known positive of q0: not a negative
    got = DecoupledInfoNCE(DecoupledConfig(T))(Q, P, N, mask=mask)
    s = (Q @ torch.cat([P, N]).T / T).tolist()
    row0 = -s[0][0] + _logsumexp([s[0][1]])
    row1 = -s[1][1] + _logsumexp([s[1][0], s[1][2]])
    assert got.item() == pytest.approx((row0 + row1) / 2, abs=1e-6)
    # InfoNCE on the same input keeps the positive in the denominator: larger by log(1 + e^{pos - negs})
    info = InfoNCE(InfoNCEConfig(T))(Q, P, N, mask=mask).item()
    assert info == pytest.approx(((-s[0][0] + _logsumexp([s[0][0], s[0][1]]))
                                  + (-s[1][1] + _logsumexp(s[1]))) / 2, abs=1e-6)


def test_graded_targets_follow_the_gains():
    mask = torch.tensor([[False, False, True], [False, False, False]])
    relevance = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])  # q0: own positive grade 1, n0 grade 2
    s = (Q @ torch.cat([P, N]).T / T).tolist()
    lp = [[v - _logsumexp(row) for v in row] for row in s]
    # exponential gains 2^g - 1: weights 1 and 3 -> targets 1/4, 3/4
    expected = (-(0.25 * lp[0][0] + 0.75 * lp[0][2]) - lp[1][1]) / 2
    got = GradedContrastive(GradedConfig(T))(Q, P, N, mask=mask, relevance=relevance)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    linear = GradedContrastive(GradedConfig(T, gain="linear"))(Q, P, N, mask=mask, relevance=relevance)
    assert linear.item() == pytest.approx((-(lp[0][0] / 3 + 2 * lp[0][2] / 3) - lp[1][1]) / 2, abs=1e-6)
    # every grade 1: the same as SupCon
    ones = GradedContrastive(GradedConfig(T))(Q, P, N, mask=mask)
    assert ones.item() == pytest.approx(SupCon(SupConConfig(T))(Q, P, N, mask=mask).item(), abs=1e-6)


def test_distillation_targets_the_teachers_softmax():
    teacher = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 3.0]])  # q1: the teacher ties its positive with n0
    s = (Q @ torch.cat([P, N]).T / T).tolist()
    lp = [[v - _logsumexp(row) for v in row] for row in s]

    def expected(t_teacher: float, w: float) -> float:
        total = 0.0
        for i in range(2):
            z = [math.exp(u / t_teacher) for u in teacher[i].tolist()]
            target = [w * zj / sum(z) + (1 - w) * (j == i) for j, zj in enumerate(z)]
            total -= sum(tj * lpj for tj, lpj in zip(target, lp[i]))
        return total / 2

    for t_teacher, w in ((1.0, 1.0), (2.0, 1.0), (1.0, 0.5)):
        got = Distillation(DistillConfig(T, t_teacher, w))(Q, P, N, relevance=teacher)
        assert got.item() == pytest.approx(expected(t_teacher, w), abs=1e-6)
    # all on the own positive: InfoNCE (other positives left in the denominator)
    none = Distillation(DistillConfig(T, teacher_weight=0.0))(Q, P, N, relevance=teacher)
    assert none.item() == pytest.approx(InfoNCE(InfoNCEConfig(T))(Q, P, N).item(), abs=1e-6)
    # the teacher's scores are targets, not something to differentiate
    q = Q.clone().requires_grad_(True)
    u = teacher.clone().requires_grad_(True)
    Distillation(DistillConfig(T))(q, P, N, relevance=u).backward()
    assert u.grad is None and q.grad is not None
    with pytest.raises(ConfigError, match="teacher"):
        Distillation(DistillConfig(T))(Q, P, N)
    with pytest.raises(ConfigError, match="queue"):  # not silently zero-padded as teacher scores
        Distillation(DistillConfig(T))(Q, P, N, queue=N, relevance=teacher)
    with pytest.raises(ConfigError, match="MoCHi"):
        Distillation(DistillConfig(T), ContrastiveOptions(mix=MixConfig(1, 0, pool=2)))
    with pytest.raises(ConfigError, match="teacher_weight"):
        DistillConfig(T, teacher_weight=1.5)
    with pytest.raises(ConfigError, match="queue"):
        TrainConfig(loss="distill", queue_size=8)


def test_learned_temperature_gets_the_hand_derived_gradient():
    loss = InfoNCE(InfoNCEConfig(T), ContrastiveOptions(learn_temperature=True))
    assert [n for n, _ in loss.named_parameters()] == ["temperature.log_t"]
    value = loss(Q, P, N)
    value.backward()
    s = (Q @ torch.cat([P, N]).T).tolist()
    grads = []
    for i in range(2):  # dL_i/dlog t = (s_pos - E_p[s]) / t  with p = softmax(s / t)
        z = [math.exp(v / T) for v in s[i]]
        expectation = sum(zj * sj for zj, sj in zip(z, s[i])) / sum(z)
        grads.append((s[i][i] - expectation) / T)
    assert loss.temperature.log_t.grad.item() == pytest.approx(sum(grads) / 2, abs=1e-5)
    fixed = InfoNCE(InfoNCEConfig(T))
    assert list(fixed.parameters()) == [] and fixed(Q, P, N).item() == pytest.approx(value.item(), abs=1e-6)


def test_queue_keeps_the_newest_and_filters_false_negatives():
    queue = NegativeQueue(size=3, dim=3)
    queue.push(["a", "b"], _unit([1, 0, 0], [0, 1, 0]))
    queue.push(["c", "d"], _unit([0, 0, 1], [1, 1, 0]))
    assert queue.ids == ["b", "c", "d"] and queue.vectors.shape == (3, 3)
    assert torch.allclose(queue.vectors[0], _unit([0, 1, 0])[0])
    mask = queue.mask_for(["q0", "q1"], {"q0": {"c": 1}, "q1": set()})
    assert mask.tolist() == [[False, True, False], [False, False, False]]
    restored = NegativeQueue(3, 3)
    restored.load_state_dict(queue.state_dict())
    assert restored.ids == queue.ids and torch.equal(restored.vectors, queue.vectors)
    # in the loss: a known positive in the queue is dropped (not a positive), and so is an entry scoring above
    # margin x the own positive's score
    q, p = _unit([1, 0, 0], [0, 1, 0]), _unit([0.8, 0.6, 0], [0, 0.6, 0.8])
    entries = _unit([0.9, 0.1, 0], [0, 0, 1], [0.1, 0.2, 0.9])  # 0: above q0's positive; 1: judged for q1
    c = candidates(q, p, None, None, entries, torch.tensor([[False] * 3, [False, True, False]]), 0.95)
    assert c.dropped[:, 2:].tolist() == [[True, False, False], [False, True, False]]
    assert not c.known.any()
    plain = candidates(q, p, None, None, entries, None, None)
    assert not plain.dropped.any()


def test_momentum_encoder_moves_slowly_towards_the_model():
    model = torch.nn.Linear(2, 2)
    key = MomentumEncoder(model, momentum=0.9)
    before = key.model.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    key.update(model)
    assert torch.allclose(key.model.weight, 0.9 * before + 0.1 * model.weight)
    assert not key.model.weight.requires_grad
    with pytest.raises(ConfigError, match="momentum"):
        MomentumEncoder(model, momentum=1.0)


def test_mochi_points_lie_between_their_sources_among_the_hardest():
    torch.manual_seed(0)
    q = F.normalize(torch.randn(3, 8), dim=-1)
    docs = F.normalize(torch.randn(12, 8), dim=-1)
    scores = q @ docs.T
    excluded = torch.zeros(3, 12, dtype=torch.bool)
    excluded[torch.arange(3), torch.arange(3)] = True  # the own positives
    cfg = MixConfig(negatives=5, query=3, pool=4)
    out = mix_hard_negatives(q, docs, scores, excluded, cfg)
    assert out.mixed.shape == (3, 8, 8)
    assert torch.allclose(out.mixed.norm(dim=-1), torch.ones(3, 8), atol=1e-6)
    hardest = scores.masked_fill(excluded, -2).topk(4, dim=1).indices
    for b in range(3):
        for m in range(8):
            j, w = out.second[b, m], out.weight[b, m]
            assert j.item() in hardest[b].tolist()
            if m < 5:
                i = out.first[b, m]
                assert i.item() in hardest[b].tolist() and 0 <= w <= 1
                point = w * docs[i] + (1 - w) * docs[j]
            else:
                assert out.first[b, m] == -1 and 0 <= w < 0.5
                point = w * q[b] + (1 - w) * docs[j]
            # on the segment between the sources, then projected to the sphere
            assert torch.allclose(out.mixed[b, m], F.normalize(point, dim=0), atol=1e-6)
    # in a loss: M extra columns per query, no gradient into them
    loss = InfoNCE(InfoNCEConfig(T), ContrastiveOptions(mix=cfg))
    qq = q.clone().requires_grad_(True)
    value = loss(qq, docs[:3], docs[3:])
    value.backward()
    assert torch.isfinite(value) and qq.grad is not None
    with pytest.raises(ConfigError, match="pool"):
        MixConfig(pool=1)


def test_cluster_batches_hold_neighbours():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:4] * 10
    x = np.concatenate([c + rng.normal(scale=0.3, size=(8, 8)) for c in centres])  # 4 groups of 8
    labels = spherical_kmeans(x, 4, seed=0)
    assert all(len(set(labels[g * 8:(g + 1) * 8])) == 1 for g in range(4)) and len(set(labels)) == 4
    for epoch in range(3):
        batches = cluster_batches(labels, 8, seed=1, epoch=epoch)
        assert len(batches) == 4 and sorted(np.concatenate(batches).tolist()) == list(range(32))
        assert all(len(set((b // 8).tolist())) == 1 for b in batches)  # each batch one group
    assert [b.tolist() for b in cluster_batches(labels, 8, 1, 0)] == [b.tolist() for b in cluster_batches(labels, 8, 1, 0)]
    assert [b.tolist() for b in cluster_batches(labels, 8, 1, 0)] != [b.tolist() for b in cluster_batches(labels, 8, 1, 1)]


def test_cluster_batching_scales_by_capping_clusters_and_fitting_on_a_sample(monkeypatch):
    """Past MAX_CLUSTERS the clusters hold several batches; past SAMPLE_PER_CLUSTER points a cluster the centres
    are fitted on a sample and every point is still assigned (here 12 planted groups of 400, caps made small)."""
    import retriever.training.batching as batching

    monkeypatch.setattr(batching, "MAX_CLUSTERS", 12)
    monkeypatch.setattr(batching, "SAMPLE_PER_CLUSTER", 20)  # 240 of the 4,800 points fit the centres
    monkeypatch.setattr(batching, "CHUNK", 1000)  # and the assignment runs in chunks
    rng = np.random.default_rng(3)
    centres = np.eye(16)[:12] * 10
    x = np.concatenate([c + rng.normal(scale=0.5, size=(400, 16)) for c in centres]).astype(np.float32)
    labels = batching.spherical_kmeans(x, len(x) // 8, seed=0)  # asks for 600 clusters
    assert labels.shape == (4800,) and len(set(labels.tolist())) == 12
    assert all(len(set(labels[g * 400:(g + 1) * 400].tolist())) == 1 for g in range(12))  # each group one cluster
    batches = batching.cluster_batches(labels, 8, seed=0, epoch=0)
    assert sum(len(set((b // 400).tolist())) == 1 for b in batches) >= len(batches) - 11  # but at group seams


def test_train_config_checks_the_toolbox_options():
    with pytest.raises(ConfigError, match="loss must be one of"):
        TrainConfig(loss="triplet")
    with pytest.raises(ConfigError, match="batching"):
        TrainConfig(batching="sorted")
    with pytest.raises(ConfigError, match="queue_margin"):
        TrainConfig(queue_size=10, queue_margin=2.0)
    with pytest.raises(ConfigError, match="pool"):
        TrainConfig(mix_negatives=4, mix_pool=1)
    # options at their defaults leave the fingerprint of the recipe as it was before they existed
    assert "queue_size" not in TrainConfig().fingerprint_dict()
    assert TrainConfig(queue_size=64).fingerprint_dict()["queue_size"] == 64


def test_the_temperature_has_its_own_learning_rate_under_the_same_schedule():
    from retriever.training.optim import make_optimizer

    model = torch.nn.Linear(2, 2)
    loss = InfoNCE(InfoNCEConfig(T), ContrastiveOptions(learn_temperature=True))
    opt, sched = make_optimizer(model, 5e-5, 0.01, 10, 0.1, list(loss.parameters()), 1e-2)
    assert opt.param_groups[2]["params"] == [loss.temperature.log_t] and opt.param_groups[2]["weight_decay"] == 0
    for _ in range(3):
        assert opt.param_groups[2]["lr"] / opt.param_groups[0]["lr"] == pytest.approx(200)
        opt.step()
        sched.step()
    same, _ = make_optimizer(model, 5e-5, 0.01, 10, 0.1, list(loss.parameters()))
    assert same.param_groups[2]["lr"] == same.param_groups[0]["lr"]
    with pytest.raises(ConfigError, match="temperature_lr"):
        TrainConfig(learn_temperature=True, temperature_lr=0)
