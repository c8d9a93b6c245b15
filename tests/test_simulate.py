"""Density maps, micrograph simulation and dataset writing."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile

from pixer.errors import PixerError
from pixer.simulate import (
    demo_density,
    density_from_atoms,
    density_from_model,
    estimate_diameter,
    load_map,
    random_euler,
    simulate_dataset,
    simulate_micrograph,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STRUCT = DATA / "structures"
needs_data = pytest.mark.skipif(not STRUCT.is_dir(), reason=f"shared test data not found at {DATA}")


def _radial(vol: np.ndarray, apix: float) -> np.ndarray:
    d = vol.shape[0]
    c = np.arange(d) - d // 2
    return np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2) * apix


# ------------------------------------------------------------------ density

def test_density_from_atoms_centre_and_sum():
    vol = density_from_atoms(np.array([[10.0, -4.0, 3.0]]), np.array([6.0]), 2.0, box=20)
    assert vol.shape == (20, 20, 20) and vol.dtype == np.float32
    assert np.unravel_index(vol.argmax(), vol.shape) == (10, 10, 10)  # centre of mass -> d//2
    assert abs(vol.sum() - 6.0) < 1e-4


@pytest.mark.parametrize("kind, lo, hi", [("apoferritin", 110, 135), ("small", 45, 75), ("ribosome", 220, 280)])
def test_demo_sizes(kind, lo, hi):
    apix = 4.0 if kind == "ribosome" else 3.0
    vol = demo_density(kind, apix)
    assert lo <= estimate_diameter(vol, apix) <= hi
    np.testing.assert_array_equal(vol, demo_density(kind, apix))  # deterministic
    if kind == "apoferritin":
        r = _radial(vol, apix)
        assert vol[r < 30].mean() < 0.01 * vol[(r > 45) & (r < 55)].mean()  # hollow
        rg = np.sqrt((vol * r**2).sum() / vol.sum())
        assert 45 < rg < 58


def test_unknown_demo():
    with pytest.raises(PixerError):
        demo_density("banana", 2.0)


@needs_data
def test_density_from_model_real_pdb():
    vol = density_from_model(STRUCT / "7a4m_chainA_box.pdb", 2.0)
    assert 40 <= estimate_diameter(vol, 2.0) <= 75  # one apoferritin chain
    assert vol.shape[0] * 2.0 < 110
    big = density_from_model(STRUCT / "8zpm.cif", 4.0)
    assert big.ndim == 3 and big.sum() > 0


def test_load_map_errors(tmp_path):
    bad = tmp_path / "flat.mrc"
    with mrcfile.new(bad) as m:
        m.set_data(np.zeros((4, 8, 8), np.float32))
        m.voxel_size = 1.0
    with pytest.raises(PixerError, match="cubic"):
        load_map(bad)
    ok = tmp_path / "cube.mrc"
    with mrcfile.new(ok) as m:
        m.set_data(np.zeros((8, 8, 8), np.float32))
    with pytest.raises(PixerError, match="voxel size"):
        load_map(ok)
    assert load_map(ok, apix=5.0)[1] == 5.0
    with pytest.raises(PixerError):
        load_map(tmp_path / "missing.mrc")


# ------------------------------------------------------------------ micrograph

@pytest.fixture(scope="module")
def apo4():
    return demo_density("apoferritin", 4.0)


def test_random_euler_uniform():
    rot, tilt, psi = random_euler(np.random.default_rng(0), 20000)
    assert rot.min() >= -180 and rot.max() < 180 and psi.min() >= -180
    assert abs(np.cos(np.radians(tilt)).mean()) < 0.02  # uniform in cos(tilt)
    assert abs(np.mean(tilt < 60) - 0.25) < 0.02


def test_micrograph_snr_mask_and_table(apo4):
    res = simulate_micrograph(apo4, 4.0, (384, 320), 4.0, 30, -6.0, np.random.default_rng(1),
                              interference=dict(carbon=1.0, contaminants=1.0, aggregates=2.0))
    df, apix = res.particles, 4.0
    assert res.image.shape == (384, 320) and res.image.dtype == np.float32
    assert res.mask.dtype == np.uint8 and res.junk_mask.dtype == np.uint8
    assert len(df) > 5
    noise = res.image - res.signal - res.background
    measured = 10 * np.log10(np.var(res.signal[res.mask > 0]) / np.var(noise))
    assert abs(measured - (-6.0)) < 0.5
    cx = df.x - df.origin_x_A / apix
    cy = df.y - df.origin_y_A / apix
    assert (np.abs(df.origin_x_A) < 15).all() and (df.x == np.round(df.x)).all()
    assert res.mask[np.round(cy).astype(int), np.round(cx).astype(int)].all()  # mask covers true centres
    assert not res.junk_mask[np.round(cy).astype(int), np.round(cx).astype(int)].any()
    d = np.hypot(cx.to_numpy()[:, None] - cx.to_numpy(), cy.to_numpy()[:, None] - cy.to_numpy())
    assert d[np.triu_indices(len(df), 1)].min() >= res.params["diameter_A"] / apix - 1e-6
    for col in ("micrograph", "rot", "tilt", "psi", "defocus_u", "defocus_v", "defocus_angle", "voltage", "cs",
                "amp_contrast", "image_apix"):
        assert col in df.columns
    # protein is darker than the ice: the low-passed signal is negative on particles
    assert res.signal[res.mask > 0].mean() < res.signal[res.mask == 0].mean()


def _centre_pixels(particles, apix: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (column, row) of each particle's true centre: coordinate minus origin (CONTRACTS.md)."""
    cx = np.round(particles.x - particles.origin_x_A / apix).astype(int)
    cy = np.round(particles.y - particles.origin_y_A / apix).astype(int)
    return cx, cy


def test_particles_on_carbon_only_when_asked(apo4):
    """interference["on_carbon"]: particles may also sit on the carbon film; without it no centre
    is on junk; and the key costs no random draw when absent or 0."""
    kw = {"carbon": 1.0, "contaminants": 1.0, "aggregates": 1.0}
    rng_seed = 5
    args = (apo4, 4.0, (384, 384), 4.0, 60, -6.0)

    def on_junk(res):
        cx, cy = _centre_pixels(res.particles, 4.0)
        return res.junk_mask[cy, cx].astype(bool), res.mask[cy, cx].astype(bool)

    off = simulate_micrograph(*args, np.random.default_rng(rng_seed), interference=kw)
    assert not on_junk(off)[0].any()
    zero = simulate_micrograph(*args, np.random.default_rng(rng_seed), interference={**kw, "on_carbon": 0.0})
    assert np.array_equal(zero.image, off.image)  # same stream: no draw for an absent / zero probability
    on = simulate_micrograph(*args, np.random.default_rng(rng_seed), interference={**kw, "on_carbon": 1.0})
    junk, masked = on_junk(on)
    assert junk.sum() >= 3 and masked.all()  # some particles on the carbon, each in the particle mask
    assert len(on.particles) > len(off.particles)


def test_debris_only_when_asked(apo4):
    """interference["debris"]: small dark specks and strands, marked as junk, with no particle
    centre on them; absent or 0 it costs no random draw."""
    kw = {"carbon": 0.0, "contaminants": 0.0, "aggregates": 0.0, "ice_gradient": 0.0}
    args = (apo4, 4.0, (384, 384), 4.0, 40, -10.0)
    off = simulate_micrograph(*args, np.random.default_rng(8), interference=kw)
    zero = simulate_micrograph(*args, np.random.default_rng(8), interference={**kw, "debris": 0.0})
    assert np.array_equal(zero.image, off.image)
    assert not off.junk_mask.any() and np.abs(off.background).max() == 0
    on = simulate_micrograph(*args, np.random.default_rng(8), interference={**kw, "debris": 12.0})
    sigma = on.params["noise_sigma"]
    assert on.junk_mask.any() and on.background.min() < -0.7 * sigma  # darker than the noise level
    from scipy import ndimage as ndi
    labels, n = ndi.label(on.background < -0.3 * sigma)
    assert n >= 4
    d_px = on.params["diameter_A"] / 4.0
    sizes = [max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) for sl in ndi.find_objects(labels)]
    assert max(sizes) < 2.5 * d_px  # small: specks up to strands of about a diameter and a half
    cx, cy = _centre_pixels(on.particles, 4.0)
    assert len(on.particles) > 10 and not on.junk_mask[cy, cx].any()
    # everything dark is junk: the debris lies inside the junk mask
    assert on.junk_mask[on.background < -0.3 * sigma].all()


def test_isolated_particle_centre(apo4):
    """The CTF-free projection is centred on x - origin_x_A / apix (also with resampling)."""
    vol2 = demo_density("apoferritin", 2.0)
    for vol, vapix in ((apo4, 4.0), (vol2, 2.0)):
        res = simulate_micrograph(vol, vapix, (128, 128), 4.0, 1, 0.0, np.random.default_rng(3), interference=False)
        p = res.particles.iloc[0]
        yy, xx = np.mgrid[0:128, 0:128]
        w = res.clean
        com = ((w * xx).sum() / w.sum(), (w * yy).sum() / w.sum())
        assert abs(com[0] - (p.x - p.origin_x_A / 4.0)) < 0.3
        assert abs(com[1] - (p.y - p.origin_y_A / 4.0)) < 0.3


def test_empty_micrograph_and_determinism(apo4):
    a = simulate_micrograph(apo4, 4.0, (128, 128), 4.0, 0, -10.0, np.random.default_rng(7))
    b = simulate_micrograph(apo4, 4.0, (128, 128), 4.0, 0, -10.0, np.random.default_rng(7))
    assert len(a.particles) == 0 and a.mask.sum() == 0 and a.params["noise_sigma"] > 0
    np.testing.assert_array_equal(a.image, b.image)


# ------------------------------------------------------------------ dataset

def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dataset_layout_and_byte_identical(tmp_path):
    kw = dict(n=2, size=96, apix=8.0, snr_db=-5.0, seed=11, particles_per_micrograph=6, progress=False)
    summary = simulate_dataset(tmp_path / "a", **kw)
    simulate_dataset(tmp_path / "b", **kw)
    fa, fb = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert fa.keys() == fb.keys()
    assert [k for k in fa if fa[k] != fb[k]] == []
    for name in ("micrographs/mic_0000.mrc", "micrographs/mic_0001.mrc", "micrographs.star", "particles.star",
                 "coords/mic_0000.star", "truth/mic_0000_clean.mrc", "truth/mic_0000_mask.mrc",
                 "truth/mic_0000_junk.mrc", "map.mrc", "simulation.json"):
        assert name in fa, name
    with mrcfile.open(tmp_path / "a" / "micrographs" / "mic_0000.mrc") as m:
        assert m.data.shape == (96, 96) and abs(float(m.voxel_size.x) - 8.0) < 1e-6
    star = starfile.read(tmp_path / "a" / "particles.star", always_dict=True)
    parts = star["particles"]
    assert len(parts) == summary["n_particles"] > 0
    for col in ("rlnCoordinateX", "rlnAngleRot", "rlnOriginXAngst", "rlnDefocusU", "rlnMicrographName"):
        assert col in parts.columns
    assert set(parts.rlnMicrographName) <= {"micrographs/mic_0000.mrc", "micrographs/mic_0001.mrc"}
    assert 100 < summary["particle_diameter_A"] < 160  # coarse 8 Å voxels
    # micrographs are independent of generation order: a run with n=1 makes the same first file
    simulate_dataset(tmp_path / "c", **{**kw, "n": 1})
    assert (tmp_path / "c" / "micrographs" / "mic_0000.mrc").read_bytes() == fa["micrographs/mic_0000.mrc"]


def test_min_distance_packs_particles_so_that_they_touch(tmp_path):
    """Crowded grids (EMPIAR-10059 covers ~60 % of the area): with --min-distance below the
    diameter more particles fit, neighbours come closer than a diameter, never below the limit."""
    from scipy.spatial import cKDTree

    kw = dict(n=1, size=256, apix=4.0, snr_db=-5.0, seed=3, particles_per_micrograph=200, interference=False,
              progress=False)
    loose = simulate_dataset(tmp_path / "loose", **kw)
    dense = simulate_dataset(tmp_path / "dense", **kw, min_distance_A=0.8 * loose["particle_diameter_A"])
    d_px = loose["particle_diameter_A"] / 4.0
    xy = {}
    for name in ("loose", "dense"):
        p = starfile.read(tmp_path / name / "particles.star", always_dict=True)["particles"]
        xy[name] = (p[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(float)  # true centres
                    - p[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(float) / 4.0)
    nn = {k: cKDTree(v).query(v, k=2)[0][:, 1] for k, v in xy.items()}
    assert nn["loose"].min() >= d_px - 1e-6
    assert nn["dense"].min() >= 0.8 * d_px - 1e-6 and nn["dense"].min() < d_px
    assert len(xy["dense"]) > 1.2 * len(xy["loose"])
    assert dense["min_distance_A"] == pytest.approx(0.8 * loose["particle_diameter_A"], abs=1e-3)
