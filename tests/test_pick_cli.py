"""``pixer pick`` end to end on simulated micrographs: outputs, serial vs Dask, resume,
failures, thresholds, and runs killed midway (the whole command, or one Dask worker)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pixer.cli.main import main

DIAMETER = "120"
#: What a run writes, whatever the cluster (compared between runs).
COMPARED = ["picks.csv", "particles.star", "picks_topaz.txt", "micrographs.star", "failed.csv"]


def make_pick_data(root: Path, n: int = 3, size: int = 384, seed: int = 3) -> tuple[Path, Path]:
    """Simulate ``n`` micrographs and train a tiny model on them (seconds on 1 CPU).

    Returns the micrographs folder and the model folder.
    """
    sim, model = root / "sim", root / "model"
    assert main(["simulate", "--out", str(sim), "--n", str(n), "--size", str(size), "--apix", "4",
                 "--snr-db", "-5", "--seed", str(seed), "--no-progress"]) == 0  # fmt: skip
    assert main(["train", "--micrographs", str(sim / "micrographs.star"), "--coords", str(sim / "particles.star"),
                 "--diameter", DIAMETER, "--out", str(model), "--steps", "80", "--width", "8", "--branches", "1",
                 "--tile", "64", "--batch-size", "4", "--pos-weight", "2", "--lr", "5e-3", "--no-progress"]) == 0  # fmt: skip
    return sim / "micrographs", model


def with_background(model: Path, dest: Path, scores: np.ndarray, area: float = 1000.0) -> dict:
    """Copy ``model`` to ``dest`` with an empty-micrograph background (``scores`` on ``area``
    particle areas) in its config, as the general model stores one; returns that background."""
    from pixer.pick.threshold import NULL_GRID, null_density

    shutil.copytree(model, dest)
    config = json.loads((dest / "config.json").read_text())
    config["pick_threshold"]["null"] = {"grid": list(NULL_GRID), "density": null_density(scores, area)}
    (dest / "config.json").write_text(json.dumps(config))
    return config["pick_threshold"]["null"]


def pick_argv(mics: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return ["pick", "--micrographs", str(mics), "--model", str(model), "--diameter", DIAMETER, "--out", str(out),
            "--no-progress", *extra]  # fmt: skip


def _content(path: Path, root: Path) -> list[str]:
    """Lines of an output file, without starfile's time-stamp comment, the run's folder as ``OUT``."""
    text = path.read_text().replace(str(root.resolve()), "OUT").replace(str(root), "OUT")
    return [ln for ln in text.splitlines() if not ln.startswith("# Created by the starfile")]


def same_outputs(a: Path, b: Path) -> None:
    """The user-facing outputs of two runs are identical (time stamps aside)."""
    for name in COMPARED:
        assert _content(a / name, a) == _content(b / name, b), name
    coords_a = sorted(p.relative_to(a) for p in (a / "coords").rglob("*") if p.is_file())
    coords_b = sorted(p.relative_to(b) for p in (b / "coords").rglob("*") if p.is_file())
    assert coords_a == coords_b
    for rel in coords_a:
        assert _content(a / rel, a) == _content(b / rel, b), rel


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pick")
    mics, model = make_pick_data(root)
    ref = root / "ref"
    # One torch thread, as each of the 2 workers of a local cluster on 2 cores: the same float
    # arithmetic, so byte-identical outputs (different thread counts can differ in the 5th decimal).
    assert main(pick_argv(mics, model, ref, "--cluster", "none", "--torch-threads", "1")) == 0
    return {"root": root, "mics": mics, "model": model, "ref": ref}


@pytest.fixture(scope="module")
def many(tmp_path_factory, data) -> dict[str, Path]:
    """Eight micrographs (the same model) and their uninterrupted serial run."""
    root = tmp_path_factory.mktemp("many")
    mics = root / "mics"
    mics.mkdir()
    for i in range(8):
        shutil.copy(sorted(data["mics"].glob("*.mrc"))[i % 3], mics / f"m{i:02d}.mrc")
    ref = root / "ref"
    assert main(pick_argv(mics, data["model"], ref, "--cluster", "none", "--threshold", "0.3",
                          "--torch-threads", "1")) == 0  # fmt: skip
    return {"mics": mics, "ref": ref, "model": data["model"]}


def test_outputs_in_every_format(data):
    ref = data["ref"]
    for rel in ("picks.csv", "particles.star", "picks_topaz.txt", "micrographs.star", "summary.csv", "failed.csv",
                "pixer_pick.json", "box", "coords", "parts"):  # fmt: skip
        assert (ref / rel).exists(), rel
    summary = pd.read_csv(ref / "summary.csv")
    assert len(summary) == 3 and set(summary["status"]) == {"done"}
    assert {"n_picks", "n_candidates", "threshold", "worker", "slurm_job_id"} <= set(summary.columns)
    assert summary["threshold"].nunique() == 1
    record = json.loads((ref / "pixer_pick.json").read_text())
    assert record["threshold"] == pytest.approx(summary["threshold"].iloc[0], rel=1e-3)
    assert record["threshold_rule"].startswith("auto")
    own = json.loads((data["model"] / "config.json").read_text())["pick_threshold"]  # written by pixer train
    assert 0.05 < own["value"] < 1 and own["n_true"] > 10 and own["f1"] > 0.5
    picks = pd.read_csv(ref / "picks.csv")
    assert len(picks) == summary["n_picks"].sum() > 0
    assert (picks["score"] > record["threshold"]).all()
    assert len(list((ref / "box").rglob("*.box"))) == 3


def test_local_cluster_equals_serial_and_resume_skips(data):
    out = data["root"] / "local"
    assert main(pick_argv(data["mics"], data["model"], out, "--cluster", "local", "--workers", "2",
                          "--torch-threads", "1", "--batch-micrographs", "2")) == 0  # fmt: skip
    same_outputs(data["ref"], out)
    workers = pd.read_csv(out / "summary.csv")["worker"]
    assert workers.str.contains(":").all()
    first = (out / "picks.csv").read_bytes()
    assert main(pick_argv(data["mics"], data["model"], out, "--cluster", "none")) == 0  # rerun: resume
    assert set(pd.read_csv(out / "summary.csv")["status"]) == {"skipped"}
    assert (out / "picks.csv").read_bytes() == first


def test_rethreshold_without_recompute_and_numeric_threshold(data):
    out = data["root"] / "rethreshold"
    shutil.copytree(data["ref"] / "parts", out / "parts")
    assert main(pick_argv(data["mics"], data["model"], out, "--cluster", "none", "--threshold", "0.3",
                          "--max-picks", "5")) == 0  # fmt: skip
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["status"]) == {"skipped"} and (summary["threshold"] == 0.3).all()
    picks = pd.read_csv(out / "picks.csv")
    assert (picks["score"] > 0.3).all() and picks.groupby("micrograph").size().max() <= 5


def test_edge_margin_drops_picks_the_edge_cuts_and_is_not_reused_from_old_parts(data):
    out = data["root"] / "edge"
    shutil.copytree(data["ref"] / "parts", out / "parts")  # parts made without a margin
    margin_A, apix, size = 60.0, 4.0, 384  # the data: 384 px at 4 Å/px
    assert main(pick_argv(data["mics"], data["model"], out, "--cluster", "none", "--threshold", "0.3",
                          "--edge-margin", str(margin_A), "--torch-threads", "1")) == 0  # as the reference
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["status"]) == {"done"}  # recomputed, not skipped
    picks = pd.read_csv(out / "picks.csv")
    ref = pd.concat([pd.read_csv(p, comment="#") for p in sorted((data["ref"] / "parts").rglob("*.csv"))])
    m = margin_A / apix
    assert ((picks[["x", "y"]] >= m) & (picks[["x", "y"]] <= size - 1 - m)).all().all()
    ref = ref[ref["score"] > 0.3]
    near = (ref[["x", "y"]] < m).any(axis=1) | (ref[["x", "y"]] > size - 1 - m).any(axis=1)
    assert near.any() and len(picks) == (~near).sum()  # exactly the reference picks away from the edge


def test_min_distance_keeps_picks_apart_and_recomputes_old_parts(data):
    out = data["root"] / "mindist"
    shutil.copytree(data["ref"] / "parts", out / "parts")  # parts made without a minimum distance
    assert main(pick_argv(data["mics"], data["model"], out, "--cluster", "none", "--threshold", "0.05",
                          "--min-distance", "240")) == 0  # fmt: skip
    assert set(pd.read_csv(out / "summary.csv")["status"]) == {"done"}
    picks = pd.read_csv(out / "picks.csv")
    assert len(picks) > 3
    for _, p in picks.groupby("micrograph"):
        xy = p[["x", "y"]].to_numpy()
        dist = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
        assert dist[np.triu_indices(len(xy), 1)].min() > 240 / 4.0  # Å → px at 4 Å/px


def test_calibrate_with_labelled_micrographs(data):
    out = data["root"] / "calibrated"
    shutil.copytree(data["ref"] / "parts", out / "parts")
    truth = data["mics"].parent / "coords" / "mic_0000.star"
    assert main(pick_argv(data["mics"], data["model"], out, "--cluster", "none", "--calibrate-with",
                          str(truth))) == 0  # fmt: skip
    record = json.loads((out / "pixer_pick.json").read_text())
    assert record["threshold_rule"].startswith("calibrated")
    assert 0.0 < record["threshold"] < 1.0


def test_corrupt_micrograph_is_listed_and_the_others_complete(data):
    mics = data["root"] / "with_corrupt"
    shutil.copytree(data["mics"], mics)
    (mics / "mic_9999.mrc").write_bytes(b"not an MRC file at all" * 10)
    out = data["root"] / "corrupt_out"
    assert main(pick_argv(mics, data["model"], out, "--cluster", "local", "--workers", "2")) == 0
    failed = pd.read_csv(out / "failed.csv")
    assert list(failed["micrograph"].map(lambda m: Path(m).name)) == ["mic_9999.mrc"]
    assert "mic_9999.mrc" in failed["error"].iloc[0]
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["status"] == "done").sum() == 3
    assert len(pd.read_csv(out / "picks.csv")) == len(pd.read_csv(data["ref"] / "picks.csv"))


@pytest.mark.parametrize(
    "extra, needle",
    [(["--threshold", "0.3", "--calibrate-with", "x.star"], "--calibrate-with"),
     (["--gpus", "1"], "--gpus"),
     (["--model", "/nonexistent/model"], "/nonexistent/model")],
)  # fmt: skip
def test_bad_arguments_exit_2_with_one_line(data, capsys, extra, needle):
    argv = pick_argv(data["mics"], data["model"], data["root"] / "bad", "--cluster", "none", *extra)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and needle in err, err


def test_unknown_cluster_kind_is_a_usage_error(data, capsys):
    with pytest.raises(SystemExit) as exc:
        main(pick_argv(data["mics"], data["model"], data["root"] / "bad", "--cluster", "k8s"))
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# --- killed runs ---------------------------------------------------------------------------------


def _pixer(argv: list[str]) -> list[str]:
    return [sys.executable, "-c", "import sys; from pixer.cli.main import main; sys.exit(main(sys.argv[1:]))",
            *argv]  # fmt: skip


def _final_parts(out: Path) -> list[Path]:
    return [p for p in (out / "parts").rglob("*.csv") if not p.name.startswith(".")]


def _wait_for_parts(proc: subprocess.Popen, out: Path, n: int, timeout: float = 240) -> None:
    t0 = time.monotonic()
    while len(_final_parts(out)) < n:
        assert proc.poll() is None, f"run ended before {n} parts existed: {proc.communicate()}"
        assert time.monotonic() - t0 < timeout, "no part files appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_run_leaves_no_partial_files_and_resumes(many):
    out = many["ref"].parent / "killed"
    argv = pick_argv(many["mics"], many["model"], out, "--cluster", "local", "--workers", "2",
                     "--torch-threads", "1", "--batch-micrographs", "1", "--threshold", "0.3")  # fmt: skip
    proc = subprocess.Popen(_pixer(argv), start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_parts(proc, out, 2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    parts = _final_parts(out)
    assert 2 <= len(parts) < 8, "kill came too late to test anything"
    for part in parts:  # every file under a final name is complete
        table = pd.read_csv(part, comment="#")
        assert list(table.columns) == ["micrograph", "x", "y", "score"]
    assert not (out / "picks.csv").exists()
    # what a kill during a write leaves (the kill above may or may not have hit one)
    planted = parts[0].parent / f".{parts[0].stem}.ab12_x9z.tmp.csv"
    planted.write_text("micrograph,x\n")
    assert main(argv) == 0
    assert not [p for p in out.rglob(".*") if ".tmp" in p.name], "temporary files left behind"
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["status"] == "skipped").sum() >= len(parts)
    same_outputs(many["ref"], out)


@pytest.mark.slow
def test_killed_worker_is_replaced_and_the_run_completes(many):
    from distributed import Client, LocalCluster

    out = many["ref"].parent / "worker_killed"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:  # fmt: skip
        pids = client.run(os.getpid)
        argv = pick_argv(many["mics"], many["model"], out, "--scheduler-address",
                         cluster.scheduler_address, "--torch-threads", "1", "--batch-micrographs", "1",
                         "--threshold", "0.3")  # fmt: skip
        proc = subprocess.Popen(_pixer(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _wait_for_parts(proc, out, 1)
            os.kill(next(iter(pids.values())), signal.SIGKILL)
            _, stderr = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, stderr.decode()[-2000:]
        assert next(iter(pids.values())) not in client.run(os.getpid).values()  # it really died
    summary = pd.read_csv(out / "summary.csv")
    # a micrograph whose part was written just before the kill is found on the retry: skipped
    assert set(summary["status"]) <= {"done", "skipped"} and (summary["status"] == "done").sum() >= 6
    same_outputs(many["ref"], out)


def _classifier_favouring(out: Path, klass: str, particle_px: float) -> Path:
    """A crop classifier whose output is ``klass`` whatever the crop (last-layer bias)."""
    import torch

    from pixer.models.classifier import (
        CLASS_NAMES,
        CropClassifier,
        crop_box,
        save_classifier,
    )

    model = CropClassifier(width=4)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-20.0)
        last.bias[CLASS_NAMES.index(klass)] = 20.0
    save_classifier(out, model, dict(class_names=list(CLASS_NAMES), crop=crop_box(particle_px),
                                     particle_px=particle_px, norm_k=3.0))  # fmt: skip
    return out


def test_classifier_removes_candidates_it_calls_interference(data):
    """Wiring of PIXER's false-positive removal: a classifier that calls every crop a
    particle keeps every pick; one that calls every crop interference removes them all."""
    particle_px = json.loads((data["model"] / "config.json").read_text())["particle_px"]
    out = data["root"]
    keep = _classifier_favouring(out / "clf_particle", "particle", particle_px)
    drop = _classifier_favouring(out / "clf_junk", "interference", particle_px)
    assert main(pick_argv(data["mics"], data["model"], out / "with_keep", "--cluster", "none", "--torch-threads", "1",
                          "--classifier", str(keep))) == 0  # fmt: skip
    assert main(pick_argv(data["mics"], data["model"], out / "with_drop", "--cluster", "none",
                          "--classifier", str(drop))) == 0  # fmt: skip
    ref = pd.read_csv(data["ref"] / "picks.csv")
    assert len(ref) > 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "with_keep" / "picks.csv"), ref)
    assert len(pd.read_csv(out / "with_drop" / "picks.csv")) == 0
    # a rerun without the classifier does not reuse the classified parts
    assert main(pick_argv(data["mics"], data["model"], out / "with_drop", "--cluster", "none")) == 0
    assert len(pd.read_csv(out / "with_drop" / "picks.csv")) == len(ref)
    # the junk rule alone: a classifier that calls everything noise keeps all with --classifier-min 0,
    # one that calls everything interference drops all at any --classifier-junk below 1
    noise = _classifier_favouring(out / "clf_noise", "noise", particle_px)
    for clf, junk, n in ((noise, "0.7", len(ref)), (drop, "0.7", 0), (drop, "1", len(ref))):
        dest = out / f"rule_{clf.name}_{junk}"
        assert main(pick_argv(data["mics"], data["model"], dest, "--cluster", "none", "--classifier", str(clf),
                              "--classifier-min", "0", "--classifier-junk", junk)) == 0  # fmt: skip
        assert len(pd.read_csv(dest / "picks.csv")) == n
        record = json.loads((dest / "pixer_pick.json").read_text())["classifier"]
        assert record["used"] and (record["particle_min"], record["junk_max"]) == (0.0, float(junk))
    # the same classifier with another rule recomputes the parts; the same rule reuses them
    dest = out / "rule_clf_junk_1"
    assert main(pick_argv(data["mics"], data["model"], dest, "--cluster", "none", "--classifier", str(drop),
                          "--classifier-min", "0", "--classifier-junk", "0.7")) == 0  # fmt: skip
    assert len(pd.read_csv(dest / "picks.csv")) == 0
    assert main(pick_argv(data["mics"], data["model"], dest, "--cluster", "none", "--classifier", str(drop),
                          "--classifier-min", "0", "--classifier-junk", "0.7")) == 0  # fmt: skip
    assert (pd.read_csv(dest / "summary.csv")["status"] == "skipped").all()
    # another classifier's weights (same rule) recompute too
    assert main(pick_argv(data["mics"], data["model"], dest, "--cluster", "none", "--classifier", str(noise),
                          "--classifier-min", "0", "--classifier-junk", "0.7")) == 0  # fmt: skip
    assert len(pd.read_csv(dest / "picks.csv")) == len(ref)
    # a model of its own gets no classifier unless asked
    assert json.loads((out / "with_drop" / "pixer_pick.json").read_text())["classifier"] == {
        "used": False, "rule": "auto: no classifier for this model"}


def test_bad_classifier_folder_is_one_line(data, capsys, tmp_path):
    assert main(pick_argv(data["mics"], data["model"], tmp_path / "o", "--cluster", "none",
                          "--classifier", str(tmp_path / "nothing"))) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "nothing" in err and "\n" not in err


def test_auto_threshold_weighs_candidates_against_the_models_background(data, tmp_path):
    """A model that stores its empty-micrograph background (as the general model does): `auto`
    takes the null rule's cut for this run's candidates and area (inside the edge margin,
    recorded in every part), and parts written before parts recorded their area are recomputed."""
    from pixer.pick.batch import picked_area, read_part_header
    from pixer.pick.threshold import null_threshold

    model = tmp_path / "model"
    # background: 0.05 candidates per particle area, all scoring 0.01-0.03
    null = with_background(data["model"], model, np.linspace(0.01, 0.03, 50))
    out = tmp_path / "run"
    shutil.copytree(data["ref"] / "parts", out / "parts")
    for part in (out / "parts").rglob("*.csv"):  # as parts were written before they recorded the area
        lines = part.read_text().splitlines(keepends=True)
        part.write_text(lines[0].split(" area=")[0] + "\n" + "".join(lines[1:]))
    margin_A = 40.0
    assert main(pick_argv(data["mics"], model, out, "--cluster", "none", "--edge-margin", str(margin_A),
                          "--no-diameter-search")) == 0  # a model with a background searches by default
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["status"]) == {"done"}  # recomputed
    area = picked_area((384, 384), 4.0, float(DIAMETER), margin_A)
    assert area == pytest.approx((384 - 20) ** 2 / 30**2)
    parts = sorted((out / "parts").rglob("*.csv"))
    assert [read_part_header(p)["area"] for p in parts] == pytest.approx([area] * 3)
    candidates = pd.concat([pd.read_csv(p, comment="#") for p in parts])
    expected = null_threshold(candidates["score"].to_numpy(), 3 * area, null)
    assert expected is not None
    record = json.loads((out / "pixer_pick.json").read_text())
    assert record["threshold"] == pytest.approx(expected[0]) and "background" in record["threshold_rule"]


def test_rerun_with_another_diameter_recomputes(data, tmp_path):
    """Parts record the diameter they were picked for: the same --out with another --diameter is
    picked again (binning and the local-maximum search depend on it), the same one is skipped."""
    out = tmp_path / "run"
    shutil.copytree(data["ref"] / "parts", out / "parts")
    argv = ["pick", "--micrographs", str(data["mics"]), "--model", str(data["model"]), "--out", str(out),
            "--no-progress", "--cluster", "none"]  # fmt: skip
    assert main([*argv, "--diameter", DIAMETER]) == 0
    assert set(pd.read_csv(out / "summary.csv")["status"]) == {"skipped"}
    assert main([*argv, "--diameter", "100"]) == 0
    assert set(pd.read_csv(out / "summary.csv")["status"]) == {"done"}
    from pixer.pick.batch import read_part_header

    assert {read_part_header(p)["diam"] for p in (out / "parts").rglob("*.csv")} == {100.0}
