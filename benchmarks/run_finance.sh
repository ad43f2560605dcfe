#!/usr/bin/env bash
# Regenerates the finance numbers in README.md and benchmarks/results.md, one run after another
# (2 CPU cores, bf16). Each run's metrics.json is copied to benchmarks/results/<name>.json.
# Usage: PEFTBERT_DATA_DIR=../shared/data bash benchmarks/run_finance.sh [step ...]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results runs
run() {  # run NAME COMMAND...: skip when its results exist, else run and keep metrics.json
  local name=$1; shift
  [ -f "benchmarks/results/$name.json" ] && { echo "== $name: done"; return; }
  echo "== $name: $*"
  "$@" --output "runs/$name" --overwrite > "runs/$name.log" 2>&1 || { echo "$name failed: see runs/$name.log" >&2; exit 1; }
  cp "runs/$name/metrics.json" "benchmarks/results/$name.json"
}
steps=${*:-"twitter fomc adapt adapted methods seeds splits"}
for s in $steps; do case $s in
  twitter) run twitter-lora peftbert tune --task twitter-fin-sentiment --method lora
           run twitter-full peftbert tune --task twitter-fin-sentiment --method full ;;
  fomc)    run fomc-lora peftbert tune --task fomc-hawkish-dovish --method lora ;;
  adapt)   run adapt-finance peftbert adapt --domain finance --max-steps 400 --eval-every 200 --head-warmup-steps 100 ;;
  adapted) run fomc-lora-adapted peftbert tune --task fomc-hawkish-dovish --method lora --model runs/adapt-finance
           run twitter-lora-adapted peftbert tune --task twitter-fin-sentiment --method lora --model runs/adapt-finance ;;
  methods) run twitter-adapter peftbert tune --task twitter-fin-sentiment --method adapter --budget 75k
           run twitter-adalora peftbert tune --task twitter-fin-sentiment --method adalora --budget 75k ;;
  seeds)   # two more seeds of the matched-budget comparison (the runs above are seed 42), through `peftbert bench`
           methods="lora adapter adalora" seeds="1 2"
           peftbert bench --task twitter-fin-sentiment --methods "${methods// /,}" --budget 75k --seeds "${seeds// /,}" \
             --output runs/bench-twitter 2>&1 | tee runs/bench-twitter.log
           for m in $methods; do for seed in $seeds; do
             cp "runs/bench-twitter/runs/minilm-$m-s$seed/metrics.json" "benchmarks/results/twitter-$m-s$seed.json"
           done; done ;;
  splits)  # base vs finance-adapted LoRA on FOMC's two other published splits (seed 42, like fomc/adapted)
           for split in 78516 944601; do
             peftbert bench --task "fomc-hawkish-dovish@$split" --models minilm,runs/adapt-finance --methods lora \
               --seeds 42 --output "runs/bench-fomc-$split" 2>&1 | tee "runs/bench-fomc-$split.log"
             for m in minilm adapt-finance; do
               cp "runs/bench-fomc-$split/runs/$m-lora-s42/metrics.json" "benchmarks/results/fomc-$split-lora-$m.json"
             done
           done ;;
  *)       echo "unknown step '$s' (steps: twitter fomc adapt adapted methods seeds splits)" >&2; exit 2 ;;
esac; done
