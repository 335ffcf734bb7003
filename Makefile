# Two commands for a newcomer: `make demo` and `make test`. Everything lives in .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The local CPU wheel of PyTorch, installed before the package so that pip never resolves a newer
# (CUDA, several GB) torch. Override on a machine where you want another build: make TORCH=torch demo
TORCH  ?= torch==2.13.0

.PHONY: demo test test-slow lint install dev clean retrain retrain-default retrain-balanced retrain-fast retrain-paper ship-weights

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

# Retrain the shipped models from ../shared/data with the CLI (docs/models/*.md), into $(RETRAINED)/NAME;
# the shipped weights are not touched. On a GPU: make retrain DEVICE=cuda. Run folders go to $(RUNS).
DEVICE    ?= auto
RETRAINED ?= retrained
RUNS      ?= runs/retrain
RETRAIN   := DSLRIFY=$(BIN)/dslrify scripts/retrain.sh --device $(DEVICE) --runs $(RUNS) --out $(RETRAINED)

retrain: install
	$(RETRAIN) all

retrain-default retrain-balanced retrain-fast retrain-paper: install
	$(RETRAIN) $(@:retrain-%=%)

# Replace the shipped weights by the retrained ones (each of default/balanced/fast/paper found in $(RETRAINED)).
ship-weights:
	@for m in default balanced fast paper; do \
	    if [ -f $(RETRAINED)/$$m/model.safetensors ]; then \
	        cp $(RETRAINED)/$$m/model.safetensors $(RETRAINED)/$$m/config.json src/dslrify/weights/$$m/ && \
	        echo "replaced src/dslrify/weights/$$m by $(RETRAINED)/$$m"; \
	    fi; \
	done
	@echo "update the figures in docs/models/*.md and the README, then: make test"

clean:
	rm -rf $(VENV) out .pytest_cache
