"""Contrast transfer function, RELION convention.

``ctf_2d`` follows RELION's ``CTF::getCTF``:

    chi(k)  = pi * lambda * dz(k) * |k|^2 + pi/2 * Cs * lambda^3 * |k|^4 - phase_shift - atan(w / sqrt(1 - w^2))
    dz(k)   = -(dU + dV)/2 - (dU - dV)/2 * cos(2 (atan2(ky, kx) - angle))
    CTF(k)  = -sin(chi(k)) * exp(-B |k|^2 / 4)

with defocus ``dU, dV`` in Å (positive = underfocus), ``w`` the amplitude contrast,
``Cs`` in Å and ``lambda`` the relativistic electron wavelength in Å. ``CTF(0) = w``
and the CTF is positive at low frequency (RELION: it multiplies a projection whose
protein density is positive).

Layout: **unshifted FFT layout**, zero frequency at ``[0, 0]``; rows are
``ky = fftfreq(h) / apix``, columns ``kx = fftfreq(w) / apix`` (full) or
``rfftfreq(w) / apix`` (``rfft=True``, shape ``(h, w // 2 + 1)``), in 1/Å. ``x`` is the
column axis and ``y`` the row axis of ``image[y, x]``; the defocus angle is measured
from ``x`` towards ``y``.
"""

from __future__ import annotations

import math

import torch


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV."""
    v = voltage_kv * 1e3
    return 12.2643247 / math.sqrt(v * (1.0 + v * 0.978466e-6))


def _t(x, dtype, device) -> torch.Tensor:
    return torch.as_tensor(x, dtype=dtype, device=device)[..., None, None]


def ctf_2d(
    shape: tuple[int, int],
    apix: float,
    defocus_u: torch.Tensor | float,
    defocus_v: torch.Tensor | float,
    defocus_angle: torch.Tensor | float,
    voltage: float = 300.0,
    cs: float = 2.7,
    amp_contrast: float = 0.1,
    phase_shift: torch.Tensor | float = 0.0,
    bfactor: torch.Tensor | float = 0.0,
    *,
    rfft: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Real 2D CTF (RELION sign convention) in the unshifted FFT layout.

    Parameters
    ----------
    shape
        Image shape ``(h, w)`` in pixels.
    apix
        Pixel size, Å/px.
    defocus_u, defocus_v
        Defocus in Å (positive = underfocus), scalars or ``(...)`` tensors.
    defocus_angle
        Astigmatism angle in degrees (from x towards y).
    voltage
        Acceleration voltage, kV.
    cs
        Spherical aberration, mm.
    amp_contrast
        Amplitude contrast fraction, 0-1.
    phase_shift
        Extra phase shift (phase plate), degrees.
    bfactor
        Envelope B-factor, Å^2 (``exp(-B k^2 / 4)``).
    rfft
        Return only the ``w // 2 + 1`` non-negative ``kx`` columns (for ``rfft2``).

    Returns
    -------
    torch.Tensor
        ``(..., h, w)`` or ``(..., h, w // 2 + 1)`` CTF values in [-1, 1].
    """
    h, w = shape
    calc = torch.float64
    ky = torch.fft.fftfreq(h, d=apix, dtype=calc, device=device)[:, None]
    kx = (torch.fft.rfftfreq(w, d=apix, dtype=calc, device=device) if rfft
          else torch.fft.fftfreq(w, d=apix, dtype=calc, device=device))[None, :]
    lam = electron_wavelength(voltage)
    k2 = kx**2 + ky**2
    du, dv = _t(defocus_u, calc, device), _t(defocus_v, calc, device)
    ang = torch.deg2rad(_t(defocus_angle, calc, device))
    dz = -(du + dv) / 2 - (du - dv) / 2 * torch.cos(2 * (torch.atan2(ky, kx) - ang))
    k3 = math.atan(amp_contrast / math.sqrt(1.0 - amp_contrast**2))
    chi = (math.pi * lam * dz * k2 + math.pi / 2 * cs * 1e7 * lam**3 * k2**2
           - torch.deg2rad(_t(phase_shift, calc, device)) - k3)
    ctf = -torch.sin(chi) * torch.exp(-_t(bfactor, calc, device) / 4 * k2)
    return ctf.to(dtype)


def apply_ctf(image: torch.Tensor, apix: float, defocus_u, defocus_v, defocus_angle, **kwargs) -> torch.Tensor:
    """Convolve ``(..., h, w)`` images with the CTF (multiply their rfft2 by it).

    Extra keyword arguments go to :func:`ctf_2d` (``voltage``, ``cs``,
    ``amp_contrast``, ``phase_shift``, ``bfactor``). The convolution is periodic;
    pad the image first where wrap-around matters.
    """
    h, w = image.shape[-2:]
    ctf = ctf_2d((h, w), apix, defocus_u, defocus_v, defocus_angle, rfft=True,
                 dtype=image.dtype if image.is_floating_point() else torch.float32,
                 device=image.device, **kwargs)
    return torch.fft.irfft2(torch.fft.rfft2(image) * ctf, s=(h, w)).to(image.dtype)


__all__ = ["ctf_2d", "apply_ctf", "electron_wavelength"]
