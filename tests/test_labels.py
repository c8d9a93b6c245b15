"""Label synthesis from a reconstruction: against the simulator's truth, RELION, real STARs, bad input."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import scipy.ndimage as ndi
import starfile
import torch

from pixer.cli.main import main
from pixer.data.preprocess import crop_shape, fourier_crop
from pixer.errors import PixerError
from pixer.io.mrc_write import write_mrc
from pixer.io.star import read_particles, write_particles_star
from pixer.labels import (
    LabelThreshold,
    fill_holes,
    iso_level_for_mass,
    read_label_index,
    synthesize_labels,
)
from pixer.labels.threshold import _fill_holes_torch
from pixer.physics import fourier_volume, project
from pixer.simulate import demo_density, load_map, simulate_dataset
from pixer.train.prepare import label_to_grid

torch.set_num_threads(1)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / max(1, (a | b).sum()))


def truth_mask(sim: Path, name: str) -> np.ndarray:
    return mrcfile.read(sim / "truth" / f"{Path(name).stem}_mask.mrc") > 0


def labels_of(df: pd.DataFrame, sim: Path, size: int, **kw) -> dict:
    vol, vol_apix = load_map(sim / "map.mrc")
    shapes = {n: (size, size) for n in df["micrograph"].unique()}
    return {r.name: r for r in synthesize_labels(df, vol, vol_apix, shapes, **kw)}


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    """2 micrographs 512² at 2.5 Å/px, apoferritin demo map at 2.5 Å."""
    out = tmp_path_factory.mktemp("sim")
    simulate_dataset(out, n=2, size=512, apix=2.5, snr_db=-10, seed=0, progress=False)
    return out


@pytest.fixture(scope="module")
def sim_vox(tmp_path_factory) -> Path:
    """Map at 1.5 Å, micrographs at 3 Å/px (the simulator resamples, labels must too)."""
    out = tmp_path_factory.mktemp("simvox")
    write_mrc(out / "in_map.mrc", demo_density("apoferritin", 1.5, seed=0), 1.5)
    simulate_dataset(out, n=2, size=384, apix=3.0, snr_db=-10, seed=1, map_path=out / "in_map.mrc",
                     progress=False)
    return out


# ------------------------------------------------------------------ against the simulator's truth

def test_labels_match_simulator_truth(sim):
    df = read_particles(sim / "particles.star")
    res = labels_of(df, sim, 512, instance=True)
    ious = [iou(r.label, truth_mask(sim, n)) for n, r in res.items()]
    print(f"IoU vs simulator truth (2.5 Å/px, map 2.5 Å): {ious}, mean {np.mean(ious):.4f}")
    assert np.mean(ious) >= 0.9
    for r in res.values():
        assert r.label.dtype == np.uint8 and r.instance.dtype == np.int32
        assert ((r.instance > 0) == (r.label > 0)).all()
        assert (r.records["status"] == "pasted").all()
        owned = np.bincount(r.instance.ravel(), minlength=len(r.records) + 1)[1:]
        assert (owned > 0).sum() >= len(r.records) - 1  # every particle owns pixels (a rare one fully covered)
        assert (r.records["area_px"] >= owned).all()


def test_map_voxel_size_differs_from_pixel_size(sim_vox):
    df = read_particles(sim_vox / "particles.star")
    _, vol_apix = load_map(sim_vox / "map.mrc")
    assert vol_apix == pytest.approx(1.5) and df["apix"].iloc[0] == pytest.approx(3.0)
    ious = [iou(r.label, truth_mask(sim_vox, n)) for n, r in labels_of(df, sim_vox, 384).items()]
    print(f"IoU vs simulator truth (map 1.5 Å, micrographs 3 Å/px): {ious}")
    assert np.mean(ious) >= 0.9


def test_labels_on_a_downsampled_grid(sim):
    df = read_particles(sim / "particles.star")
    for name, r in labels_of(df, sim, 512, out_apix=5.0).items():
        assert r.label.shape == crop_shape((512, 512), 2.5, 5.0) == (256, 256)
        assert r.label_apix == pytest.approx(5.0)
        binned, _ = fourier_crop(truth_mask(sim, name).astype(np.float32), 2.5, 5.0)
        assert iou(r.label, binned >= 0.5) >= 0.9


def test_origin_sign(sim):
    """True centre = coordinate - origin / apix: a wrong sign must lose the particles."""
    df = read_particles(sim / "particles.star")
    moved = df.copy()
    dx, dy = 9.0, -7.0  # px: move the coordinates and compensate by the origin
    moved["x"] += dx
    moved["y"] += dy
    moved["origin_x_A"] += dx * 2.5
    moved["origin_y_A"] += dy * 2.5
    right = labels_of(moved, sim, 512)
    flipped = moved.assign(origin_x_A=-moved["origin_x_A"], origin_y_A=-moved["origin_y_A"])
    wrong = labels_of(flipped, sim, 512)
    right_iou = np.mean([iou(r.label, truth_mask(sim, n)) for n, r in right.items()])
    wrong_iou = np.mean([iou(r.label, truth_mask(sim, n)) for n, r in wrong.items()])
    print(f"IoU with origins of ~11 px: right sign {right_iou:.4f}, wrong sign {wrong_iou:.4f}")
    assert right_iou >= 0.9 and wrong_iou < 0.5
    # one particle: the label's centre of mass is at coordinate - origin / apix
    one = pd.DataFrame({"micrograph": ["m"], "x": [100.0], "y": [80.0], "rot": [0.0], "tilt": [0.0], "psi": [0.0],
                        "origin_x_A": [30.0], "origin_y_A": [-20.0]})
    vol, vol_apix = load_map(sim / "map.mrc")
    (res,) = synthesize_labels(one, vol, vol_apix, {"m": (200, 200)}, apix=2.5)
    cy, cx = ndi.center_of_mass(res.label)
    assert (cx, cy) == pytest.approx((100 - 12, 80 + 8), abs=1.0)
    assert (res.records["x_true"].iloc[0], res.records["y_true"].iloc[0]) == (88.0, 88.0)


def test_threshold_rules(sim):
    df = read_particles(sim / "particles.star")
    name = df["micrograph"].iloc[0]
    rows = df[df["micrograph"] == name]
    area = {f: labels_of(rows, sim, 512, threshold=LabelThreshold(fraction=f))[name].label.sum()
            for f in (0.05, 0.1, 0.3)}
    assert area[0.05] > area[0.1] > area[0.3] > 0
    vol, vol_apix = load_map(sim / "map.mrc")
    small, large = iso_level_for_mass(vol, vol_apix, 200), iso_level_for_mass(vol, vol_apix, 400)
    assert small > large
    iso = {lvl: labels_of(rows, sim, 512, threshold=LabelThreshold("iso", iso_level=lvl))[name].label
           for lvl in (small, large)}
    assert 0 < iso[small].sum() < iso[large].sum()
    assert iou(iso[large], truth_mask(sim, name)) > 0.5  # the same particles, a different outline
    with pytest.raises(PixerError):
        LabelThreshold(fraction=1.5)
    with pytest.raises(PixerError):
        LabelThreshold("iso")


def test_fill_holes_matches_scipy_on_both_paths():
    masks = np.random.default_rng(0).random((12, 33, 40)) < 0.45
    expected = np.stack([ndi.binary_fill_holes(m) for m in masks])
    assert (fill_holes(torch.from_numpy(masks)).numpy() == expected).all()
    assert (_fill_holes_torch(torch.from_numpy(masks)).numpy() == expected).all()  # the GPU path


# ------------------------------------------------------------------ against RELION itself

def test_rescaled_projection_matches_relion(shared_data, tmp_path):
    """Map at 5 Å projected on a 6.4 Å grid with origins == relion_image_handler --rescale_angpix
    then relion_project (an even box avoids RELION's odd-box centring quirk)."""
    if shutil.which("relion_project") is None or shutil.which("relion_image_handler") is None:
        pytest.skip("relion_project not installed (apt-get install -y relion)")
    vol = mrcfile.read(shared_data / "maps" / "aspire__clean70SRibosome_vol_65p.mrc")[:64, :64, :64].copy()
    write_mrc(tmp_path / "map.mrc", vol, 5.0)
    angles = np.array([[235.8, 113.1, 50.5], [86.7, 32.0, 139.5], [48.5, 71.2, 185.3], [-120.0, 150.0, 10.0]])
    origins_A = np.array([[30.0, -45.0], [-22.5, 15.0], [0.0, 0.0], [52.5, 37.5]])
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [6.4], "rlnImageSize": [50],
                           "rlnImageDimensionality": [2], "rlnVoltage": [300.0], "rlnSphericalAberration": [2.7],
                           "rlnAmplitudeContrast": [0.1]})
    parts = pd.DataFrame({"rlnAngleRot": angles[:, 0], "rlnAngleTilt": angles[:, 1], "rlnAnglePsi": angles[:, 2],
                          "rlnOriginXAngst": origins_A[:, 0], "rlnOriginYAngst": origins_A[:, 1],
                          "rlnOpticsGroup": 1, "rlnDefocusU": 1e4, "rlnDefocusV": 1e4, "rlnDefocusAngle": 0.0})
    starfile.write({"optics": optics, "particles": parts}, tmp_path / "ang.star")
    for cmd in (["relion_image_handler", "--i", "map.mrc", "--o", "map64.mrc", "--angpix", "5",
                 "--rescale_angpix", "6.4"],
                ["relion_project", "--i", "map64.mrc", "--o", "proj", "--ang", "ang.star", "--angpix", "6.4"]):
        run = subprocess.run(cmd, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
    assert mrcfile.read(tmp_path / "map64.mrc").shape == (50, 50, 50)
    ref = mrcfile.read(tmp_path / "proj.mrcs")
    ours = project(fourier_volume(torch.from_numpy(vol)), *(torch.from_numpy(a) for a in angles.T),
                   torch.from_numpy(origins_A / 6.4), size=50, scale=6.4 / 5.0).numpy()
    corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(ours, ref)]
    print(f"pixer (5 Å map -> 6.4 Å/px, origins) vs relion_project of the rescaled map: corr {np.round(corr, 5)}")
    assert min(corr) >= 0.99
    flipped = project(fourier_volume(torch.from_numpy(vol)), *(torch.from_numpy(a) for a in angles.T),
                      torch.from_numpy(-origins_A / 6.4), size=50, scale=6.4 / 5.0).numpy()
    moved = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(flipped, ref)]
    assert max(c for c, o in zip(moved, origins_A) if np.abs(o).max() > 0) < 0.9


# ------------------------------------------------------------------ real RELION 3.0 refinement

def test_empiar10025_pixel_sizes(shared_data, tmp_path, capsys):
    """Coordinates in micrograph px (0.6575 Å), origins in particle px (0.9819 Å)."""
    ref = shared_data / "empiar10025_refinement"
    write_mrc(tmp_path / "map.mrc", demo_density("apoferritin", 5.0, seed=0), 5.0)  # T20S map is not public here
    out = tmp_path / "labels"
    argv = ["labels", "--particles", str(ref / "particles.star"), "--map", str(tmp_path / "map.mrc"),
            "--shape", "7676", "7420", "--out-apix", "10", "--out", str(out), "--no-progress"]
    assert main(argv) == 2  # the STAR states only the particle pixel size
    err = capsys.readouterr().err.strip()
    assert "particles.star" in err and "0.9819" in err and "--apix" in err and "\n" not in err
    assert not out.exists()
    assert main([*argv, "--micrographs-star", str(ref / "ctf_params.star")]) == 0
    summary = starfile.read(out / "labels.star")
    raw = starfile.read(ref / "particles.star")
    assert len(summary) == 1500 and (summary["pixerStatus"] == "pasted").all()
    mic_apix, img_apix = 2.5e4 / 38023, 3.733333e4 / 38023
    np.testing.assert_allclose(summary["pixerCentreX"], raw["rlnCoordinateX"] - raw["rlnOriginX"] * img_apix / mic_apix,
                               atol=1e-3)
    np.testing.assert_allclose(summary["pixerCentreY"], raw["rlnCoordinateY"] - raw["rlnOriginY"] * img_apix / mic_apix,
                               atol=1e-3)
    index, info = read_label_index(out)
    assert len(index) == 30 and index["apix"].to_numpy() == pytest.approx(0.6575, abs=1e-4)
    h, w = crop_shape((7676, 7420), mic_apix, 10.0)
    with mrcfile.open(index["label_path"].iloc[0]) as mrc:
        assert mrc.data.shape == (h, w) and float(mrc.voxel_size.x) == pytest.approx(mic_apix * 7676 / h, rel=1e-3)
        assert mrc.data.max() == 1
    assert info["apix_source"].endswith("ctf_params.star")
    # rows and columns swapped: particles with y > 7420 fall off, and say so
    swapped = tmp_path / "swapped"
    assert main([*argv[:5], "--shape", "7420", "7676", "--out-apix", "10", "--apix", "0.6575", "--out", str(swapped),
                 "--no-progress"]) == 0
    reasons = starfile.read(swapped / "labels.star")["pixerReason"]
    assert (reasons == "centre_off_micrograph").sum() > 0


# ------------------------------------------------------------------ bad input

def test_bad_input_in_the_library(sim):
    df = read_particles(sim / "particles.star")
    vol, vol_apix = load_map(sim / "map.mrc")
    name = df["micrograph"].iloc[0]
    rows = df[df["micrograph"] == name].reset_index(drop=True).copy()
    rows.loc[0, "rot"] = np.nan
    rows.loc[1, "x"] = -80.0
    (res,) = synthesize_labels(rows, vol, vol_apix, {name: (512, 512)})
    assert list(res.records["reason"][:2]) == ["angles missing", "centre off micrograph"]
    assert (res.records["status"][2:] == "pasted").all()
    with pytest.raises(PixerError, match="pixel size"):
        list(synthesize_labels(rows.drop(columns="apix"), vol, vol_apix, {name: (512, 512)}))
    with pytest.raises(PixerError, match="cubic"):
        list(synthesize_labels(rows, vol[:, :, :-2], vol_apix, {name: (512, 512)}))
    with pytest.raises(PixerError, match="angles"):
        list(synthesize_labels(rows.drop(columns=["rot", "tilt", "psi"]), vol, vol_apix, {name: (512, 512)}))


def _one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_bad_input_on_the_command_line(sim, tmp_path, capsys):
    base = ["labels", "--particles", str(sim / "particles.star"), "--micrographs", str(sim / "micrographs"),
            "--no-progress"]
    bad_map = tmp_path / "flat.mrc"
    write_mrc(bad_map, np.zeros((8, 16, 16), np.float32), 2.5)
    err = _one_line_error([*base, "--map", str(bad_map), "--out", str(tmp_path / "a")], capsys)
    assert "flat.mrc" in err and "cubic" in err
    assert not (tmp_path / "a").exists()  # nothing written
    no_angles = tmp_path / "coords_only.star"
    df = read_particles(sim / "particles.star")
    write_particles_star(df.drop(columns=["rot", "tilt", "psi"]), no_angles, 2.5)
    err = _one_line_error(["labels", "--particles", str(no_angles), "--map", str(sim / "map.mrc"), "--micrographs",
                           str(sim / "micrographs"), "--out", str(tmp_path / "b")], capsys)
    assert "coords_only.star" in err and "rot" in err
    err = _one_line_error(["labels", "--coords", str(sim / "particles.star"), "--shape", "512", "512",
                           "--out", str(tmp_path / "c")], capsys)
    assert "--diameter" in err
    # a micrograph that is not given: its particles are skipped, and recorded
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(sim / "micrographs" / "mic_0000.mrc", only)
    out = tmp_path / "d"
    assert main(["labels", "--particles", str(sim / "particles.star"), "--map", str(sim / "map.mrc"),
                 "--micrographs", str(only), "--out", str(out), "--no-progress"]) == 0
    summary = starfile.read(out / "labels.star")
    unknown = summary["rlnMicrographName"] == "micrographs/mic_0001.mrc"
    assert unknown.any() and (summary.loc[unknown, "pixerReason"] == "unknown_micrograph").all()
    assert (summary.loc[~unknown, "pixerStatus"] == "pasted").all()
    assert json.loads((out / "labels.json").read_text())["skipped_reasons"] == {"unknown micrograph": unknown.sum()}


# ------------------------------------------------------------------ CLI and training

def test_cli_writes_a_label_folder_and_train_reads_it(sim, tmp_path):
    out = tmp_path / "labels"
    assert main(["labels", "--particles", str(sim / "particles.star"), "--map", str(sim / "map.mrc"),
                 "--micrographs", str(sim / "micrographs"), "--out", str(out), "--instance", "--no-progress"]) == 0
    index, info = read_label_index(out)
    assert len(index) == 2 and info["threshold"]["fraction"] == 0.1 and info["n_pasted"] == info["n_particles"]
    for name, path in zip(index["micrograph"], index["label_path"]):
        with mrcfile.open(path) as mrc:
            assert mrc.data.dtype == np.int8 and float(mrc.voxel_size.x) == pytest.approx(2.5)
            assert iou(mrc.data, truth_mask(sim, name)) >= 0.9
        inst = mrcfile.read(str(path).replace("_label.mrc", "_instance.mrc"))
        assert inst.dtype == np.uint16 and inst.max() > 1
    assert (out / "pixer_labels.json").is_file() and not list(out.rglob(".*tmp*"))
    model = tmp_path / "model"
    assert main(["train", "--micrographs", str(sim / "micrographs"), "--labels", str(out), "--out", str(model),
                 "--steps", "3", "--batch-size", "2", "--tile", "64", "--width", "8", "--no-progress"]) == 0
    assert (model / "model.pt").is_file()
    record = json.loads((model / "pixer_train.json").read_text())
    assert record["arguments"]["diameter"] == pytest.approx(info["diameter_A"])  # taken from labels.json
    with pytest.raises(SystemExit):  # --labels and --coords exclude each other
        main(["train", "--micrographs", str(sim / "micrographs"), "--labels", str(out), "--coords",
              str(sim / "particles.star"), "--out", str(model)])


def test_interrupted_label_run_resumes_and_skips_finished_micrographs(sim, tmp_path, capsys):
    """A run that died after its first micrograph: the rerun skips that one, redoes the other
    and ends with the same folder as an uninterrupted run; other settings start afresh."""
    import shutil

    argv = ["labels", "--particles", str(sim / "particles.star"), "--map", str(sim / "map.mrc"), "--micrographs",
            str(sim / "micrographs"), "--instance", "--no-progress"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert main([*argv, "--out", str(full)]) == 0
    # what a kill after the first micrograph leaves: its label, instance and done record, no index
    shutil.copytree(full, part)
    (part / "label_index.star").unlink()
    second = sorted((part / "done").rglob("*.json"))[1]
    second.unlink()
    label_of_second = json.loads((full / "done" / second.relative_to(part / "done")).read_text())["index"]
    (part / label_of_second["pixerLabelFile"]).unlink()
    first_label = sorted(part.rglob("*_label.mrc"))[0]
    stamp = first_label.stat().st_mtime_ns
    capsys.readouterr()
    assert main([*argv, "--out", str(part)]) == 0
    assert "1 of 2 micrographs already done" in capsys.readouterr().out
    assert first_label.stat().st_mtime_ns == stamp  # not rewritten
    for name in ("label_index.star", "labels.star"):  # equal but for starfile's time stamp
        def body(path):
            return [ln for ln in path.read_text().splitlines() if not ln.startswith("# Created by")]
        assert body(part / name) == body(full / name), name
    for f in full.rglob("*_label.mrc"):
        assert np.array_equal(mrcfile.read(f), mrcfile.read(part / f.relative_to(full)))
    # another threshold: nothing is reused
    capsys.readouterr()
    assert main([*argv, "--out", str(part), "--threshold", "0.3"]) == 0
    assert "already done" not in capsys.readouterr().out
    assert first_label.stat().st_mtime_ns != stamp


def test_disc_fallback_folder_trains(sim, tmp_path):
    out = tmp_path / "discs"
    assert main(["labels", "--coords", str(sim / "particles.star"), "--diameter", "120", "--micrographs",
                 str(sim / "micrographs"), "--out", str(out), "--out-apix", "5", "--no-progress"]) == 0
    index, info = read_label_index(out)
    assert info["mode"] == "discs" and len(index) == 2
    label = mrcfile.read(index["label_path"].iloc[0])
    assert label.shape == (256, 256)
    n = int(starfile.read(out / "labels.star")["rlnMicrographName"].eq(index["micrograph"].iloc[0]).sum())
    assert ndi.label(label)[1] >= 0.8 * n  # one disc per particle (a few may touch)
    disc_area = math.pi * (0.6 * 60 / 5.0) ** 2
    assert label.sum() == pytest.approx(n * disc_area, rel=0.2)
    assert main(["train", "--micrographs", str(sim / "micrographs"), "--labels", str(out), "--out",
                 str(tmp_path / "m"), "--steps", "2", "--batch-size", "2", "--tile", "64", "--width", "8",
                 "--no-progress"]) == 0


def test_label_to_grid_aligns_labels_of_any_grid(sim):
    df = read_particles(sim / "particles.star")
    name = df["micrograph"].iloc[0]
    full = labels_of(df, sim, 512)[name].label
    coarse = labels_of(df, sim, 512, out_apix=5.0)[name].label
    target, shape = 7.5, crop_shape((512, 512), 2.5, 7.5)
    a = label_to_grid(full, (512, 512), 2.5, target, shape)
    b = label_to_grid(coarse, (512, 512), 2.5, target, shape)
    assert a.shape == b.shape == shape and iou(a, b) >= 0.85
