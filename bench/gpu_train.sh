#!/usr/bin/env bash
# Segmentation training throughput and quality on simulated data: tiles/s and validation IoU.
#
# Run from the repository root on a machine with a GPU and pixer installed (or its .venv):
#
#   bash bench/gpu_train.sh                               # 1 GPU, bf16 autocast, a few minutes
#   NPROC=4 bash bench/gpu_train.sh                       # 4 GPUs with torchrun (DDP, NCCL)
#   N=3 SIZE=256 STEPS=6 WIDTH=4 TILE=64 BATCH=4 DEVICE=cpu NPROC=2 bash bench/gpu_train.sh   # CPU dry run
#
# Environment (defaults in brackets):
#   N [24]             simulated micrographs (apoferritin, -10 dB, 2 Å/px, interference on)
#   SIZE [1024]        micrograph edge, px
#   STEPS [1500]       optimiser steps
#   BATCH [32]         combined tiles per step (split over NPROC processes)
#   TILE [256]         training tile, px;  WIDTH [32] trunk width;  BRANCHES [4]
#   DEVICE [cuda]      torch device;  AMP [--amp]  (--no-amp for float32)
#   NPROC [1]          processes (torchrun --standalone --nproc_per_node=NPROC when > 1)
#   WORKERS [4]        data-loader workers per process
#   CLASSIFIER [1]     1: train the crop classifier first and start from its trunk
#   WORK [/tmp/pixer_gpu_train]   scratch folder;  PYTHON [.venv/bin/python or python3]
set -euo pipefail

N=${N:-24}; SIZE=${SIZE:-1024}; STEPS=${STEPS:-1500}; BATCH=${BATCH:-32}; TILE=${TILE:-256}
WIDTH=${WIDTH:-32}; BRANCHES=${BRANCHES:-4}; DEVICE=${DEVICE:-cuda}; AMP=${AMP:---amp}
NPROC=${NPROC:-1}; WORKERS=${WORKERS:-4}; CLASSIFIER=${CLASSIFIER:-1}; WORK=${WORK:-/tmp/pixer_gpu_train}
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DIAMETER=127
rm -rf "$WORK"; mkdir -p "$WORK"

echo "== simulate $N micrographs of ${SIZE}² px"
"$PYTHON" -m pixer.cli.main simulate --out "$WORK/sim" --n "$N" --size "$SIZE" --apix 2 --snr-db -10 \
    --seed 0 --no-progress > /dev/null

INIT=()
if [ "$CLASSIFIER" = 1 ]; then
    echo "== classifier (particle / interference / noise)"
    "$PYTHON" -m pixer.cli.main train-classifier --micrographs "$WORK/sim/micrographs" \
        --coords "$WORK/sim/particles.star" --diameter $DIAMETER --junk-masks "$WORK/sim/truth" \
        --out "$WORK/classifier" --width "$WIDTH" --steps $(( STEPS / 3 + 1 )) --device "$DEVICE" --no-progress
    INIT=(--init-trunk "$WORK/classifier")
fi

ARGS=(--micrographs "$WORK/sim/micrographs" --coords "$WORK/sim/particles.star" --diameter $DIAMETER
      --out "$WORK/model" --steps "$STEPS" --batch-size "$BATCH" --tile "$TILE" --width "$WIDTH"
      --branches "$BRANCHES" --device "$DEVICE" "$AMP" --workers "$WORKERS" --checkpoint-every 500
      --no-progress "${INIT[@]}")
echo "== train: $NPROC process(es) on $DEVICE, batch $BATCH, tile $TILE, $STEPS steps"
if [ "$NPROC" -gt 1 ]; then
    TORCHRUN=$(dirname "$PYTHON")/torchrun
    [ -x "$TORCHRUN" ] || TORCHRUN="$PYTHON -m torch.distributed.run"
    $TORCHRUN --standalone --nproc_per_node="$NPROC" -m pixer.cli.main train "${ARGS[@]}" > "$WORK/train.out"
else
    "$PYTHON" -m pixer.cli.main train "${ARGS[@]}" > "$WORK/train.out"
fi
"$PYTHON" - "$WORK/model/config.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
print(f"tiles/s {m['tiles_per_s']:.1f}  val IoU {m['val_iou']:.3f} (best {m['best_val_iou']:.3f} at step "
      f"{m['best_step']})  {m['seconds']:.0f} s  ranks {m['world_size']}  amp {m['amp']}  "
      f"rank drift {m['ddp_max_param_diff']:.2g}")
PY
