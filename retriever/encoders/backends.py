"""Inference backends for a bi-encoder's transformer: torch as loaded, ONNX Runtime, or OpenVINO.

A sentence-transformers model is a chain of modules (``Transformer`` → ``Pooling`` → ``Normalize``, or a ``Router``
holding one chain per route, as densepipe's query-tower models do). Only the ``Transformer`` modules cost anything,
so a backend replaces the Hugging Face model *inside* each of them with a runner of the same inputs and output
(``last_hidden_state``); tokenisation, prompts, routing, pooling and normalisation stay sentence-transformers' own,
so every model densepipe can load works with every backend.

The graph is exported once with PyTorch's ONNX exporter (TorchScript-based, dynamic batch and sequence axes) and
cached by the source model's content hash, the module's place in the model, the settings and the exporter's
versions: a second load exports nothing. ``quantize="int8"`` applies ONNX Runtime's dynamic quantisation to the
exported graph (int8 weights per output channel, int8 activations computed per batch, MatMul only — the attention
softmax and layer norms stay float; the layer that loses most accuracy when quantised per tensor). OpenVINO reads
the same ONNX file and compiles it for the CPU; its ``INFERENCE_PRECISION_HINT`` follows ``model_dtype``
(float32 keeps it exact; bfloat16 uses the CPU's bf16 units where it has them — AVX512-BF16 or AMX).

Neither ``optimum`` nor sentence-transformers' ``backend=`` argument is used: both pin transformers below the
version the rest of densepipe runs on; ``onnx``, ``onnxruntime`` and ``openvino`` alone are enough here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from retriever.types import ConfigError

log = logging.getLogger("densepipe.backends")

BACKENDS = ("torch", "onnx", "openvino")
QUANTIZATIONS = ("none", "int8")
MODEL_DTYPES = ("float32", "float16", "bfloat16")
OPSET = 17
EXPORT_FORMAT = 1  # bump when the exported graph or its file layout changes

_EXTRA = {"onnx": ("onnx", ["onnx", "onnxruntime"]), "openvino": ("openvino", ["onnx", "openvino"])}
_OV_PRECISION = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


def check_backend(backend: str, quantize: str, model_dtype: str, device: str | None = None) -> None:
    """Refuse unknown values and combinations that cannot work, with the reason and what to use instead."""
    if backend not in BACKENDS:
        raise ConfigError(f"encoder backend must be one of {', '.join(BACKENDS)}, got {backend!r}.")
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"encoder quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}.")
    if model_dtype not in MODEL_DTYPES:
        raise ConfigError(f"encoder model_dtype must be one of {', '.join(MODEL_DTYPES)}, got {model_dtype!r}.")
    # device None: not known yet (cuda when available); the device-dependent checks run again at load time
    on_gpu = bool(device) and str(device).startswith("cuda")
    on_cpu = bool(device) and str(device).startswith("cpu")
    if backend != "torch" and on_gpu:
        raise ConfigError(f"backend {backend!r} runs on the CPU here; on a GPU use backend='torch' with "
                          "model_dtype='float16' or 'bfloat16'.")
    if quantize == "int8" and backend != "onnx":
        raise ConfigError(f"quantize='int8' is offered with backend='onnx' (ONNX Runtime's dynamic int8); "
                          f"{backend!r} has none that keeps accuracy here: torch's dynamic int8 quantises per "
                          "tensor and moves vectors far more, and OpenVINO runs the dynamically quantised graph "
                          "slower than its float32 one. Use --backend onnx.")
    if quantize == "int8" and model_dtype != "float32":
        raise ConfigError("quantize='int8' quantises a float32 graph; leave model_dtype at float32.")
    if backend == "onnx" and model_dtype != "float32":
        raise ConfigError(f"backend 'onnx' runs float32 on the CPU (ONNX Runtime has no fast {model_dtype} CPU "
                          "kernels); use backend='openvino' or 'torch' for bfloat16 / float16.")
    if backend == "torch" and model_dtype == "float16" and on_cpu:
        raise ConfigError("model_dtype='float16' with the torch backend is for GPUs (CPU float16 matmuls are slow "
                          "or missing); on a CPU use 'bfloat16'.")


def require(backend: str) -> None:
    """Import the backend's packages, or raise a ConfigError naming the extra that installs them."""
    if backend == "torch":
        return
    extra, modules = _EXTRA[backend]
    missing = []
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ConfigError(f"backend {backend!r} needs {', '.join(missing)}, which is not installed: "
                          f"pip install 'densepipe[{extra}]' (or pip install {' '.join(missing)}).")


def export_root() -> Path:
    """$DRP_EXPORT_CACHE, or ~/.cache/densepipe/exports: one folder per exported transformer."""
    from retriever.data.resolve import user_dir

    return user_dir("DRP_EXPORT_CACHE", "exports")


def _versions() -> dict:
    from retriever.versions import package_versions

    return package_versions(("torch", "transformers", "onnx", "onnxruntime", "openvino"))


def export_key(source_hash: str, module_path: str, quantize: str) -> str:
    """The cache key of one exported transformer: what it was made from and by what."""
    v = _versions()
    parts = [source_hash, module_path, quantize, str(OPSET), str(EXPORT_FORMAT), v["torch"], v["transformers"],
             v["onnx"] if quantize == "none" else f"{v['onnx']}/{v['onnxruntime']}"]
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:20]


def export_onnx(transformer, source_hash: str, module_path: str, quantize: str = "none",
                root: Path | None = None) -> Path:
    """The ONNX file of ``transformer`` (a sentence-transformers ``Transformer`` module), exported into the cache
    unless it is there already. The folder appears whole: written aside, then renamed."""
    root = Path(root) if root is not None else export_root()
    key = export_key(source_hash, module_path, quantize)
    final = root / key
    onnx_file = final / "model.onnx"
    if (final / "export.json").is_file() and onnx_file.is_file():
        return onnx_file
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    start = time.perf_counter()
    names = _export_float(transformer, tmp / "model.onnx")
    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(tmp / "model.onnx"), str(tmp / "model.int8.onnx"), weight_type=QuantType.QInt8,
                         per_channel=True, op_types_to_quantize=["MatMul"])
        os.replace(tmp / "model.int8.onnx", tmp / "model.onnx")
    record = {"source_hash": source_hash, "module": module_path, "quantize": quantize, "opset": OPSET,
              "inputs": names, "seconds": round(time.perf_counter() - start, 2), "versions": _versions(),
              "created": time.time()}
    (tmp / "export.json").write_text(json.dumps(record, indent=1))
    try:
        os.replace(tmp, final)
    except OSError:  # another process finished the same export first: theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s (%s, quantize=%s) in %.1f s to %s", module_path, source_hash, quantize,
             record["seconds"], final)
    return onnx_file


def _input_names(transformer) -> list[str]:
    import inspect

    sample = transformer.tokenizer(["a"], return_tensors="pt")
    accepted = set(inspect.signature(transformer.model.forward).parameters)
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample and n in accepted]


def _export_float(transformer, path: Path) -> list[str]:
    import torch

    hf = transformer.model
    names = _input_names(transformer)
    # two texts of different lengths, so the traced graph has seen padding and a mask with zeros in it
    sample = transformer.tokenizer(["a short text", "a longer text, with several more words in it than the other"],
                                   padding=True, return_tensors="pt")

    class _Graph(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs)), return_dict=True).last_hidden_state

    was_training, dtype = hf.training, next(hf.parameters()).dtype
    hf.eval().float()
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Graph(hf), tuple(sample[n] for n in names), str(path), input_names=names,
                              output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=OPSET,
                              do_constant_folding=True, dynamo=False)
    finally:
        hf.to(dtype).train(was_training)
    return names


class _Runner:
    """Stands in for the Hugging Face model inside a ``Transformer`` module: same keyword inputs, a dict with
    ``last_hidden_state`` out (a torch tensor, so pooling runs unchanged)."""

    def __init__(self, config, names: list[str]):
        self.config = config
        self.names = names
        self.training = False

    def forward(self, **features: Any) -> dict:
        import torch

        inputs = {n: np.ascontiguousarray(features[n].cpu().numpy(), dtype=np.int64) for n in self.names}
        return {"last_hidden_state": torch.from_numpy(np.ascontiguousarray(self.run(inputs), dtype=np.float32))}

    __call__ = forward

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    # what sentence-transformers may ask of the model it wraps
    def eval(self):
        return self

    def train(self, mode: bool = True):
        if mode:
            raise ConfigError("a model on the onnx / openvino backend is for inference; train with backend='torch'.")
        return self

    def to(self, *args, **kwargs):
        return self

    def parameters(self):
        return iter(())

    def named_parameters(self, *args, **kwargs):
        return iter(())

    def modules(self):
        return iter(())


class OnnxRuntimeModel(_Runner):
    def __init__(self, path: Path, config, names: list[str], threads: int | None = None):
        import onnxruntime as ort

        super().__init__(config, names)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.precision = "float32"

    def run(self, inputs):
        return self.session.run(["last_hidden_state"], inputs)[0]


class OpenVinoModel(_Runner):
    def __init__(self, path: Path, config, names: list[str], threads: int | None = None,
                 model_dtype: str = "float32"):
        import openvino as ov

        super().__init__(config, names)
        core = ov.Core()
        settings = {"INFERENCE_PRECISION_HINT": _OV_PRECISION[model_dtype], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            settings["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", settings)
        honoured = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # what this CPU can do
        self.precision = {v: k for k, v in _OV_PRECISION.items()}.get(honoured, honoured)
        self.request = self.compiled.create_infer_request()

    def run(self, inputs):
        return self.request.infer(inputs)[self.compiled.output(0)].copy()


def transformer_modules(model) -> list[tuple[str, Any]]:
    """Every sentence-transformers ``Transformer`` module inside ``model`` (through Routers), with its path."""
    from sentence_transformers.models import Transformer

    return [(name, m) for name, m in model.named_modules() if isinstance(m, Transformer)]


def _half_transformers(model, model_dtype: str) -> None:
    """The transformers compute in ``model_dtype``; their token embeddings come out as float32, so pooling and
    normalisation (and the stored vectors) keep full precision: pooling in bfloat16 alone moves a unit vector's
    norm by up to 0.3%."""
    import torch

    def to_float(module, inputs, features):
        for key in ("token_embeddings", "sentence_embedding"):
            if key in features and features[key].is_floating_point():
                features[key] = features[key].float()
        return features

    for _, module in transformer_modules(model):
        module.model.to(getattr(torch, model_dtype))
        module.register_forward_hook(to_float)


def apply_backend(model, source_hash: str, backend: str, quantize: str = "none", model_dtype: str = "float32",
                  threads: int | None = None, root: Path | None = None) -> dict:
    """Run ``model``'s transformers on ``backend`` (in place); return what was done, for the encoder's record."""
    check_backend(backend, quantize, model_dtype, str(getattr(model, "device", "cpu")))
    if backend == "torch":
        if model_dtype != "float32":
            _half_transformers(model, model_dtype)
        return {"backend": "torch", "quantize": quantize, "model_dtype": model_dtype, "precision": model_dtype}
    require(backend)
    found = transformer_modules(model)
    if not found:
        raise ConfigError(f"backend {backend!r}: the model has no Transformer module to export "
                          f"({[type(m).__name__ for m in model]}); use backend='torch'.")
    precision = "float32"
    for name, module in found:
        path = export_onnx(module, source_hash, name or "0", quantize, root)
        names = json.loads((path.parent / "export.json").read_text())["inputs"]
        if backend == "onnx":
            runner = OnnxRuntimeModel(path, module.model.config, names, threads)
        else:
            runner = OpenVinoModel(path, module.model.config, names, threads, model_dtype)
        precision = runner.precision
        del module._modules["model"]  # the torch weights are not needed any more
        object.__setattr__(module, "model", runner)
    return {"backend": backend, "quantize": quantize, "model_dtype": model_dtype, "precision": precision}
