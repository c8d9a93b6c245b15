#!/usr/bin/env bash
# End-to-end GPU picking throughput: N simulated 4096² micrographs through `pixer pick --device cuda`.
#
# Run from the repository root on a machine with a GPU and pixer installed (or its .venv):
#
#   bash bench/gpu_pick.sh                              # N=200 micrographs of 4096², --device cuda
#   MODEL=/path/to/model bash bench/gpu_pick.sh         # time an existing model (else one is trained)
#   N=4 SIZE=1024 DEVICE=cpu bash bench/gpu_pick.sh     # dry run on a CPU machine
#
# Environment (defaults in brackets):
#   N [200]            micrographs picked
#   UNIQUE [16]        distinct micrographs simulated (in parallel, one `pixer simulate` per job);
#                      the other N-UNIQUE are byte copies of them under new names. Simulating a
#                      4096² micrograph takes tens of CPU-seconds, so 200 distinct ones would cost
#                      more time than the picking being measured; the picker's work does not depend
#                      on which micrograph it is.
#   SIZE [4096]        micrograph edge in px (2.0 Å/px, -10 dB, apoferritin, interference on)
#   DEVICE [cuda]      torch device for pick (and for training when MODEL is unset)
#   JOBS [nproc]       parallel simulate jobs
#   MODEL []           pixer model folder; unset: train one (STEPS steps on 8 separate 1024² micrographs)
#   STEPS [400]        training steps when MODEL is unset
#   BATCH [8]          --batch-size (tiles per forward pass) for pick
#   REPEATS [2]        timed pick runs (each into a fresh folder); the lowest is reported
#   WORK [/tmp/pixer_gpu_bench]   scratch folder (≈ N × 64 MiB of micrographs at 4096²)
#   PIXER []           how to call pixer; default: .venv/bin/pixer, else `pixer` on PATH,
#                      else `python3 -m pixer.cli.main` from this checkout
set -euo pipefail

N=${N:-200}
UNIQUE=${UNIQUE:-16}
SIZE=${SIZE:-4096}
DEVICE=${DEVICE:-cuda}
JOBS=${JOBS:-$(nproc)}
STEPS=${STEPS:-400}
BATCH=${BATCH:-8}
REPEATS=${REPEATS:-2}
WORK=${WORK:-/tmp/pixer_gpu_bench}
APIX=2.0
DIAMETER=120
(( UNIQUE > N )) && UNIQUE=$N
elapsed() { awk -v t0="$1" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.2f", t1 - t0 }'; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${PIXER:-} ]]; then
    if [[ -x $ROOT/.venv/bin/pixer ]]; then PIXER="$ROOT/.venv/bin/pixer"
    elif command -v pixer >/dev/null; then PIXER=pixer
    else PIXER="python3 -m pixer.cli.main"; export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
read -r -a PX <<<"$PIXER"
# the interpreter pixer runs under (for the small Python helpers below)
PY=python3
for w in "${PX[@]}"; do
    if [[ $(basename -- "$w") == pixer ]]; then
        shebang=$(head -1 "$(command -v "$w")")
        [[ $shebang == '#!'*python* ]] && PY=${shebang#\#!}
        break
    fi
done

echo "date: $(date -Is)  host: $(hostname)  nproc: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" - "$DEVICE" <<'PY'
import sys, torch
dev = sys.argv[1]
print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
if dev.startswith("cuda") and not torch.cuda.is_available():
    sys.exit("DEVICE=%s but torch sees no GPU (use DEVICE=cpu for a dry run)" % dev)
PY
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; fi

mkdir -p "$WORK"
MICS=$WORK/mics_${SIZE}_n${N}

# --- model -----------------------------------------------------------------------------------------
if [[ -z ${MODEL:-} ]]; then
    MODEL=$WORK/model_s${STEPS}
    if [[ ! -f $MODEL/config.json ]]; then
        echo "training a model ($STEPS steps, $DEVICE) ..."
        t0=$(date +%s.%N)
        [[ -f $WORK/train/simulation.json ]] || "${PX[@]}" simulate --out "$WORK/train" --n 8 --size 1024 \
            --apix $APIX --snr-db -10 --seed 100 --no-progress >/dev/null
        "${PX[@]}" train --micrographs "$WORK/train/micrographs.star" --coords "$WORK/train/particles.star" \
            --diameter $DIAMETER --out "$MODEL" --steps "$STEPS" --device "$DEVICE" --no-progress >/dev/null
        echo "  trained in $(elapsed "$t0") s"
    fi
fi
echo "model: $MODEL"

# --- micrographs: UNIQUE simulated in parallel, copied up to N --------------------------------------
if [[ ! -f $MICS/.complete ]]; then
    rm -rf "$MICS" "$WORK/sim_${SIZE}"
    mkdir -p "$MICS" "$WORK/sim_${SIZE}"
    echo "simulating $UNIQUE distinct ${SIZE}² micrographs with $JOBS jobs ..."
    t0=$(date +%s.%N)
    # one micrograph per job, seed = index: the set is the same whatever JOBS is
    seq 0 $((UNIQUE - 1)) | xargs -P "$JOBS" -I{} "${PX[@]}" simulate --out "$WORK/sim_${SIZE}/s{}" --n 1 \
        --size "$SIZE" --apix $APIX --snr-db -10 --seed {} --no-progress >/dev/null
    echo "  simulated in $(elapsed "$t0") s"
    for ((i = 0; i < UNIQUE; i++)); do
        mv "$WORK/sim_${SIZE}/s$i/micrographs/mic_0000.mrc" "$MICS/$(printf 'mic_%04d.mrc' "$i")"
    done
    rm -rf "$WORK/sim_${SIZE}"   # clean projections, masks etc. are not needed here
    for ((i = UNIQUE; i < N; i++)); do
        cp "$MICS/$(printf 'mic_%04d.mrc' $((i % UNIQUE)))" "$MICS/$(printf 'mic_%04d.mrc' "$i")"
    done
    touch "$MICS/.complete"
fi
n=$(find "$MICS" -maxdepth 1 -name '*.mrc' | wc -l)
echo "micrographs: $n in $MICS ($UNIQUE distinct)"

# --- pick -----------------------------------------------------------------------------------------
FLAGS=(--device "$DEVICE" --batch-size "$BATCH" --no-progress)
pick_help=$("${PX[@]}" pick --help)
[[ $pick_help == *--cluster* ]] && FLAGS+=(--cluster none)   # one process, no Dask start-up
best=""
for ((r = 0; r < REPEATS; r++)); do
    OUT=$WORK/picks_${SIZE}_rep$r
    rm -rf "$OUT"              # a rerun into the same folder would skip finished micrographs
    sync
    t0=$(date +%s.%N)
    "${PX[@]}" pick --micrographs "$MICS" --model "$MODEL" --diameter $DIAMETER --out "$OUT" --apix $APIX \
        "${FLAGS[@]}" > "$OUT.log" 2>&1 || { cat "$OUT.log"; exit 1; }
    wall=$(elapsed "$t0")
    "$PY" - "$OUT/summary.csv" "$wall" "$r" <<'PY'
import sys, pandas as pd
s = pd.read_csv(sys.argv[1]); wall = float(sys.argv[2]); n = len(s)
pick = s["seconds"].sum()
print(f"rep {sys.argv[3]}: {n} micrographs, {int(s['n_picks'].sum())} picks; "
      f"wall {wall:.1f} s = {n / wall:.2f} micrographs/s ({wall / n:.3f} s/mic, start-up and writing included); "
      f"per-micrograph picking {pick / n:.3f} s/mic = {n / pick:.2f} micrographs/s")
PY
    grep -h "^picked" "$OUT.log" || true
    best=$(awk -v w="$wall" -v b="${best:-inf}" 'BEGIN { print (b == "inf" || w < b) ? w : b }')
done
echo "RESULT size=${SIZE} n=$n device=$DEVICE batch=$BATCH flags='${FLAGS[*]}': best wall $best s," \
     "$(awk -v n="$n" -v b="$best" 'BEGIN { printf "%.3f", n / b }') micrographs/s end to end"
