# Set-up and entry points. `make demo` and `make test` do everything on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; a GPU user runs `make TORCH_SPEC=` inside an env that already has torch.
TORCH_SPEC ?= torch==2.13.0
# Real data sets are read by path, never copied: point at ../shared/data when it is there.
SHARED_DATA := $(abspath ../shared/data)
export PEFTBERT_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-fast clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(if $(TORCH_SPEC),$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)")
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# A short adapt -> tune demo on the embedded MiniLM: continued pretraining on the finance corpus (or, with
# no data directory, on the shipped sample's text), then LoRA on the finance default task (or the sample).
demo: install
	$(VENV)/bin/peftbert adapt $(if $(PEFTBERT_DATA_DIR),--domain finance --max-steps 60,--task finance-sample --max-steps 30) \
	  --head-warmup-steps 30 --eval-every 30 --output runs/demo/adapted --overwrite
	$(VENV)/bin/peftbert tune --model runs/demo/adapted --epochs 1 --output runs/demo/tuned --overwrite

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not real"

clean:
	rm -rf $(VENV) runs
