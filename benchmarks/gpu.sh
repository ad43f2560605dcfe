#!/usr/bin/env bash
# The GPU speed table in one prepared script: peftbert against the scripts a practitioner would write
# (transformers.Trainer + peft for full and LoRA fine-tuning, 3 seeds at bf16 with test accuracy beside; run_mlm
# for masked-LM training; pipeline for prediction), side by side on the GPU it runs on, with utilisation against
# the device's measured bf16 matmul peak. The table lands in experiments/speed-gpu/results/<device>/.
#
#   benchmarks/gpu.sh prepare   # here, beside ../shared/data: packs the data slices and the embedded model
#                               # (fp16) into .gpu-data/ (git-ignored) for a GPU machine with no network
#   benchmarks/gpu.sh           # there (device tool: carry .gpu-data): checks, then runs in about 6 minutes
#
# Where the GPU machine has network, `make install TORCH_SPEC=` and PEFTBERT_DATA_DIR do instead of prepare.
# Settings by environment: MODEL (a model path; default the packed or embedded MiniLM), ROWS, EPOCHS, SEEDS,
# ADAPT_STEPS, CORPUS_DOCS, PREDICT_TEXTS (0 = all 9.5k), SECTIONS, OUT_DIR, LIMIT_S (whole-run timeout), PACK.
# tests/test_gpu_script.py runs it on the CPU with a tiny random BERT: the plumbing, not the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PACK=${PACK:-.gpu-data}

if [ "${1:-}" = prepare ]; then
    grep -qx "/$PACK/" .git/info/exclude 2>/dev/null || echo "/$PACK/" >> .git/info/exclude
    exec "$PY" benchmarks/speed.py --data-dir "${PEFTBERT_DATA_DIR:-../shared/data}" --corpus-docs 200 --pack "$PACK"
fi

# -- checks: one line for what is missing, before any minute is spent
"$PY" - <<'PY' || exit 2
import importlib.util, sys
missing = [m for m in ("torch", "transformers", "peft", "accelerate", "pandas", "scipy", "sklearn", "yaml", "typer",
                       "safetensors", "tqdm") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu.sh: missing Python packages {', '.join(missing)}: `make install TORCH_SPEC=`, or carry wheels")
import torch, transformers, peft
print(f"gpu.sh: torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
      f"device {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu (no CUDA: plumbing only)'}")
PY

if [ -z "${PEFTBERT_DATA_DIR:-}" ] && [ -d "$PACK/data" ]; then export PEFTBERT_DATA_DIR="$PWD/$PACK/data"; fi
if [ -z "${PEFTBERT_DATA_DIR:-}" ] && [ -d ../shared/data ]; then export PEFTBERT_DATA_DIR="$(cd ../shared/data && pwd)"; fi
[ -n "${PEFTBERT_DATA_DIR:-}" ] || { echo "gpu.sh: no data: run 'benchmarks/gpu.sh prepare' beside ../shared/data and carry $PACK, or set PEFTBERT_DATA_DIR" >&2; exit 2; }
if [ -z "${MODEL:-}" ] && [ -d "$PACK/minilm" ]; then MODEL=$PACK/minilm; fi  # speed.py upcasts it to fp32

DEVICE=$("$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); from speed import device_name; print(device_name())")
OUT_DIR=${OUT_DIR:-experiments/speed-gpu/results/$DEVICE}
set +e
timeout "${LIMIT_S:-470}" "$PY" benchmarks/speed.py --model "${MODEL:-minilm}" --name speed \
    --rows "${ROWS:-3000}" --epochs "${EPOCHS:-3}" --seeds "${SEEDS:-42,1,2}" --adapt-steps "${ADAPT_STEPS:-200}" \
    --corpus-docs "${CORPUS_DOCS:-100}" --predict-texts "${PREDICT_TEXTS:-0}" \
    --sections "${SECTIONS:-train,adapt,predict}" --out "$OUT_DIR"
rc=$?
set -e
if [ -n "${OUT:-}" ] && [ -d "$OUT_DIR" ]; then cp "$OUT_DIR"/* "$OUT"/; fi  # the device tool brings back $OUT
[ $rc -eq 0 ] || echo "gpu.sh: speed.py ended with $rc (124: past LIMIT_S); the sections it finished are in $OUT_DIR" >&2
exit $rc
