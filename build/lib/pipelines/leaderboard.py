"""``densepipe leaderboard``: one model (and BM25) on several BEIR datasets — whichever are present locally or
downloadable — as a BEIR-style nDCG@10 table with the published figures beside ours and the averages over the
datasets that ran. A dataset that cannot be had is listed with the reason, not silently dropped."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from retriever.encoders import EncoderConfig
from retriever.types import DensepipeError

from pipelines.published import published

log = logging.getLogger("densepipe.leaderboard")


def leaderboard(datasets: list[str], encoder: EncoderConfig, output: str, split: str = "test", bm25: bool = True,
                max_docs: int | None = None) -> dict:
    from pipelines.baselines import run_bm25, run_dense

    out = Path(output)
    rows = []
    for name in datasets:
        row: dict = {"dataset": name, "bm25_published": published(name, "bm25"),
                     "model_published": published(name, encoder.model)}
        t0 = time.perf_counter()
        try:
            if bm25:
                row["bm25"] = run_bm25(name, split, str(out / f"{name}.bm25.trec"), remove_query=True,
                                       max_docs=max_docs)["metrics"]["ndcg@10"]
            row["model"] = run_dense(name, split, str(out / f"{name}.dense.trec"), encoder, remove_query=True,
                                     max_docs=max_docs)["metrics"]["ndcg@10"]
        except DensepipeError as e:  # not present and not downloadable, or invalid: say so in the table
            row["unavailable"] = str(e)
            log.warning("leaderboard: %s skipped: %s", name, e)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
    done = [r for r in rows if "unavailable" not in r]
    averages = {k: round(sum(r[k] for r in done) / len(done), 4) if done and all(k in r for r in done) else None
                for k in ("bm25", "model")}
    table = render(rows, averages, encoder.model, bm25)
    from retriever.atomic import write_json, write_text

    write_text(out / "leaderboard.md", table)
    result = {"model": encoder.model, "split": split, "rows": rows, "average": averages,
              "table": str(out / "leaderboard.md")}
    write_json(out / "leaderboard.json", result)
    return result


def _cell(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def render(rows: list[dict], averages: dict, model: str, bm25: bool) -> str:
    head = ["dataset"] + (["BM25 (ours)", "BM25 (published)"] if bm25 else []) + \
        [f"{model} (ours)", f"{model} (published)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "unavailable" in r:
            lines.append(f"| {r['dataset']} | " + " | ".join(["n/a"] * (len(head) - 1)) + " |")
            continue
        cells = ([_cell(r.get("bm25")), _cell(r["bm25_published"])] if bm25 else []) + \
            [_cell(r["model"]), _cell(r["model_published"])]
        lines.append(f"| {r['dataset']} | " + " | ".join(cells) + " |")
    avg = ([_cell(averages["bm25"]), ""] if bm25 else []) + [_cell(averages["model"]), ""]
    lines.append("| **average** | " + " | ".join(avg) + " |")
    missing = [r for r in rows if "unavailable" in r]
    if missing:
        lines += [""] + [f"- {r['dataset']}: {r['unavailable']}" for r in missing]
    return "\n".join(lines) + "\n"
