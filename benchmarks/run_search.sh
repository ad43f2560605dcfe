#!/usr/bin/env bash
# Searches on the finance tasks (selection on validation only; trials never score test), the evidence a
# preset in recipes/methods/ is to come from.
# Each runs `peftbert search` into runs/search-<name>/ (resumable: rerun the same line to continue it) and copies
# its trials.md, trials.csv and best.yaml to benchmarks/search/<name>/.
# Usage: PEFTBERT_DATA_DIR=../shared/data bash benchmarks/run_search.sh lora-twitter [more names]
# SEARCH_OUT (default runs) is where the studies live, SEARCH_COPY (default benchmarks/search) where their tables
# are copied; SEARCH_ARGS are appended to every search (a later flag wins, e.g. SEARCH_ARGS="--minutes 5
# --trials 40" on a GPU; benchmarks/run_gpu.sh sets all three).
set -euo pipefail
cd "$(dirname "$0")/.."
for name in "$@"; do
  case $name in
    # (started before packed batches were the default: its trials ran on length-grouped batches)
    lora-twitter) args=(--method lora --task twitter-fin-sentiment --batching grouped --trials 16 --minutes 50) ;;
    # (stopped after 5 of 10 trials on 2026-11-29; this line continues it, the killed trial 5 first)
    lora-small-twitter) args=(--method lora --task twitter-fin-sentiment --lora.target_modules qv
                              --space benchmarks/search/lora-small-space.yaml --trials 10 --minutes 35) ;;
    full-twitter) args=(--method full --task twitter-fin-sentiment --trials 12 --minutes 60) ;;
    lora-all-small-twitter) args=(--method lora-all --task twitter-fin-sentiment
                                  --space benchmarks/search/lora-all-small-space.yaml --trials 12 --minutes 60) ;;
    # FOMC, on split 5768: its validation holds only sentences in every split's train set (peftbert/data/tasks.py),
    # so a recipe chosen here has seen no test sentence of any of the three splits
    lora-all-small-fomc) args=(--method lora-all --task fomc-hawkish-dovish@5768
                               --space benchmarks/search/lora-all-small-fomc-space.yaml --trials 20 --minutes 30) ;;
    lora-small-fomc) args=(--method lora --task fomc-hawkish-dovish@5768 --lora.target_modules qv
                           --space benchmarks/search/lora-small-fomc-space.yaml --trials 20 --minutes 30) ;;
    dora-fomc|rslora-fomc|adapter-fomc|adalora-fomc|ia3-fomc|bitfit-fomc|prefix-fomc)
      args=(--method "${name%-fomc}" --task fomc-hawkish-dovish@5768 --space benchmarks/search/fomc-space.yaml
            --trials 20 --minutes 30) ;;
    *) echo "unknown search $name (see the case list in $0)" >&2; exit 2 ;;
  esac
  study=${SEARCH_OUT:-runs}/search-$name
  # shellcheck disable=SC2086  # SEARCH_ARGS is a list of flags
  peftbert search "${args[@]}" ${SEARCH_ARGS:-} --output "$study"
  copy=${SEARCH_COPY:-benchmarks/search}/$name
  mkdir -p "$copy"
  cp "$study"/{trials.md,trials.csv,best.yaml} "$copy/"
done
