"""Metrics equal BEIR's EvaluateRetrieval (to 1e-6) and trec_eval's semantics on real qrels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from retriever.data import read_qrels
from retriever.eval import evaluate, paired_test, truncate
from retriever.types import ConfigError
from tests.conftest import DATA, SCIFACT, need_data


def _random_run(qrels, corpus_ids, seed=0, depth=120):
    rng = np.random.default_rng(seed)
    run = {}
    for qid in qrels:
        docs = list(qrels[qid]) + list(rng.choice(corpus_ids, size=depth, replace=False))
        run[qid] = {d: float(s) for d, s in zip(docs, rng.random(len(docs)))}
    return run


@pytest.fixture(scope="module")
def scifact_qrels():
    need_data(SCIFACT)
    return read_qrels(SCIFACT / "qrels" / "test.tsv")


def test_equals_beir_evaluator(scifact_qrels):
    from beir.retrieval.evaluation import EvaluateRetrieval

    corpus_ids = [f"d{i}" for i in range(3000)]
    run = _random_run(scifact_qrels, corpus_ids)
    ks = [1, 3, 10, 100]
    ndcg, _map, recall, precision = EvaluateRetrieval.evaluate(scifact_qrels, run, ks, ignore_identical_ids=False)
    mrr = EvaluateRetrieval.evaluate_custom(scifact_qrels, run, ks, metric="mrr")
    ours = evaluate(scifact_qrels, run, [f"{m}@{k}" for m in ("ndcg", "map", "recall", "p", "mrr") for k in ks])
    for k in ks:
        assert ours.aggregate[f"ndcg@{k}"] == pytest.approx(ndcg[f"NDCG@{k}"], abs=1e-5)  # BEIR rounds to 5 places
        assert ours.aggregate[f"map@{k}"] == pytest.approx(_map[f"MAP@{k}"], abs=1e-5)
        assert ours.aggregate[f"recall@{k}"] == pytest.approx(recall[f"Recall@{k}"], abs=1e-5)
        assert ours.aggregate[f"p@{k}"] == pytest.approx(precision[f"P@{k}"], abs=1e-5)
        assert ours.aggregate[f"mrr@{k}"] == pytest.approx(mrr[f"MRR@{k}"], abs=1e-5)


def _ranking(hits: dict) -> list[str]:
    """trec_eval's order: score descending, ties broken by document id descending."""
    return [d for d, _ in sorted(hits.items(), key=lambda x: (x[1], x[0]), reverse=True)]


def _ndcg(judged: dict, hits: dict, k: int) -> float:
    """nDCG@k written out from its definition (linear gains, log2 discounts), independent of pytrec_eval."""
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(_ranking(hits)[:k]) if judged.get(d, 0) > 0)
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def _recall(judged: dict, hits: dict, k: int) -> float:
    relevant = {d for d, g in judged.items() if g > 0}
    return len(relevant & set(_ranking(hits)[:k])) / len(relevant) if relevant else 0.0


def test_equals_an_independent_computation_per_query(scifact_qrels):
    """Per-query nDCG@10 and Recall@100 against the definitions written out here (with ties in the run, which
    trec_eval breaks by document id), and the mean over queries."""
    run = _random_run(scifact_qrels, [f"d{i}" for i in range(3000)], seed=1)
    for qid in list(run)[::7]:  # ties: trec_eval orders equal scores by document id, descending
        for d in list(run[qid])[:5]:
            run[qid][d] = 0.5
    ours = evaluate(scifact_qrels, run, ["ndcg@10", "recall@100"])
    for qid in scifact_qrels:
        assert ours.per_query[qid]["ndcg@10"] == pytest.approx(_ndcg(scifact_qrels[qid], run[qid], 10), abs=1e-9)
        assert ours.per_query[qid]["recall@100"] == pytest.approx(_recall(scifact_qrels[qid], run[qid], 100),
                                                                   abs=1e-9)
    mean = sum(_ndcg(scifact_qrels[q], run[q], 10) for q in scifact_qrels) / len(scifact_qrels)
    assert ours.aggregate["ndcg@10"] == pytest.approx(mean, abs=1e-9)


def test_ignore_self_matches_beir(scifact_qrels):
    from beir.retrieval.evaluation import EvaluateRetrieval

    run = _random_run(scifact_qrels, [f"d{i}" for i in range(3000)], seed=2)
    for qid in list(run)[:50]:
        run[qid][qid] = 10.0  # a self hit on top, as when queries are also documents
    snapshot = {q: dict(h) for q, h in run.items()}
    ndcg, *_ = EvaluateRetrieval.evaluate(scifact_qrels, {q: dict(h) for q, h in run.items()}, [10],
                                          ignore_identical_ids=True)
    ours = evaluate(scifact_qrels, run, ["ndcg@10"], ignore_self=True)
    assert ours.aggregate["ndcg@10"] == pytest.approx(ndcg["NDCG@10"], abs=1e-5)
    assert run == snapshot  # the caller's run is not modified


def test_hand_computed_values():
    qrels = {"q": {"a": 1, "b": 2}}
    run = {"q": {"x": 3.0, "a": 2.0, "y": 1.0, "b": 0.5}}
    res = evaluate(qrels, run, ["ndcg@10", "mrr@10", "mrr@1", "recall@2", "p@2", "map"])
    dcg = 1 / math.log2(3) + 2 / math.log2(5)  # trec_eval's ndcg: gain = grade, discount log2(rank + 1)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert res.aggregate["ndcg@10"] == pytest.approx(dcg / idcg)
    assert res.aggregate["mrr@10"] == pytest.approx(0.5)
    assert res.aggregate["mrr@1"] == 0.0
    assert res.aggregate["recall@2"] == pytest.approx(0.5)
    assert res.aggregate["p@2"] == pytest.approx(0.5)
    assert res.aggregate["map"] == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_ties_follow_trec_eval_order():
    # equal scores: trec_eval ranks the larger document id first
    qrels = {"q": {"a": 1}}
    run = {"q": {"a": 1.0, "b": 1.0}}
    assert list(truncate(run, 1)["q"]) == ["b"]
    assert evaluate(qrels, run, ["mrr@1", "mrr@10"]).aggregate == {"mrr@1": 0.0, "mrr@10": 0.5}


def test_relevance_level_and_complete():
    qrels = {"q1": {"a": 1, "b": 2}, "q2": {"c": 1}}
    run = {"q1": {"a": 2.0, "b": 1.0}}
    assert evaluate(qrels, run, ["recall@1"], relevance_level=2).aggregate["recall@1"] == 0.0
    assert evaluate(qrels, run, ["recall@2"]).num_queries == 1
    full = evaluate(qrels, run, ["recall@2"], complete=True)
    assert full.num_queries == 2 and full.aggregate["recall@2"] == pytest.approx(0.5)


def test_msmarco_dev_mrr_with_trec_files():
    tq = DATA / "topics-qrels"
    need_data(tq)
    qrels = read_qrels(tq / "qrels.msmarco-passage.dev-subset.txt")
    # a run that puts the first relevant passage at rank (i % 12) + 1: MRR@10 is known in closed form
    run, expect = {}, []
    for i, (qid, docs) in enumerate(sorted(qrels.items())):
        rank = i % 12 + 1
        rel = sorted(docs)[0]
        hits = {f"neg{j}": 100.0 - j for j in range(1, rank)}
        hits[rel] = 100.0 - rank
        run[qid] = hits
        expect.append(1 / rank if rank <= 10 else 0.0)
    res = evaluate(qrels, run, ["mrr@10"])
    assert res.aggregate["mrr@10"] == pytest.approx(sum(expect) / len(expect), abs=1e-9)


def test_bad_metric_names():
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, ["bleu"])
    with pytest.raises(ConfigError, match="needs a cutoff"):
        evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, ["ndcg"])


def test_paired_test():
    rng = np.random.default_rng(0)
    a = {str(i): {"ndcg@10": float(x)} for i, x in enumerate(rng.random(200))}
    same = paired_test(a, a, "ndcg@10")
    assert same.t_pvalue == 1.0 and same.randomization_pvalue == 1.0
    noise = rng.normal(0, 0.05, size=len(a))
    b = {q: {"ndcg@10": v["ndcg@10"] - 0.1 + e} for (q, v), e in zip(a.items(), noise)}
    diff = paired_test(a, b, "ndcg@10", trials=2000)
    assert diff.t_pvalue < 1e-6 and diff.randomization_pvalue < 0.01
