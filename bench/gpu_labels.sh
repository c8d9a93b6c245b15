#!/usr/bin/env bash
# Label synthesis on a CUDA GPU: check GPU labels equal CPU labels, then run
# bench/bench_labels.py with --device cuda (full-resolution and training-grid
# labels) and a short CPU baseline on the same machine.
#
# Usage (from the repository root):  bash bench/gpu_labels.sh
#        PY=.venv/bin/python N_MIC=500 N_CPU=10 bash bench/gpu_labels.sh
set -euo pipefail
PY=${PY:-python}
N_MIC=${N_MIC:-200}
N_CPU=${N_CPU:-10}   # micrographs for the CPU baseline
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

$PY - <<'PYEOF'
import sys
import numpy as np
import torch
sys.path.insert(0, "bench")
from bench_labels import particles
from pixer.labels import synthesize_labels
from pixer.simulate.density import demo_density

assert torch.cuda.is_available(), "no CUDA device"
print("GPU:", torch.cuda.get_device_name(0), "torch", torch.__version__)
vol = demo_density("apoferritin", 2.0)
table = particles(3, 200, 1024, 1.0)
shapes = {f"mic_{i:04d}.mrc": (1024, 1024) for i in range(3)}
cpu = list(synthesize_labels(table, vol, 2.0, shapes, instance=True))
gpu = list(synthesize_labels(table, vol, 2.0, shapes, instance=True, device="cuda"))
for a, b in zip(cpu, gpu):
    inter = np.logical_and(a.label, b.label).sum()
    iou = inter / max(1, np.logical_or(a.label, b.label).sum())
    same = (a.instance == b.instance).mean()
    print(f"{a.name}: CPU vs GPU label IoU {iou:.5f}, instance agreement {same:.5f}")
    assert iou > 0.999 and same > 0.999
PYEOF

$PY bench/bench_labels.py --device cuda --n-mic "$N_MIC" --particles 200
$PY bench/bench_labels.py --device cuda --n-mic "$N_MIC" --particles 200 --instance
$PY bench/bench_labels.py --device cuda --n-mic "$N_MIC" --particles 200 --out-apix 4
$PY bench/bench_labels.py --device cpu --n-mic "$N_CPU" --particles 200
