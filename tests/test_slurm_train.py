"""Data-parallel ``pixer train`` as a real 2-task SLURM job: ``sbatch`` a script whose step is
``srun -n 2 python -m pixer.cli.main train ...`` (built by :mod:`pixer.scale.launch`), poll squeue.

Skipped when ``sinfo`` is absent or no controller answers (start one with ``sudo .ci/slurm.sh``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_ddp import ROOT, make_sim, max_diff, run_env, train_argv
from test_slurm import _controller_answers

from pixer.scale.launch import sbatch_script, submit, wait_job

pytestmark = [pytest.mark.skipif((why := _controller_answers()) is not None, reason=why or ""), pytest.mark.slow]


def test_srun_two_tasks_train_one_model(tmp_path):
    sim = make_sim(tmp_path)
    out, log = tmp_path / "model", tmp_path / "job-%j.out"
    env = {k: v for k, v in run_env().items() if k in ("PYTHONPATH", "OMP_NUM_THREADS")}
    script = tmp_path / "train.sbatch"
    script.write_text(sbatch_script(train_argv(sim, out), 2, job_name="pixer-train-test", mem="1G", cpus_per_task=1,
                                    time_limit="00:10:00", output=log, python=sys.executable, env=env,
                                    workdir=ROOT))  # fmt: skip
    job = submit(script)
    state = wait_job(job, timeout=400, poll=1.0)
    text = (tmp_path / f"job-{job}.out").read_text() if (tmp_path / f"job-{job}.out").exists() else ""
    assert state in ("COMPLETED", "UNKNOWN"), f"job {job}: {state}\n{text[-3000:]}"
    for rank in (0, 1):  # both ranks took part (a start and an end line each), rendezvous via SLURM's variables
        lines = [ln for ln in text.splitlines() if f"rank {rank}/2 (slurm" in ln]
        assert sum("device cpu" in ln for ln in lines) == 1 and sum(" steps, " in ln for ln in lines) == 1, text[-3000:]
    metrics = json.loads((out / "config.json").read_text())["metrics"]
    assert metrics["world_size"] == 2 and metrics["ddp_max_param_diff"] == 0.0
    assert (out / "model.pt").is_file() and (out / "pixer_train.json").is_file()
    # the same job as a torchrun (or a 1-process) run: same model up to Adam-amplified rounding
    ref = tmp_path / "ref"
    run = subprocess.run([sys.executable, "-m", "pixer.cli.main", "train", *train_argv(sim, ref)], env=run_env(),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert max_diff(ref, out) < 1.5e-3
