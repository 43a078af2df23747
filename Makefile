# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
EDEN        := $(VENV)/bin/eden-mlx
TEST_EXTRAS := dev,torch,gguf
DEMO_EXTRAS := dev,gguf
# llama-cpp-python has no Linux wheel: build it portable (pip caches the built wheel).
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
TINY        := models/tiny-qwen2
DEMO_RUN    := runs/tiny-demo

.PHONY: install install-test test demo lint bench clean help \
        train-32b train-32b-round2 train-32b-round3 train-32b-monthly train-coder-7b-cpu \
        train-alpaca-7b train-classifier-7b train-qwen3-stage1 train-qwen3-stage2

help:
	@echo "make demo   - set up, build the tiny model, train it (dashboard), fuse, export GGUF"
	@echo "make test   - set up and run the test suite"
	@echo "make install | lint | bench | clean"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# One stamp per set of extras; re-installs when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[$*]"
	@touch $@

install: $(VENV)/.installed-dev

install-test: $(VENV)/.installed-$(TEST_EXTRAS)

test: install-test
	$(PY) -m pytest -q

$(TINY): | install
	$(EDEN) tiny $(TINY)

demo: install $(VENV)/.installed-$(DEMO_EXTRAS) $(TINY)
	rm -rf $(DEMO_RUN)
	$(EDEN) train recipes/tiny-demo.yaml --output $(DEMO_RUN)
	$(EDEN) fuse --model $(TINY) --adapter $(DEMO_RUN)/adapter --output $(DEMO_RUN)/fused
	for q in f16 q8_0 q4_k_m; do \
	  $(EDEN) export gguf $(DEMO_RUN)/fused --quant $$q --output $(DEMO_RUN)/tiny-demo-$$q.gguf \
	    --verify || exit 1; done
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
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs models .pytest_cache
