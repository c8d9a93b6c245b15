"""Projection of a 3D map along RELION Euler angles.

Conventions (checked against ``relion_project`` output, see ``tests/test_physics.py``):

* The volume is indexed ``vol[z, y, x]`` as mrcfile returns it; images ``img[y, x]``.
* Box centre is voxel/pixel ``d // 2`` along every axis (RELION's Xmipp origin).
  ``relion_project`` itself writes odd-size images one pixel further (at ``d // 2 + 1``,
  consistent with its inverse ``CenterFFT`` rolling odd sizes by ``(d + 1) // 2``): to
  reproduce its odd-box output exactly, add -1 to both origins. Even boxes agree as they are.
* ``P(x, y) = sum_z V(A^T (x, y, z))`` with ``A = euler_to_matrix(rot, tilt, psi)``
  and coordinates relative to the centre; in Fourier space the central slice samples
  ``F(A^T (kx, ky, 0))``.
* ``shifts_px = (sx, sy)`` is RELION's ``rlnOriginX/Y`` in pixels
  (``rlnOriginXAngst / apix``). ``relion_project`` moves the projected particle by
  **minus** the origin: the particle centre lands at ``d // 2 - origin``, consistent
  with "true centre = rlnCoordinate - rlnOrigin".

The default method is a Fourier slice with trilinear interpolation on a padded,
gridding-corrected transform, exactly as RELION's ``Projector`` does it; a real-space
line integral (trilinear ``grid_sample`` on the rotated grid) is available with
``method="real"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pixer.physics.euler import euler_to_matrix


@dataclass(frozen=True)
class FourierVolume:
    """Padded, centred 3D Fourier transform of a map, ready for slicing.

    Attributes
    ----------
    data
        ``(1, 2, D, D, D)`` float tensor, real and imaginary parts; zero frequency
        at index ``D // 2``; axes ``(kz, ky, kx)``.
    size
        Box size ``d`` of the original map (voxels).
    pad
        Padding factor; ``D = round(pad * d)``.
    """

    data: torch.Tensor
    size: int
    pad: float

    @property
    def padded(self) -> int:
        return self.data.shape[-1]


def _centre_pad(volume: torch.Tensor, size: int) -> torch.Tensor:
    d = volume.shape[-1]
    out = volume.new_zeros((size, size, size))
    o = size // 2 - d // 2
    out[o:o + d, o:o + d, o:o + d] = volume
    return out


def fourier_volume(volume: torch.Tensor, pad: float = 2.0, gridding: bool = True) -> FourierVolume:
    """Prepare a map for :func:`project` (do it once per map, slice many times).

    Parameters
    ----------
    volume
        ``(d, d, d)`` real map, ``vol[z, y, x]``.
    pad
        Padding factor of the Fourier grid (RELION ``--pad``, default 2).
    gridding
        Divide the map by ``sinc^2(r / D)`` first (RELION's gridding correction for
        trilinear interpolation in Fourier space).
    """
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise ValueError(f"volume must be cubic (d, d, d), got {tuple(volume.shape)}")
    vol = volume.to(torch.float64 if volume.dtype == torch.float64 else torch.float32)
    d = vol.shape[-1]
    size = int(round(pad * d))
    if gridding:
        c = torch.arange(d, device=vol.device, dtype=vol.dtype) - d // 2
        r = torch.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2) / size
        vol = vol / torch.sinc(r) ** 2
    vol = _centre_pad(vol, size)
    ft = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(vol)))
    data = torch.stack([ft.real, ft.imag])[None].contiguous()
    return FourierVolume(data=data, size=d, pad=size / d)


def _as_batch(x: torch.Tensor | float, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64, device=device).reshape(-1)


def phase_shift_rfft(ft: torch.Tensor, shifts_px: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Move images by ``shifts_px`` (content goes to ``+shift``) in rfft space.

    Parameters
    ----------
    ft
        ``(..., h, w // 2 + 1)`` complex rfft2 of ``(h, w)`` images.
    shifts_px
        ``(..., 2)`` shifts ``(sx, sy)`` in pixels (x = column).
    size
        ``(h, w)``.
    """
    h, w = size
    ky = torch.fft.fftfreq(h, device=ft.device, dtype=torch.float64)
    kx = torch.fft.rfftfreq(w, device=ft.device, dtype=torch.float64)
    s = shifts_px.to(torch.float64)
    ph = kx * s[..., 0, None, None] + ky[:, None] * s[..., 1, None, None]
    return ft * torch.polar(torch.ones_like(ph), -2 * math.pi * ph).to(ft.dtype)


def shift_images(images: torch.Tensor, shifts_px: torch.Tensor) -> torch.Tensor:
    """Sub-pixel shift of ``(..., h, w)`` images by ``(..., 2)`` ``(sx, sy)`` px (periodic)."""
    h, w = images.shape[-2:]
    ft = phase_shift_rfft(torch.fft.rfft2(images), shifts_px, (h, w))
    return torch.fft.irfft2(ft, s=(h, w)).to(images.dtype)


def _slice_rfft(fvol: FourierVolume, mats: torch.Tensor, size: int, scale: float) -> torch.Tensor:
    """Central slices ``(b, size, size // 2 + 1)`` complex, unshifted rfft layout.

    Output frequency index ``k`` (cycles per ``size`` output pixels) is map
    frequency ``k * d / (scale * size)`` (cycles per ``d`` voxels); frequencies at
    or beyond the map's Nyquist radius ``d // 2`` are zero (as in RELION).
    """
    d, padded = fvol.size, fvol.padded
    dev, dt = fvol.data.device, fvol.data.dtype
    ky = torch.fft.fftfreq(size, d=1.0 / size, device=dev, dtype=dt)  # integer frequencies
    kx = torch.fft.rfftfreq(size, d=1.0 / size, device=dev, dtype=dt)
    k2 = torch.stack(torch.broadcast_tensors(kx[None, :], ky[:, None]), -1) * (d / (scale * size))
    # q = A^T (kx, ky, 0), i.e. q_j = sum_i A[i, j] k_i, in padded-grid units
    q = torch.einsum("hwi,bij->bhwj", k2, mats[..., :2, :].to(dt)) * fvol.pad
    grid = q * (2.0 / (padded - 1)) + (2.0 * (padded // 2) / (padded - 1) - 1.0)
    b = mats.shape[0]
    g = grid.reshape(1, 1, b * size, kx.numel(), 3)
    s = F.grid_sample(fvol.data, g, mode="bilinear", padding_mode="zeros", align_corners=True)
    s = s.reshape(2, b, size, kx.numel())
    keep = (k2**2).sum(-1) < (d // 2) ** 2
    return torch.complex(s[0] * keep, s[1] * keep)


def project(
    volume: torch.Tensor | FourierVolume,
    rot: torch.Tensor | float,
    tilt: torch.Tensor | float,
    psi: torch.Tensor | float,
    shifts_px: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor:
    """Project a map at RELION Euler angles.

    Parameters
    ----------
    volume
        ``(d, d, d)`` map ``vol[z, y, x]`` or a :class:`FourierVolume`.
    rot, tilt, psi
        ``(b,)`` angles in degrees (or scalars).
    shifts_px
        ``(b, 2)`` RELION origins ``(rlnOriginX, rlnOriginY)`` in output pixels, or
        None. The particle centre ends up at ``size // 2 - origin``.
    **kwargs
        ``method``, ``pad``, ``size``, ``scale``, ``transpose``: see
        :func:`project_matrices`.

    Returns
    -------
    torch.Tensor
        ``(b, size, size)`` projections (``size = d`` by default).
    """
    dev = volume.data.device if isinstance(volume, FourierVolume) else volume.device
    mats = euler_to_matrix(_as_batch(rot, dev), _as_batch(tilt, dev), _as_batch(psi, dev))
    return project_matrices(volume, mats, shifts_px, **kwargs)


def project_matrices(
    volume: torch.Tensor | FourierVolume,
    matrices: torch.Tensor,
    shifts_px: torch.Tensor | None = None,
    *,
    method: str = "fourier",
    pad: float = 2.0,
    size: int | None = None,
    scale: float = 1.0,
    transpose: bool = False,
) -> torch.Tensor:
    """Project a map with ``(b, 3, 3)`` rotation matrices ``A`` (``P = sum_z V(A^T r)``).

    Parameters
    ----------
    volume
        ``(d, d, d)`` map or a :class:`FourierVolume` (fourier method only).
    matrices
        ``(b, 3, 3)`` RELION rotation matrices (:func:`euler_to_matrix`).
    shifts_px
        ``(b, 2)`` RELION origins in output pixels (centre goes to ``size//2 - origin``).
    method
        ``"fourier"`` (central slice, RELION's algorithm, default) or ``"real"``
        (trilinear line integral, no resampling).
    pad
        Fourier padding factor when ``volume`` is a plain map (RELION default 2).
    size
        Output box in pixels (default: ``round(d / scale)``).
    scale
        Output pixel size / map voxel size. Values are kept intensive (a line
        integral in map-voxel units at each position), so the image sum is
        ``sum(V) / scale**2``.
    transpose
        Use ``A`` instead of ``A^T`` (the wrong convention; for tests only).
    """
    mats = matrices.transpose(-1, -2) if transpose else matrices
    dev = mats.device
    shifts = None if shifts_px is None else torch.as_tensor(shifts_px, dtype=torch.float64, device=dev).reshape(-1, 2)
    if method == "real":
        if isinstance(volume, FourierVolume) or scale != 1.0 or size not in (None, volume.shape[-1]):
            raise ValueError("method='real' needs the map itself, scale=1 and size=d")
        images = _project_real(volume, mats)
        return images if shifts is None else shift_images(images, -shifts)
    if method != "fourier":
        raise ValueError(f"unknown projection method {method!r}")
    fvol = volume if isinstance(volume, FourierVolume) else fourier_volume(volume, pad)
    size = int(round(fvol.size / scale)) if size is None else int(size)
    ft = _slice_rfft(fvol, mats, size, scale)
    # put the centre at size // 2 and apply the RELION origin (centre at size//2 - origin)
    centre = torch.full((mats.shape[0], 2), float(size // 2), dtype=torch.float64, device=dev)
    if shifts is not None:
        centre = centre - shifts
    ft = phase_shift_rfft(ft, centre, (size, size))
    out = torch.fft.irfft2(ft, s=(size, size))
    if scale != 1.0:
        out = out / scale**2
    return out.to(fvol.data.dtype)


def _project_real(volume: torch.Tensor, mats: torch.Tensor, chunk: int = 2**24) -> torch.Tensor:
    """Line integrals ``sum_z V(A^T r)`` by trilinear sampling; ``(b, d, d)``."""
    d = volume.shape[-1]
    vol = volume.to(torch.float32)[None, None]
    c = torch.arange(d, device=volume.device, dtype=torch.float32) - d // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    r = torch.stack([x, y, z], -1)  # (z, y, x, 3) as (x, y, z)
    out = []
    per = max(1, chunk // d**3)
    for i in range(0, mats.shape[0], per):
        m = mats[i:i + per].to(torch.float32)
        p = torch.einsum("zyxi,bij->bzyxj", r, m) + d // 2  # A^T r: p_j = sum_i A[i, j] r_i
        g = (p * (2.0 / (d - 1)) - 1.0).reshape(1, -1, d, d, 3)
        s = F.grid_sample(vol, g, mode="bilinear", padding_mode="zeros", align_corners=True)
        out.append(s.reshape(-1, d, d, d).sum(1))
    return torch.cat(out).to(volume.dtype)


__all__ = ["FourierVolume", "fourier_volume", "project", "project_matrices", "shift_images", "phase_shift_rfft"]
