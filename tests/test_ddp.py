"""Data-parallel ``pixer train``: rank detection, data sharding, cross-rank BatchNorm, and a real
2-process ``torchrun`` (gloo, CPU) run that must equal a 1-process run with the combined batch.

BatchNorm choice: under DDP every BatchNorm uses the statistics of the *combined* batch
(SyncBatchNorm on GPU, :class:`CrossRankBatchNorm2d` on CPU, which SyncBatchNorm refuses), so
2 ranks × 2 tiles compute what 1 process does with 4 tiles; only float rounding differs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pixer.cli.main import main
from pixer.scale.launch import sbatch_script, srun_command, torchrun_command
from pixer.train.distributed import (
    CrossRankBatchNorm2d,
    ShardSampler,
    detect,
    slurm_first_host,
    slurm_port,
    sync_batchnorm,
)

ROOT = Path(__file__).resolve().parents[1]
DIAMETER = "120"


def make_sim(root: Path) -> Path:
    """Three small simulated micrographs (seconds)."""
    sim = root / "sim"
    assert main(["simulate", "--out", str(sim), "--n", "3", "--size", "256", "--apix", "4", "--snr-db", "-5",
                 "--seed", "5", "--no-progress"]) == 0  # fmt: skip
    return sim


def train_argv(sim: Path, out: Path, *extra: str, steps: int = 6) -> list[str]:
    """Arguments of a tiny ``pixer train`` (1 branch, width 4, 64 px tiles, combined batch 4)."""
    return ["--micrographs", str(sim / "micrographs"), "--coords", str(sim / "particles.star"),
            "--diameter", DIAMETER, "--out", str(out), "--steps", str(steps), "--batch-size", "4", "--tile", "64",
            "--branches", "1", "--width", "4", "--lr", "3e-3", "--no-progress", "--checkpoint-every", "0", *extra]  # fmt: skip


def run_env() -> dict:
    """Environment of a child process: this checkout importable, one thread (bit-reproducible floats)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def max_diff(a: Path, b: Path) -> float:
    wa = torch.load(a / "model.pt", weights_only=True)
    wb = torch.load(b / "model.pt", weights_only=True)
    assert wa.keys() == wb.keys()
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa if wa[k].is_floating_point())


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    return make_sim(tmp_path_factory.mktemp("ddp"))


def test_detect_torchrun_slurm_and_single():
    env = detect({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1234"})
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port, env.source) == \
        (1, 2, 1, "h", 1234, "torchrun")  # fmt: skip
    slurm = {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "4242",
             "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_NTASKS": "4"}  # fmt: skip
    env = detect(slurm)
    assert (env.rank, env.world_size, env.local_rank, env.master_port, env.source) == (3, 4, 1, 19242, "slurm")
    assert env.master_addr == "gpu07" and not env.is_main
    # the batch script itself (no srun step) is one process, whatever SLURM_NTASKS says
    assert detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "1"}).world_size == 1
    assert detect({}).world_size == 1 and detect({}).is_main
    assert slurm_first_host("node[01-04],gpu7") == "node01" and slurm_first_host("vm") == "vm"
    assert 15000 <= slurm_port(10**9 + 7) < 35000


def test_shard_sampler_union_is_the_single_process_stream():
    b, world, start = 3, 2, 12  # 3 tiles per rank, resumed after 2 steps of 6
    ranks = [list(ShardSampler(36, r, world, start)) for r in range(world)]
    for step in range(4):
        union = sorted(i for r in ranks for i in r[step * b : (step + 1) * b])
        assert union == list(range(start + step * b * world, start + (step + 1) * b * world))
    assert len(ShardSampler(36, 1, 2, 0)) == 18


def test_cross_rank_batchnorm_keeps_weights_and_keys():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3))
    model[1].running_mean.fill_(0.5)
    keys = model.state_dict().keys()
    weight = model[1].weight
    out = sync_batchnorm(model, "cpu")
    assert isinstance(out[1], CrossRankBatchNorm2d) and out[1].weight is weight
    assert out.state_dict().keys() == keys and float(out[1].running_mean[0]) == 0.5
    x = torch.randn(4, 1, 8, 8)  # no process group: plain BatchNorm
    ref = torch.nn.functional.batch_norm(out[0](x), None, None, out[1].weight, out[1].bias, True)
    assert torch.allclose(out(x), ref, atol=1e-6)


def test_launch_commands():
    cmd = torchrun_command(["--out", "m"], 2, python=sys.executable)
    assert "--standalone" in cmd and "--nproc_per_node=2" in cmd and cmd[-4:] == ["pixer.cli.main", "train", "--out", "m"]
    cmd = srun_command(["--out", "m"], 4, gpus_per_task=1)
    assert cmd[:4] == ["srun", "--ntasks=4", "--cpus-per-task=1", "--gpus-per-task=1"]
    script = sbatch_script(["--out", "m m"], 2, mem="1G", output="/tmp/j-%j.out")
    assert "#SBATCH --ntasks=2" in script and "#SBATCH --mem=1G" in script and "'m m'" in script
    assert "export OMP_NUM_THREADS=1" in script and script.startswith("#!/bin/bash\n")


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(sim, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = subprocess.run([sys.executable, "-m", "pixer.cli.main", "train", *train_argv(sim, one)], env=run_env(),
                        capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = subprocess.run(torchrun_command(train_argv(sim, two), 2), env=run_env(), capture_output=True, text=True,
                        timeout=300)  # fmt: skip
    assert r2.returncode == 0, r2.stderr[-3000:]
    for rank in (0, 1):  # both ranks took part
        assert f"rank {rank}/2 (torchrun" in r2.stderr and f"rank {rank}/2 (torchrun" in r2.stderr
    assert r2.stderr.count("6 steps, 12 tiles") == 2, r2.stderr[-2000:]
    m2 = json.loads((two / "config.json").read_text())["metrics"]
    m1 = json.loads((one / "config.json").read_text())["metrics"]
    assert m2["world_size"] == 2 and m1["world_size"] == 1
    assert m2["ddp_max_param_diff"] == 0.0  # replicas identical on both ranks
    # Adam turns float-rounding noise in near-zero gradient components into lr-sized steps
    # (its early steps are ~lr·sign(g)), so parameters agree to a fraction of lr, losses to ~1e-6
    diff = max_diff(one, two)
    print(f"max |param_2ranks - param_1process| after 6 steps (lr 3e-3) = {diff:.3g}")
    assert diff < 3e-3 / 2, diff
    log1, log2 = ((d / "train_log.csv").read_text().splitlines()[1:] for d in (one, two))
    for a, b in zip(log1, log2, strict=True):
        la, lb = (list(map(float, r.split(",")))[1:3] for r in (a, b))
        assert abs(la[0] - lb[0]) < 1e-4 and abs(la[1] - lb[1]) < 1e-4, (a, b)
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())  # rank 0 wrote once


GRAD_WORKER = """
import sys, torch
sys.path.insert(0, sys.argv[2])
from test_train import synthetic
from pixer.train.distributed import ShardSampler, setup, cleanup, exit_rank
from pixer.train.segmentation import TileDataset, TrainConfig, build_training, make_loss
env, device, created = setup("cpu")
cfg = TrainConfig(tile=64, batch_size=4, steps=1, width=4, n_branches=1)
model, _, _ = build_training(cfg, cross_rank_bn=env.world_size > 1)
if env.world_size > 1:
    model = torch.nn.parallel.DistributedDataParallel(model)
data = TileDataset(synthetic(3, size=96), 64, 4, seed=1)
idx = list(ShardSampler(4, env.rank, env.world_size))
x = torch.stack([data[i][0] for i in idx]); y = torch.stack([data[i][1] for i in idx])
model.train()
make_loss(2.0)(model(x), y).backward()
if env.rank == 0:
    inner = getattr(model, "module", model)
    torch.save({k: p.grad for k, p in inner.named_parameters()} | {k: b for k, b in inner.named_buffers()}, sys.argv[1])
cleanup(created)
if env.world_size > 1:
    exit_rank(0)
"""


@pytest.mark.slow
def test_ddp_gradients_equal_combined_batch(tmp_path):
    """One step's gradients (and BatchNorm running statistics): 2 ranks × 2 tiles vs 1 process × 4 tiles."""
    worker = tmp_path / "worker.py"
    worker.write_text(GRAD_WORKER)
    tests = str(Path(__file__).parent)
    for cmd, out in (([sys.executable, str(worker)], "one.pt"),
                     ([*torchrun_command([], 2)[:3], str(worker)], "two.pt")):  # fmt: skip
        run = subprocess.run([*cmd, str(tmp_path / out), tests], env=run_env(), capture_output=True, text=True,
                             timeout=300)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
    g1, g2 = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    rel = max(float((g1[k].double() - g2[k].double()).abs().max() / g1[k].double().abs().max().clamp(min=1e-12))
              for k in g1 if g1[k].is_floating_point())  # fmt: skip
    print(f"max relative gradient / running-stat difference, 2 ranks vs 1 process: {rel:.3g}")
    assert rel < 1e-4, rel
