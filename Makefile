# Two commands do everything on a fresh machine:
#   make demo   - the main job on built-in demo data (no download)
#   make test   - the style gate (ruff check, ruff format --check) and the test suite
# Both create .venv and install the project on first use. torch is pinned to 2.13.0 before the
# project is installed so that pip does not pull a multi-GB CUDA build on CPU machines.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-slow install format bench clean

# The project and what the main job uses (its video); the demo needs nothing more.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[video]"
	touch $(STAMP)

# The test and lint tools, Ray Tune and rliable (the sweep and report tests), on top.
$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(DEV_STAMP)

install: $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/robo-offline main

test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-slow: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs data deploy/cpp/build
