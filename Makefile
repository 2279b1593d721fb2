# Two entry points: `make demo` runs the main job, `make test` runs every test.
# Both create the virtual environment on first use, so a fresh clone needs nothing else.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench bench-mllm bench-eval bench-load clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eagle demo --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/expert.py

bench-mllm: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/mllm.py

bench-eval: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/eval.py

bench-load: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/load.py $(LOAD_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
