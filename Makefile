# Two entry points: `make demo` and `make test`. Both create .venv and install spatialx into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned here so that pip never pulls the multi-GB CUDA build on CPU machines and CI.
TORCH_PIN ?= torch==2.13.0

.PHONY: venv demo test lint bench clean

$(BIN)/spatialx: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_PIN)"
	$(BIN)/pip install --quiet -e ".[dev,onnx]"
	touch $@

venv: $(BIN)/spatialx

demo: venv
	$(BIN)/python -m spatialx.demo demo-out

test: venv
	$(BIN)/ruff check .
	$(BIN)/pytest -q

bench: venv
	$(BIN)/python benchmarks/bench_pansharpen.py

clean:
	rm -rf $(VENV) demo-out build *.egg-info
