# course-ws: `make lab` opens the course, `make test` proves it works.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What is installed, once each; both are made again when pyproject.toml changes.
LAB_STAMP := $(VENV)/.installed-lab
DEV_STAMP := $(VENV)/.installed-dev
# Extra arguments for JupyterLab, e.g. make lab LAB_ARGS="--no-browser --port=8890"
LAB_ARGS ?=
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
# JupyterLab's terminals find the course's commands (`course-ws check shout`).
export PATH := $(abspath $(BIN)):$(PATH)
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

# A .venv copied along with the course still runs the folder it was made in (its
# scripts, and the editable install of course_ws, name that folder): make a new one.
VENV_MADE_IN := $(shell sed -n 's/^command = .* -m venv //p' $(VENV)/pyvenv.cfg 2>/dev/null)
VENV_MOVED := $(if $(VENV_MADE_IN),$(filter-out $(abspath $(VENV)),$(VENV_MADE_IN)))

.PHONY: lab test notebooks bench venv-moved

$(VENV)/pyvenv.cfg: $(if $(VENV_MOVED),venv-moved)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "course-ws needs Python 3.11 or newer, and $(PYTHON) is " + sys.version.split()[0] + ": run make PYTHON=python3.11 ...")'
	@if [ -n "$(VENV_MOVED)" ]; then \
		echo "make: $(VENV) was made for $(VENV_MOVED); making a new one for $(CURDIR)"; \
		rm -rf $(VENV); fi
	@echo "make: creating a virtual environment in $(CURDIR)/$(VENV) with $$($(PYTHON) -c 'import sys; print(sys.executable, sys.version.split()[0])')"
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "could not create $(VENV); on Debian or Ubuntu: sudo apt-get install python3-venv" >&2; exit 1; }

# The learner's install: measured on a fresh clone (README, "The first run").
$(LAB_STAMP): pyproject.toml $(VENV)/pyvenv.cfg
	@echo "make: installing the course into $(VENV): its libraries (websockets, Starlette, FastAPI,"
	@echo "      Django Channels, ...), JupyterLab and pytest (pyproject.toml's [lab] extra):"
	@echo "      about 120 MB to download, 580 MB on disk, a minute or two; only this first time."
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[lab]'
	@touch $@

# What `make test` needs on top: playwright, hypothesis, ruff, mypy, nbval, ...
$(DEV_STAMP): pyproject.toml $(VENV)/pyvenv.cfg
	@echo "make: installing the course with its test tools into $(VENV) (pyproject.toml's"
	@echo "      [lab] and [dev] extras): about 85 MB more to download, 270 MB more on disk."
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[lab,dev]'
	@touch $@ $(LAB_STAMP)

lab: $(LAB_STAMP)
	@echo "make: starting JupyterLab on notebooks/00-start-here.ipynb (Ctrl+C twice to stop)"
	$(BIN)/jupyter lab $(ALLOW_ROOT) --ServerApp.root_dir="$(CURDIR)" \
		--LabApp.app_settings_dir="$(CURDIR)/jupyter/settings" \
		--LabApp.default_url=/lab/tree/notebooks/00-start-here.ipynb $(LAB_ARGS)

test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict course_ws
	$(BIN)/pytest $(NBVAL) tests notebooks

notebooks: $(DEV_STAMP)
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=120 --ExecutePreprocessor.record_timing=False \
		notebooks/*.ipynb

# Full benchmark runs; their reports are committed in benchmarks/ (about 15 minutes).
bench: $(LAB_STAMP)
	@mkdir -p benchmarks
	for name in mask transports memory fanout echo asgi scale; do \
		$(BIN)/course-ws bench $$name | tee benchmarks/$$name.txt || exit 1; \
	done
