#!/usr/bin/env bash
# Install the peer pickers used by bench/compare_peers.py, OUTSIDE the repository.
#
#   RELION 3.1 (LoG autopick): Debian package `relion` (binaries in /usr/bin).
#   Topaz 0.3.20 (pretrained resnet16 model): its own venv, default /work/topaz-venv
#   (override with TOPAZ_VENV=...). The `topaz` console entry point needs torchvision,
#   which is not installed; compare_peers.py calls `python -m topaz.commands.<cmd>`.
#
# Usage:  bash bench/peers.sh            # both
#         bash bench/peers.sh relion     # one
#         bash bench/peers.sh topaz
#
# Never run `apt-get autoremove` on this machine: purging slurm/munge that way also removes relion.
set -euo pipefail
what=${1:-all}
TOPAZ_VENV=${TOPAZ_VENV:-/work/topaz-venv}

if [[ $what == all || $what == relion ]]; then
    if ! command -v relion_autopick >/dev/null; then
        SUDO=""; [[ $(id -u) != 0 ]] && SUDO=sudo
        $SUDO apt-get update
        $SUDO apt-get install -y --no-install-recommends relion
    fi
    relion_autopick --version 2>/dev/null | head -1 || true
    command -v relion_autopick
fi

if [[ $what == all || $what == topaz ]]; then
    if [[ ! -x $TOPAZ_VENV/bin/python ]]; then
        python3 -m venv "$TOPAZ_VENV"
    fi
    "$TOPAZ_VENV/bin/pip" install -q torch==2.13.0
    "$TOPAZ_VENV/bin/pip" install -q --no-deps topaz-em==0.3.20
    "$TOPAZ_VENV/bin/pip" install -q tqdm h5py numpy pandas psutil scikit-learn scipy pillow future mrcfile
    # the pretrained weights must ship inside the wheel (nothing else is downloaded here)
    "$TOPAZ_VENV/bin/python" - <<'PY'
import glob, os, topaz
d = os.path.dirname(topaz.__file__)
w = sorted(glob.glob(os.path.join(d, "pretrained", "detector", "*.sav")))
print("topaz", getattr(topaz, "__version__", "?"), "pretrained detector weights:", [os.path.basename(p) for p in w] or "NONE")
PY
fi
