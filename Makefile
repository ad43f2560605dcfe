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

# The demo on the embedded MiniLM: full fine-tuning (2 epochs) on finance sentiment, its test scores printed beside
# the baselines every bench table uses (peftbert/baselines.py: majority class; TF-IDF + LR, C chosen on validation).
# No `adapt` stage: on MiniLM with the demo's thousands of labels, continued pretraining bought nothing (level at
# best: experiments/adapt-levers, experiments/h200-domain-adaptation; it paid with tens of labels per class, which
# the demo is not), and a TAPT run takes tens of minutes on 2 cores; the demo shows only stages that pay.
# (No data directory: the shipped sample's text and labels instead.) The earlier demo's run: experiments/demo.
demo: install
	$(VENV)/bin/peftbert tune --method full --epochs 2 --output runs/demo/tuned --overwrite
	$(PY) tools/demo_compare.py runs/demo/tuned

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not real"

clean:
	rm -rf $(VENV) runs
