# Two commands for a newcomer: `make demo` and `make test`. Everything lives in .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The local CPU wheel of PyTorch, installed before the package so that pip never resolves a newer
# (CUDA, several GB) torch. Override on a machine where you want another build: make TORCH=torch demo
TORCH  ?= torch==2.13.0

.PHONY: demo test test-slow lint install dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install -q -e ".[dev,onnx,serve]"
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/dslrify enhance assets/demo/phone.jpg -o out/demo --overwrite
	@echo "Enhanced photo written to out/demo/phone_dslr.jpg (input: assets/demo/phone.jpg)"

test: dev
	$(BIN)/python -m pytest -q

test-slow: dev
	$(BIN)/python -m pytest -q -m slow

# ruff, then mypy (its settings and files: [tool.mypy] in pyproject.toml)
lint: dev
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

clean:
	rm -rf $(VENV) out .pytest_cache
