#!/bin/bash
# Data-parallel (DDP) training on the GPUs of one machine, then on two machines. `tune`, `adapt` and `bench` are
# Accelerate programs: `accelerate launch ... -m peftbert.cli CMD` runs CMD on every process and writes each
# output once. --batch-size is per process: the global batch is processes x batch size (x --grad-accum).
set -euo pipefail
NGPU=${NGPU:-$(nvidia-smi -L | wc -l)}

# One machine, all its GPUs
accelerate launch --multi_gpu --num_processes "$NGPU" -m peftbert.cli tune \
  --task twitter-fin-sentiment --method lora --batch-size 16 --output runs/tune-ddp

# Domain adaptation, same launch
accelerate launch --multi_gpu --num_processes "$NGPU" -m peftbert.cli adapt \
  --domain finance --output runs/adapt-ddp

# Two machines with NGPU GPUs each: run on both, MACHINE_RANK=0 on the one at MAIN_IP, 1 on the other;
# --output on a filesystem both see.
if [[ -n "${MAIN_IP:-}" ]]; then
  accelerate launch --multi_gpu --num_machines 2 --num_processes $((2 * NGPU)) \
    --machine_rank "${MACHINE_RANK:?set MACHINE_RANK=0 or 1}" \
    --main_process_ip "$MAIN_IP" --main_process_port 29500 \
    -m peftbert.cli tune --task twitter-fin-sentiment --method lora --batch-size 16 --output /shared/runs/tune-2x
fi
