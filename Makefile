# Two commands on a fresh machine with Python 3.11+ and make:
#   make train   create .venv, install numbamlp, train on the built-in digits set
#   make test    same set-up, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: train test gradcheck lint-imports clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever the project's metadata changes.
$(VENV)/.installed: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,plot,dask,serve,onnx,docs,search]"
	touch $@

train: $(VENV)/.installed
	$(BIN)/numbamlp train

gradcheck: $(VENV)/.installed
	$(BIN)/numbamlp gradcheck

# The CUDA kernels run under Numba's CUDA simulator in a second pytest run: the simulator
# has to be switched on before Numba is imported.  Each run spreads its tests over worker
# processes (pytest-xdist, one per core, at most 4): most of the suite's time is Numba
# compiling on an empty cache and the simulator interpreting kernels, both one core each.
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --ignore=tests/cuda
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -q -n auto --maxprocesses 4 tests/cuda

# import-linter checks the layers and cycles in pyproject's [tool.importlinter].  It reads
# the package from the files, and kernels/ and cli/ install inside numbamlp (package-dir):
# it reads a copy laid out as installed.
LAYOUT := build/import-layout
lint-imports: $(VENV)/.installed
	rm -rf $(LAYOUT) && mkdir -p $(LAYOUT)
	cp -R numbamlp $(LAYOUT)/numbamlp && cp -R kernels $(LAYOUT)/numbamlp/kernels && cp -R cli $(LAYOUT)/numbamlp/cli
	cd $(LAYOUT) && $(CURDIR)/$(BIN)/lint-imports --no-cache $(CURDIR)/pyproject.toml

clean:
	rm -rf $(VENV) build *.egg-info
