# The course's task runner. Every target installs what it needs first and is quick when everything
# is already installed. The environment is the active conda environment when there is one (other
# than `base`), else .venv, created here.
#   make course   run the lessons headless (LESSON=03 for one, LESSON="01 03" for some); output in build/
#   make test     lint and the whole test suite (unit tests, oracles, lessons under nbval)
#   make lab      register the course's kernel, start JupyterLab on your working copy of the lessons
#   make lab-reset  put fresh copies of the lessons in your working copy (asks before overwriting)
#   make setup    only create the environment and install the package with its dev extra
#   make sync     regenerate the lessons' .ipynb files from their .py sources
#   make exercises regenerate exercises/ and solutions/ from solutions/source/
#   make mutants  plant bugs one at a time and report which ones the fast tests miss (maintainers)

PYTHON ?= python3
ifneq ($(and $(CONDA_PREFIX),$(filter-out base,$(CONDA_DEFAULT_ENV))),)
ENV_DIR := $(CONDA_PREFIX)
else
ENV_DIR := .venv
endif
PY     := $(ENV_DIR)/bin/python
STAMP  := $(ENV_DIR)/.academy-diffusion-installed

.PHONY: setup lab lab-reset course test lint sync exercises pretrain mutants clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(ENV_DIR)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

lab: setup  # the browser test starts JupyterLab with the same module
	$(PY) -m academy_diffusion.lab

lab-reset: setup
	$(PY) -m academy_diffusion.lab --reset

course: setup
	$(PY) -m academy_diffusion.course $(if $(LESSON),--only $(LESSON))

sync: setup  # regenerate each lesson's .ipynb (no outputs) from its jupytext .py source
	$(PY) -m academy_diffusion.exercises --lessons

exercises: setup  # regenerate exercises/ and solutions/ from solutions/source/
	$(PY) -m academy_diffusion.exercises

pretrain: setup  # retrain the shipped checkpoints in academy_diffusion/pretrained/ (a GPU is best)
	$(PY) -m academy_diffusion.pretrain

mutants: setup
	$(PY) tests/mutation.py

lint: setup
	$(PY) -m ruff check .

# The whole suite runs on two workers of one thread each: on a 2-core machine that keeps both cores
# busy through the many single-threaded stretches (kernels starting, pip, JupyterLab) without two
# PyTorch processes fighting over both cores. A file's tests stay on one worker (--dist loadfile):
# a notebook's cells share one kernel. TESTS=... runs just those, in this process, every thread.
test: lint
	$(if $(TESTS),$(PY) -m pytest $(TESTS),OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile)

clean:
	rm -rf build .pytest_cache .ruff_cache
