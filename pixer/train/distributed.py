"""Data-parallel training helpers: who am I, join the group, share the data, sync BatchNorm.

One process per device. The rank layout is read from the environment:

- ``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
  ``MASTER_PORT``;
- ``srun`` sets ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` (a batch script
  itself, outside ``srun``, is one process even when ``SLURM_NTASKS`` > 1),
  ``SLURM_LOCALID``, ``SLURM_JOB_NODELIST``, ``SLURM_JOB_ID``; the rendezvous
  host is the first node of the job (``scontrol show hostnames``) and the port
  ``15000 + job id mod 20000`` unless ``MASTER_ADDR`` / ``MASTER_PORT`` are set.

The backend is NCCL on GPUs and gloo on CPUs. Only rank 0 writes files.

BatchNorm across ranks: with local statistics, ``W`` ranks of ``b`` crops do not
compute what one process does with ``W·b`` crops. :func:`sync_batchnorm` swaps
every ``BatchNorm2d`` for :class:`torch.nn.SyncBatchNorm` on GPUs and for
:class:`CrossRankBatchNorm2d` on CPUs (``SyncBatchNorm`` refuses CPU tensors);
both normalise with the statistics of the combined batch and back-propagate
through the all-reduce, so DDP with ``W × b`` crops equals one process with
``W·b`` crops up to float rounding (the state-dict keys are unchanged).

Data: :class:`ShardSampler` gives rank ``r`` items ``start + r, start + r + W,
…`` (DistributedSampler's layout without shuffling), so with a dataset whose item
``i`` depends only on ``(seed, i)`` the union of the ranks' step-``s`` batches is
exactly the single-process step-``s`` batch, and a resumed run starts at
``start = step · batch``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from pixer.errors import PixerError


@dataclass(frozen=True)
class DistEnv:
    """Process layout.

    Attributes
    ----------
    rank, world_size, local_rank
        Global rank, number of processes, rank on this node.
    master_addr, master_port
        Rendezvous host and port (None for a single process).
    source
        ``"single"``, ``"torchrun"`` or ``"slurm"``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None
    source: str = "single"

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the only rank that writes)."""
        return self.rank == 0


def slurm_first_host(nodelist: str) -> str:
    """First host name of a SLURM node list (``node[01-04],gpu7`` → ``node01``).

    Uses ``scontrol show hostnames``; without ``scontrol`` a plain list or a
    simple ``prefix[a-b,…]`` range is expanded here.
    """
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.split()  # fmt: skip
            if out:
                return out[0]
        except (OSError, subprocess.SubprocessError):
            pass
    m = re.match(r"\s*([^,\[]*)(?:\[([^\]]*)\])?", nodelist)
    prefix, ranges = (m.group(1), m.group(2)) if m else (nodelist, None)
    return prefix + (ranges.split(",")[0].split("-")[0] if ranges else "")


def slurm_port(job_id: str | int) -> int:
    """Rendezvous port derived from the job id, in [15000, 35000)."""
    return 15000 + int(job_id) % 20000


def detect(env: Mapping[str, str] | None = None) -> DistEnv:
    """Read the process layout from ``env`` (default ``os.environ``); see the module docstring."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)),
                       env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", 29500)), "torchrun")
    n = int(env.get("SLURM_STEP_NUM_TASKS", "1") or 1)
    if "SLURM_PROCID" in env and n > 1:
        addr = env.get("MASTER_ADDR") or slurm_first_host(env.get("SLURM_STEP_NODELIST")
                                                          or env.get("SLURM_JOB_NODELIST", "127.0.0.1"))
        port = int(env.get("MASTER_PORT") or slurm_port(env.get("SLURM_JOB_ID", "0")))
        return DistEnv(int(env["SLURM_PROCID"]), n, int(env.get("SLURM_LOCALID", 0)), addr, port, "slurm")
    return DistEnv()


def backend_for(device: str | torch.device) -> str:
    """``"nccl"`` for CUDA devices, ``"gloo"`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def setup(device: str = "cpu", env: DistEnv | None = None) -> tuple[DistEnv, str, bool]:
    """Join the process group when there are several processes.

    Parameters
    ----------
    device
        Requested device; ``"cuda"`` becomes ``"cuda:<local_rank>"`` under DDP.
    env
        Layout (default :func:`detect`).

    Returns
    -------
    env
        The layout.
    device
        This rank's device.
    created
        True when this call initialised the group (call :func:`cleanup` then).
    """
    env = env or detect()
    if env.world_size <= 1:
        return env, device, False
    if torch.device(device).type == "cuda":
        if not torch.cuda.is_available():
            raise PixerError(f"--device {device}: CUDA is not available on rank {env.rank}")
        device = f"cuda:{env.local_rank}"
        torch.cuda.set_device(device)
    if dist.is_initialized():
        return env, device, False
    os.environ["MASTER_ADDR"] = str(env.master_addr)
    os.environ["MASTER_PORT"] = str(env.master_port)
    dist.init_process_group(backend_for(device), rank=env.rank, world_size=env.world_size,
                            device_id=torch.device(device) if device.startswith("cuda") else None)  # fmt: skip
    return env, device, True


def cleanup(created: bool, wait: bool = True) -> None:
    """Leave the process group if :func:`setup` created it; ``wait``: after a barrier (ranks leave together)."""
    if created and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def is_rank_process() -> bool:
    """True in a process started as one of several ranks (torchrun: ``WORLD_SIZE``; srun: ``SLURM_STEP_NUM_TASKS``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1


def exit_rank(rc: int = 0) -> None:
    """End a finished rank process without interpreter teardown.

    Call it after :func:`cleanup`, once every output is written (atomically).
    gloo's background threads can abort the process during C++ static
    destruction ("terminate called without an active exception", SIGABRT) even
    after the group is destroyed, and torchrun then reports the run as failed;
    ``os._exit`` skips that teardown.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(obj: object) -> list:
    """Every rank's ``obj`` (pickled), a list in rank order; ``[obj]`` without a group."""
    _, size = world()
    if size == 1:
        return [obj]
    out: list = [None] * size
    dist.all_gather_object(out, obj)
    return out


def log_rank(env: DistEnv, prog: str, text: str) -> None:
    """Print ``prog: rank r/W (source, host): text`` to stderr when there are several ranks."""
    if env.world_size > 1:
        print(f"{prog}: rank {env.rank}/{env.world_size} ({env.source}, {socket.gethostname()}): {text}",
              file=sys.stderr, flush=True)  # fmt: skip


def mean_over_ranks(values: list[float], device: str | torch.device = "cpu") -> float:
    """Mean of each rank's ``mean(values)`` (with equal batches: the combined-batch mean); NaN if empty."""
    mean = sum(values) / len(values) if values else float("nan")
    _, size = world()
    if size == 1:
        return mean
    t = torch.tensor([mean], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0]) / size


def max_rank_difference(model: nn.Module) -> float:
    """Largest ``|p_rank - p_rank0|`` over every parameter and buffer and every rank (0.0 alone).

    A cheap end-of-training check that the replicas did not drift apart.
    """
    _, size = world()
    if size == 1:
        return 0.0
    worst = torch.zeros((), dtype=torch.float64, device=next(model.parameters()).device)
    for t in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
        ref = t.detach().clone()
        dist.broadcast(ref, 0)
        worst = torch.maximum(worst, (t.detach() - ref).abs().max().double())
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)


class ShardSampler(torch.utils.data.Sampler[int]):
    """Indices ``start + rank, start + rank + world, …`` below ``length``.

    Parameters
    ----------
    length
        Items in the (index-addressed) dataset.
    rank, world_size
        This process and the number of processes.
    start
        First global index (``step · global_batch`` to resume).

    ``length - start`` should be a multiple of ``world_size · local_batch`` so
    every rank runs the same number of steps.
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        self.length, self.rank, self.world_size, self.start = int(length), int(rank), int(world_size), int(start)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start + self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.start + self.rank, self.length, self.world_size))


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward sums the gradients over ranks (every rank's loss depends on the sum)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics cover every rank's batch (any backend, CPU included).

    Two differentiable all-reduces per call (sum → mean, then sum of squared
    deviations → biased variance), as accurate as a single-process
    ``BatchNorm2d``; running statistics get the unbiased variance of the
    combined batch. In eval mode, or without a process group, it is plain
    ``BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, c, h, w)`` → ``(b, c, h, w)``."""
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        c = x.shape[1]
        dims = (0, 2, 3)
        head = torch.cat([x.sum(dims), x.new_full((1,), x.numel() // c)])
        head = all_reduce(head)
        n = head[-1]
        mean = head[:c] / n
        var = all_reduce(((x - mean[None, :, None, None]) ** 2).sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / max(float(n) - 1, 1.0))
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def sync_batchnorm(model: nn.Module, device: str | torch.device) -> nn.Module:
    """Replace every ``BatchNorm2d`` by a cross-rank one (SyncBatchNorm on CUDA), keeping weights and buffers."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            new = CrossRankBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats)  # fmt: skip
            for key, value in list(child.named_parameters(recurse=False)) + list(child.named_buffers(recurse=False)):
                setattr(new, key, value)  # the same objects: an optimiser built before still applies
            new.train(child.training)
            setattr(model, name, new)
        else:
            sync_batchnorm(child, device)
    return model
