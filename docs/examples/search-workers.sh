#!/bin/bash
# One search study on several machines without a scheduler: run this same script on each machine (or several
# times on one). OUT must be on a filesystem they all see (NFS, Lustre, ...). On a single machine,
# `peftbert search ... --workers N` does this for you (N processes, a journal in --output, cores shared out).
set -euo pipefail
OUT=${OUT:-/shared/runs/search-twitter-lora}
mkdir -p "$OUT"
peftbert search --task twitter-fin-sentiment --method lora --trials 40 \
  --output "$OUT" --storage "journal:$OUT/study.journal"
