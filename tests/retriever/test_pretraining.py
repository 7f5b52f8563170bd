"""Pretraining: span sampling bounds, the group-wise loss by hand and on a toy batch, the three tasks' views,
and bad configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from retriever.losses.span_prediction import GroupwiseSpanLoss, SpanLossConfig
from retriever.pretraining import Granularity, PretrainConfig, SpanConfig, check_corpus, make_views, sample_spans
from retriever.types import ConfigError

DOCS = ["Vitamin D regulates calcium. Low levels weaken bones in older adults. Supplements reduce the risk of "
        "fractures in some trials but not in others.",
        "Aspirin inhibits platelets. It lowers the risk of a second heart attack.",
        "Malaria vaccines target the parasite before it reaches the liver."]


def test_spans_respect_granularity_bounds_and_stay_inside_their_document():
    rng = np.random.default_rng(0)
    cfg = SpanConfig(spans_per_granularity=5)
    bounds = {g.name: g for g in cfg.granularities}
    for doc in DOCS:
        words = doc.split()
        for _ in range(20):
            for span in sample_spans(doc, cfg, rng):
                g = bounds[span.granularity]
                assert g.min_words <= span.end - span.start <= g.max_words
                assert span.text.split() == words[span.start:span.end]  # contiguous, from this document only
                if g.by_sentence:  # whole sentences: starts after a sentence end, ends with one
                    assert span.start == 0 or words[span.start - 1].endswith((".", "!", "?"))
                    assert span.text.endswith((".", "!", "?"))
                if span.granularity == "sentence":
                    assert sum(w.endswith(".") for w in span.text.split()) == 1
    short = sample_spans("two words", cfg, rng)
    assert {s.granularity for s in short} == {"ngram"}  # too short for the others: skipped, never padded


def test_groupwise_loss_by_hand():
    docs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    spans = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    owner = torch.tensor([0, 0, 1])
    t = 0.5
    loss = GroupwiseSpanLoss(SpanLossConfig(t))(docs, spans, owner)
    s = (docs @ spans.T / t).tolist()
    pairs = [(0, 0, [2]), (0, 1, [2]), (1, 2, [0, 1])]
    expected = np.mean([-math.log(math.exp(s[i][p]) / (math.exp(s[i][p]) + sum(math.exp(s[i][m]) for m in negs)))
                        for i, p, negs in pairs])
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_loss_is_lower_for_a_documents_own_spans():
    torch.manual_seed(0)
    docs = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    noise = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    own_spans = torch.nn.functional.normalize(docs.repeat_interleave(2, 0) + 0.3 * noise, dim=-1)
    owner = torch.arange(4).repeat_interleave(2)
    loss = GroupwiseSpanLoss()
    assert loss(docs, own_spans, owner) < loss(docs, own_spans, owner.roll(2))


def test_task_views():
    rng = np.random.default_rng(1)
    anchors, views, owner = make_views(DOCS, PretrainConfig(task="span"), rng)
    assert anchors == DOCS and len(views) == len(owner) and set(owner) == {0, 1, 2}
    assert all(v in " ".join(DOCS[o].split()) for v, o in zip(views, owner))
    anchors, views, owner = make_views(DOCS, PretrainConfig(task="dropout"), rng)
    assert anchors == views == DOCS and owner == [0, 1, 2]
    anchors, views, owner = make_views(DOCS, PretrainConfig(task="ict", ict_keep_probability=0.0), rng)
    for a, v, d in zip(anchors, views, DOCS):
        assert a in d and a not in v and sorted((a + " " + v).split()) == sorted(d.split())


def test_bad_pretraining_configs():
    with pytest.raises(ConfigError, match="longest document has 3.*lower min_words"):
        check_corpus(["three words here"], SpanConfig((Granularity("paragraph", 30, 60, True),)))
    with pytest.raises(ConfigError, match="non-empty corpus"):
        check_corpus([], SpanConfig())
    with pytest.raises(ConfigError, match="min_words <= max_words"):
        Granularity("phrase", 10, 4)
    with pytest.raises(ConfigError, match="task must be"):
        PretrainConfig(task="mlm")
    with pytest.raises(ConfigError, match="mlm_probability"):
        PretrainConfig(mlm_weight=1.0, mlm_probability=1.5)


def test_mask_tokens_picks_only_real_tokens_and_labels_them():
    from retriever.pretraining.mlm import mask_tokens

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (64, 40))
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    attention = torch.ones_like(ids)
    attention[:, 30:] = 0  # padding
    masked, labels = mask_tokens(ids, attention, [0, 101, 102], 103, 1000, 0.15, g)
    picked = labels != -100
    assert not picked[:, 0].any() and not picked[:, 30:].any()
    assert torch.equal(labels[picked], ids[picked])
    assert torch.equal(masked[~picked], ids[~picked])
    rate = picked[:, 1:30].float().mean().item()
    assert 0.12 < rate < 0.18
    as_mask = (masked[picked] == 103).float().mean().item()
    assert 0.7 < as_mask < 0.9  # the rest: a random token or the original


def test_mlm_term_trains_the_head_and_the_encoder(tiny_model):
    from sentence_transformers import SentenceTransformer

    from retriever.pretraining.mlm import MaskedLM
    from retriever.training.optim import make_optimizer

    torch.manual_seed(0)
    model = SentenceTransformer(str(tiny_model), device="cpu")
    mlm = MaskedLM(model, 0.3)
    texts = ["vitamin d deficiency is common in winter", "malaria is spread by mosquitoes"] * 4
    both = torch.nn.ModuleList([model, mlm.head])
    opt, sched = make_optimizer(both, 1e-2, 0.0, 30, 0.0)
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for step in range(30):
        loss = mlm.loss(model, texts, torch.Generator().manual_seed(step))
        loss.backward()
        opt.step(), sched.step(), opt.zero_grad()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert "word_embeddings" not in " ".join(n for n, _ in mlm.head.named_parameters())
