# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Afterwards `. .venv/bin/activate` puts `eden-mlx` on PATH (or call .venv/bin/eden-mlx).
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
EDEN        := $(VENV)/bin/eden-mlx
TEST_EXTRAS := dev,torch,gguf,tracking
DEMO_EXTRAS := dev,gguf
# llama-cpp-python has no Linux wheel on PyPI (third-party rebuilds exist, none we can vouch
# for): it compiles, ~11 minutes on 2 cores, once (pip caches the built wheel). Portable build.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
TINY        := models/tiny-qwen2
DEMO_RUN    := runs/tiny-demo
HAS_LLAMA   = $(PY) -c 'import llama_cpp' 2>/dev/null
NO_GGUF     = GGUF export skipped: llama-cpp-python is not installed; `make demo-gguf` adds it (compiles, ~11 min once) and runs these steps

.PHONY: install install-test test demo demo-gguf demo-train demo-eval demo-export demo-report lint \
        bench clean help \
        train-32b train-32b-round2 train-32b-round3 train-32b-monthly train-32b-dpo train-32b-kto \
        train-coder-7b-cpu \
        train-alpaca-7b train-classifier-7b train-qwen3-stage1 train-qwen3-stage2

help:
	@echo "make demo   - set up, build the tiny model, train it on MLX (dashboard), write the report,"
	@echo "              fuse, and (when llama-cpp-python is installed) export GGUF checked by llama.cpp"
	@echo "make demo-gguf - the demo with the GGUF steps (builds llama-cpp-python: ~11 min, once)"
	@echo "make test   - set up and run the test suite (fails on a skip for an installed extra)"
	@echo "make install | lint | bench | clean"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# One stamp per set of extras; re-installs when pyproject.toml changes. The gguf extra
# compiles llama.cpp: say so, and show cmake's progress lines instead of 11 silent minutes.
$(VENV)/.installed-%: pyproject.toml | $(PY)
	@echo "pip install -e '.[$*]'"
	@if [ -z "$(findstring gguf,$*)" ]; then $(PY) -m pip install --quiet -e ".[$*]"; else \
	  $(HAS_LLAMA) || echo "Building llama-cpp-python from source (~11 min on 2 cores, once;" \
	    "pip caches the wheel); progress below"; \
	  $(PY) -m pip install -v -e ".[$*]" 2>&1 | \
	    { grep --line-buffered -E '^ *\[ *[0-9]+%\]|^Successfully installed|ERROR' || true; }; fi
	@touch $@

install: $(VENV)/.installed-dev

install-test: $(VENV)/.installed-$(TEST_EXTRAS)

test: install-test
	$(PY) -m pytest -q

$(TINY): | install
	$(EDEN) tiny $(TINY)

# The demo in steps (each its own target, so a step can be added: demo = the list below).
demo: install $(TINY) demo-train demo-eval demo-export demo-report
	@echo "demo done: run directory $(DEMO_RUN), report $(DEMO_RUN)/report.html"

demo-gguf: $(VENV)/.installed-$(DEMO_EXTRAS)
	$(MAKE) demo

demo-train: install $(TINY)
	rm -rf $(DEMO_RUN)
	@echo "Training on the MLX backend (the demo shows MLX; --backend torch trains on PyTorch)"
	$(EDEN) train recipes/tiny-demo.yaml --backend mlx --output $(DEMO_RUN)

# The gate table: the adapter against the base model on the demo recipe's suites (exit 4 = a gate failed).
demo-eval: install
	$(EDEN) eval $(DEMO_RUN) --baseline base

demo-report: install
	$(EDEN) report $(DEMO_RUN)

demo-export: install
	$(EDEN) fuse --model $(TINY) --adapter $(DEMO_RUN)/adapter --output $(DEMO_RUN)/fused
	@if ! $(HAS_LLAMA); then echo '$(NO_GGUF)'; exit 0; fi; \
	for q in f16 q8_0 q4_k_m; do \
	  $(EDEN) export gguf $(DEMO_RUN)/fused --quant $$q --output $(DEMO_RUN)/tiny-demo-$$q.gguf \
	    --verify || exit 1; done; \
	$(EDEN) export ollama $(DEMO_RUN)/tiny-demo-q4_k_m.gguf --output $(DEMO_RUN)/Modelfile

# One target per shipped recipe. Pass extra options with ARGS, e.g.
#   make train-32b ARGS="--set model.path=/models/Qwen2.5-32B-Instruct"
train-32b: install
	$(EDEN) train recipes/qwen2.5-32b-eden-m3max.yaml $(ARGS)
train-32b-round2: install
	$(EDEN) train recipes/qwen2.5-32b-eden-m3max-round2.yaml $(ARGS)
train-32b-round3: install
	$(EDEN) train recipes/qwen2.5-32b-eden-m3max-round3.yaml $(ARGS)
train-32b-monthly: install
	$(EDEN) train recipes/qwen2.5-32b-eden-m3max-monthly.yaml $(ARGS)
train-32b-dpo: install
	$(EDEN) train recipes/qwen2.5-32b-eden-m3max-dpo.yaml $(ARGS)
train-32b-kto: install
	$(EDEN) train recipes/qwen2.5-32b-eden-m3max-kto.yaml $(ARGS)
train-coder-7b-cpu: $(VENV)/.installed-dev,torch
	$(EDEN) train recipes/qwen2.5-coder-7b-cpu.yaml $(ARGS)
train-alpaca-7b: install
	$(EDEN) train recipes/qwen2.5-7b-alpaca.yaml $(ARGS)
train-classifier-7b: install
	$(EDEN) train recipes/qwen2.5-7b-classifier.yaml $(ARGS)
train-qwen3-stage1: install
	$(EDEN) train recipes/qwen3-14b-stage1-style.yaml $(ARGS)
train-qwen3-stage2: install
	$(EDEN) train recipes/qwen3-14b-stage2-iac.yaml $(ARGS)

lint: install
	$(VENV)/bin/ruff check mlx_eden tests benchmarks

bench: install-test
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs models .pytest_cache
