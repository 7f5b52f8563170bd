"""Loss values against hand computations on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from retriever.losses import DebiasedInfoNCE, DebiasedInfoNCEConfig, InfoNCE, InfoNCEConfig
from retriever.types import ConfigError

Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
P = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
N = torch.tensor([[0.0, -1.0]])


def _ce(scores_row, target):
    return -scores_row[target] + math.log(sum(math.exp(s) for s in scores_row))


def test_infonce_by_hand():
    t = 0.5
    loss = InfoNCE(InfoNCEConfig(temperature=t))(Q, P, N)
    # query 0: scores with [p0, p1, n0] = [0.8, 0.6, 0.0]; query 1: [0.6, 0.8, -1.0]
    expect = (_ce([0.8 / t, 0.6 / t, 0.0], 0) + _ce([0.6 / t, 0.8 / t, -1.0 / t], 1)) / 2
    assert loss.item() == pytest.approx(expect, rel=1e-6)


def test_infonce_symmetric_and_mask():
    t = 1.0
    sym = InfoNCE(InfoNCEConfig(temperature=t, symmetric=True))(Q, P)
    q2d = (_ce([0.8, 0.6], 0) + _ce([0.6, 0.8], 1)) / 2
    d2q = (_ce([0.8, 0.6], 0) + _ce([0.6, 0.8], 1)) / 2  # P @ Q.T has the same rows here
    assert sym.item() == pytest.approx((q2d + d2q) / 2, rel=1e-6)
    mask = torch.tensor([[False, True, False], [False, False, False]])  # p1 is also relevant to query 0
    masked = InfoNCE(InfoNCEConfig(temperature=t))(Q, P, N, mask=mask)
    expect = (_ce([0.8, 0.0], 0) + _ce([0.6, 0.8, -1.0], 1)) / 2
    assert masked.item() == pytest.approx(expect, rel=1e-6)


def test_debiased_by_hand_and_reduces_to_infonce():
    t = 0.5
    plain = InfoNCE(InfoNCEConfig(temperature=t))(Q, P, N)
    assert DebiasedInfoNCE(DebiasedInfoNCEConfig(temperature=t, tau_plus=0.0))(Q, P, N).item() == pytest.approx(
        plain.item(), rel=1e-5)
    tp = 0.1
    loss = DebiasedInfoNCE(DebiasedInfoNCEConfig(temperature=t, tau_plus=tp))(Q, P, N).item()
    expect = 0.0
    for pos, negs in ((0.8, [0.6, 0.0]), (0.8, [0.6, -1.0])):
        e_pos = math.exp(pos / t)
        ng = max((sum(math.exp(s / t) for s in negs) / len(negs) - tp * e_pos) / (1 - tp), math.exp(-1 / t))
        expect += -math.log(e_pos / (e_pos + len(negs) * ng)) / 2
    assert loss == pytest.approx(expect, rel=1e-5)


def test_loss_configs_reject_bad_values():
    with pytest.raises(ConfigError):
        InfoNCEConfig(temperature=0)
    with pytest.raises(ConfigError):
        DebiasedInfoNCEConfig(tau_plus=1.0)
