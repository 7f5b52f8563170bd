"""Pipeline configuration: one frozen dataclass per stage, composed into a ``PipelineConfig`` read from TOML or
YAML. Unknown sections or keys and wrong types are rejected before anything runs, naming the key."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

from retriever.mining import MiningConfig
from retriever.pretraining.tasks import PretrainConfig
from retriever.sparse.bm25 import BM25Config
from retriever.training.contrastive import TrainConfig
from retriever.types import ConfigError


@dataclass(frozen=True)
class RunSection:
    dataset: str = "scifact"
    split: str = "test"
    output: str = "runs/scifact"
    max_docs: int | None = None
    docs_per_shard: int = 50_000
    ray_address: str | None = None  # None: a private local Ray; "auto", host:port or ray://host:10001
    storage: str | None = None  # the Ray workers' storage root (folder or s3://…); None: this machine's disk
    cpus_per_worker: float | None = None  # what each Ray worker of every stage asks for; None: 1 CPU
    strict: bool = False  # refuse record-level data problems (empty documents, unknown judged ids) too


@dataclass(frozen=True)
class PretrainSection:
    """Self-supervised pretraining of [encode].model on this corpus's text (no queries, no qrels); every later
    stage (encode, dense, mine, train) then uses the pretrained model. Defaults: PretrainConfig's."""
    task: str = PretrainConfig.task
    epochs: int = PretrainConfig.epochs
    batch_size: int = PretrainConfig.batch_size
    lr: float = PretrainConfig.lr
    temperature: float = PretrainConfig.temperature
    max_seq_length: int = PretrainConfig.max_seq_length
    mlm_weight: float = PretrainConfig.mlm_weight
    max_texts: int | None = None  # a seeded sample of the corpus; None: every document
    engine: str = "ray"
    num_workers: int = 1
    seed: int = PretrainConfig.seed


@dataclass(frozen=True)
class BM25Section:
    k1: float = BM25Config.k1
    b: float = BM25Config.b
    k: int = 1000


@dataclass(frozen=True)
class EncodeSection:
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    batch_size: int = 64
    max_seq_length: int | None = None
    engine: str = "ray"
    num_workers: int = 1
    backend: str = "torch"  # torch | onnx | openvino: documents and queries alike
    quantize: str = "none"  # none | int8 (onnx)
    model_dtype: str = "float32"  # float32 | bfloat16 | float16 (GPU)
    segment_tokens: int | None = None  # documents as windows of this many tokens, scored by their best (MaxP)
    segment_stride: int | None = None  # tokens between windows; None: half a window
    segment_title: bool = False  # each window of the text led by the document's title

    def __post_init__(self) -> None:
        from retriever.encoders import EncoderConfig
        from retriever.encoders.backends import check_backend

        check_backend(self.backend, self.quantize, self.model_dtype)
        EncoderConfig(segment_tokens=self.segment_tokens, segment_stride=self.segment_stride)  # their checks


@dataclass(frozen=True)
class DenseSection:
    """Exact search with the base encoder over its own embeddings: the dense baseline."""
    k: int = 1000


@dataclass(frozen=True)
class GenerateSection:
    """Label-free training pairs (``pipelines/generate.py``): [mine] and [train] then read these pairs as their
    training split instead of the dataset's judgments, which are never opened for training."""
    sources: list[str] = field(default_factory=lambda: ["generated"])  # "generated" and/or "title"
    docs: int | None = 1000  # documents sampled (both sources draw on them); 0 (or None): all
    per_doc: int = 1
    generator: str = "smollm2"
    backend: str = "transformers"
    endpoint_model: str | None = None
    template: str = "question"
    max_doc_chars: int = 1500
    temperature: float = 0.7
    seed: int = 0
    max_new_tokens: int = 48
    batch_size: int = 16
    filter: list[str] = field(default_factory=lambda: ["bm25"])  # round-trip retrievers; [] keeps every pair
    k: int = 10
    engine: str = "local"
    num_workers: int = 1
    teacher: bool = False  # write teacher.trec (BM25 fused with the dense model); [train] loss = "distill" reads it
    teacher_depth: int = 100


@dataclass(frozen=True)
class MineSection:
    split: str = "train"  # the labelled split to mine for (never the evaluation split)
    retrievers: list[str] = field(default_factory=lambda: ["bm25", "dense"])
    depth: int = MiningConfig.depth
    num_negatives: int = MiningConfig.num_negatives
    margin: float = MiningConfig.margin  # positive-aware false-negative filter (relative: drop > margin x pos.); 0: off
    margin_mode: str = MiningConfig.margin_mode
    engine: str = "local"
    num_workers: int = 1


@dataclass(frozen=True)
class TrainSection:
    """Fine-tuning with the mined tables (or in-batch negatives from the [mine] split's qrels without [mine])."""
    split: str = "train"
    tower: str = TrainConfig.tower  # the loop's defaults: one recipe for the API, the CLI and configs
    epochs: int = TrainConfig.epochs
    batch_size: int = TrainConfig.batch_size
    lr: float = TrainConfig.lr
    negatives: int = TrainConfig.negatives
    loss: str = TrainConfig.loss
    temperature: float = TrainConfig.temperature
    max_seq_length: int | None = TrainConfig.max_seq_length
    held_out: float = 0.1
    engine: str = "ray"
    num_workers: int = 1
    seed: int = TrainConfig.seed
    # the contrastive toolbox (retriever/losses, retriever/training/queue.py, batching.py); on by default: the
    # learned temperature and cluster batches
    tau_plus: float = TrainConfig.tau_plus
    learn_temperature: bool = TrainConfig.learn_temperature
    temperature_lr: float | None = TrainConfig.temperature_lr
    max_positives: int = TrainConfig.max_positives
    graded_gain: str = TrainConfig.graded_gain
    queue_size: int = TrainConfig.queue_size
    queue_momentum: float = TrainConfig.queue_momentum
    queue_margin: float | None = TrainConfig.queue_margin
    mix_negatives: int = TrainConfig.mix_negatives
    mix_query: int = TrainConfig.mix_query
    mix_pool: int = TrainConfig.mix_pool
    batching: str = TrainConfig.batching
    teacher: str | None = None  # loss = "distill": a TREC run of the training queries (default: [generate]'s)
    teacher_temperature: float = TrainConfig.teacher_temperature
    teacher_weight: float = TrainConfig.teacher_weight


@dataclass(frozen=True)
class IndexSection:
    factory: str = "Flat"
    search_params: str = ""
    memory_budget: str | None = None
    merged: bool = False


@dataclass(frozen=True)
class SearchSection:
    k: int = 1000


@dataclass(frozen=True)
class FuseSection:
    """BM25 fused with the final dense run ([search]'s, else [dense]'s), weights fixed (no judgment picks them).
    Defaults: the method picked on SciFact's training queries (benchmarks/fusion.py)."""
    method: str = "convex"  # rrf | convex
    norm: str = "zscore"  # convex: minmax | zscore | none
    weights: list[float] = field(default_factory=lambda: [1.0, 1.0])  # BM25, dense
    rrf_k: float = 60.0
    depth: int = 1000

    def __post_init__(self) -> None:
        from retriever.eval.fusion import METHODS, NORMS

        if self.method not in METHODS or self.norm not in NORMS:
            raise ConfigError(f"[fuse] method must be one of {METHODS} and norm one of {NORMS}, got "
                              f"{self.method!r} / {self.norm!r}.")
        if len(self.weights) != 2:
            raise ConfigError(f"[fuse] weights are two numbers (BM25, dense), got {self.weights}.")


@dataclass(frozen=True)
class CompressSection:
    variants: list[str] = field(default_factory=list)  # empty: every default variant
    memory_budget: str | None = None


STAGES = ("pretrain", "bm25", "encode", "dense", "generate", "mine", "train", "encode_tuned", "index", "search", "fuse",
          "compress")
_SECTIONS = {"run": RunSection, "pretrain": PretrainSection, "bm25": BM25Section, "encode": EncodeSection,
             "dense": DenseSection, "generate": GenerateSection, "mine": MineSection, "train": TrainSection, "index": IndexSection, "search": SearchSection,
             "fuse": FuseSection, "compress": CompressSection}


@dataclass(frozen=True)
class PipelineConfig:
    run: RunSection
    pretrain: PretrainSection | None = None
    bm25: BM25Section | None = None
    encode: EncodeSection | None = None
    dense: DenseSection | None = None
    generate: GenerateSection | None = None
    mine: MineSection | None = None
    train: TrainSection | None = None
    index: IndexSection | None = None
    search: SearchSection | None = None
    fuse: FuseSection | None = None
    compress: CompressSection | None = None

    def stages(self) -> list[str]:
        """The configured stages in order; ``encode_tuned`` (re-encoding the corpus with the fine-tuned model)
        follows from [train] with tower = "both" (a query-tower model keeps the base's document vectors)."""
        return [s for s in STAGES if (self.train is not None and self.train.tower == "both" if s == "encode_tuned"
                                      else getattr(self, s) is not None)]

    def section_dict(self, name: str) -> dict | None:
        if name == "encode_tuned":
            return self.section_dict("encode")
        value = getattr(self, name)
        return None if value is None else dataclasses.asdict(value)


def _check_type(section: str, key: str, value, annotation: str):
    hint = typing.get_type_hints(_SECTIONS[section])[key]
    if typing.get_origin(hint) is list:  # list[str] or list[float]
        item = typing.get_args(hint)[0]
        if isinstance(value, list) and item is str and all(isinstance(v, str) for v in value):
            return value
        if isinstance(value, list) and item is float and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [float(v) for v in value]
        raise ConfigError(f"config key [{section}].{key} must be {annotation}, got {type(value).__name__} "
                          f"{value!r}.")
    allowed = typing.get_args(hint) or (hint,)
    for t in allowed:
        if t is type(None) and value is None:
            return value
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t in (int, str, bool) and type(value) is t:
            return value
    raise ConfigError(f"config key [{section}].{key} must be {annotation}, got {type(value).__name__} "
                      f"{value!r}.")


def parse_config(data: dict, source: str = "config") -> PipelineConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a table of sections.")
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}; stages are {list(STAGES)} (plus [run]).")
    sections = {}
    for name, cls in _SECTIONS.items():
        if name not in data:
            continue
        body = data[name] if data[name] is not None else {}
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: [{name}] must be a table of keys.")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        bad = sorted(set(body) - set(fields))
        if bad:
            raise ConfigError(f"{source}: unknown key(s) {bad} in [{name}]; known keys: {sorted(fields)}.")
        kwargs = {k: _check_type(name, k, v, str(fields[k].type)) for k, v in body.items()}
        sections[name] = cls(**kwargs)
    for name in ("pretrain", "encode", "mine", "train"):
        if name in sections and sections[name].engine not in ("ray", "local"):
            raise ConfigError(f"{source}: [{name}].engine must be 'ray' or 'local'.")
    if "mine" in sections:
        bad = sorted(set(sections["mine"].retrievers) - {"bm25", "dense"})
        if bad or not sections["mine"].retrievers:
            raise ConfigError(f"{source}: [mine].retrievers must list 'bm25' and/or 'dense', got "
                              f"{sections['mine'].retrievers}.")
        if "dense" in sections["mine"].retrievers and "encode" not in sections:
            raise ConfigError(f"{source}: [mine] with the dense retriever needs stage [encode].")
    if "train" in sections:
        t = sections["train"]
        loop_config(TrainConfig, t)  # its own checks, now, before anything runs
        if "mine" not in sections and t.negatives:
            raise ConfigError(f"{source}: [train].negatives = {t.negatives} needs stage [mine] (or negatives = 0).")
        if "mine" in sections and sections["mine"].split != t.split:
            raise ConfigError(f"{source}: [train].split must equal [mine].split.")
        if t.split == sections.get("run", RunSection()).split:
            raise ConfigError(f"{source}: [train].split = {t.split!r} is the evaluation split; train on another "
                              "(e.g. 'train').")
        generated_teacher = "generate" in sections and sections["generate"].teacher
        if t.loss == "distill" and not (t.teacher or generated_teacher):
            raise ConfigError(f"{source}: [train].loss = 'distill' needs a teacher run: set [train].teacher to a "
                              "TREC run of the training queries, or [generate].teacher = true.")
        if t.teacher and t.loss != "distill":
            raise ConfigError(f"{source}: [train].teacher is read by the distill loss only: set [train].loss = "
                              "'distill', or drop teacher.")
    if "generate" in sections:
        generate_job(sections["generate"], "-", "-")  # its own checks, now, before anything runs
        if "train" not in sections:
            raise ConfigError(f"{source}: stage [generate] writes training pairs: it needs stage [train].")
        if "dense" in sections["generate"].filter and "encode" not in sections:
            raise ConfigError(f"{source}: [generate] with the dense filter needs stage [encode].")
    if "pretrain" in sections:
        loop_config(PretrainConfig, sections["pretrain"])  # its own checks, now, before anything runs
    if "compress" in sections and "encode" in sections and sections["encode"].segment_tokens:
        raise ConfigError(f"{source}: [compress] sweeps one vector per document; [encode].segment_tokens writes "
                          f"several: leave one of them out.")
    needs = {"index": "encode", "search": "index", "compress": "encode", "dense": "encode", "train": "encode",
             "pretrain": "encode"}
    for stage, required in needs.items():
        if stage in sections and required not in sections:
            raise ConfigError(f"{source}: stage [{stage}] needs stage [{required}].")
    if "fuse" in sections and ("bm25" not in sections or not {"search", "dense"} & set(sections)):
        raise ConfigError(f"{source}: stage [fuse] needs [bm25] and a dense run ([search] or [dense]).")
    return PipelineConfig(run=sections.get("run", RunSection()), **{k: v for k, v in sections.items() if k != "run"})


def generate_job(section: GenerateSection, dataset: str, output: str, **kwargs):
    """The ``GenerateJob`` a [generate] section describes (``kwargs``: what the run adds: encoder, Ray, slices)."""
    from pipelines.generate import GenerateJob

    body = dataclasses.asdict(section)
    body["sources"], body["filter"] = tuple(body["sources"]), tuple(body["filter"])
    body["docs"] = body["docs"] or None  # docs = 0: every document (TOML has no None), as --docs 0
    return GenerateJob(dataset, output, **body, **kwargs)


def loop_config(cls, section):
    """The training-loop config (``TrainConfig`` or ``PretrainConfig``) that a stage section describes: every key
    the two share, so a key added to both needs no list kept in step."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dataclasses.asdict(section).items() if k in names})


def load_config(path: str | Path) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found.")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            import tomllib

            data = tomllib.loads(text)
    except Exception as e:  # tomllib and yaml raise their own error types
        raise ConfigError(f"{path}: cannot parse ({e}).") from e
    return parse_config(data, str(path))
