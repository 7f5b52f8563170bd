"""Print the README's result tables (Markdown) from the JSON files in benchmarks/results/.

    python benchmarks/tables.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def baselines() -> str:
    d = load("baselines_scifact.json")
    if not d:
        return ""
    out = ["| method | nDCG@10 | published | MRR@10 | Recall@100 | wall (s) |", "|---|---|---|---|---|---|"]
    for r in d["rows"]:
        out.append(f"| {r['method']} | {r['ndcg@10']:.4f} | {r['published']} | {r['mrr@10']:.4f} | "
                   f"{r['recall@100']:.4f} | {r['wall_s']} |")
    return "\n".join(out)


def encode() -> str:
    d = load("encode_throughput.json")
    if not d:
        return ""
    p, r = d["plain_sentence_transformers"], d["densepipe_ray"]
    return "\n".join([
        "| | docs/s | wall (s) | peak RSS (MB) |", "|---|---|---|---|",
        f"| plain `SentenceTransformer.encode` | {p['docs_per_s']} | {p['total_s']} | {p['peak_rss_mb']} |",
        f"| densepipe Ray encode ({d['ray_workers']} actor, Ray start-up included) | {r['docs_per_s']} | "
        f"{r['total_s']} | driver {r['driver_peak_rss_mb']}, actor {r['workers_peak_rss_mb']} |",
        "", f"Ratio Ray / plain: **{d['ratio_ray_over_plain']}** ({d['docs']} SciFact documents, batch "
        f"{d['batch_size']}, {d['cpus']} cores).",
    ])


def sharded() -> str:
    d = load("sharded_search.json")
    if not d:
        return ""
    out = ["| vectors | index | shards | raw FAISS QPS | densepipe sharded QPS | ratio | merged on load | "
           "shard-by-shard + top-k merge QPS (ratio) | same result set |", "|---|---|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        out.append(f"| {r['vectors']} ({r['n']:,}) | {r['factory']} {r['search_params']} | {r['shards']} | "
                   f"{r['qps_raw_faiss']:,.0f} | {r['qps_sharded']:,.0f} | {r['ratio_sharded_over_raw']} | "
                   f"{'yes' if r['merged_on_load'] else 'no'} | {r['qps_shard_by_shard_topk_merge']:,.0f} "
                   f"({r['ratio_shard_by_shard_over_raw']}) | {r['shard_by_shard_same_result_set']} |")
    return "\n".join(out)


def scale() -> str:
    d = load("scale_ivfpq.json")
    if not d:
        return ""
    iv, ref = d["ivfpq"], d["flat_refusal"]
    out = [f"Flat refused under a {d['budget_bytes'] / 1e9:g} GB budget in {ref['seconds_to_refuse']} s: "
           f"needs {ref['needed_bytes'] / 1e9:.2f} GB. `{d['factory']}` under the same budget: estimated "
           f"{iv['estimated_index_bytes'] / 1e6:.1f} MB, actual {iv['actual_index_bytes'] / 1e6:.1f} MB; trained on "
           f"{iv['train_n']:,} vectors in {iv['train_s']} s, {d['n']:,} added in {iv['add_s']} s; peak RSS "
           f"{d['peak_rss_mb']['end']:,.0f} MB (the float32 vectors alone are "
           f"{d['n'] * d['d'] * 4 / 1e6:,.0f} MB).", "",
           "| nprobe | QPS | ms/query | recall@10 vs exact |", "|---|---|---|---|"]
    for s in iv["search"]:
        out.append(f"| {s['nprobe']} | {s['qps']:,.0f} | {s['ms_per_query']} | {s['recall@10_vs_exact']} |")
    return "\n".join(out)


def compression(name: str) -> str:
    path = RESULTS / name / "sweep.md"
    return path.read_text() if path.is_file() else ""


def finetune() -> str:
    d = load("finetune_scifact.json")
    if not d:
        return ""
    import sys

    sys.path.insert(0, str(RESULTS.parent))
    from finetune import table

    return table(d)


def hyde() -> str:
    d = load("hyde_scifact.json")
    if not d:
        return ""
    out = ["| query vector | N | nDCG@10 | Recall@100 |", "|---|---|---|---|"]
    for name, r in d["rows"].items():
        out.append(f"| {name} | {r['n']} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} |")
    return "\n".join(out)


if __name__ == "__main__":
    for title, text in (("baselines", baselines()), ("encode", encode()), ("sharded", sharded()),
                        ("scale", scale()), ("compression scifact", compression("compression_scifact")),
                        ("compression synthetic", compression("compression_synthetic_1000000")),
                        ("finetune", finetune()), ("hyde", hyde())):
        print(f"<!-- {title} -->\n{text}\n")
