"""Tests for pixer.io.coords: coordinate readers/writers, dispatch and micrograph matching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from pixer.errors import PixerError
from pixer.io.match import match_micrograph_names
from pixer.io.coords import (
    read_box,
    read_csv,
    read_picks,
    read_topaz,
    write_box,
    write_csv,
    write_relion_coords,
    write_topaz,
)
from pixer.io.star import read_particles


def _picks(names=("mic_001", "mic_002"), n=5, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = len(names) * n
    return pd.DataFrame(
        {
            "micrograph": np.repeat(list(names), n),
            "x": rng.uniform(50, 900, rows).round(4),
            "y": rng.uniform(50, 900, rows).round(4),
            "score": rng.uniform(0, 1, rows).round(4),
        }
    )


def _same(a: pd.DataFrame, b: pd.DataFrame, micrographs=None) -> None:
    """Equal centres (1e-3 px) per micrograph, order-independent."""
    a, b = a.copy(), b.copy()
    if micrographs is not None:
        a["micrograph"] = a["micrograph"].map(micrographs)
    key = ["micrograph", "x", "y"]
    a = a.sort_values(key).reset_index(drop=True)
    b = b.sort_values(key).reset_index(drop=True)
    assert list(a["micrograph"]) == list(b["micrograph"])
    np.testing.assert_allclose(a[["x", "y"]], b[["x", "y"]], atol=1e-3)
    if "score" in a and "score" in b:
        np.testing.assert_allclose(a["score"], b["score"], atol=1e-4)


def test_topaz_round_trip(tmp_path):
    df = _picks()
    path = write_topaz(df, tmp_path / "picks.txt")
    assert path.read_text().splitlines()[0].split("\t") == ["image_name", "x_coord", "y_coord", "score"]
    _same(df, read_topaz(path))
    _same(df, read_picks(path))


def test_topaz_names_are_stems(tmp_path):
    df = _picks(names=("Movies/a/mic_001.mrc",), n=2)
    back = read_topaz(write_topaz(df, tmp_path / "p.txt"))
    assert set(back["micrograph"]) == {"mic_001"}


def test_box_round_trip_and_corner_convention(tmp_path):
    df = _picks()
    files = write_box(df, tmp_path / "box", box_size_px=64)
    assert sorted(f.name for f in files) == ["mic_001.box", "mic_002.box"]
    first = files[0].read_text().split()
    row = df[df["micrograph"] == "mic_001"].iloc[0]
    # lower-left corner = centre - box/2, then the box size
    np.testing.assert_allclose([float(v) for v in first[:4]], [row.x - 32, row.y - 32, 64, 64], atol=1e-3)
    _same(df, read_picks(tmp_path / "box"))
    _same(df[df["micrograph"] == "mic_001"], read_box(files[0]))
    assert set(read_box(files[0], micrograph="other")["micrograph"]) == {"other"}


def test_box_centre_from_corner(tmp_path):
    path = tmp_path / "m.box"
    path.write_text("100 200 50 50\n10\t20\t40\t40\t-3\n")
    df = read_box(path)
    np.testing.assert_allclose(df[["x", "y"]], [[125, 225], [30, 40]])
    assert list(df["micrograph"]) == ["m", "m"]


def test_csv_round_trip_keeps_extra_columns(tmp_path):
    df = _picks().assign(apix=1.34)
    _same(df, read_csv(write_csv(df, tmp_path / "p.csv")))
    back = read_picks(tmp_path / "p.csv")
    np.testing.assert_allclose(back["apix"], 1.34)
    (tmp_path / "t.csv").write_text("image_name,x_coord,y_coord\n0007,1,2\n")
    topaz_like = read_csv(tmp_path / "t.csv")
    assert list(topaz_like["micrograph"]) == ["0007"] and topaz_like["x"][0] == 1.0


def test_relion_coords_round_trip(tmp_path):
    df = _picks(names=("MotionCorr/job002/Movies/mic_001.mrc", "MotionCorr/job002/Movies/mic_002.mrc"))
    listing = write_relion_coords(df, tmp_path / "AutoPick", micrographs_star="CtfFind/job003/micrographs_ctf.star")
    out = tmp_path / "AutoPick"
    coord = out / "MotionCorr" / "job002" / "Movies" / "mic_001_pixer.star"
    raw = starfile.read(coord)
    assert list(raw.columns) == ["rlnCoordinateX", "rlnCoordinateY", "rlnAutopickFigureOfMerit",
                                 "rlnClassNumber", "rlnAnglePsi"]
    assert (raw["rlnClassNumber"] == 0).all() and (raw["rlnAnglePsi"] == -999).all()
    assert (out / "coords_suffix_pixer.star").read_text().strip() == "CtfFind/job003/micrographs_ctf.star"
    assert listing == out / "autopick.star"
    # RELION 4 list: micrograph names as given, coordinates found again
    _same(df, read_picks(listing))
    _same(df, read_picks(out))  # a folder with autopick.star reads the list
    # a per-micrograph file gives the stem; matching recovers the micrograph
    one = read_picks(coord)
    assert set(one["micrograph"]) == {"mic_001_pixer"} and one["psi"].isna().all()
    mics = [tmp_path / "MotionCorr/job002/Movies/mic_001.mrc", tmp_path / "MotionCorr/job002/Movies/mic_002.mrc"]
    both = read_picks(str(out / "**" / "*_pixer.star"))
    matched = match_micrograph_names(both, mics)
    assert {p.name for p in matched} == {"mic_001.mrc", "mic_002.mrc"}


def test_relion_list_relative_to_project_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    df = _picks(names=("Movies/m1.mrc",), n=3)
    listing = write_relion_coords(df, Path("AutoPick/job010"), suffix="_autopick")
    files = starfile.read(listing)["rlnMicrographCoordinates"]
    assert list(files) == ["AutoPick/job010/Movies/m1_autopick.star"]  # relative to the project folder
    _same(df, read_picks(listing))


@pytest.mark.parametrize("evil", ["../../evil.mrc", "/abs/evil.mrc", "./../x/../../evil.mrc"])
def test_output_paths_cannot_escape(tmp_path, evil):
    outdir = tmp_path / "out"
    df = pd.DataFrame({"micrograph": [evil], "x": [10.0], "y": [20.0]})
    write_relion_coords(df, outdir)
    written = write_box(df, outdir, 32)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and all(outdir.resolve() in p.resolve().parents for p in files)
    assert written[0].name == "evil.box"
    assert any(p.name == "evil_pixer.star" for p in files)


def test_colliding_names_are_refused(tmp_path):
    df = pd.DataFrame({"micrograph": ["a.mrc", "a.tif"], "x": [1.0, 2.0], "y": [1.0, 2.0]})
    with pytest.raises(PixerError, match="both be written"):
        write_box(df, tmp_path, 10)


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("e.box", "", "no picks"),
        ("e.txt", "", "no picks"),
        ("e.csv", "micrograph,x,y\n", "no picks"),
        ("g.box", "1 2 3\n", "expected 4 columns"),
        ("g2.box", "a b c d\n", "non-numeric"),
        ("g.txt", "hello world\nthis is not a pick file\n", "unknown coordinate format"),
        ("t.txt", "image_name\tx_coord\n", "missing column"),
        ("c.csv", "name,x,y\nm,1,2\n", "missing column"),
        ("s.star", "nonsense\n", "no data_ blocks"),
    ],
)
def test_empty_and_garbage_files(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PixerError, match=message) as info:
        read_picks(path)
    assert str(path) in str(info.value)


def test_folder_with_empty_files_and_nothing_found(tmp_path):
    write_box(_picks(names=("m1",), n=3), tmp_path, 20)
    (tmp_path / "m2.box").write_text("")  # a micrograph without picks
    df = read_picks(tmp_path, apix=2.0)
    assert len(df) == 3 and (df["apix"] == 2.0).all()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "m3.box").write_text("")
    with pytest.raises(PixerError, match="no picks"):
        read_picks(tmp_path / "empty")
    with pytest.raises(PixerError, match="no such file"):
        read_picks(tmp_path / "missing.star")
    with pytest.raises(PixerError, match="no files match"):
        read_picks(str(tmp_path / "*.nothing"))


def test_list_of_specs_is_concatenated(tmp_path):
    a, b = _picks(names=("m1",), n=2), _picks(names=("m2",), n=3, seed=1)
    write_topaz(a, tmp_path / "a.txt")
    write_csv(b, tmp_path / "b.csv")
    _same(pd.concat([a, b]), read_picks([tmp_path / "a.txt", tmp_path / "b.csv"]))


def test_match_levels(tmp_path):
    mics = [
        Path("/data/Movies/a/mic_001.mrc"),
        Path("/data/Movies/b/mic_001.mrc"),
        Path("/data/Movies/mic_002.mrc"),
        Path("/data/Movies/mic_003.tif"),
        Path("/data/J12/motioncorrected/mic_004_patch_aligned.mrc"),
    ]
    names = {
        "/data/Movies/mic_002.mrc": mics[2],  # exact
        "Movies/b/mic_001.mrc": mics[1],  # relative path, basename shared by two files
        "mic_002.mrc": mics[2],  # basename
        "mic_003.mrc": mics[3],  # stem (other extension)
        "mic_003_autopick": mics[3],  # coordinate-file suffix
        "mic_002_manualpick": mics[2],
        "001281467243737059_mic_004_patch_aligned.mrc": mics[4],  # cryoSPARC UID
    }
    df = pd.DataFrame({"micrograph": list(names), "x": 1.0, "y": 1.0})
    matched = match_micrograph_names(df, mics)
    assert list(matched) == list(names.values())
    bad = pd.concat([df, pd.DataFrame({"micrograph": ["mic_001.mrc", "zzz", "yyy", "xxx", "www"], "x": 1.0, "y": 1.0})],
                    ignore_index=True)
    expected = r"5 micrograph name\(s\) match no micrograph file \(e.g. mic_001.mrc, zzz, yyy\)"
    with pytest.raises(PixerError, match=expected):
        match_micrograph_names(bad, mics)
    kept = match_micrograph_names(bad, mics, on_unknown="drop")
    assert list(kept.index) == list(range(len(df)))


def test_real_autopick_file_matches_its_micrograph(shared_data):
    root = shared_data / "micrograph_small"
    picks = read_picks(root / "inCoords" / "relion")
    assert len(picks) == 45
    matched = match_micrograph_names(picks, sorted((root / "mics").glob("*.mrc")))
    assert set(matched) == {root / "mics" / "Ucsf_stack_1142_DW.mrc"}


def test_real_topaz_file_agrees_with_star(shared_data):
    folder = shared_data / "empiar10025_refinement"
    topaz = read_picks(folder / "particles.txt")
    star = read_particles(folder / "particles.star")
    assert len(topaz) == len(star) == 1500
    _same(star, topaz, micrographs=lambda m: m.rsplit(".", 1)[0])


def test_atomic_files_get_the_usual_mode(tmp_path):
    """Files written through atomic_path are readable like any file (mkstemp alone gives 0600)."""
    import os
    import stat

    from pixer.io.paths import FILE_MODE, write_text_atomic

    out = write_text_atomic(tmp_path / "x.txt", "hello\n")
    assert stat.S_IMODE(os.stat(out).st_mode) == FILE_MODE and FILE_MODE & 0o044
