#!/usr/bin/env bash
# One GPU session's checks, in order of importance, each under its own time cap, every log in $OUT:
#
#   1. tests/test_gpu.py: CUDA against the CPU (picking, bf16 training, resume, labels, pick --device auto)
#   2. bench/gpu_pick.sh: 4096² micrographs through `pixer pick --device cuda` with the shipped general
#      model, and a CPU baseline (all cores) on the same machine
#   3. bench/train_general.py: the shipped general model's recipe (docs/general_model.md) on the GPU;
#      model.pt, config.json and train_log.csv come back in $OUT/general_gpu/
#   4. bench/gpu_labels.sh: label synthesis on the GPU against the CPU
#
# Run from the repository root on a machine with a CUDA GPU:
#   OUT=/tmp/gpu_out bash bench/gpu_session.sh
# Python packages missing there can be wheels in .whl/ (installed into /tmp/site first).
# Caps (seconds): T_TEST [170], T_PICK [170], T_GENERAL [330], T_LABELS [90]; N_PICK [48] micrographs of
# SIZE [4096]² px; GENERAL [the shipped recipe: "--scale 3 --steps 8000 --snr-range -26 -3 --empties 3
# --max-picks-per-empty 0.5"]; DEVICE [cuda].
# CPU dry run: DEVICE=cpu N_PICK=3 SIZE=1024 GENERAL="--scale 0.1 --steps 20" bash bench/gpu_session.sh
set -uo pipefail
DEVICE=${DEVICE:-cuda}; SIZE=${SIZE:-4096}; N_PICK=${N_PICK:-48}
GENERAL=${GENERAL:---scale 3 --steps 8000 --snr-range -26 -3 --empties 3 --max-picks-per-empty 0.5}
OUT=${OUT:-/tmp/pixer_gpu_session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
if [ -z "${NO_WHEELS:-}" ] && compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH="$PWD:/tmp/site"
fi
T0=$(date +%s)
stamp() { echo "== $(( $(date +%s) - T0 )) s: $*"; }
{
    date -Is; hostname; nproc; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
} 2>&1 | tee "$OUT/machine.txt"

stamp "1. tests/test_gpu.py"
timeout "${T_TEST:-170}" python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py -rs 2>&1 | tee "$OUT/tests.log"

stamp "2. pick throughput"
GEN=$PWD/pixer/models/weights/general
{
    timeout "${T_PICK:-170}" env N="$N_PICK" UNIQUE=16 SIZE="$SIZE" DEVICE="$DEVICE" MODEL="$GEN" REPEATS=2 \
        WORK=/tmp/gpu_pick bash bench/gpu_pick.sh
    # CPU baseline on the same machine: 8 of the same micrographs, all cores
    C=/tmp/gpu_pick_c/mics_${SIZE}_n8
    rm -rf "$C" && mkdir -p "$C"
    cp /tmp/gpu_pick/mics_"${SIZE}"_n"$N_PICK"/mic_000[0-7].mrc "$C"/ && touch "$C/.complete"
    timeout 90 env N=8 UNIQUE=8 SIZE="$SIZE" DEVICE=cpu MODEL="$GEN" REPEATS=1 WORK=/tmp/gpu_pick_c bash bench/gpu_pick.sh
} 2>&1 | tee "$OUT/pick.log"

stamp "3. general model recipe on the GPU"
# shellcheck disable=SC2086
timeout "${T_GENERAL:-330}" python3 bench/train_general.py --work /tmp/gpu_general $GENERAL \
    --device "$DEVICE" 2>&1 | tee "$OUT/general.log"
mkdir -p "$OUT/general_gpu"
for f in model.pt config.json train_log.csv; do
    [ -f "/tmp/gpu_general/model/$f" ] && cp "/tmp/gpu_general/model/$f" "$OUT/general_gpu/"
done

stamp "4. labels"
timeout "${T_LABELS:-90}" env PY=python3 N_MIC=50 N_CPU=2 bash bench/gpu_labels.sh 2>&1 | tee "$OUT/labels.log"
stamp "done"
