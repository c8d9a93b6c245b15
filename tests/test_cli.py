"""The ``pixer`` command line: help texts, bin/ shims, one-line errors, and the
whole simulate → train → pick → evaluate chain on simulated data with known truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pixer.cli.main import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "bin"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "example:" in capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_bin_shim_exists_and_runs(command):
    shim = BIN / f"pixer-{command}"
    assert shim.exists() and os.access(shim, os.X_OK), f"{shim} missing or not executable"
    run = subprocess.run([str(shim), "--help"], capture_output=True, text=True, env=_env(), timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"usage: pixer {command}" in run.stdout


def test_every_bin_script_is_a_known_command():
    names = {p.name.removeprefix("pixer-") for p in BIN.glob("pixer-*")}
    assert names == set(COMMANDS)


def _one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_missing_map_is_one_line(tmp_path, capsys):
    err = _one_line_error(["simulate", "--out", str(tmp_path / "s"), "--map", str(tmp_path / "nope.mrc")], capsys)
    assert "nope.mrc" in err


def test_garbage_coordinates_are_one_line(tmp_path, capsys):
    bad = tmp_path / "coords.star"
    bad.write_text("this is not a STAR file\n\x00\x01")
    mic_dir = tmp_path / "mics"
    mic_dir.mkdir()
    err = _one_line_error(["train", "--micrographs", str(mic_dir), "--coords", str(bad), "--diameter", "100",
                           "--out", str(tmp_path / "m")], capsys)  # fmt: skip
    assert str(mic_dir) in err or "coords.star" in err


def test_missing_model_is_one_line(tmp_path, capsys, demo_sets):
    err = _one_line_error(["pick", "--micrographs", str(demo_sets["test"] / "micrographs"), "--model",
                           str(tmp_path / "no_model"), "--diameter", "120", "--out", str(tmp_path / "p")], capsys)  # fmt: skip
    assert "no_model" in err


@pytest.fixture(scope="module")
def demo_sets(tmp_path_factory) -> dict[str, Path]:
    """Two small simulated sets (apoferritin-like, -10 dB, with interference) via the CLI."""
    root = tmp_path_factory.mktemp("demo")
    sets = {}
    for name, seed, n in (("train", 11, 3), ("test", 12, 2)):
        out = root / name
        assert main(["simulate", "--out", str(out), "--n", str(n), "--size", "640", "--apix", "2.5",
                     "--snr-db", "-10", "--seed", str(seed), "--no-progress"]) == 0  # fmt: skip
        sets[name] = out
    return sets


@pytest.fixture(scope="module")
def demo_model(demo_sets) -> Path:
    model = demo_sets["train"].parent / "model"
    argv = ["train", "--micrographs", str(demo_sets["train"] / "micrographs.star"), "--coords",
            str(demo_sets["train"] / "particles.star"), "--diameter", "120", "--out", str(model),
            "--steps", "120", "--width", "16", "--batch-size", "6", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    return model


def test_simulate_writes_what_it_promises(demo_sets):
    out = demo_sets["test"]
    for rel in ("micrographs.star", "particles.star", "map.mrc", "simulation.json", "pixer_simulate.json",
                "micrographs/mic_0000.mrc", "coords/mic_0000.star", "truth/mic_0000_clean.mrc",
                "truth/mic_0000_mask.mrc"):  # fmt: skip
        assert (out / rel).exists(), rel
    record = json.loads((out / "pixer_simulate.json").read_text())
    assert record["arguments"]["seed"] == 12 and record["pixer_version"]


def test_train_writes_model_folder(demo_model):
    config = json.loads((demo_model / "config.json").read_text())
    assert config["particle_px"] > 0 and config["apix"] >= 2.5
    for name in ("model.pt", "train_log.csv", "train_curve.png", "pixer_train.json"):
        assert (demo_model / name).exists(), name
    assert config["metrics"]["val_iou"] > 0.5


def test_end_to_end_recall_on_simulated_truth(demo_sets, demo_model, tmp_path):
    """Accuracy regression: a briefly trained model finds the simulated particles."""
    picks, evaluation = tmp_path / "picks", tmp_path / "eval"
    assert main(["pick", "--micrographs", str(demo_sets["test"] / "micrographs"), "--model", str(demo_model),
                 "--diameter", "120", "--out", str(picks), "--no-progress", "--cluster", "none"]) == 0  # fmt: skip
    assert main(["evaluate", "--picks", str(picks), "--truth", str(demo_sets["test"] / "particles.star"),
                 "--diameter", "120", "--out", str(evaluation)]) == 0  # fmt: skip
    metrics = json.loads((evaluation / "metrics.json").read_text())
    # at the default (auto) threshold, not only at the best one
    assert metrics["f1"] > 0.9 and metrics["best_f1"] > 0.9, metrics
    assert metrics["recall"] > 0.85 and metrics["precision"] > 0.85, metrics
    assert (evaluation / "pr_curve.png").stat().st_size > 1000
    per_mic = pd.read_csv(evaluation / "per_micrograph.csv")
    assert len(per_mic) == 2
    assert metrics["curve_from"].endswith("stored candidates (parts/)")
    # the picks file alone sweeps only the picks: the same point metrics, a curve no better
    alone = tmp_path / "alone"
    assert main(["evaluate", "--picks", str(picks / "picks.csv"), "--truth", str(demo_sets["test"] / "particles.star"),
                 "--diameter", "120", "--out", str(alone)]) == 0  # fmt: skip
    bare = json.loads((alone / "metrics.json").read_text())
    assert bare["curve_from"] == "the picks" and bare["f1"] == metrics["f1"]
    assert bare["best_f1"] <= metrics["best_f1"] + 1e-12


def test_evaluate_truth_against_itself_is_perfect(demo_sets, tmp_path):
    truth = demo_sets["test"] / "particles.star"
    assert main(["evaluate", "--picks", str(truth), "--truth", str(truth), "--diameter", "120",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["precision"] == 1.0 and metrics["recall"] == 1.0 and metrics["auprc"] == pytest.approx(1.0)


def test_a_run_with_no_picks_evaluates_to_zero_recall(demo_sets, demo_model, tmp_path):
    picks, evaluation = tmp_path / "picks", tmp_path / "eval"
    assert main(["pick", "--micrographs", str(demo_sets["test"] / "micrographs"), "--model", str(demo_model),
                 "--diameter", "120", "--out", str(picks), "--no-progress", "--cluster", "none",
                 "--threshold", "0.9999"]) == 0  # fmt: skip
    assert main(["evaluate", "--picks", str(picks), "--truth", str(demo_sets["test"] / "particles.star"),
                 "--diameter", "120", "--out", str(evaluation)]) == 0  # fmt: skip
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["n_picks"] == 0 and metrics["recall"] == 0.0 and metrics["n_true"] > 0
    # the curve sweeps the candidates the run stored: a threshold set too high does not hide them
    assert metrics["curve_from"].endswith("stored candidates (parts/)"), metrics["curve_from"]
    assert metrics["best_f1"] > 0.8 and metrics["best_threshold"] < 0.9999, metrics


def test_simulate_empty_micrographs_for_negative_controls(tmp_path):
    out = tmp_path / "empty"
    assert main(["simulate", "--out", str(out), "--n", "1", "--size", "256", "--apix", "4", "--particles", "0",
                 "--seed", "3", "--no-progress"]) == 0  # fmt: skip
    import mrcfile

    assert (out / "micrographs" / "mic_0000.mrc").exists()
    assert not mrcfile.read(out / "truth" / "mic_0000_mask.mrc").any()


def test_simulate_debris_on_request(tmp_path):
    """--debris MEAN adds small dark debris (junk) to the interference; with --no-interference it is
    the only junk; the run record keeps the setting."""
    import mrcfile

    out = tmp_path / "deb"
    assert main(["simulate", "--out", str(out), "--n", "1", "--size", "256", "--apix", "4", "--particles", "0",
                 "--seed", "3", "--no-interference", "--debris", "10", "--no-progress"]) == 0  # fmt: skip
    junk = mrcfile.read(out / "truth" / "mic_0000_junk.mrc")
    assert 0 < junk.mean() < 0.5
    assert json.loads((out / "pixer_simulate.json").read_text())["arguments"]["debris"] == 10
    clean = tmp_path / "clean"
    assert main(["simulate", "--out", str(clean), "--n", "1", "--size", "256", "--apix", "4", "--particles", "0",
                 "--seed", "3", "--no-interference", "--no-progress"]) == 0  # fmt: skip
    assert not mrcfile.read(clean / "truth" / "mic_0000_junk.mrc").any()
