"""Command lines that launch data-parallel ``pixer train``: torchrun on one node, srun under SLURM.

The training code finds its rank from the environment either launcher sets
(:mod:`pixer.train.distributed`); these helpers only build the commands and,
for SLURM, a batch script, submit it and wait for it by polling ``squeue``
(``sbatch --wait`` reacts slowly).

Example
-------
>>> torchrun_command(["--micrographs", "mics", "--coords", "p.star", "--diameter", "120", "--out", "m"], 4)
... # doctest: +SKIP
['/venv/bin/torchrun', '--standalone', '--nproc_per_node=4', '-m', 'pixer.cli.main', 'train', '--micrographs', ...]
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from pixer.errors import PixerError


def _torchrun(python: str) -> list[str]:
    beside = Path(python).parent / "torchrun"
    return [str(beside)] if beside.is_file() else [python, "-m", "torch.distributed.run"]


def torchrun_command(train_args: Sequence[str], nproc: int, python: str = sys.executable,
                     command: str = "train") -> list[str]:  # fmt: skip
    """``torchrun --standalone --nproc_per_node=N -m pixer.cli.main <command> ARGS``.

    ``torchrun`` beside ``python`` is used when present, else
    ``python -m torch.distributed.run`` (the same program).
    """
    return [*_torchrun(python), "--standalone", f"--nproc_per_node={int(nproc)}", "-m", "pixer.cli.main",
            command, *map(str, train_args)]  # fmt: skip


def srun_command(train_args: Sequence[str], ntasks: int, cpus_per_task: int = 1, gpus_per_task: int = 0,
                 python: str = sys.executable, command: str = "train", extra: Sequence[str] = ()) -> list[str]:  # fmt: skip
    """``srun -n N --cpus-per-task=C [--gpus-per-task=G] python -m pixer.cli.main <command> ARGS``.

    ``extra`` goes to ``srun`` before the program (e.g. ``--mem=4G``).
    """
    cmd = ["srun", f"--ntasks={int(ntasks)}", f"--cpus-per-task={int(cpus_per_task)}"]
    if gpus_per_task:
        cmd.append(f"--gpus-per-task={int(gpus_per_task)}")
    return [*cmd, *extra, python, "-m", "pixer.cli.main", command, *map(str, train_args)]


def sbatch_script(train_args: Sequence[str], ntasks: int, *, job_name: str = "pixer-train", mem: str = "1G",
                  cpus_per_task: int = 1, gpus_per_task: int = 0, time_limit: str = "01:00:00",
                  output: str | os.PathLike | None = None, python: str = sys.executable,
                  env: Mapping[str, str] | None = None, workdir: str | os.PathLike | None = None,
                  sbatch_options: Sequence[str] = ()) -> str:  # fmt: skip
    """A batch script whose single step is :func:`srun_command`.

    Parameters
    ----------
    train_args
        Arguments of ``pixer train``.
    ntasks
        Processes (one per GPU on GPU nodes).
    job_name, mem, cpus_per_task, gpus_per_task, time_limit
        Resources (``mem`` per node, SLURM syntax, e.g. ``"4G"``).
    output
        Job log file (``%j`` = job id); default SLURM's.
    python
        Interpreter on the compute nodes (default: this one).
    env
        Variables exported before ``srun`` (``OMP_NUM_THREADS`` defaults to
        ``cpus_per_task``).
    workdir
        Directory to run in (default: the submission directory).
    sbatch_options
        More ``#SBATCH`` options, e.g. ``["--partition=gpu"]``.
    """
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name}", f"#SBATCH --ntasks={int(ntasks)}",
             f"#SBATCH --cpus-per-task={int(cpus_per_task)}", f"#SBATCH --mem={mem}", f"#SBATCH --time={time_limit}"]
    if gpus_per_task:
        lines.append(f"#SBATCH --gpus-per-task={int(gpus_per_task)}")
    if output is not None:
        lines.append(f"#SBATCH --output={output}")
    if workdir is not None:
        lines.append(f"#SBATCH --chdir={workdir}")
    lines += [f"#SBATCH {o}" for o in sbatch_options]
    exports = {"OMP_NUM_THREADS": str(cpus_per_task), **dict(env or {})}
    lines += ["set -euo pipefail", *(f"export {k}={shlex.quote(str(v))}" for k, v in exports.items())]
    lines.append(shlex.join(srun_command(train_args, ntasks, cpus_per_task, gpus_per_task, python)))
    return "\n".join(lines) + "\n"


def submit(script: str | os.PathLike) -> str:
    """``sbatch --parsable SCRIPT``; returns the job id (PixerError with sbatch's message on failure)."""
    if shutil.which("sbatch") is None:
        raise PixerError("sbatch not found: SLURM client tools are not installed")
    run = subprocess.run(check=False, args=["sbatch", "--parsable", str(script)], capture_output=True, text=True)
    if run.returncode != 0:
        raise PixerError(f"{script}: sbatch failed: {run.stderr.strip()[:300]}")
    return run.stdout.strip().split(";")[0]


def wait_job(job_id: str, timeout: float = 3600.0, poll: float = 2.0) -> str:
    """Poll ``squeue`` until the job leaves the queue; return its final state (``scontrol show job``).

    Returns ``"UNKNOWN"`` when neither records it any more (``MinJobAge`` passed).
    Raises PixerError after ``timeout`` seconds.
    """
    t0 = time.monotonic()
    while True:
        q = subprocess.run(check=False, args=["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True)
        if not q.stdout.strip():
            break
        if time.monotonic() - t0 > timeout:
            raise PixerError(f"SLURM job {job_id} still {q.stdout.strip()} after {timeout:.0f} s")
        time.sleep(poll)
    s = subprocess.run(check=False, args=["scontrol", "show", "job", str(job_id)], capture_output=True, text=True)
    for token in s.stdout.split():
        if token.startswith("JobState="):
            return token.split("=", 1)[1]
    return "UNKNOWN"
