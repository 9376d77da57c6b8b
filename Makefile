# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make run   - create .venv if missing, install, launch the app (demo data when you have none)
#   make test  - create .venv if missing, install with test extras, run ruff, mypy, the import
#                contracts and the whole suite headless
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The versions the suite is tested with, for what matters most. pyproject.toml accepts ranges; `make`
# pins these so that every fresh .venv gets what CI ran. PyPI's Linux torch carries its CUDA
# libraries and runs on the CPU too. (A CPU-only torch beside PyPI's torchvision does not work:
# torchvision's extension links against libtorch_cuda, and `import torchvision` fails.) PySide6
# 6.12.0 is excluded: see tests/test_qt_binding.py. --no-cache-dir: the ~3 GB of wheels are not kept
# a second time on disk.
TESTED_PINS := torch==2.15.0 torchvision==0.29.2 PySide6-Essentials==6.11.3
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: run test install bench gpu-suite gpu-suite-publish clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --no-cache-dir -e ".[test]" $(TESTED_PINS)
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/alexgui

# Lint, types and the layer contracts first (seconds), then the suite.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -n 2 --dist loadgroup

# Each benchmark measures its ratios side by side in one run; figures go to benchmarks/README.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_train_loop
	$(BIN)/python -m benchmarks.bench_cpu_memory
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m benchmarks.bench_gui_training
	$(BIN)/python -m benchmarks.bench_inference
	$(BIN)/python -m benchmarks.bench_retrieval
	$(BIN)/python -m benchmarks.bench_evaluate
	$(BIN)/python -m benchmarks.bench_train_gpu
	$(BIN)/python -m benchmarks.bench_structure --minutes 5
	$(BIN)/python -m benchmarks.bench_cpu_bf16
	$(BIN)/python -m benchmarks.bench_lrn
	$(BIN)/python -m benchmarks.bench_explain
	$(BIN)/python -m benchmarks.bench_finetune
	$(BIN)/python -m benchmarks.bench_top_units
	$(BIN)/python -m benchmarks.bench_feature_space

# The GPU suite (benchmarks/README.md says how to run it on the device machine): here it runs on this
# machine's GPU, or with SUITE_ARGS=--dry-run on the CPU at toy size. runs/ is git-ignored.
SUITE_DATA ?= ../shared/data/imagenette-224-mini
SUITE_OUT ?= runs/gpu-suite
gpu-suite: $(STAMP)
	$(BIN)/python -m benchmarks.gpu_suite --data $(SUITE_DATA) --out $(SUITE_OUT) $(SUITE_ARGS)

# Copy a result the device machine sent back (RESULT=its files_at folder) into benchmarks/README.md and
# docs/experiments/, for review and commit.
gpu-suite-publish: $(STAMP)
	$(BIN)/python -m benchmarks.gpu_suite.publish $(RESULT)

clean:
	rm -rf $(VENV) build *.egg-info
