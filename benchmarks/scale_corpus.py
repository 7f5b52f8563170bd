"""Memory and time against corpus size: generated BEIR corpora of 100k, 1M and 8.8M documents (MS MARCO passage's
size), seeded vocabulary, ~60 words a document, written to a scratch folder (never to git).

For each size, each step in a fresh interpreter (peak resident memory of that process, from ``wait4``):
- ``densepipe prepare`` (streaming), then again on the prepared data (the rerun);
- ``densepipe bm25`` (100k and 1M): its driver's peak, and the JVM children's (indexing, search) it reports;
- seeded 384-d vectors as an embeddings folder -> an IVF-PQ index in 4 parts (``densepipe index``'s code);
- search of 1,000 query vectors with 1, 2 and 4 shard actors on a simulated 2-node Ray cluster
  (``ray.cluster_utils.Cluster``): QPS, each actor's peak memory, the driver's peak, and whether the results equal
  one index over the same folder (up to FAISS's choice among hits tied at the k-th score).

    python benchmarks/scale_corpus.py [--sizes 100000,1000000,8800000] [--vector-sizes 100000,1000000]
                                      [--bm25-sizes 100000,1000000] [--scratch /tmp/densepipe-scale]

Writes benchmarks/results/scale_corpus.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

VOCAB = 50_000
DIM = 384
QUERIES = 1000


def generate(folder: Path, n: int, seed: int = 0, chunk: int = 100_000) -> None:
    """corpus.jsonl of ``n`` documents (Zipf-like word frequencies, 30-90 words), queries.jsonl and qrels/test.tsv
    of 200 queries made of 4 words of a random document (which is its one relevant document)."""
    if (folder / "qrels" / "test.tsv").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(VOCAB)])
    p = 1.0 / np.arange(1, VOCAB + 1)
    p /= p.sum()
    picks = sorted(rng.choice(n, 200, replace=False).tolist())
    queries = []
    tmp = folder / "corpus.jsonl.tmp"
    with open(tmp, "w") as f:
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            lengths = rng.integers(30, 91, m)
            flat = words[rng.choice(VOCAB, int(lengths.sum()), p=p)]
            ends = np.cumsum(lengths)
            lines = []
            for i in range(m):
                text = " ".join(flat[ends[i] - lengths[i]:ends[i]])
                lines.append(f'{{"_id": "d{start + i}", "title": "", "text": "{text}"}}\n')
                while picks and picks[0] == start + i:
                    picks.pop(0)
                    queries.append((f"q{len(queries)}", f"d{start + i}",
                                    " ".join(flat[ends[i] - lengths[i]:ends[i]][[0, 3, 7, 11]])))
            f.write("".join(lines))
    os.replace(tmp, folder / "corpus.jsonl")
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, _, t in queries))
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                               "".join(f"{q}\t{d}\t1\n" for q, d, _ in queries))


def measured(cmd: list[str], env: dict | None = None, timeout: float = 7200) -> dict:
    """Run ``cmd``; wall seconds and its stdout's last JSON object (with the peak RSS it reports of itself)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    out, err = proc.communicate(timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    result = None
    for line in reversed(out.strip().splitlines()):
        try:
            result = json.loads(line)
            break
        except json.JSONDecodeError:
            continue
    return {"seconds": round(wall, 2), "peak_rss_mb": (result or {}).pop("_peak_rss_mb", None), "result": result}


def in_fresh_python(code: str, env: dict | None = None) -> dict:
    """Run ``code`` (which prints one JSON line last) in a fresh interpreter, then report its own peak RSS."""
    wrapped = code + "\nfrom retriever.memory import peak_rss_mb\n_r = json.loads(_out)\n" \
                     "_r['_peak_rss_mb'] = peak_rss_mb()\nprint(json.dumps(_r))\n"
    return measured([sys.executable, "-c", "import json\n" + wrapped], env)


def prepare_step(folder: Path, work: Path) -> dict:
    code = (f"import time\nfrom pipelines.workspace import prepare\nfrom pathlib import Path\n"
            f"t0 = time.perf_counter()\np = prepare({str(folder)!r}, root=Path({str(work)!r}))\n"
            f"_out = json.dumps({{'prepare_seconds': round(time.perf_counter() - t0, 3), "
            f"'documents': len(p.dataset.corpus), 'shards': len(p.dataset.corpus.manifest['shards'])}})")
    return in_fresh_python(code)


def bm25_step(folder: Path, work: Path, out: Path) -> dict:
    code = (f"from pipelines.baselines import run_bm25\n"
            f"r = run_bm25({str(folder)!r}, 'test', {str(out)!r}, k=1000, threads=2)\n"
            f"_out = json.dumps({{'metrics': r['metrics'], 'memory': r['memory'], 'seconds': r['seconds']}})")
    return in_fresh_python(code, {"DRP_WORK_DIR": str(work)})


def write_vectors_step(emb: Path, n: int) -> float:
    from retriever.data.embeddings import write_vectors

    if (emb / "manifest.json").is_file():
        return 0.0
    t0 = time.perf_counter()
    part = n // 4

    def parts():
        for j in range(4):
            rng = np.random.default_rng(1000 + j)
            centers = np.random.default_rng(7).standard_normal((256, DIM)).astype(np.float32)
            xb = centers[rng.integers(0, 256, part)] + 0.6 * rng.standard_normal((part, DIM)).astype(np.float32)
            xb /= np.linalg.norm(xb, axis=1, keepdims=True)
            yield [f"d{j * part + i}" for i in range(part)], xb

    write_vectors(emb, parts(), model="synthetic-384")
    return time.perf_counter() - t0


def index_step(emb: Path, ix: Path) -> dict:
    code = (f"from indexes import IndexSpec\nfrom pipelines.index_stage import index_embeddings\n"
            f"m = index_embeddings({str(emb)!r}, {str(ix)!r}, IndexSpec('IVF1024,PQ48x4fs', train_size=50000, "
            f"search_params='nprobe=16'), progress=False)\n"
            f"_out = json.dumps({{k: m[k] for k in ('factory', 'parts', 'estimated_index_bytes', 'single_file')}})")
    return in_fresh_python(code)


SEARCH = """
import numpy as np, ray
from ray.cluster_utils import Cluster
from pipelines.runtime import RayEnv, init_ray
from pipelines.shard_search import DistributedSearcher
from pipelines.index_stage import load_sharded
from pipelines.search import DenseSearcher
from pipelines.workspace import prepare
from pathlib import Path
prep = prepare({folder!r}, root=Path({work!r}))  # what `densepipe search` reads: the queries, not the corpus
rng = np.random.default_rng(5)
centers = np.random.default_rng(7).standard_normal((256, {dim})).astype(np.float32)
xq = centers[rng.integers(0, 256, {nq})] + 0.6 * rng.standard_normal(({nq}, {dim})).astype(np.float32)
xq /= np.linalg.norm(xq, axis=1, keepdims=True)
qids = [f"q{{i}}" for i in range({nq})]
cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 2}})
cluster.add_node(num_cpus=2)
cluster.wait_for_nodes()
init_ray(cluster.address)
rows = []
single = None
try:
    for workers in (1, 2, 4):
        s = DistributedSearcher({ix!r}, None, workers, RayEnv(cluster.address, cpus_per_worker=1))
        s.search_vectors(qids[:50], xq[:50], 100)  # warm up
        s.search_seconds = 0.0
        run = s.search_vectors(qids, xq, 100)
        info = s.actor_info()
        rows.append({{"actors": workers, "qps": round(len(qids) / s.search_seconds, 1),
                     "nodes": len({{r["node"] for r in info}}),
                     "actor_peak_rss_mb": [r["peak_rss_mb"] for r in info], "run": run}})
        s.close()
finally:
    ray.shutdown()
    cluster.shutdown()
from retriever.memory import peak_rss_mb
search_peak = peak_rss_mb()  # the driver of the searches (the check below loads the whole index here)
index, ids, _ = load_sharded({ix!r})
one = DenseSearcher(None, index, ids).search_vectors(qids, xq, 100)
def same(a, b):
    sa, sb = sorted(a.values(), reverse=True), sorted(b.values(), reverse=True)
    cut = sa[-1] if sa else None
    return sa == sb and {{d for d, v in a.items() if v > cut}} == {{d for d, v in b.items() if v > cut}}
for r in rows:
    r["equals_one_index"] = all(same(r["run"][q], one[q]) for q in qids)
    r["identical_runs"] = r["run"] == one
    del r["run"]
_out = json.dumps({{"queries": len(qids), "k": 100, "rows": rows, "queries_read": len(prep.dataset.queries),
                   "driver_peak_rss_mb": search_peak}})
"""


def search_step(folder: Path, work: Path, ix: Path) -> dict:
    return in_fresh_python(SEARCH.format(folder=str(folder), work=str(work), ix=str(ix), dim=DIM, nq=QUERIES))


def main() -> None:
    from benchmarks.provenance import provenance

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000,8800000")
    ap.add_argument("--bm25-sizes", default="100000,1000000")
    ap.add_argument("--vector-sizes", default="100000,1000000")
    ap.add_argument("--scratch", default="/tmp/densepipe-scale")
    ap.add_argument("--output", default=str(HERE / "results" / "scale_corpus.json"))
    a = ap.parse_args()
    scratch = Path(a.scratch)
    sizes = [int(x) for x in a.sizes.split(",") if x]
    bm25_sizes = {int(x) for x in a.bm25_sizes.split(",") if x}
    vector_sizes = {int(x) for x in a.vector_sizes.split(",") if x}
    out = {"provenance": provenance("scale_corpus.py"), "rows": []}
    for n in sizes:
        folder = scratch / f"synthetic-{n}"
        t0 = time.perf_counter()
        generate(folder, n)
        row: dict = {"documents": n, "corpus_bytes": (folder / "corpus.jsonl").stat().st_size,
                     "generate_seconds": round(time.perf_counter() - t0, 1)}
        work = scratch / "work"
        if (work / folder.name).exists():
            import shutil

            shutil.rmtree(work / folder.name)
        first = prepare_step(folder, work)
        again = prepare_step(folder, work)
        # process_seconds: the whole fresh interpreter (imports included); prepare_seconds: the call itself
        row["prepare"] = {"process_seconds": first["seconds"], "peak_rss_mb": first["peak_rss_mb"],
                          **first["result"]}
        row["prepare_rerun"] = {"process_seconds": again["seconds"], "peak_rss_mb": again["peak_rss_mb"],
                                "prepare_seconds": again["result"]["prepare_seconds"],
                                "fraction_of_first": round(again["result"]["prepare_seconds"] /
                                                           first["result"]["prepare_seconds"], 3)}
        print(json.dumps({n: row}), flush=True)
        if n in bm25_sizes:
            b = bm25_step(folder, work, scratch / f"bm25-{n}.trec")
            row["bm25"] = {"wall_seconds": b["seconds"], "driver_peak_rss_mb": b["peak_rss_mb"], **b["result"]}
            print(json.dumps({n: row["bm25"]}), flush=True)
        if n in vector_sizes:
            emb, ix = scratch / f"emb-{n}", scratch / f"ix-{n}"
            vec_s = write_vectors_step(emb, n)
            i = index_step(emb, ix)
            s = search_step(folder, work, ix)
            row["index"] = {"write_vectors_seconds": round(vec_s, 1), "seconds": i["seconds"],
                            "peak_rss_mb": i["peak_rss_mb"], **i["result"]}
            row["search"] = {"process_peak_rss_mb_with_check": s["peak_rss_mb"], **s["result"]}
            print(json.dumps({n: {"index": row["index"], "search": row["search"]}}), flush=True)
        out["rows"].append(row)
        Path(a.output).write_text(json.dumps(out, indent=1) + "\n")
    rows = {r["documents"]: r for r in out["rows"]}
    if 100_000 in rows and 1_000_000 in rows:
        out["prepare_peak_ratio_1m_to_100k"] = round(rows[1_000_000]["prepare"]["peak_rss_mb"] /
                                                     rows[100_000]["prepare"]["peak_rss_mb"], 3)
    Path(a.output).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "provenance"}, indent=1))


if __name__ == "__main__":
    main()
