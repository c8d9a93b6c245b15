"""Physics checked against RELION itself (relion_project outputs) and invariants."""

from __future__ import annotations

import math
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile
import torch
import torch.nn.functional as F

from pixer.physics import (
    apply_ctf,
    ctf_2d,
    electron_wavelength,
    euler_to_matrix,
    fourier_volume,
    matrix_to_euler,
    project,
    project_matrices,
    shift_images,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PROJ = DATA / "relion_project"
RIBO_MAP = DATA / "maps" / "aspire__clean70SRibosome_vol_65p.mrc"
needs_data = pytest.mark.skipif(not PROJ.is_dir(), reason=f"shared test data not found at {DATA}")


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def corrs(p: torch.Tensor, imgs: np.ndarray) -> np.ndarray:
    return np.array([corr(x, y) for x, y in zip(p.numpy(), imgs)])


# ------------------------------------------------------------------ Euler angles

def test_euler_orthonormal_det1_and_roundtrip():
    g = torch.Generator().manual_seed(0)
    rot, psi = (torch.rand(50, generator=g, dtype=torch.float64) * 360 - 180 for _ in range(2))
    tilt = torch.rad2deg(torch.arccos(torch.rand(50, generator=g, dtype=torch.float64) * 2 - 1))
    a = euler_to_matrix(rot, tilt, psi)
    assert a.shape == (50, 3, 3)
    torch.testing.assert_close(a @ a.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(50, 3, 3))
    torch.testing.assert_close(torch.linalg.det(a), torch.ones(50, dtype=torch.float64))
    torch.testing.assert_close(euler_to_matrix(*matrix_to_euler(a)), a)


def test_euler_matches_relion_formula():
    # RELION: rot=90 alone gives A = [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]; tilt=90 alone [[0,0,-1],[0,1,0],[1,0,0]]
    torch.testing.assert_close(euler_to_matrix(90.0, 0.0, 0.0),
                               torch.tensor([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]], dtype=torch.float64))
    torch.testing.assert_close(euler_to_matrix(0.0, 90.0, 0.0),
                               torch.tensor([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]], dtype=torch.float64))
    # A = Rz(psi) Ry(tilt) Rz(rot)
    torch.testing.assert_close(euler_to_matrix(10.0, 20.0, 30.0),
                               euler_to_matrix(0.0, 0.0, 30.0) @ euler_to_matrix(0.0, 20.0, 0.0)
                               @ euler_to_matrix(10.0, 0.0, 0.0))


# ------------------------------------------------------------------ against RELION

def _ribosome(name: str):
    st = starfile.read(PROJ / "ribosome70S" / f"{name}.star", always_dict=True)
    p = st["particles"]
    imgs = mrcfile.read(PROJ / "ribosome70S" / f"{name}.mrcs")
    ox = p["rlnOriginX"] if "rlnOriginX" in p else p["rlnOriginXAngst"]  # optics pixel size is 1 Å
    oy = p["rlnOriginY"] if "rlnOriginY" in p else p["rlnOriginYAngst"]
    angles = [torch.tensor(p[c].to_numpy(dtype=float)) for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")]
    return angles, torch.tensor(np.stack([ox, oy], 1), dtype=torch.float64), imgs


def _ribosome_map(box: int, half_voxel: bool = False) -> torch.Tensor:
    """The 65^3 map, or its Fourier crop to 64^3 as ASPIRE made the 64-box inputs."""
    vol = torch.tensor(mrcfile.read(RIBO_MAP), dtype=torch.float64)
    if box == 65:
        return vol
    ft = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(vol)))[:64, :64, :64]
    if half_voxel:  # rln_proj_64 was made from a map moved by -0.5 voxel along x, y, z
        k = torch.fft.fftshift(torch.fft.fftfreq(64, dtype=torch.float64))
        ft = ft * torch.exp(2j * math.pi * 0.5 * (k[:, None, None] + k[None, :, None] + k[None, None, :]))
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(ft))).real * (64 / 65) ** 3  # keep the sum


@needs_data
@pytest.mark.parametrize("name, box, half_voxel", [
    ("rln_proj_65_centered", 65, False), ("rln_proj_65_shifted", 65, False), ("rln_proj_65", 65, False),
    ("rln_proj_64_shifted", 64, False), ("rln_proj_64", 64, True),
])
def test_ribosome_matches_relion(name, box, half_voxel):
    angles, origins, imgs = _ribosome(name)
    fvol = fourier_volume(_ribosome_map(box, half_voxel))
    # relion_project's odd boxes come out one pixel off d//2 (its inverse CenterFFT rolls
    # odd sizes by (d+1)//2): the image centre is at d//2 + 1, i.e. an extra origin of -1.
    extra = -1.0 if box % 2 else 0.0
    c = corrs(project(fvol, *angles, origins + extra), imgs)
    print(f"{name}: min {c.min():.6f} mean {c.mean():.6f}")
    assert c.min() >= 0.999
    # the sum of a projection is the sum of the map (pad 2 + gridding, like RELION)
    np.testing.assert_allclose(project(fvol, *angles, origins + extra).sum((1, 2)).numpy(), imgs.sum((1, 2)),
                               rtol=1e-3)


@needs_data
def test_wrong_conventions_fail():
    angles, origins, imgs = _ribosome("rln_proj_64_shifted")
    fvol = fourier_volume(_ribosome_map(64))
    right = corrs(project(fvol, *angles, origins), imgs)
    transposed = corrs(project(fvol, *angles, origins, transpose=True), imgs)
    flipped = corrs(project(fvol, *angles, -origins), imgs)
    assert right.min() > 0.999
    assert transposed.max() < 0.6
    assert flipped.max() < 0.6


@needs_data
def test_real_space_projector_agrees():
    angles, origins, imgs = _ribosome("rln_proj_64_shifted")
    c = corrs(project(_ribosome_map(64).float(), *angles, origins, method="real"), imgs)
    print(f"real-space projector: min {c.min():.5f} mean {c.mean():.5f}")
    assert c.min() >= 0.99


@needs_data
@pytest.mark.parametrize("mrcs, star, pad", [
    ("relion_proj_batch", "pyem.star", 1), ("relion_proj_batch_pfac2", "pyem.star", 2),
    ("relion_proj_batch_pfac3", "pyem.star", 3), ("relion_proj_star", "pyem_onerow.star", 1),
    ("relion_proj_star_pfac2", "pyem_onerow.star", 2), ("relion_proj_star_pfac3", "pyem_onerow.star", 3),
])
def test_pointmass_with_ctf_matches_relion(mrcs, star, pad):
    """All point-mass sets were made with --ctf true: projection, origin and CTF together."""
    st = starfile.read(PROJ / star, always_dict=True)
    p, o = st["particles"], st["optics"].iloc[0]
    imgs = mrcfile.read(PROJ / f"{mrcs}.mrcs").reshape(-1, 64, 64)
    p = p.iloc[: len(imgs)]
    apix = float(o["rlnImagePixelSize"])
    vol = torch.tensor(mrcfile.read(PROJ / "pointmass.mrc"), dtype=torch.float64)
    angles = [torch.tensor(p[c].to_numpy(dtype=float)) for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")]
    origins = torch.tensor(p[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(dtype=float)) / apix
    fvol = fourier_volume(vol, pad)
    proj = project(fvol, *angles, origins)
    defocus = [torch.tensor(p[c].to_numpy(dtype=float)) for c in ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")]
    img = apply_ctf(proj, apix, *defocus, voltage=float(o["rlnVoltage"]), cs=float(o["rlnSphericalAberration"]),
                    amp_contrast=float(o["rlnAmplitudeContrast"]))
    c = corrs(img, imgs)
    print(f"{mrcs}: min {c.min():.5f} mean {c.mean():.5f}")
    assert c.min() >= 0.99
    # without the CTF, or with the origin sign flipped, it clearly does not match
    assert corrs(proj, imgs).mean() < 0.3
    flipped = apply_ctf(project(fvol, *angles, -origins), apix, *defocus, voltage=float(o["rlnVoltage"]),
                        cs=float(o["rlnSphericalAberration"]), amp_contrast=float(o["rlnAmplitudeContrast"]))
    assert corrs(flipped, imgs).mean() < 0.3


# ------------------------------------------------------------------ invariants

def _blobs(d: int = 32) -> torch.Tensor:
    c = torch.arange(d, dtype=torch.float64) - d // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    vol = torch.zeros(d, d, d, dtype=torch.float64)
    for (bx, by, bz, s, w) in [(3, -2, 1, 2.5, 1.0), (-5, 4, -3, 2.0, 0.7), (1, 6, 5, 1.8, 0.5), (-2, -6, 2, 2.2, 0.8)]:
        vol += w * torch.exp(-((x - bx) ** 2 + (y - by) ** 2 + (z - bz) ** 2) / (2 * s * s))
    return vol


def test_projection_sum_and_scale():
    vol = _blobs()
    # without the gridding correction the zero frequency is sampled exactly: sums agree
    plain = fourier_volume(vol, gridding=False)
    p = project(plain, torch.tensor([10.0, 200.0]), torch.tensor([30.0, 100.0]), torch.tensor([-40.0, 5.0]))
    np.testing.assert_allclose(p.sum((1, 2)).numpy(), float(vol.sum()), rtol=1e-9)
    real = project(vol, torch.tensor([10.0, 200.0]), torch.tensor([30.0, 100.0]), torch.tensor([-40.0, 5.0]),
                   method="real")
    np.testing.assert_allclose(real.sum((1, 2)).numpy(), float(vol.sum()), rtol=1e-3)
    assert corr(real[0].numpy(), p[0].numpy()) > 0.999
    half = project(plain, 10.0, 30.0, -40.0, scale=2.0)
    assert half.shape == (1, 16, 16)
    np.testing.assert_allclose(float(half.sum()), float(vol.sum()) / 4, rtol=1e-4)
    # output pixel j sits on map position 2 j (both centres on d // 2)
    assert corr(half[0].numpy(), p[0, ::2, ::2].numpy()) > 0.99


def test_rotated_volume_equals_composed_angles():
    vol = _blobs()
    d = vol.shape[0]
    r = euler_to_matrix(25.0, 40.0, -70.0)
    # V'(x) = V(R^T x) by trilinear resampling
    c = torch.arange(d, dtype=torch.float64) - d // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    pts = torch.stack([x, y, z], -1) @ r + d // 2  # rows: (R^T x)^T = x^T R
    grid = (pts * 2 / (d - 1) - 1)[None]
    rotated = F.grid_sample(vol[None, None], grid, align_corners=True)[0, 0]
    a = euler_to_matrix(100.0, 60.0, 15.0)
    direct = project(rotated, *matrix_to_euler(a @ torch.eye(3, dtype=torch.float64)))
    composed = project_matrices(vol, (a @ r)[None])
    assert corr(direct[0].numpy(), composed[0].numpy()) > 0.995
    assert corr(direct[0].numpy(), project_matrices(vol, (a @ r.T)[None])[0].numpy()) < 0.95


def test_shift_and_back_is_identity():
    img = project(_blobs(), 10.0, 20.0, 30.0)
    s = torch.tensor([[2.3, -1.7]], dtype=torch.float64)
    torch.testing.assert_close(shift_images(shift_images(img, s), -s), img, atol=1e-10, rtol=0)
    # integer shift moves content by +s
    torch.testing.assert_close(shift_images(img, torch.tensor([[3.0, -2.0]])), torch.roll(img, (-2, 3), (-2, -1)),
                               atol=1e-10, rtol=0)
    # the origin convention: centre at d//2 - origin
    moved = project(_blobs(), 10.0, 20.0, 30.0, torch.tensor([[3.0, -2.0]]))
    torch.testing.assert_close(moved, torch.roll(img, (2, -3), (-2, -1)), atol=1e-8, rtol=0)


# ------------------------------------------------------------------ CTF

def test_ctf_origin_sign_and_first_zero():
    apix, df, lam = 1.0, 20000.0, electron_wavelength(300.0)
    c = ctf_2d((8, 2048), apix, df, df, 0.0, voltage=300.0, cs=0.0, amp_contrast=0.1)
    assert c.shape == (8, 2048)
    assert abs(float(c[0, 0]) - 0.1) < 1e-6  # CTF(0) = amplitude contrast
    assert float(c[0, 3]) > 0.1  # positive at low frequency (RELION sign)
    row = ctf_2d((1, 2048), apix, df, df, 0.0, cs=0.0, amp_contrast=0.0, rfft=True)[0].double()
    k = torch.fft.rfftfreq(2048, d=apix, dtype=torch.float64)
    first = int(torch.nonzero(row[1:] < 0)[0]) + 1
    k_zero = 1 / math.sqrt(lam * df)  # sin(pi lambda df k^2) = 0
    assert k[first - 1] <= k_zero <= k[first]


def test_ctf_astigmatism_axis_and_apply():
    apix, lam = 1.0, electron_wavelength(300.0)
    c = ctf_2d((2048, 2048), apix, 25000.0, 15000.0, 0.0, cs=0.0, amp_contrast=0.0, rfft=True)
    k = torch.fft.rfftfreq(2048, d=apix, dtype=torch.float64)
    along_x = int(torch.nonzero(c[0, 1:] < 0)[0]) + 1
    along_y = int(torch.nonzero(c[1:1025, 0] < 0)[0]) + 1
    assert abs(float(k[along_x]) - 1 / math.sqrt(lam * 25000)) < 1 / 2048  # defocus_u along x at angle 0
    assert abs(float(k[along_y]) - 1 / math.sqrt(lam * 15000)) < 1 / 2048
    img = torch.randn(2, 32, 32, dtype=torch.float64)
    out = apply_ctf(img, 2.0, torch.tensor([1e4, 2e4]), torch.tensor([1e4, 1.9e4]), torch.tensor([0.0, 30.0]))
    assert out.shape == img.shape and out.dtype == img.dtype
    ft = torch.fft.rfft2(img[1]) * ctf_2d((32, 32), 2.0, 2e4, 1.9e4, 30.0, rfft=True, dtype=torch.float64)
    torch.testing.assert_close(out[1], torch.fft.irfft2(ft, s=(32, 32)))
