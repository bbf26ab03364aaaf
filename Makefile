# course-ws: `make lab` opens the course, `make test` proves it works.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extra arguments for JupyterLab, e.g. make lab LAB_ARGS="--no-browser --port=8890"
LAB_ARGS ?=
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
# Notebooks' `!course-ws ...` cells and JupyterLab's terminals find the course's commands.
export PATH := $(abspath $(BIN)):$(PATH)
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: lab test notebooks bench

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "course-ws needs Python 3.11 or newer, and $(PYTHON) is " + sys.version.split()[0] + ": run make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "could not create $(VENV); on Debian or Ubuntu: sudo apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab $(ALLOW_ROOT) --ServerApp.root_dir="$(CURDIR)" \
		--LabApp.default_url=/lab/tree/notebooks/00-start-here.ipynb $(LAB_ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict course_ws
	$(BIN)/pytest $(NBVAL) tests notebooks

notebooks: $(STAMP)
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=120 --ExecutePreprocessor.record_timing=False \
		notebooks/*.ipynb

# Full benchmark runs; their reports are committed in benchmarks/ (about 10 minutes).
bench: $(STAMP)
	@mkdir -p benchmarks
	for name in mask transports memory fanout; do \
		$(BIN)/course-ws bench $$name | tee benchmarks/$$name.txt || exit 1; \
	done
