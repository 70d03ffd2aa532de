# Two entry points on a fresh machine (see README): `make demo` and `make test`.
# Each creates what it needs from nothing; nothing here needs Docker or AWS credentials.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY311 ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
# Python 3.12 (the Lambda runtime) for the tools venv, the image-equivalent venv and `sam build`.
PY312 ?= $(firstword $(shell ls -d $$HOME/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null) \
                     $(shell command -v python3.12 2>/dev/null))
VENV := .venv
TOOLS := .venv-tools
IMAGE_VENV := .venv-image
QUANTIZE_VENV := .venv-quantize
TRAIN_VENV := .venv-train
# The torch the tests run; the training job's lock pins the same version (checked by tests/infra/test_training_lock.py).
TORCH := 2.13.0
PIP_QUIET := -q --disable-pip-version-check

.PHONY: help venv tools image-venv quantize-venv train-venv lock chromium lint typecheck test test-fast demo bench clean

help:
	@echo "make demo   - set up and run the whole pipeline locally (embedded cloud), then serve predictions"
	@echo "make test   - set up and run lint, type checks and every test tier"
	@echo "make bench  - run the benchmarks (JSON + PNG under benchmarks/results/)"

# onnxruntime exactly as the images pin it: the local gate scores, and the benchmarks time, the runtime that
# serves (a graph pre-optimized by one version is re-optimized, with a warning, by another).
ORT := $(shell sed -n 's/^onnxruntime==//p' packaging/inference/requirements.in)
$(if $(ORT),,$(error packaging/inference/requirements.in pins no onnxruntime==VERSION))

# The training job's lock, as plain pins: the packages it locks are held to it in the dev venv, so the tests run
# what the job runs. torch and onnxruntime are left out: they are pinned by name below. To move a locked version,
# install it into .venv by hand, then `make lock` (or `rm .venv/.installed && make venv lock TRAIN_PINS=/dev/null`:
# the venv takes the newest versions allowed, and the lock follows it).
TRAIN_LOCK := src/lambdaforge/training/requirements.txt
TRAIN_PINS ?= .cache/train-pins.txt

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml packaging/inference/requirements.in $(TRAIN_LOCK)
	@test -x $(VENV)/bin/python || $(PY311) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_QUIET) --upgrade pip
	@if [ "$(TRAIN_PINS)" = .cache/train-pins.txt ]; then mkdir -p .cache && \
		sed -n 's/^\([A-Za-z0-9][A-Za-z0-9._-]*==[^ \;]*\).*/\1/p' $(TRAIN_LOCK) \
		| grep -vE '^(torch|onnxruntime)==' > $(TRAIN_PINS) && test -s $(TRAIN_PINS) \
		|| { echo "$(TRAIN_LOCK): no name==version pins found" >&2; exit 1; }; fi
	# torch first and exactly this version: the CPU wheel on this disk (a range would pull a CUDA build)
	$(VENV)/bin/pip install $(PIP_QUIET) -c $(TRAIN_PINS) torch==$(TORCH)
	$(VENV)/bin/pip install $(PIP_QUIET) -c $(TRAIN_PINS) -e ".[runtime,convert,train,cloud,local,dev]" \
		"onnxruntime==$(ORT)"
	@touch $@

tools: $(TOOLS)/.installed
$(TOOLS)/.installed: requirements-tools.txt
	@test -n "$(PY312)" || (echo "Python 3.12 is needed for the tools venv (pyenv install 3.12)"; exit 1)
	@test -x $(TOOLS)/bin/python || $(PY312) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install $(PIP_QUIET) -r requirements-tools.txt
	@touch $@

# What the inference image installs, alone, in a fresh Python 3.12 venv (the image-equivalent test).
image-venv: $(IMAGE_VENV)/.installed
$(IMAGE_VENV)/.installed: packaging/inference/requirements.txt packaging/inference/slim.txt | $(VENV)/.installed
	@test -n "$(PY312)" || (echo "Python 3.12 is needed for the image-equivalent venv"; exit 1)
	rm -rf $(IMAGE_VENV)
	$(PY312) -m venv $(IMAGE_VENV)
	$(IMAGE_VENV)/bin/pip install $(PIP_QUIET) --require-hashes --no-deps --only-binary=:all: \
		-r packaging/inference/requirements.txt
	$(VENV)/bin/python -m lambdaforge.bundle slim $(IMAGE_VENV)/lib/python3.12/site-packages \
		packaging/inference/slim.txt
	@touch $@

# What the quantize image installs, alone and slimmed (its test quantizes and fuses a model there).
quantize-venv: $(QUANTIZE_VENV)/.installed
$(QUANTIZE_VENV)/.installed: packaging/quantize/requirements.txt packaging/quantize/slim.txt | $(VENV)/.installed
	@test -n "$(PY312)" || (echo "Python 3.12 is needed for the quantize image-equivalent venv"; exit 1)
	rm -rf $(QUANTIZE_VENV)
	$(PY312) -m venv $(QUANTIZE_VENV)
	$(QUANTIZE_VENV)/bin/pip install $(PIP_QUIET) --require-hashes --no-deps --only-binary=:all: \
		-r packaging/quantize/requirements.txt
	$(VENV)/bin/python -m lambdaforge.bundle slim $(QUANTIZE_VENV)/lib/python3.12/site-packages \
		packaging/quantize/slim.txt
	@touch $@

# The training container's stand-in: Python 3.11 (the image's), torch and the sagemaker-training toolkit.
# The toolkit installs the bundle's lock into it, as it does in AWS's PyTorch training image.
train-venv: $(TRAIN_VENV)/.installed
$(TRAIN_VENV)/.installed: packaging/training/container.txt src/lambdaforge/training/requirements.txt
	rm -rf $(TRAIN_VENV)
	$(PY311) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install $(PIP_QUIET) torch==$(TORCH) -r packaging/training/container.txt
	@touch $@

# Re-pin the images' requirements with hashes (pip-tools in a throwaway venv: it collides with checkov).
# requirements-arm64.txt: the same pins, with the hashes of the arm64 wheels (Architecture=arm64).
lock: venv
	rm -rf .cache/lock-venv && $(PY312) -m venv .cache/lock-venv
	.cache/lock-venv/bin/pip install $(PIP_QUIET) pip-tools
	@for f in inference quantize; do \
		.cache/lock-venv/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
			--no-emit-find-links --output-file packaging/$$f/requirements.txt packaging/$$f/requirements.in && \
		$(VENV)/bin/python -m lambdaforge.bundle lock packaging/$$f/requirements.txt packaging/$$f/slim.txt && \
		$(VENV)/bin/python -m lambdaforge.bundle.lock_arm64 packaging/$$f/requirements.txt \
			packaging/$$f/requirements-arm64.txt || exit 1; \
	done
	# The training job: Python 3.11 like the image, every version as installed in .venv, torch from PyPI
	# (no find-links: the CPU wheel on this disk is not what a GPU job installs).
	rm -rf .cache/lock-venv311 && $(PY311) -m venv .cache/lock-venv311
	.cache/lock-venv311/bin/pip install $(PIP_QUIET) pip-tools
	$(VENV)/bin/pip freeze --exclude-editable | sed 's/^torch==.*/torch==$(TORCH)/' > .cache/tested.txt
	PIP_FIND_LINKS= PIP_CONFIG_FILE=/dev/null .cache/lock-venv311/bin/pip-compile -q --generate-hashes \
		--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --no-header -c .cache/tested.txt \
		--output-file .cache/training.txt packaging/training/requirements.in
	cat packaging/training/lock-header.txt .cache/training.txt > src/lambdaforge/training/requirements.txt

chromium:
	@command -v chromium >/dev/null || { \
		echo "installing Debian's chromium for the browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); }

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

test: venv tools image-venv quantize-venv train-venv chromium lint typecheck
	PATH="$(dir $(PY312)):$$PATH" $(VENV)/bin/pytest -q --durations=15

test-fast: venv
	$(VENV)/bin/pytest -q tests/unit

demo: venv
	$(VENV)/bin/lambdaforge up --recipe digits

# Each benchmark writes its JSON and, beside it, its PNG (`--plot-only` re-plots a JSON without measuring).
# The models are trained once per run, in a fresh BENCH_WORK, and shared by the benchmarks that serve them.
BENCH_WORK ?= .cache/bench
bench: venv
	rm -rf $(BENCH_WORK) && mkdir -p $(BENCH_WORK)
	$(VENV)/bin/python benchmarks/bench_models.py --out benchmarks/results/models.json --workdir $(BENCH_WORK)
	$(VENV)/bin/python benchmarks/bench_serving.py --out benchmarks/results/serving.json --workdir $(BENCH_WORK)
	$(VENV)/bin/python benchmarks/bench_pipeline.py --out benchmarks/results/pipeline.json
	$(VENV)/bin/python benchmarks/bench_soak.py --out benchmarks/results/soak.json --workdir $(BENCH_WORK)
	@for f in benchmarks/results/{models,serving,pipeline,soak}; do \
		test -s $$f.png -a ! $$f.json -nt $$f.png || { echo "$$f.png was not written after $$f.json"; exit 1; }; \
	done

clean:
	rm -rf .aws-sam .mypy_cache .ruff_cache .pytest_cache runs
