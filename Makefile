# Two commands on a fresh machine; each installs what it needs first.
#   make train   train the embedded default on the Shapes data (runs/default)
#   make test    lint and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV := $(PYTHON) -m uv
CONFIG ?= dalle_jax/configs/default.py
WORKDIR ?= runs/default
# A wheel directory holding the CPU build of torch, where the machine has one.
WHEELS ?= /opt/wheels
FIND_LINKS := $(if $(wildcard $(WHEELS)),--find-links $(WHEELS),)
# uv installs without bytecode by default, and where PYTHONDONTWRITEBYTECODE
# is set (as on this project's machines) Python then recompiles jax, flax,
# orbax and torch from source in every process: `import dalle_jax.train`
# took 26 s that way and 10 s with bytecode compiled at install (about 80 s
# once). Every test worker, subprocess and notebook kernel pays the import.
export UV_COMPILE_BYTECODE := 1

.PHONY: install install-test install-bench train test lint format

$(BIN)/python:
	$(PYTHON) -m pip install -q uv
	$(UV) venv -q $(VENV)

$(VENV)/.installed: $(BIN)/python requirements.txt pyproject.toml
	$(UV) pip install --python $(BIN)/python -q -r requirements.txt -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt requirements-ref.txt
	$(UV) pip install --python $(BIN)/python -q -r requirements-test.txt
	$(UV) pip install --python $(BIN)/python -q $(FIND_LINKS) -r requirements-ref.txt
	$(UV) pip install --python $(BIN)/python -q --no-deps DALL-E
	touch $@

# Benchmark extras (lucidrains' dalle-pytorch, CPU torch). `make test`
# installs them too, so that the benchmark's fairness tests (the two models'
# configurations and parameter counts, built, not timed) run in CI instead
# of skipping.
$(VENV)/.installed-bench: $(VENV)/.installed-test requirements-bench.txt
	$(UV) pip install --python $(BIN)/python -q $(FIND_LINKS) -r requirements-bench.txt
	$(UV) pip install --python $(BIN)/python -q --no-deps dalle-pytorch==1.6.6
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-bench: $(VENV)/.installed-bench

train: install
	$(BIN)/python -m dalle_jax.train --config $(CONFIG) --workdir $(WORKDIR)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff format .

# Two pytest workers, one test file each at a time (module fixtures stay in
# one worker): the suite is mostly single-threaded XLA compiles, so on 2
# cores this cut it from about 9 to under 7 minutes. TEST_WORKERS=0 runs it
# in one process.
TEST_WORKERS ?= 2
test: lint install-bench
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile
