"""Bad input to ``pixer simulate`` and ``pixer labels``: one-line errors, warnings, nothing half-written."""

from __future__ import annotations

import math
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch

from pixer.cli.main import main
from pixer.errors import PixerError
from pixer.io.coords import read_picks
from pixer.labels.folder import disc_label_results
from pixer.labels.inputs import check_diameter
from pixer.labels.reconstruction import placement_reasons
from pixer.simulate import estimate_diameter, simulate_dataset
from pixer.simulate.dataset import default_particles_per_micrograph

torch.set_num_threads(1)

STAR_HEAD = "data_\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    """2 micrographs of 128² px at 4 Å/px (512 Å), 3 apoferritin particles each, no interference."""
    out = tmp_path_factory.mktemp("sim")
    simulate_dataset(out, n=2, size=128, apix=4.0, snr_db=-10, seed=0, particles_per_micrograph=3,
                     interference=False, progress=False)
    return out


def _map(path: Path, data: np.ndarray) -> Path:
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data.astype(np.float32))
        m.voxel_size = 4.0
    return path


def _one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def _star(path: Path, rows: list[tuple[str, float, float]]) -> Path:
    path.write_text(STAR_HEAD + "".join(f"{m} {x} {y}\n" for m, x, y in rows))
    return path


# ------------------------------------------------------------------ 1. maps with nothing to project

_BAD_MAPS = {
    "zero": (np.zeros((16, 16, 16)), "no positive density"),
    "negative": (-np.ones((16, 16, 16)), "no positive density"),
    "constant": (np.full((16, 16, 16), 3.0), "constant"),
    "nan": (np.full((16, 16, 16), np.nan), "NaN"),
}


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
@pytest.mark.parametrize("kind", list(_BAD_MAPS))
def test_simulate_refuses_a_map_without_density(kind, tmp_path, capsys):
    data, what = _BAD_MAPS[kind]
    bad = _map(tmp_path / f"{kind}.mrc", data)
    out = tmp_path / "out"
    err = _one_line_error(["simulate", "--out", str(out), "--map", str(bad), "--n", "1", "--size", "64",
                           "--apix", "4", "--no-progress"], capsys)
    assert err.startswith("pixer simulate: error:") and f"{kind}.mrc" in err and what in err, err
    assert not out.exists()


def test_no_diameter_from_an_empty_map():
    with pytest.raises(PixerError, match="positive"):
        estimate_diameter(np.zeros((8, 8, 8)), 4.0)
    with pytest.raises(PixerError, match="diameter"):
        default_particles_per_micrograph(256, 4.0, 0.0)


@pytest.mark.parametrize("kind", ["zero", "constant"])
def test_labels_refuses_a_map_without_density(kind, sim, tmp_path, capsys):
    bad = _map(tmp_path / f"{kind}.mrc", _BAD_MAPS[kind][0])
    out = tmp_path / "labels"
    err = _one_line_error(["labels", "--particles", str(sim / "particles.star"), "--map", str(bad),
                           "--micrographs", str(sim / "micrographs"), "--out", str(out), "--no-progress"], capsys)
    assert f"{kind}.mrc" in err and _BAD_MAPS[kind][1] in err, err
    assert not out.exists()


@pytest.mark.parametrize(("flag", "what"), [("--iso-level=1e9", "no voxel exceeds"),
                                            ("--iso-level=-1e9", "every voxel exceeds"),
                                            ("--mass-kda=1e9", "does not fit")])
def test_labels_iso_level_that_empties_the_map_names_it(flag, what, sim, tmp_path, capsys):
    out = tmp_path / "labels"
    err = _one_line_error(["labels", "--particles", str(sim / "particles.star"), "--map", str(sim / "map.mrc"),
                           "--micrographs", str(sim / "micrographs"), "--out", str(out), flag, "--no-progress"],
                          capsys)
    assert "map.mrc:" in err and what in err, err
    assert not out.exists()


# ------------------------------------------------------------------ 2. nan / inf options

@pytest.mark.parametrize("argv", [
    ["simulate", "--snr-db", "nan"],
    ["simulate", "--snr-db", "inf"],
    ["labels", "--coords", "c.star", "--shape", "8", "8", "--iso-level", "nan"],
])
def test_nonfinite_options_are_refused(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(tmp_path / "never")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "finite" in err and argv[-2] in err
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("snr_db", [math.nan, 1e6, -1e6])
def test_simulate_dataset_refuses_an_unusable_snr(snr_db, tmp_path):
    with pytest.raises(PixerError, match="SNR"):
        simulate_dataset(tmp_path / "s", n=1, size=64, apix=4.0, snr_db=snr_db, seed=0, progress=False)
    assert not (tmp_path / "s").exists()


def test_extreme_but_finite_snr_on_the_command_line_is_one_line(tmp_path, capsys):
    err = _one_line_error(["simulate", "--out", str(tmp_path / "s"), "--snr-db", "1e6", "--n", "1", "--size", "64",
                           "--apix", "4", "--no-progress"], capsys)
    assert "SNR" in err and not (tmp_path / "s").exists()


# ------------------------------------------------------------------ 3. coordinates outside their micrograph

def test_labels_all_coordinates_outside_is_an_error(sim, tmp_path, capsys):
    coords = _star(tmp_path / "outside.star", [("micrographs/mic_0000.mrc", 5000, 100),
                                               ("micrographs/mic_0000.mrc", -300, -50),
                                               ("micrographs/mic_0001.mrc", 100000, 100000)])
    out = tmp_path / "o"
    err = _one_line_error(["labels", "--coords", str(coords), "--diameter", "130", "--micrographs",
                           str(sim / "micrographs"), "--out", str(out), "--no-progress"], capsys)
    assert "outside.star" in err and "none of the 3 particles" in err and "off micrograph" in err, err
    assert not out.exists()


def test_labels_some_coordinates_outside_warns_once(sim, tmp_path, capsys):
    coords = _star(tmp_path / "partial.star", [("micrographs/mic_0000.mrc", 5000, 100),
                                               ("micrographs/mic_0000.mrc", 60, 60),
                                               ("micrographs/mic_0001.mrc", 100000, 100000)])
    assert main(["labels", "--coords", str(coords), "--diameter", "130", "--micrographs", str(sim / "micrographs"),
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if "warning:" in ln]
    assert len(warnings) == 1, warnings
    assert "partial.star" in warnings[0] and "2 of 3" in warnings[0]


def test_labels_no_coordinate_on_any_known_micrograph_is_an_error(tmp_path, capsys):
    """--shape-from-star lists micrographs none of the picks belong to: nothing to paste."""
    coords = _star(tmp_path / "picks.star", [("other/a.mrc", 10, 10)])
    mics = tmp_path / "mics.star"
    mics.write_text("data_\n\nloop_\n_rlnMicrographName #1\n_rlnImageSizeX #2\n_rlnImageSizeY #3\n"
                    "mics/b.mrc 64 64\n")
    err = _one_line_error(["labels", "--coords", str(coords), "--diameter", "100", "--shape-from-star",
                           "--micrographs-star", str(mics), "--apix", "4", "--out", str(tmp_path / "o"),
                           "--no-progress"], capsys)
    assert "picks.star" in err and "unknown micrograph" in err, err


def test_placement_reasons_counts_every_row():
    picks = pd.DataFrame({"micrograph": ["a", "a", "b", "c"], "x": [1.0, 99.0, 5.0, 5.0], "y": [1.0, 1.0, 5.0, 5.0]})
    reasons = placement_reasons(picks, {"a": (10, 10), "b": (10, 10)}, 1.0, need_angles=False)
    assert reasons == {"ok": 2, "centre off micrograph": 1, "unknown micrograph": 1}


# ------------------------------------------------------------------ 4. particle larger than the micrograph

def test_labels_diameter_larger_than_micrograph(sim, tmp_path, capsys):
    out = tmp_path / "o"
    err = _one_line_error(["labels", "--coords", str(sim / "coords"), "--diameter", "50000", "--micrographs",
                           str(sim / "micrographs"), "--out", str(out), "--no-progress"], capsys)
    assert "mic_000" in err and "50000 Å" in err and "512 Å" in err, err
    assert not out.exists()


def test_disc_labels_refuse_a_diameter_larger_than_micrograph(sim):
    picks = read_picks(sim / "coords")
    name = str(picks["micrograph"].iloc[0])
    with pytest.raises(PixerError, match="is smaller than the particle diameter 600 Å"):
        next(disc_label_results(picks, {name: (128, 128)}, 600.0, 4.0))
    with pytest.raises(PixerError, match=r"mic_x: the micrograph \(20 × 10 px at 4 Å/px, 40 Å across\) is smaller "
                                         r"than the particle diameter 60 Å"):
        check_diameter(60.0, {"mic_x": (10, 20)}, {"mic_x": 4.0})
    check_diameter(40.0, {"mic_x": (10, 20)}, 4.0)  # exactly the micrograph: allowed


def test_simulate_particle_larger_than_micrograph(tmp_path, capsys):
    err = _one_line_error(["simulate", "--out", str(tmp_path / "s"), "--n", "1", "--size", "16", "--apix", "2",
                           "--demo", "small", "--no-progress"], capsys)
    assert "demo:small" in err and "is smaller than the particle diameter" in err and "32 Å across" in err, err
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------ 5. output under a plain file

def test_simulate_out_under_a_plain_file_writes_nothing(tmp_path, capsys):
    regfile = tmp_path / "regfile"
    regfile.write_text("keep\n")
    err = _one_line_error(["simulate", "--out", str(regfile / "s"), "--n", "1", "--size", "64", "--apix", "4",
                           "--no-progress"], capsys)
    assert "regfile" in err
    assert regfile.read_text() == "keep\n"


def test_simulate_subfolder_taken_by_a_file_fails_before_writing(tmp_path, capsys):
    out = tmp_path / "sim"
    out.mkdir()
    (out / "truth").write_text("")
    _one_line_error(["simulate", "--out", str(out), "--n", "1", "--size", "64", "--apix", "4", "--no-progress"],
                    capsys)
    assert not (out / "map.mrc").exists() and not list((out / "micrographs").glob("*.mrc"))
