"""The HyDE stage: hypothetical documents for a split's queries (cached in Parquet; generated in-process or by
Ray actors over query shards, each loading the generator once), expanded query vectors (Parquet), then the
usual exact search over the corpus embeddings and evaluation."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from retriever.encoders import EncoderConfig
from retriever.hyde import ExpansionReport, GenerationCache, expand_queries, hypothetical_documents, load_generator
from retriever.types import ConfigError

from pipelines.runtime import RayEnv
from pipelines.workspace import prepare

log = logging.getLogger("densepipe.hyde")


@dataclass(frozen=True)
class HydeJob:
    dataset: str
    output: str
    split: str = "test"
    generator: str = "smollm2"
    backend: str = "transformers"  # for GGUF generators: "transformers" or "llama.cpp"
    endpoint_model: str | None = None
    template: str = "web"
    n: int = 4
    temperature: float = 0.7
    seed: int = 0
    max_new_tokens: int = 128
    include_query: bool = True
    encoder: EncoderConfig = EncoderConfig()
    k: int = 1000
    batch_size: int = 16  # prompts per generation call
    engine: str = "local"  # "local" or "ray" (query shards on actors)
    num_workers: int = 1
    ray: RayEnv = field(default_factory=RayEnv)
    max_docs: int | None = None
    max_queries: int | None = None  # the first N queries (smoke runs)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"hyde n must be >= 1, got {self.n}.")
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"hyde engine must be 'local' or 'ray', got {self.engine!r}.")


class GenerateShard:
    """Ray actor body: load the generator once, generate for one batch of prompts per call."""

    def __init__(self, job: HydeJob):
        self.job = job
        self.generator = load_generator(job.generator, job.max_new_tokens, endpoint_model=job.endpoint_model,
                                        batch_size=job.batch_size, backend=job.backend)

    def __call__(self, prompts: list[str], n: int) -> list[list[str]]:
        return self.generator.generate(prompts, n, self.job.temperature, self.job.seed)


def generations(job: HydeJob, queries: dict, report: ExpansionReport, generator=None) -> dict[str, list[str]]:
    """The N hypothetical documents per query, from the cache under the output folder or newly generated."""
    cache = GenerationCache(Path(job.output) / "generations")
    generator = generator or _Lazy(job)
    fn = None
    if job.engine == "ray":
        fn = _on_ray(job)
    return hypothetical_documents(queries, generator, job.template, job.n, job.temperature, job.seed, cache,
                                  report, job.batch_size, fn)


def _on_ray(job: HydeJob):
    """Every batch submitted at once to ``num_workers`` actors (each loads the generator once); results are
    yielded in order as they arrive, so the cache grows while the rest still runs."""
    import ray

    from pipelines.runtime import ClusterError, check_fits
    from retriever.hyde.generators import GenerationError

    job.ray.start()
    request = job.ray.request(job.num_workers, gpus=False)
    check_fits(request, job.num_workers, "hyde")
    actors = [ray.remote(num_cpus=request["CPU"])(GenerateShard).remote(job) for _ in range(job.num_workers)]

    def run(batches: list[list[str]], n: int):
        refs = [actors[i % len(actors)].__call__.remote(prompts, n) for i, prompts in enumerate(batches)]
        for i, ref in enumerate(refs):
            try:
                yield i, ray.get(ref, timeout=job.ray.stall_timeout)
            except ray.exceptions.GetTimeoutError:
                raise ClusterError(f"hyde: batch {i + 1} of {len(refs)} did not finish in {job.ray.stall_timeout:g} "
                                   "s; see `ray status`, or raise stall_timeout.") from None
            except ray.exceptions.RayError as e:  # the actor's GenerationError arrives wrapped
                yield i, GenerationError(str(e).splitlines()[-1])

    return run


class _Lazy:
    """The generator's name and settings without loading its weights (all-cached reruns never load it)."""

    def __init__(self, job: HydeJob):
        from retriever.hyde.generators import describe_generator

        self.job = job
        self._gen = None
        described = describe_generator(job.generator, job.max_new_tokens, endpoint_model=job.endpoint_model,
                                       backend=job.backend)
        if described is None:  # only the loaded model can tell (a bare .gguf's chat template)
            self.name, self._settings = self._load().name, self._load().settings()
        else:
            self.name, self._settings = described

    def _load(self):
        if self._gen is None:
            self._gen = load_generator(self.job.generator, self.job.max_new_tokens,
                                       endpoint_model=self.job.endpoint_model, batch_size=self.job.batch_size,
                                       backend=self.job.backend)
        return self._gen

    def settings(self) -> dict:
        return self._settings

    def generate(self, prompts, n, temperature, seed):
        return self._load().generate(prompts, n, temperature, seed)


def run_hyde(job: HydeJob, generator=None) -> dict:
    """Generate (or read), expand, search, evaluate; writes expanded vectors, a TREC run and hyde.json."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.baselines import dense_searcher
    from retriever.atomic import atomic_path, write_json
    from retriever.data import write_run
    from retriever.eval import DEFAULT_METRICS, drop_self_hits, evaluate

    t0 = time.perf_counter()
    prep = prepare(job.dataset, job.split, max_docs=job.max_docs)
    queries = dict(list(prep.dataset.queries.items())[:job.max_queries] if job.max_queries else
                   prep.dataset.queries.items())
    report = ExpansionReport()
    docs = generations(job, queries, report, generator)
    t1 = time.perf_counter()
    searcher = dense_searcher(prep, job.encoder)
    qids, xq = expand_queries(queries, docs, searcher.encoder, job.include_query, report)
    out = Path(job.output)
    with atomic_path(out / "query_vectors.parquet") as tmp:
        pq.write_table(pa.table({"query_id": qids, "vector": pa.array(list(xq.astype(np.float32)),
                                                                        pa.list_(pa.float32()))}), tmp)
    run = drop_self_hits(searcher.search_vectors(qids, xq, job.k))
    write_run(run, out / "run.trec")
    qrels = {q: r for q, r in prep.dataset.qrels.items() if q in queries}
    result = evaluate(qrels, run, DEFAULT_METRICS)
    info = {"dataset": job.dataset, "split": job.split, "job": {**asdict(job), "encoder": job.encoder.to_dict()},
            "metrics": result.to_dict(), "report": report.to_dict(),
            "seconds": {"generate": round(t1 - t0, 1), "search": round(time.perf_counter() - t1, 1)},
            "seconds_per_query_generating": round((t1 - t0) / max(1, len(queries)), 3)}
    write_json(out / "hyde.json", info)
    return {**info, "per_query": result.per_query}
