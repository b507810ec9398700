# The two commands of the README:
#   make demo   set up, train MF on MovieLens 100K, show its test RMSE and a top-10 with titles
#   make test   set up, run the test suite (unit + real-data tests) and ruff
# Set-up makes .venv and installs torch==$(TORCH_VERSION) first: on these machines pip takes the
# CPU build from the local wheel directory (see DEVELOPERS.md), so no multi-GB CUDA build is
# downloaded; the package's own `torch>=2.2` is then already satisfied.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
DATA_HOME ?= $(if $(REELREC_DATA_HOME),$(REELREC_DATA_HOME),$(if $(wildcard ../shared/data),$(abspath ../shared/data),))
export REELREC_DATA_HOME := $(DATA_HOME)

.PHONY: setup demo serve test lint bench clean

$(BIN)/reelrec: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "torch==$(TORCH_VERSION)"
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

setup: $(BIN)/reelrec

demo: setup
	$(BIN)/reelrec demo

serve: setup
	@test -f runs/demo/manifest.json || $(BIN)/reelrec demo
	$(BIN)/reelrec serve runs/demo

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/accuracy.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
