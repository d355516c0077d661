# The course's task runner. Every target installs what it needs first and is quick when everything
# is already installed. The environment is the active conda environment when there is one (other
# than `base`), else .venv, created here.
#   make course   run the lessons headless (LESSON=03 for one, LESSON="01 03" for some); output in build/
#   make test     lint and the whole test suite (unit tests, oracles, lessons under nbval)
#   make lab      register the course's kernel, start JupyterLab on your working copy of the lessons
#   make lab-reset  put fresh copies of the lessons in your working copy (asks before overwriting)
#   make setup    only create the environment and install the package with its dev extra (TORCH=cpu: CPU torch)
#   make colab    build the package with its checkpoints as one wheel to upload to Colab (build/colab/)
#   make sync     regenerate the lessons' .ipynb files from their .py sources
#   make exercises regenerate exercises/ and solutions/ from solutions/source/
#   make mutants  plant bugs one at a time and report which ones the fast tests miss (maintainers)

PYTHON ?= python3
# TORCH=cpu: install PyTorch's CPU build before the course (Linux or Windows laptops without an NVIDIA GPU;
# the default build there is the CUDA one, over 6 GB). macOS needs nothing: PyPI's build is CPU + Apple GPU.
TORCH ?=
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
ifneq ($(and $(CONDA_PREFIX),$(filter-out base,$(CONDA_DEFAULT_ENV))),)
ENV_DIR := $(CONDA_PREFIX)
else
ENV_DIR := .venv
endif
PY     := $(ENV_DIR)/bin/python
STAMP  := $(ENV_DIR)/.academy-diffusion-installed
# Exits 1 on a Python older than the course supports (pyproject.toml: requires-python).
OLD_PYTHON := -c 'import sys; sys.exit(sys.version_info[:2] < (3, 10))'

.PHONY: setup lab lab-reset course test lint sync exercises pretrain colab mutants clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) $(OLD_PYTHON) || { echo "error: the course needs Python 3.10 or newer, and \
	'$(PYTHON)' is $$($(PYTHON) --version 2>&1). Install a newer Python, then run: make $(MAKECMDGOALS) \
	PYTHON=python3.12 (or whichever you installed)." >&2; exit 1; }
	@test -x $(PY) || { echo "creating the environment $(ENV_DIR) with $$($(PYTHON) --version)"; \
	$(PYTHON) -m venv $(ENV_DIR); }
	@$(PY) $(OLD_PYTHON) || { echo "error: $(ENV_DIR) holds $$($(PY) --version 2>&1), older than the course \
	supports (3.10). Remove it (rm -rf $(ENV_DIR)) and run make again with a newer PYTHON." >&2; exit 1; }
ifeq ($(TORCH),cpu)
	@echo "installing PyTorch's CPU build first (about 200-700 MB)"
	$(PY) -m pip install --disable-pip-version-check torch torchvision --index-url $(TORCH_CPU_INDEX)
endif
	@echo "installing the course and its tools; the first time this downloads PyTorch unless it is there \
	(1-6 GB, several minutes)"
	$(PY) -m pip install --disable-pip-version-check --progress-bar on -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

lab: setup  # the browser test starts JupyterLab with the same module
	$(PY) -m academy_diffusion.course.lab

lab-reset: setup
	$(PY) -m academy_diffusion.course.lab --reset

course: setup
	$(PY) -m academy_diffusion.course $(if $(LESSON),--only $(LESSON))

sync: setup  # regenerate each lesson's .ipynb (no outputs) from its jupytext .py source
	$(PY) -m academy_diffusion.course.exercises --lessons

exercises: setup  # regenerate exercises/ and solutions/ from solutions/source/
	$(PY) -m academy_diffusion.course.exercises

colab: setup  # one wheel with the package and its shipped checkpoints, for Colab without a published repository
	$(PY) -m academy_diffusion.course.bundle

pretrain: setup  # retrain the shipped checkpoints in academy_diffusion/pretrained/ (a GPU is best)
	$(PY) -m academy_diffusion.course.pretrain

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
