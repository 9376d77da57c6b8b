# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make run   - create .venv if missing, install, launch the app (demo data when you have none)
#   make test  - create .venv if missing, install with test extras, run the whole suite headless
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/alexgui

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -n 2 --dist loadgroup

# Each benchmark measures its ratios side by side in one process; figures go to benchmarks/README.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_train_loop
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m benchmarks.bench_gui_training
	$(BIN)/python -m benchmarks.bench_inference
	$(BIN)/python -m benchmarks.bench_retrieval
	$(BIN)/python -m benchmarks.bench_train_gpu

clean:
	rm -rf $(VENV) build *.egg-info
