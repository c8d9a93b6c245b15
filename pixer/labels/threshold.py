"""From a projection to a particle mask: the label threshold.

* ``fraction`` (default 0.1): a pixel belongs to a particle where the particle's
  CTF-free projection exceeds ``fraction`` × that projection's maximum. A
  per-projection rule makes the label independent of the map's scale and of
  each view's thickness; 0.1 is the rule ``pixer simulate`` uses for its
  ground-truth masks, so labels and truth are comparable.
* ``iso``: the map is binarised at an iso-surface ``iso_level`` (map units; e.g.
  :func:`iso_level_for_mass`, the level enclosing the molecular volume
  ``1.21 Å³/Da × mass``) and a pixel belongs to the particle where the ray
  through it crosses at least ``min_path_A`` Å of the molecule (default half a
  voxel): the projected silhouette of the iso-surface.

Holes inside each particle's mask are filled (background 4-connected to the box
border stays background, as ``scipy.ndimage.binary_fill_holes``), per particle and
batched in torch, so it runs on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
import torch

from pixer.errors import PixerError

#: Å³ per Dalton of protein (density 1.37 g/cm³)
PROTEIN_A3_PER_DA = 1.21


@dataclass(frozen=True)
class LabelThreshold:
    """How a projection becomes a mask (see the module docstring).

    Attributes
    ----------
    mode
        ``"fraction"`` or ``"iso"``.
    fraction
        ``fraction`` mode: pixels above ``fraction`` × the projection's maximum.
    iso_level
        ``iso`` mode: map value of the iso-surface (map units).
    min_path_A
        ``iso`` mode: minimum path length through the molecule, Å (default half a voxel).
    fill_holes
        Fill holes in each particle's mask.
    """

    mode: str = "fraction"
    fraction: float = 0.1
    iso_level: float | None = None
    min_path_A: float | None = None
    fill_holes: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("fraction", "iso"):
            raise PixerError(f"label threshold mode must be 'fraction' or 'iso', not {self.mode!r}")
        if self.mode == "fraction" and not 0 < self.fraction < 1:
            raise PixerError(f"label threshold fraction must be in (0, 1), got {self.fraction}")
        if self.mode == "iso" and (self.iso_level is None or not math.isfinite(self.iso_level)):
            raise PixerError("iso threshold mode needs a finite iso_level (or a mass to derive it)")

    def describe(self) -> dict:
        """JSON-friendly description for ``labels.json``."""
        if self.mode == "fraction":
            rule = f"projection > {self.fraction:g} x its maximum"
        else:
            rule = f"path through map > {self.iso_level:g} longer than {self.min_path_A or 'half a voxel'} A"
        return {"mode": self.mode, "fraction": self.fraction, "iso_level": self.iso_level,
                "min_path_A": self.min_path_A, "fill_holes": self.fill_holes, "rule": rule}


def iso_level_for_mass(volume: np.ndarray, vol_apix: float, mass_kda: float) -> float:
    """Map value whose iso-surface encloses the volume of ``mass_kda`` of protein.

    Volume = ``mass × 1000 × 1.21`` Å³; the level is the value of the
    ``n``-th highest voxel, ``n = volume / vol_apix³``.
    """
    if not (mass_kda > 0 and vol_apix > 0):
        raise PixerError(f"mass ({mass_kda} kDa) and voxel size ({vol_apix} Å) must be > 0")
    v = np.sort(np.asarray(volume, dtype=np.float64).ravel())[::-1]
    n = int(round(mass_kda * 1e3 * PROTEIN_A3_PER_DA / vol_apix**3))
    if n < 1 or n >= v.size:
        raise PixerError(f"a mass of {mass_kda} kDa does not fit the {round(v.size ** (1 / 3))}³ map at {vol_apix} Å")
    return float(v[n - 1])


def fill_holes(masks: torch.Tensor) -> torch.Tensor:
    """Fill holes of ``(b, h, w)`` bool masks, each image on its own.

    A hole is background not 4-connected to the image border (as
    ``scipy.ndimage.binary_fill_holes``). On the CPU the background of the
    whole stack is labelled in one ``scipy.ndimage.label`` call (no connectivity
    across images); on other devices the outside is grown from the border by
    iterated 4-neighbour dilation in torch, without leaving the device.
    """
    if masks.numel() == 0:
        return masks
    if masks.device.type == "cpu":
        return torch.from_numpy(_fill_holes_scipy(masks.numpy()))
    return _fill_holes_torch(masks)


def _fill_holes_torch(masks: torch.Tensor) -> torch.Tensor:
    free = ~masks
    outside = torch.zeros_like(masks)
    outside[:, 0], outside[:, -1], outside[:, :, 0], outside[:, :, -1] = (
        free[:, 0], free[:, -1], free[:, :, 0], free[:, :, -1])
    while True:
        before = outside.clone()
        for _ in range(8):
            grown = outside.clone()
            grown[:, 1:] |= outside[:, :-1]
            grown[:, :-1] |= outside[:, 1:]
            grown[:, :, 1:] |= outside[:, :, :-1]
            grown[:, :, :-1] |= outside[:, :, 1:]
            outside = grown & free
        if torch.equal(outside, before):
            return ~outside


def _fill_holes_scipy(masks: np.ndarray) -> np.ndarray:
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndi.generate_binary_structure(2, 1)  # 4-connected within an image, none across
    labels, _ = ndi.label(~masks, structure=structure)
    border = np.concatenate([labels[:, 0].ravel(), labels[:, -1].ravel(), labels[:, :, 0].ravel(),
                             labels[:, :, -1].ravel()])
    outside = np.zeros(labels.max() + 1, dtype=bool)
    outside[border] = True
    outside[0] = False  # label 0 is the mask itself
    return ~outside[labels]


def projection_masks(images: torch.Tensor, threshold: LabelThreshold, vol_apix: float) -> torch.Tensor:
    """Masks ``(b, n, n)`` bool of projections ``(b, n, n)`` (of the map, or of its iso-surface
    binarisation in ``iso`` mode), by the rule of ``threshold``."""
    if threshold.mode == "fraction":
        peak = images.amax((-2, -1), keepdim=True)
        mask = (images > threshold.fraction * peak) & (peak > 0)
    else:
        min_path = threshold.min_path_A if threshold.min_path_A is not None else 0.5 * vol_apix
        mask = images > min_path / vol_apix  # path length in map voxels (projections are intensive)
    return fill_holes(mask) if threshold.fill_holes else mask


__all__ = ["PROTEIN_A3_PER_DA", "LabelThreshold", "fill_holes", "iso_level_for_mass", "projection_masks"]
