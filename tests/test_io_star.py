"""Tests for pixer.io.star with every real STAR file in ../shared/data and synthetic edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from pixer.errors import PixerError
from pixer.io.star import read_particles, write_particles_star

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NOT_PARTICLES = "not a particle or coordinate file"

# Kind of each real file, decided by reading it: row count of its particle /
# coordinate block, or None for other kinds of STAR file.
KNOWN = {
    "star/aspire__rib80s_run003_model_trunc.star": None,  # model
    "star/aspire__run_001_it025_optimiser.star": None,
    "star/aspire__run_001_it025_sampling.star": None,
    "star/aspire__sample_data_model.star": None,
    "star/aspire__sample_incomplete_ctf_params.star": 1,  # one RELION 3.0 particle without voltage
    "star/aspire__sample_particles_relion30.star": 17,
    "star/aspire__sample_particles_relion31.star": 17,
    "star/aspire__sample_relion_autopick.star": None,  # RELION 4 list of coordinate files
    "star/aspire__sample_relion_coord.star": 440,
    "star/aspire__sample_relion_symmetry_group_D4.star": 17,  # particles + rlnSymmetryGroup column
    "star/cryodrgn__FinalRefinement-OriginalParticles-PfCRT.star": 5,
    "star/cryodrgn__empiar_10076_7.star": None,  # particle images without coordinates
    "star/cryodrgn__relion31.6opticsgroups.star": 139,
    "star/cryodrgn__relion31.star": 5,
    "star/cryodrgn__relion5.star": 17,
    "star/cryodrgn__sta_testing_bin8.star": 219,
    "star/cryosegnet__sample2.star": 2,  # cryoSPARC export (csparc2star)
    "star/relion__ap_s_c2d.star": 8915,
    "star/relion__ap_s_c2d_red.star": 9,
    "star/relion__ref_it002_data.star": 9,
    "star/relion__ref_it002_optimiser.star": None,
    "star/relion__ref_it002_sampling.star": None,
    "star/starfile__default_pipeline.star": None,
    "star/starfile__postprocess.star": None,
    "star/starfile__rln3.1_data_style.star": 2,  # two identical coordinate blocks: the first is read
    "star/starfile__run_it025_optimiser_2D.star": None,
    "star/starfile__run_it025_optimiser_3D.star": None,
    "star/starfile__run_it025_sampling_2D.star": None,
    "star/starfile__run_it025_sampling_3D.star": None,
    "empiar10025_refinement/particles.star": 1500,
    "empiar10025_refinement/ctf_params.star": None,  # per-micrograph CTF only
    "maps/cryodrgn__empiar_10076_7.star": None,
    "maps/cryodrgn__relion31.star": 5,
    "relion_project/pyem.star": 24,
    "relion_project/pyem_onerow.star": 1,
    "relion_project/relion_proj_batch.star": 24,
    "relion_project/relion_proj_batch_pfac2.star": 24,
    "relion_project/relion_proj_batch_pfac3.star": 24,
    "micrograph_small/inCoords/relion/Ucsf_stack_1142_DW_autopick.star": 45,
}
GLOBS = ("star/*.star", "maps/*.star", "relion_project/**/*.star", "empiar10025_refinement/*.star",
         "micrograph_small/**/*.star")
FOUND = sorted({p.relative_to(DATA).as_posix() for g in GLOBS for p in DATA.glob(g)}) if DATA.is_dir() else []

# Micrograph pixel size (Å/px) where the file states it, and image pixel size.
APIX = {
    "star/aspire__sample_particles_relion31.star": (0.885, 1.4),  # rlnMicrographOriginalPixelSize
    "star/cryodrgn__relion31.star": (1.403, 2.806),
    "star/cryodrgn__relion5.star": (0.89, 0.89),
    "star/relion__ref_it002_data.star": (14e4 / 39548, 14e4 / 39548),  # RELION 3.0 detector / mag
    "star/cryodrgn__sta_testing_bin8.star": (1.96, 1.96),
    "star/cryosegnet__sample2.star": (0.8257, 0.8257),  # only rlnImagePixelSize
    "relion_project/pyem.star": (0.885, 3.54),  # rlnMicrographOriginalPixelSize in data_particles
}


def _coordinate_rows(path: Path) -> int | None:
    """Independent count: rows of data_particles, else of the first block with both coordinates."""
    blocks = starfile.read(path, always_dict=True)
    tables = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    if "particles" in tables:
        t = tables["particles"]
        return len(t) if {"rlnCoordinateX", "rlnCoordinateY"} <= set(t.columns) else None
    for t in tables.values():
        if {"rlnCoordinateX", "rlnCoordinateY"} <= set(t.columns):
            return len(t)
    return None


@pytest.mark.filterwarnings("ignore:.*blocks hold coordinates")
@pytest.mark.parametrize("rel", FOUND or ["(none)"])
def test_every_real_star_file(shared_data, rel):
    path = shared_data / rel
    expected = _coordinate_rows(path)
    if rel in KNOWN:
        assert KNOWN[rel] == expected, "the file changed: check its kind again"
    if expected is None:
        with pytest.raises(PixerError, match=NOT_PARTICLES) as info:
            read_particles(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        return
    df = read_particles(path)
    assert len(df) == expected
    assert df["micrograph"].map(type).eq(str).all()
    assert np.isfinite(df[["x", "y"]].to_numpy()).all() and (df[["x", "y"]].to_numpy() >= 0).all()
    assert df.attrs["source"] == str(path)
    if rel in APIX:
        apix, image_apix = APIX[rel]
        np.testing.assert_allclose(df["apix"], apix, rtol=1e-6)
        np.testing.assert_allclose(df["image_apix"], image_apix, rtol=1e-6)


def test_all_real_files_are_classified(shared_data):
    assert set(KNOWN) <= set(FOUND), sorted(set(KNOWN) - set(FOUND))


def test_six_optics_groups_give_per_row_pixel_size(shared_data):
    path = shared_data / "star" / "cryodrgn__relion31.6opticsgroups.star"
    raw = starfile.read(path)
    by_group = raw["optics"].set_index("rlnOpticsGroup")
    df = read_particles(path)
    groups = raw["particles"]["rlnOpticsGroup"]
    np.testing.assert_allclose(df["apix"], groups.map(by_group["rlnMicrographPixelSize"]))
    np.testing.assert_allclose(df["image_apix"], groups.map(by_group["rlnImagePixelSize"]))
    np.testing.assert_allclose(df["voltage"], groups.map(by_group["rlnVoltage"]))
    assert set(df["apix"].round(3)) == {1.035, 1.24, 1.25}  # group 6: 1.035 Å micrographs, 1.25 Å images
    assert (df["optics_group"] == groups).all()
    np.testing.assert_allclose(df["origin_x_A"], raw["particles"]["rlnOriginXAngst"])
    assert df.attrs["apix_source"] == "rlnMicrographPixelSize"


def test_empiar10025_pixel_sizes(shared_data):
    folder = shared_data / "empiar10025_refinement"
    raw = starfile.read(folder / "particles.star")
    # particles.star states only the particle-image pixel size (3.733333 µm / 38023 x 1e4);
    # the micrograph pixel size 2.5 µm / 38023 = 0.6575 Å is in ctf_params.star.
    df = read_particles(folder / "particles.star", micrographs_star=folder / "ctf_params.star")
    np.testing.assert_allclose(df["image_apix"], 0.9819, atol=1e-4)
    np.testing.assert_allclose(df["apix"], 0.6575, atol=1e-4)
    np.testing.assert_allclose(df["origin_x_A"], raw["rlnOriginX"] * 3.733333e4 / 38023, rtol=1e-6)
    np.testing.assert_allclose(df["x"], raw["rlnCoordinateX"])
    assert df["micrograph"].nunique() == 30 and len(df) == 1500
    # coordinates are in 0.6575 Å micrograph pixels (7420 x 7676 px micrographs): in 0.9819 Å
    # pixels the micrographs would be only 7676 * 0.6575 / 0.9819 = 5140 px wide
    assert 5140 < max(df["x"].max(), df["y"].max()) < 7676
    np.testing.assert_allclose(read_particles(folder / "particles.star", apix=0.6575)["apix"], 0.6575)
    plain = read_particles(folder / "particles.star")
    assert "states no micrograph pixel size" in plain.attrs["apix_source"]
    np.testing.assert_allclose(plain["apix"], plain["image_apix"])


def test_relion30_origins_in_angstrom(shared_data):
    path = shared_data / "star" / "aspire__sample_particles_relion30.star"
    raw = starfile.read(path)
    df = read_particles(path)
    px = raw["rlnDetectorPixelSize"] * 1e4 / raw["rlnMagnification"]
    np.testing.assert_allclose(df["origin_x_A"], raw["rlnOriginX"] * px)
    np.testing.assert_allclose(df["origin_y_A"], raw["rlnOriginY"] * px)
    np.testing.assert_allclose(df["defocus_u"], raw["rlnDefocusU"])
    np.testing.assert_allclose(df["score"], raw["rlnAutopickFigureOfMerit"])


def test_coordinate_star_takes_name_from_stem(shared_data):
    path = shared_data / "micrograph_small" / "inCoords" / "relion" / "Ucsf_stack_1142_DW_autopick.star"
    df = read_particles(path)
    assert (df["micrograph"] == "Ucsf_stack_1142_DW_autopick").all()
    assert "apix" not in df.columns and "score" in df.columns
    assert df["x"].max() < 959 and df["y"].max() < 927


# --- synthetic edge cases -------------------------------------------------------------


def _write(tmp_path, text: str, name: str = "f.star") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no data_ blocks"),
        ("hello world\nthis is not a STAR file\n", "no data_ blocks"),
        ("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n", "no particles"),
        ("data_\nloop_\n_rlnCoordinateX #1\n_rlnMicrographName #2\n1 a.mrc\n", "no rlnCoordinateY column"),
        ("data_x\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n1 2\n3\nfoo bar baz\n", "not a readable STAR"),
        ("data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\nabc 2\n", "non-numeric values in rlnCoordinateX"),
        ("data_optics\nloop_\n_rlnOpticsGroup\n1\n\ndata_particles\nloop_\n_rlnCoordinateX\n"
         "_rlnCoordinateY\n_rlnOpticsGroup\n1 2 2\n", "optics group"),
    ],
)
def test_bad_files(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(PixerError, match=message) as info:
        read_particles(path)
    assert str(info.value).startswith(str(path))


def test_binary_garbage_and_missing_file(tmp_path):
    path = tmp_path / "bin.star"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(PixerError, match="bin.star"):
        read_particles(path)
    with pytest.raises(PixerError, match="no such file"):
        read_particles(tmp_path / "missing.star")


def test_header_only_allowed_when_asked(tmp_path):
    path = _write(tmp_path, "data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n", "mic_7_autopick.star")
    df = read_particles(path, allow_empty=True)
    assert len(df) == 0 and list(df.columns[:3]) == ["micrograph", "x", "y"]


def test_names_stay_strings_and_unset_psi_is_nan(tmp_path):
    text = ("data_\nloop_\n_rlnMicrographName\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnAnglePsi\n"
            "0003 10 20 -999\n0004 1 2 45\n")
    df = read_particles(_write(tmp_path, text))
    assert list(df["micrograph"]) == ["0003", "0004"]
    assert np.isnan(df["psi"][0]) and df["psi"][1] == 45


def _table() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 7
    return pd.DataFrame(
        {
            "micrograph": [f"MotionCorr/job002/Movies/mic_{i % 3:03d}.mrc" for i in range(n)],
            "x": rng.uniform(0, 4000, n).round(3),
            "y": rng.uniform(0, 4000, n).round(3),
            "score": rng.uniform(0, 1, n).round(5),
            "rot": rng.uniform(-180, 180, n).round(4),
            "tilt": rng.uniform(0, 180, n).round(4),
            "psi": rng.uniform(-180, 180, n).round(4),
            "origin_x_A": rng.normal(0, 3, n).round(4),
            "origin_y_A": rng.normal(0, 3, n).round(4),
            "defocus_u": rng.uniform(1e4, 2e4, n).round(2),
            "defocus_v": rng.uniform(1e4, 2e4, n).round(2),
            "defocus_angle": rng.uniform(-90, 90, n).round(3),
        }
    )


def test_write_read_round_trip(tmp_path):
    df = _table()
    path = write_particles_star(df, tmp_path / "out" / "particles.star", apix=0.6575, image_apix=0.9819,
                                box_size=256, voltage=200.0, cs=2.7, amp_contrast=0.07)
    back = read_particles(path)
    expected = df.assign(voltage=200.0, cs=2.7, amp_contrast=0.07, apix=0.6575, image_apix=0.9819, optics_group=1)
    pd.testing.assert_frame_equal(back[expected.columns], expected, check_exact=False, atol=1e-6)
    assert set(back.columns) == set(expected.columns)
    optics = starfile.read(path)["optics"]
    assert optics["rlnImageSize"].iloc[0] == 256
    assert not list(tmp_path.joinpath("out").glob(".*"))  # no temporary files left


def test_round_trip_of_real_file(shared_data, tmp_path):
    df = read_particles(shared_data / "star" / "cryodrgn__relion31.star")
    path = write_particles_star(df, tmp_path / "p.star", apix=1.403, image_apix=2.806, cs=0.01)
    back = read_particles(path)
    pd.testing.assert_frame_equal(back[df.columns], df, check_exact=False, atol=1e-6)


def test_minimal_table_writes_only_what_it_has(tmp_path):
    df = pd.DataFrame({"micrograph": ["a.mrc"], "x": [1.5], "y": [2.5], "psi": [np.nan]})
    back = read_particles(write_particles_star(df, tmp_path / "p.star", apix=1.0))
    assert "psi" not in back.columns and "score" not in back.columns
    with pytest.raises(PixerError, match="lacks column"):
        write_particles_star(df.drop(columns="y"), tmp_path / "q.star", apix=1.0)
