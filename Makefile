# The course's task runner. Every target installs what it needs first (into .venv) and is
# quick when everything is already installed.
#   make course   run the six lessons headless; executed notebooks and figures go to build/
#   make test     lint and the whole test suite (unit tests, oracles, lessons under nbval)
#   make lab      register the course's kernel, start JupyterLab and print the URL of lesson 1
#   make setup    only create .venv and install the package with its dev extra
#   make sync     regenerate the lessons' .ipynb files from their .py sources
#   make exercises regenerate exercises/ and solutions/ from solutions/source/

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup lab course test lint sync exercises pretrain clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

lab: setup  # the browser test starts JupyterLab with the same module
	$(PY) -m academy_diffusion.lab

course: setup
	$(PY) -m academy_diffusion.course

sync: setup  # regenerate each lesson's .ipynb (no outputs) from its jupytext .py source
	$(PY) -m academy_diffusion.exercises --lessons

exercises: setup  # regenerate exercises/ and solutions/ from solutions/source/
	$(PY) -m academy_diffusion.exercises

pretrain: setup  # retrain the shipped checkpoints in academy_diffusion/pretrained/ (a GPU is best)
	$(PY) -m academy_diffusion.pretrain

lint: setup
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest

clean:
	rm -rf build .pytest_cache .ruff_cache
