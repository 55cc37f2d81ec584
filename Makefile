# rsexp: `make train` (embedded synthetic default), `make test`, `make docs`, `make bench-rs`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATASET ?= synthetic
CONFIG ?= sweeps/$(DATASET).yaml
ARGS ?=
# pip on these machines lists every local package index it skips; keep real errors only
PIP_QUIET := 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)

TRIALS ?=
WORKERS ?= 2
STORAGE ?=
TRACKER ?=
LAUNCHER ?=
SWEEP_FLAGS = --workers $(WORKERS) $(if $(TRIALS),--trials $(TRIALS)) $(if $(TRIALS_ONLY),--trials-only) \
	$(if $(STORAGE),--storage $(STORAGE)) $(if $(LAUNCHER),--launcher $(LAUNCHER)) \
	$(if $(TRACKER),track.backends=[$(TRACKER)])

MODELS ?= tsvit,vivit,timesformer,timesformer*
SEEDS ?= 3
CHECKPOINT ?=

.PHONY: setup browser slurm train resume sweep paper guidance tables figures dashboard wandb-dashboard prepare test lint format docs bench bench-rs bench-guidance bench-segmentation bench-track bench-decode bench-scale clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip $(PIP_QUIET)
	$(BIN)/pip install --quiet -e '.[dev]' $(PIP_QUIET)
	touch $@

train: setup
	$(BIN)/rsexp train --config $(CONFIG) $(ARGS)

sweep: setup
	$(BIN)/rsexp sweep --config $(CONFIG) $(SWEEP_FLAGS) $(ARGS)

paper: setup
	$(BIN)/rsexp paper --config $(CONFIG) --models '$(MODELS)' --seeds $(SEEDS) \
		--workers $(WORKERS) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) $(ARGS)

guidance: setup
	$(BIN)/rsexp guidance --config $(CONFIG) $(if $(DRY_RUN),--dry-run) $(ARGS)

tables: setup
	$(BIN)/rsexp tables --source runs $(if $(filter-out synthetic,$(DATASET)),--dataset $(DATASET)) $(ARGS)

figures: setup
	$(BIN)/rsexp figures --source runs $(if $(filter-out synthetic,$(DATASET)),--dataset $(DATASET)) $(ARGS)

dashboard: setup
	$(BIN)/python dashboards/serve.py --dataset $(DATASET) $(if $(STORAGE),--storage $(STORAGE)) $(ARGS)

wandb-dashboard: setup
	$(BIN)/python dashboards/wandb_dashboard.py $(ARGS)

prepare: setup
	$(BIN)/rsexp prepare --config $(CONFIG) $(ARGS)

resume: setup
	@test -n "$(RUN)" || { echo "usage: make resume RUN=<run folder or run id>"; exit 2; }
	$(BIN)/rsexp resume $(RUN)

# the dashboards' browser test needs Debian's chromium: installed when missing and this
# user may (root with apt-get); otherwise that one test is skipped, with its reason
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -qq chromium >/dev/null 2>&1 || \
		  { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }; } && \
		echo "installed chromium (for tests/test_dashboard.py)"; } || \
		echo "chromium not installed: the dashboards' browser test will be skipped"

# tests/test_slurm.py starts a one-node Slurm cluster of its own (munged, slurmdbd on the
# local MariaDB, slurmctld, slurmd): Debian's packages, installed the same way
slurm:
	@command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v munged >/dev/null || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -qq slurm-wlm slurmdbd munge >/dev/null 2>&1 || \
		  { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq slurm-wlm slurmdbd munge >/dev/null 2>&1; }; } && \
		echo "installed slurm-wlm, slurmdbd, munge (for tests/test_slurm.py)"; } || \
		echo "Slurm not installed: tests/test_slurm.py will be skipped"

# two test processes, whole files each (a file's tests share fixtures and run in order)
TEST_PROCS ?= 2
test: setup browser slurm
	$(BIN)/pytest -q -n $(TEST_PROCS) --dist loadfile $(ARGS)

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

# the documentation site into site/, warnings as errors (a broken link or anchor, a stale
# API name); the config reference, the API page and the benchmark tables are generated
# (docs/hooks.py). tests/test_docs.py runs the same build in make test.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: setup
	$(BIN)/python benchmarks/suite.py $(ARGS)

bench-rs: setup
	$(BIN)/python benchmarks/rs_gain.py $(ARGS)

bench-guidance: setup
	$(BIN)/python benchmarks/guidance_quality.py $(ARGS)

bench-segmentation: setup
	$(BIN)/python benchmarks/segmentation_scores.py
	$(BIN)/python benchmarks/segmentation_eval.py $(ARGS)

bench-track: setup
	$(BIN)/python benchmarks/tracking_overhead.py $(ARGS)

bench-decode: setup
	$(BIN)/python benchmarks/decode.py $(ARGS)

# one study's PostgreSQL storage with 1/4/16/32 simulated workers (docs/scale.md)
bench-scale: setup
	$(BIN)/python benchmarks/scale.py $(ARGS)

clean:
	rm -rf runs/bench runs/bench-guidance .pytest_cache
