"""``pixer pick --cluster slurm`` on a real SLURM controller (start one with ``sudo .ci/slurm.sh``).

Skipped when ``sinfo`` is absent or no controller answers. Checks that the work ran inside
SLURM jobs, that the outputs equal a LocalCluster run's, that no job outlives the run, and
that a memory request above the node's is a clear one-line error.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pandas as pd
import pytest
from test_pick_cli import make_pick_data, pick_argv, same_outputs, with_background

from pixer.cli.main import main


def _controller_answers() -> str | None:
    """None when a SLURM controller answers with an idle/mixed node, else why not."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM client tools (sinfo, sbatch) not installed; run .ci/slurm.sh"
    try:
        run = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed: {exc}"
    states = run.stdout.split()
    if run.returncode != 0 or not states:
        return f"no SLURM controller answers (sinfo: {run.stderr.strip()[:200]}); run .ci/slurm.sh"
    if not {"idle", "mix"} & set(states):
        return f"no idle SLURM node (states: {', '.join(states)})"
    return None


pytestmark = [
    pytest.mark.skipif((why := _controller_answers()) is not None, reason=why or ""),
    pytest.mark.slow,
]


def _our_jobs() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", "pixer", "-o", "%i %T"], capture_output=True, text=True, check=False).stdout
    return [ln for ln in out.splitlines() if ln.strip()]


def _node_memory_mb() -> int:
    out = subprocess.run(["sinfo", "-h", "-o", "%m"], capture_output=True, text=True, check=False).stdout
    return max(int(v.rstrip("+")) for v in out.split())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    mics, model = make_pick_data(root, n=3)
    local = root / "local"
    assert main(pick_argv(mics, model, local, "--cluster", "local", "--workers", "2", "--torch-threads", "1",
                          "--threshold", "0.3")) == 0
    return {"root": root, "mics": mics, "model": model, "local": local}


def test_pick_runs_in_slurm_jobs_and_cleans_up(data):
    assert not _our_jobs(), "pixer jobs already queued"
    out = data["root"] / "slurm"
    argv = pick_argv(data["mics"], data["model"], out, "--cluster", "slurm", "--cores", "1", "--memory", "2GB",
                     "--walltime", "00:10:00", "--max-jobs", "2", "--batch-micrographs", "1",
                     "--threshold", "0.3", "--startup-timeout", "120")  # fmt: skip
    assert main(argv) == 0
    summary = pd.read_csv(out / "summary.csv", dtype={"slurm_job_id": str})
    assert (summary["status"] == "done").all()
    assert summary["slurm_job_id"].notna().all() and summary["slurm_job_id"].str.fullmatch(r"\d+").all()
    # cores 1 per job: the worker used one torch thread, so the floats match 2 local workers' exactly
    same_outputs(data["local"], out)
    t0 = time.monotonic()
    while _our_jobs() and time.monotonic() - t0 < 60:  # scancel is asynchronous
        time.sleep(1)
    assert not _our_jobs(), _our_jobs()


def test_diameter_search_runs_in_a_slurm_job(data, tmp_path):
    """A model that stores an empty-micrograph background searches the diameter by default; with
    --cluster slurm that search is a task on a worker job, not work on the submitting host."""
    import json

    import numpy as np

    assert not _our_jobs(), "pixer jobs already queued"
    model = tmp_path / "model"
    with_background(data["model"], model, np.full(50, 0.02))
    out = tmp_path / "search"
    argv = pick_argv(data["mics"], model, out, "--cluster", "slurm", "--cores", "1", "--memory", "2GB",
                     "--walltime", "00:10:00", "--max-jobs", "1", "--diameter-search", "0.9", "1.1",
                     "--search-micrographs", "2", "--startup-timeout", "120")  # fmt: skip
    assert main(argv) == 0
    search = json.loads((out / "pixer_pick.json").read_text())["diameter_search"]
    assert search["micrographs"] == 2 and search["table"]["factor"] == [0.9, 1.0, 1.1]
    assert str(search["slurm_job_id"]).isdigit(), search
    t0 = time.monotonic()
    while _our_jobs() and time.monotonic() - t0 < 60:
        time.sleep(1)
    assert not _our_jobs(), _our_jobs()


def test_memory_above_the_node_is_a_clear_error(data, capsys):
    too_much = f"{2 * _node_memory_mb() // 1024 + 1}GB"
    argv = pick_argv(data["mics"], data["model"], data["root"] / "too_much", "--cluster", "slurm",
                     "--memory", too_much)  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--memory" in err and "RealMemory" in err, err
    assert not _our_jobs()
