#!/usr/bin/env bash
# F1 of `pixer pick` (general model, default threshold) told a diameter off by x0.8 / x1 / x1.25,
# without (--no-diameter-search) and with the diameter search (docs/general_model.md).
#   bash bench/search_eval.sh [WORK] [REAL]
# WORK: the folder of `python bench/train_general.py --work WORK --evaluate-only` (its eval/ sets);
# REAL: the work folder of bench/eval_real.py (--stages prepare), optional.
set -euo pipefail
WORK=${1:-/tmp/pixer_general_v3}
REAL=${2:-/tmp/pixer_real}
OUT=${OUT:-/tmp/pixer_search_eval}
P="${PYTHON:-python} -m pixer.cli.main"
f1() {  # picks truth diameter_A
  $P evaluate --picks "$1" --truth "$2" --diameter "$3" --out "$1_eval" > /dev/null
  python -c "import json; print('%.3f' % json.load(open('$1_eval/metrics.json'))['f1'])"
}
run() {  # label micrographs truth diameter_A given_factor [extra pick options]
  local label=$1 mics=$2 truth=$3 d=$4 g=$5; shift 5
  local given; given=$(python -c "print($g * $d)")
  local w="$OUT/$label"; rm -rf "$w"; mkdir -p "$w"
  $P pick --micrographs "$mics" --diameter "$given" --out "$w/plain" --cluster none --no-progress \
      --no-diameter-search "$@" > /dev/null
  local line; line=$($P pick --micrographs "$mics" --diameter "$given" --out "$w/search" --cluster none \
      --no-progress "$@" | grep -o "picking at.*" || true)
  echo "$label given x$g: F1 $(f1 "$w/plain" "$truth" "$d") -> $(f1 "$w/search" "$truth" "$d") ($line)"
}
for kind in apoferritin small ribosome; do
  for snr in 15 20; do
    sim="$WORK/eval/${kind}_${snr}dB"
    d=$(python -c "import json; print(json.load(open('$sim/simulation.json'))['particle_diameter_A'])")
    for g in 0.8 1.0 1.25; do
      run "${kind}_${snr}dB_x$g" "$sim/micrographs" "$sim/particles.star" "$d" "$g"
    done
  done
done
if [ -d "$REAL/mrc" ]; then
  for ds in 10028:55 10059:36 10947:58; do
    n=${ds%:*}; d=${ds#*:}
    run "real_$n" "$REAL/mrc/$n/test/micrographs" "$REAL/mrc/$n/truth_test.csv" "$d" 1.0 --apix 1 \
        --edge-margin "$(python -c "print(0.5 * $d)")"
  done
fi
