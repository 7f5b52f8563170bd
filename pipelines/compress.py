"""Compression sweep: build each variant over the same vectors, search, score, and mark the Pareto front.

Quality is nDCG@10 / Recall@100 against qrels when there are qrels (real data), else recall against exact
search (synthetic data). Outputs: JSON, a Markdown table and a PNG of memory vs quality with the front.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np

from indexes import IndexSpec, apply_search_params, build_index, fmt_bytes
from indexes.compress import SignBitIndex, SweepRow, Variant, mark_pareto
from indexes.sharded import as_scores, index_metric
from pipelines.search import hits_to_run
from retriever.atomic import atomic_path, write_json, write_text
from retriever.eval import evaluate
from retriever.types import Qrels

log = logging.getLogger("densepipe.compress")


def qrels_quality(qids: list[str], doc_ids: list[str], qrels: Qrels) -> Callable[[np.ndarray, np.ndarray], dict]:
    def score(D: np.ndarray, I: np.ndarray) -> dict:
        res = evaluate(qrels, hits_to_run(qids, D, I, doc_ids), ["ndcg@10", "recall@100", "mrr@10"])
        return {k: round(v, 5) for k, v in res.aggregate.items()}

    return score


def exact_quality(xb: np.ndarray, xq: np.ndarray, k: int = 100) -> Callable[[np.ndarray, np.ndarray], dict]:
    import faiss

    exact = faiss.IndexFlatIP(xb.shape[1])
    exact.add(xb)
    _, gt = exact.search(xq, k)

    def score(D: np.ndarray, I: np.ndarray) -> dict:
        r10 = np.mean([len(set(a[:10]) & set(g[:10])) / 10 for a, g in zip(I, gt)])
        r100 = np.mean([len(set(a[:k]) & set(g[:k])) / k for a, g in zip(I, gt)])
        return {"recall@10_vs_exact": round(float(r10), 5), f"recall@{k}_vs_exact": round(float(r100), 5)}

    return score


def _build(variant: Variant, xb: np.ndarray, train_size: int | None):
    import faiss

    n, d = xb.shape
    if variant.factory == "binary":
        index = SignBitIndex(d)
        index.add(xb)
        return index, d / 8, index.serialized_bytes()
    index, info = build_index(xb, IndexSpec(variant.factory, train_size=train_size))
    return index, info.estimate.bytes_per_vector, len(faiss.serialize_index(index))


def sweep(xb: np.ndarray, xq: np.ndarray, variants: list[Variant], quality: Callable, k: int = 100,
          train_size: int | None = None, metric: str = "ndcg@10", progress: bool = True) -> list[SweepRow]:
    from tqdm.auto import tqdm

    rows = []
    for v in tqdm(variants, desc="compress", unit="variant", disable=not progress):
        t0 = time.perf_counter()
        index, per_vector, total = _build(v, xb, train_size)
        build_s = time.perf_counter() - t0
        for params in v.search_params:
            if params:
                apply_search_params(index, params)
            index.search(xq[: min(len(xq), 16)], k)  # warm-up
            t1 = time.perf_counter()
            D, I = index.search(xq, k)
            qps = len(xq) / max(time.perf_counter() - t1, 1e-9)
            D = as_scores(D, index_metric(index))
            name = v.name if len(v.search_params) == 1 else f"{v.name}/{params}"
            rows.append(SweepRow(name, v.factory, params, per_vector, total, build_s, qps, quality(D, I)))
            log.info("%s: %s, %s", name, fmt_bytes(total), rows[-1].metrics)
        del index
    return mark_pareto(rows, metric)


def to_markdown(rows: list[SweepRow], metric: str) -> str:
    first = [metric, f"{metric}_vs_flat"]
    metric_keys = [m for m in first if m in rows[0].metrics] + sorted(m for m in rows[0].metrics if m not in first)
    head = "| variant | bytes/vector | index size | " + " | ".join(metric_keys) + " | QPS | build (s) | front |"
    lines = [head, "|" + "---|" * (6 + len(metric_keys))]
    for r in sorted(rows, key=lambda r: -r.index_bytes):
        vals = " | ".join(f"{r.metrics[m]:.4f}" for m in metric_keys)
        qps = f"{r.qps:,.0f}" if r.qps else "—"
        lines.append(f"| {r.name} | {r.bytes_per_vector:g} | {fmt_bytes(r.index_bytes)} | {vals} | {qps} | "
                     f"{r.build_s:.1f} | {'★' if r.pareto else ''} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[SweepRow], metric: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    xs = [r.index_bytes / 1e6 for r in rows]
    ys = [r.metrics[metric] for r in rows]
    ax.scatter(xs, ys, c=["tab:red" if r.pareto else "tab:gray" for r in rows], zorder=3)
    for r, x, y in zip(rows, xs, ys):
        ax.annotate(r.name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = sorted((r for r in rows if r.pareto), key=lambda r: r.index_bytes)
    ax.step([r.index_bytes / 1e6 for r in front], [r.metrics[metric] for r in front], where="post",
            color="tab:red", label="Pareto front")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.1, 1, 10: not 10^-1 beside 2x10^-1
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("index size (MB, log scale)")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def write_outputs(rows: list[SweepRow], out_dir: str | Path, metric: str, title: str, extra: dict | None = None
                  ) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"title": title, "metric": metric, **(extra or {}), "rows": [r.to_dict() for r in rows]}
    write_json(out / "sweep.json", payload)
    write_text(out / "sweep.md", to_markdown(rows, metric))
    plot(rows, metric, out / "sweep.png", title)
    return payload


def rows_from_json(path: str | Path) -> tuple[list[SweepRow], str]:
    data = json.loads(Path(path).read_text())
    rows = []
    for r in data["rows"]:
        fixed = {"name", "factory", "search_params", "bytes_per_vector", "index_bytes", "build_s", "qps", "pareto"}
        rows.append(SweepRow(r["name"], r["factory"], r["search_params"], r["bytes_per_vector"], r["index_bytes"],
                             r["build_s"], r["qps"], {k: v for k, v in r.items() if k not in fixed}))
    return rows, data["metric"]


def select_variants(d: int, names: list[str] | None) -> list[Variant]:
    """The default variants for dimension ``d``, or the named subset; an unknown name is an error."""
    from indexes.compress import default_variants
    from retriever.types import ConfigError

    variants = default_variants(d)
    if not names:
        return variants
    unknown = set(names) - {v.name for v in variants}
    if unknown:
        raise ConfigError(f"unknown variants {sorted(unknown)}; choose from {[v.name for v in variants]}.")
    return [v for v in variants if v.name in set(names)]


def compress_prepared(prep, emb_dir: str | Path, encoder, out_dir: str | Path, names: list[str] | None = None,
                      progress: bool = True, extra: dict | None = None) -> list[SweepRow]:
    """Sweep the variants over a prepared dataset's document vectors (encoded, or read from ``emb_dir``) with its
    queries and qrels, and write sweep.json / .md / .png into ``out_dir``."""
    from pipelines.encode import corpus_vectors
    from retriever.encoders import BiEncoder

    encoder.one_vector_per_document("the compression sweep")
    doc_ids, xb = corpus_vectors(prep.corpus_dir, emb_dir, encoder, progress)
    qids = list(prep.dataset.queries)
    xq = BiEncoder(encoder).encode_queries([prep.dataset.queries[q] for q in qids])
    rows = sweep(xb, xq, select_variants(xb.shape[1], names), qrels_quality(qids, doc_ids, prep.dataset.qrels),
                 progress=progress)
    write_outputs(rows, out_dir, "ndcg@10", f"{prep.dataset.name} {prep.dataset.split}: memory vs nDCG@10 "
                  f"({encoder.model})", {"dataset": prep.dataset.name, "split": prep.dataset.split,
                                         "model": encoder.model, "n": len(xb), "d": int(xb.shape[1]), **(extra or {})})
    return rows
