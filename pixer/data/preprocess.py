"""Micrograph pre-processing: Fourier-crop downsampling and robust normalisation.

PIXER works on micrographs binned so that a particle fits the network's
receptive field (Topaz-style practice is 4-8 Å/px), clipped at mean ± k·σ.
Here binning is a Fourier crop (an ideal low-pass followed by resampling, no
aliasing) and the clipping uses robust statistics (median and MAD) so that
carbon, ice and contamination do not set the scale.

NaNs are not handled here: micrograph readers are expected to reject
non-finite data at read time (with a :class:`pixer.errors.PixerError`); a NaN
that reaches these functions propagates to the output.

Both functions accept numpy arrays or torch tensors (any device) and return the
same kind.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import torch

Array = np.ndarray | torch.Tensor

#: MAD → σ for a Gaussian: σ = 1.4826 · median(|x - median(x)|).
MAD_TO_SIGMA = 1.482602218505602


def _even_size(n: int, factor: float) -> int:
    """Even output size closest to ``n / factor`` (at least 2, at most ``n``)."""
    m = 2 * int(math.floor(n / factor / 2.0 + 0.5))  # ties round up
    return int(min(max(m, 2), n))


def crop_shape(shape: tuple[int, int], apix_in: float, apix_out: float) -> tuple[int, int]:
    """Output shape of :func:`fourier_crop`.

    Parameters
    ----------
    shape
        ``(h, w)`` of the input, pixels.
    apix_in, apix_out
        Input and requested pixel sizes, Å/px.

    Returns
    -------
    (h_out, w_out)
        Each even and ``round(n · apix_in / apix_out)`` (the input size when no
        downsampling is needed). The exact pixel size along each axis is
        ``apix_in · h / h_out`` and ``apix_in · w / w_out``; these differ by at
        most about ``1 / min(h_out, w_out)`` relative.
    """
    h, w = int(shape[0]), int(shape[1])
    if not (apix_in > 0 and apix_out > 0):
        raise ValueError(f"pixel sizes must be positive, got {apix_in} and {apix_out} Å/px")
    if apix_out <= apix_in:
        return h, w
    factor = apix_out / apix_in
    h_out, w_out = _even_size(h, factor), _even_size(w, factor)
    if h_out >= h and w_out >= w:
        return h, w
    return h_out, w_out


def fourier_crop(image: Array, apix_in: float, apix_out: float) -> tuple[Array, float]:
    """Downsample by cropping the centred Fourier transform.

    Parameters
    ----------
    image
        ``(..., h, w)`` real image(s), any float or integer dtype; numpy or torch.
    apix_in
        Pixel size of ``image``, Å/px.
    apix_out
        Requested pixel size, Å/px. When ``apix_out <= apix_in`` nothing is done
        (never upsamples): a float copy and ``apix_in`` are returned.

    Returns
    -------
    image
        ``(..., h_out, w_out)`` float32 (same kind as the input), with
        ``(h_out, w_out) = crop_shape((h, w), apix_in, apix_out)``. The mean is
        preserved and Fourier coefficients below the output Nyquist frequency
        are the input's (scaled by ``h_out·w_out / (h·w)``). Output pixel ``i``
        sits at input position ``i · h / h_out`` (origin at pixel 0 on both grids).
    apix
        Achieved pixel size, Å/px: the mean of the per-axis values
        ``apix_in · h / h_out`` and ``apix_in · w / w_out`` (equal for square
        images; use :func:`crop_shape` for the exact per-axis values).
    """
    is_torch = isinstance(image, torch.Tensor)
    h, w = int(image.shape[-2]), int(image.shape[-1])
    h_out, w_out = crop_shape((h, w), apix_in, apix_out)
    if (h_out, w_out) == (h, w):
        if is_torch:
            return image.to(torch.float32).clone(), float(apix_in)
        return np.array(image, dtype=np.float32, copy=True), float(apix_in)

    apix = 0.5 * (apix_in * h / h_out + apix_in * w / w_out)
    scale = (h_out * w_out) / (h * w)
    # Rows of the real FFT, centred: keep frequencies -h_out/2 .. h_out/2 - 1;
    # columns: keep 0 .. w_out/2 (the Nyquist column is made real by irfft).
    r0 = h // 2 - h_out // 2
    if is_torch:
        f = torch.fft.rfft2(image.to(torch.float32))
        f = torch.fft.fftshift(f, dim=-2)[..., r0 : r0 + h_out, : w_out // 2 + 1]
        f = torch.fft.ifftshift(f, dim=-2)
        out = torch.fft.irfft2(f, s=(h_out, w_out)) * scale
        return out.to(torch.float32), apix
    f = scipy.fft.rfft2(np.asarray(image, dtype=np.float32))
    f = scipy.fft.fftshift(f, axes=-2)[..., r0 : r0 + h_out, : w_out // 2 + 1]
    f = scipy.fft.ifftshift(f, axes=-2)
    out = scipy.fft.irfft2(f, s=(h_out, w_out)) * scale
    return out.astype(np.float32, copy=False), apix


def normalize(image: Array, k: float = 3.0) -> Array:
    """Robust clip at median ± k·σ_MAD, then scale to zero mean and unit variance.

    PIXER clips at mean ± k·σ; with carbon edges or contamination in view the
    plain mean and σ are dominated by them, so the median and the MAD-based σ
    (``1.4826 · median|x - median|``) are used for the clip. The clipped image
    is then shifted and scaled to zero mean and unit variance. Statistics are
    taken per image over the last two axes.

    Parameters
    ----------
    image
        ``(..., h, w)`` numpy array or torch tensor.
    k
        Clip half-width in robust σ (PIXER uses 2-3). ``k <= 0`` or ``inf``
        disables clipping.

    Returns
    -------
    ``(..., h, w)`` float32 of the same kind. A constant image becomes zeros.
    NaNs propagate (callers check for them when reading micrographs).
    """
    is_torch = isinstance(image, torch.Tensor)
    if is_torch:
        x = image.to(torch.float32)
        flat = x.reshape(*x.shape[:-2], -1)
        med = flat.median(dim=-1, keepdim=True).values
        sigma = MAD_TO_SIGMA * (flat - med).abs().median(dim=-1, keepdim=True).values
        if k > 0 and math.isfinite(k):
            sigma = torch.where(sigma > 0, sigma, flat.std(dim=-1, keepdim=True))
            flat = torch.minimum(torch.maximum(flat, med - k * sigma), med + k * sigma)
        mean = flat.mean(dim=-1, keepdim=True)
        std = flat.std(dim=-1, keepdim=True, correction=0)
        out = torch.where(std > 0, (flat - mean) / torch.where(std > 0, std, 1.0), 0.0)
        return out.reshape(x.shape)
    x = np.asarray(image, dtype=np.float32)
    axes = (-2, -1)
    med = np.median(x, axis=axes, keepdims=True)
    sigma = MAD_TO_SIGMA * np.median(np.abs(x - med), axis=axes, keepdims=True)
    if k > 0 and math.isfinite(k):
        sigma = np.where(sigma > 0, sigma, x.std(axis=axes, keepdims=True))
        x = np.clip(x, med - k * sigma, med + k * sigma)
    mean = x.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x.std(axis=axes, keepdims=True, dtype=np.float64)
    safe = np.where(std > 0, std, 1.0)
    out = np.where(std > 0, (x - mean) / safe, 0.0)
    return out.astype(np.float32, copy=False)


def prepare(image: Array, apix: float, target_apix: float, k: float = 3.0) -> tuple[Array, float]:
    """Fourier-crop to ``target_apix`` then :func:`normalize`.

    Parameters
    ----------
    image
        ``(..., h, w)`` micrograph(s), numpy or torch.
    apix
        Pixel size of ``image``, Å/px.
    target_apix
        Pixel size the network expects, Å/px (never upsampled: if the
        micrograph is already coarser it is used as is).
    k
        Robust clip half-width, see :func:`normalize`.

    Returns
    -------
    image
        ``(..., h', w')`` float32, zero mean, unit variance.
    apix_used
        Achieved pixel size, Å/px (see :func:`fourier_crop`).
    """
    small, apix_used = fourier_crop(image, apix, target_apix)
    return normalize(small, k), apix_used
