"""Checkpoints and ``--resume``: a run stopped (or killed) at step k and resumed to n ends
bit-identical to an uninterrupted n-step run on CPU; bad checkpoints are one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from test_ddp import make_sim, run_env, train_argv
from test_train import config, synthetic

from pixer.errors import PixerError
from pixer.train import train_segmentation
from pixer.train.checkpoint import CHECKPOINT, load_checkpoint

torch.set_num_threads(1)


def same_weights(a, b) -> bool:
    wa = torch.load(a / "model.pt", weights_only=True)
    wb = torch.load(b / "model.pt", weights_only=True)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_stop_and_resume_is_bit_identical(tmp_path):
    samples = synthetic(4, size=64)
    cfg = config(steps=12, eval_every=4, checkpoint_every=4, batch_size=4, width=4)
    full = train_segmentation(samples, tmp_path / "full", cfg, progress=False)
    part = train_segmentation(samples, tmp_path / "part", cfg, progress=False, stop_after=5)
    assert part == {"stopped_at": 5, "rank": 0, "world_size": 1}
    assert not (tmp_path / "part/model.pt").exists() and load_checkpoint(tmp_path / "part" / CHECKPOINT)["step"] == 5
    # resumed with a loader worker: the tile stream does not depend on the workers
    cfg.num_workers = 1
    done = train_segmentation(samples, tmp_path / "part", cfg, progress=False, resume=True)
    assert done["resumed_from"] == 5
    assert same_weights(tmp_path / "full", tmp_path / "part")
    assert (tmp_path / "full/train_log.csv").read_text() == (tmp_path / "part/train_log.csv").read_text()
    assert done["val_iou"] == full["val_iou"] and done["best_step"] == full["best_step"]
    # resuming a finished run trains nothing, leaves the weights and keeps the timing of the real run
    again = train_segmentation(samples, tmp_path / "part", cfg, progress=False, resume=True)
    assert same_weights(tmp_path / "full", tmp_path / "part")
    assert again["seconds"] == done["seconds"] > 0 and again["tiles_per_s"] == done["tiles_per_s"] > 0
    assert again["resumed_from"] == 5


def test_resume_refuses_other_settings_and_bad_files(tmp_path):
    samples = synthetic(2, size=64)
    cfg = config(steps=4, batch_size=2, width=4)
    train_segmentation(samples, tmp_path, cfg, progress=False, stop_after=2)
    cfg.lr *= 2
    with pytest.raises(PixerError, match=r"checkpoint.pt: was written with other training settings \(lr"):
        train_segmentation(samples, tmp_path, cfg, progress=False, resume=True)
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(PixerError, match="checkpoint.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / CHECKPOINT)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"step": Evil()}, tmp_path / CHECKPOINT)
    with pytest.raises(PixerError, match="not a readable checkpoint"):  # weights-only: never executed
        load_checkpoint(tmp_path / CHECKPOINT)


@pytest.mark.slow
def test_killed_cli_run_resumes_bit_identical(tmp_path):
    sim = make_sim(tmp_path)
    steps = 400
    argv = lambda out, *extra: [sys.executable, "-m", "pixer.cli.main", "train",
                                *train_argv(sim, out, "--checkpoint-every", "3", *extra, steps=steps)]
    ref = subprocess.run(argv(tmp_path / "ref"), env=run_env(), capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen(argv(out), env=run_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while not (out / CHECKPOINT).exists() and proc.poll() is None and time.monotonic() - t0 < 300:
        time.sleep(0.01)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    killed_at = load_checkpoint(out / CHECKPOINT)["step"]
    assert 0 < killed_at < steps and not (out / "model.pt").exists(), killed_at
    res = subprocess.run(argv(out, "--resume"), env=run_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    print(f"killed at step {killed_at} of {steps}, resumed: parameters bit-identical")
    assert same_weights(tmp_path / "ref", out)
    assert (tmp_path / "ref/train_log.csv").read_text() == (out / "train_log.csv").read_text()
