"""Tests for pixer.io.micrographs: reading MRC/TIFF/PNG micrographs and listing them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile
from PIL import Image

from pixer.errors import PixerError
from pixer.io.micrographs import list_micrographs, read_micrograph, write_micrographs_star
from pixer.io.mrc_write import write_mrc


def _image(dtype=np.float32, shape=(24, 32)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.normal(size=shape) * 20).astype(dtype)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint16, np.float16, np.float32])
@pytest.mark.parametrize("mmap", [True, False])
def test_mrc_modes_read_as_float32(tmp_path, dtype, mmap):
    data = _image(dtype)
    path = write_mrc(tmp_path / "mic.mrc", data, apix=1.34)
    mic = read_micrograph(path, mmap=mmap)
    assert mic.data.dtype == np.float32 and mic.data.shape == (24, 32)
    np.testing.assert_array_equal(mic.data, data.astype(np.float32))
    assert mic.apix == pytest.approx(1.34, abs=1e-5)
    assert mic.name == "mic" and mic.path == path


def test_raw_keeps_stored_dtype(tmp_path):
    path = write_mrc(tmp_path / "mic.mrc", _image(np.int16), apix=2.0)
    assert read_micrograph(path, raw=True).data.dtype == np.int16


@pytest.mark.parametrize("header_apix", [0.0, 1.0])
def test_unset_header_pixel_size_is_unknown_and_argument_wins(tmp_path, header_apix):
    path = write_mrc(tmp_path / "mic.mrc", _image(), apix=header_apix)
    assert read_micrograph(path).apix is None
    assert read_micrograph(path, apix=0.9).apix == 0.9
    path2 = write_mrc(tmp_path / "mic2.mrc", _image(), apix=3.0)
    assert read_micrograph(path2, apix=0.9).apix == 0.9


def test_single_image_stack_is_squeezed_and_real_stack_refused(tmp_path):
    one = write_mrc(tmp_path / "one.mrc", _image(shape=(1, 8, 10)), apix=1.5)
    assert read_micrograph(one).data.shape == (8, 10)
    many = write_mrc(tmp_path / "many.mrcs", _image(shape=(3, 8, 10)), apix=1.5)
    with pytest.raises(PixerError, match="many.mrcs.*2D"):
        read_micrograph(many)


def test_truncated_and_garbage_mrc(tmp_path):
    path = write_mrc(tmp_path / "cut.mrc", _image(shape=(64, 64)), apix=1.0)
    path.write_bytes(path.read_bytes()[:3000])
    for mmap in (True, False):
        with pytest.raises(PixerError, match="cut.mrc"):
            read_micrograph(path, mmap=mmap)
    garbage = tmp_path / "junk.mrc"
    garbage.write_bytes(b"this is not an MRC file\n" * 100)
    with pytest.raises(PixerError, match="junk.mrc"):
        read_micrograph(garbage)
    with pytest.raises(PixerError, match="missing.mrc"):
        read_micrograph(tmp_path / "missing.mrc")


def test_old_style_mrc_without_map_id_is_read(tmp_path):
    data = _image()
    path = write_mrc(tmp_path / "old.mrc", data, apix=2.5)
    raw = bytearray(path.read_bytes())
    raw[208:216] = bytes(8)  # no "MAP " id, no machine stamp (pre-2000 files)
    path.write_bytes(bytes(raw))
    mic = read_micrograph(path)
    np.testing.assert_array_equal(mic.data, data)
    assert mic.apix == pytest.approx(2.5)


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_nan_pixels_are_reported_with_count(tmp_path):
    data = _image()
    data[0, :3] = np.nan
    data[5, 5] = np.inf
    path = write_mrc(tmp_path / "bad.mrc", data, apix=1.0)
    with pytest.raises(PixerError, match=r"bad.mrc: 4 NaN/Inf"):
        read_micrograph(path)


def test_tiff_and_png(tmp_path):
    import tifffile

    data = _image(np.uint16) + 100
    tifffile.imwrite(tmp_path / "mic.tif", data)
    mic = read_micrograph(tmp_path / "mic.tif", apix=1.1)
    np.testing.assert_array_equal(mic.data, data.astype(np.float32))
    assert read_micrograph(tmp_path / "mic.tif").apix is None

    png8 = (np.arange(24 * 32) % 256).astype(np.uint8).reshape(24, 32)
    Image.fromarray(png8).save(tmp_path / "m8.png")
    with pytest.raises(PixerError, match="m8.png: pixel size unknown: pass --apix"):
        read_micrograph(tmp_path / "m8.png")
    np.testing.assert_array_equal(read_micrograph(tmp_path / "m8.png", apix=5.4).data, png8)
    png16 = (np.arange(24 * 32) * 50).astype(np.uint16).reshape(24, 32)
    Image.fromarray(png16).save(tmp_path / "m16.png")
    np.testing.assert_array_equal(read_micrograph(tmp_path / "m16.png", apix=5.4).data, png16)
    rgb = np.stack([png8] * 3, axis=-1)
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=100)
    assert read_micrograph(tmp_path / "rgb.jpg", apix=1.0).data.shape == (24, 32)


def test_real_micrograph(shared_data):
    path = shared_data / "micrograph_small" / "mics" / "Ucsf_stack_1142_DW.mrc"
    mic = read_micrograph(path)
    assert mic.data.shape == (927, 959) and mic.data.dtype == np.float32
    assert mic.apix is None  # header says 1.0 = unset
    assert np.isfinite(mic.data).all() and mic.data.std() > 0
    assert read_micrograph(path, apix=1.5).apix == 1.5


def _folder(tmp_path):
    for name in ("b.mrc", "a.tif", "c.png", "d.jpeg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.mrc").write_bytes(b"x")
    return tmp_path


def test_list_folder_glob_file_and_list(tmp_path):
    d = _folder(tmp_path)
    assert [p.name for p in list_micrographs(d)] == ["a.tif", "b.mrc", "c.png", "d.jpeg"]
    assert [p.name for p in list_micrographs(str(d / "*.mrc"))] == ["b.mrc"]
    assert [p.name for p in list_micrographs(str(d / "**" / "*.mrc"))] == ["b.mrc", "e.mrc"]
    assert list_micrographs(d / "b.mrc") == [d / "b.mrc"]
    assert [p.name for p in list_micrographs([d / "b.mrc", str(d / "*.mrc"), d / "sub"])] == ["b.mrc", "e.mrc"]


def test_list_nothing_found(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PixerError, match="no micrographs"):
        list_micrographs(tmp_path / "empty")
    with pytest.raises(PixerError, match="no files match"):
        list_micrographs(str(tmp_path / "*.mrc"))
    with pytest.raises(PixerError, match="no such file"):
        list_micrographs(tmp_path / "nope")


def test_micrographs_star_round_trip(tmp_path):
    mics = tmp_path / "MotionCorr" / "job002" / "Movies"
    mics.mkdir(parents=True)
    paths = [write_mrc(mics / f"mic_{i}.mrc", _image(), apix=1.0) for i in range(3)]
    outside = write_mrc(tmp_path.parent / f"{tmp_path.name}_outside.mrc", _image(), apix=1.0)
    star = write_micrographs_star([*paths, outside], tmp_path / "micrographs.star", apix=0.83, voltage=200)
    blocks = starfile.read(star, always_dict=True)
    assert blocks["optics"]["rlnMicrographPixelSize"].iloc[0] == pytest.approx(0.83)
    assert blocks["optics"]["rlnVoltage"].iloc[0] == 200
    names = list(blocks["micrographs"]["rlnMicrographName"])
    assert names[0] == "MotionCorr/job002/Movies/mic_0.mrc" and names[3] == str(outside.resolve())
    assert [p.resolve() for p in list_micrographs(star)] == [p.resolve() for p in [*paths, outside]]


def test_micrographs_star_relative_to_cwd(tmp_path, monkeypatch):
    (tmp_path / "Movies").mkdir()
    write_mrc(tmp_path / "Movies" / "m.mrc", _image(), apix=1.0)
    (tmp_path / "CtfFind" / "job003").mkdir(parents=True)
    star = tmp_path / "CtfFind" / "job003" / "micrographs_ctf.star"
    starfile.write({"micrographs": pd.DataFrame({"rlnMicrographName": ["Movies/m.mrc"]})}, star)
    monkeypatch.chdir(tmp_path)
    assert [p.resolve() for p in list_micrographs(star)] == [(tmp_path / "Movies" / "m.mrc").resolve()]
    starfile.write({"micrographs": pd.DataFrame({"rlnMicrographName": ["Movies/m.mrc", "Movies/gone.mrc"]})}, star)
    with pytest.raises(PixerError, match="1 of 2 micrographs not found, e.g. Movies/gone.mrc"):
        list_micrographs(star)


def test_remove_stale_temps_only_touches_atomic_temp_names(tmp_path):
    from pixer.io.paths import atomic_path, remove_stale_temps

    (tmp_path / "parts" / "a").mkdir(parents=True)
    stale = [tmp_path / "parts" / "a" / ".mic_001.k2j4_s9q.tmp.csv", tmp_path / ".picks.abcdefgh.tmp.csv"]
    kept = [tmp_path / "parts" / "a" / "mic_001.csv", tmp_path / ".hidden", tmp_path / "notes.tmp.csv",
            tmp_path / ".mic.tmp.csv"]
    for p in stale + kept:
        p.write_text("x")
    assert sorted(remove_stale_temps(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)
    assert remove_stale_temps(tmp_path / "missing") == []
    # the pattern is the one atomic_path really uses: a kill mid-write leaves exactly this name
    with atomic_path(tmp_path / "x.star") as tmp:
        tmp.write_text("y")
        name = tmp.name
    (tmp_path / name).write_text("left by a killed run")
    assert remove_stale_temps(tmp_path) == [tmp_path / name] and (tmp_path / "x.star").read_text() == "y"
