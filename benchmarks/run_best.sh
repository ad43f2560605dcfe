#!/usr/bin/env bash
# The searches' best recipes (chosen on validation, benchmarks/search/h200/) scored on test over seeds 1-3:
# twitter and FOMC's three published splits, full fine-tuning against LoRA on every linear layer under 1%.
# One bench directory per task in OUT (default runs/best); benchmarks/bench_tables.py then joins them.
# Usage: PEFTBERT_DATA_DIR=../shared/data bash benchmarks/run_best.sh [OUT] [STEP ...]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/best}; shift || true
best=benchmarks/search/h200
bench() {  # bench TASK METHOD SEARCH
  peftbert bench --task "$1" --methods "$2" --recipe "$best/$3/best.yaml" --seeds 1,2,3 --output "$out/${1//@/-}"
}
for step in ${*:-twitter-lora-all fomc twitter-full}; do case $step in
  twitter-lora-all) bench twitter-fin-sentiment lora-all lora-all-small-twitter ;;
  twitter-full)     bench twitter-fin-sentiment full full-twitter ;;
  fomc)             for s in 5768 78516 944601; do
                      bench "fomc-hawkish-dovish@$s" full full-twitter
                      bench "fomc-hawkish-dovish@$s" lora-all lora-all-small-twitter
                    done ;;
  *) echo "unknown step $step (twitter-lora-all, fomc, twitter-full)" >&2; exit 2 ;;
esac; done
