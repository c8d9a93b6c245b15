"""Micrograph pre-processing (Fourier-crop binning, robust normalisation) and tiling."""

from pixer.data.preprocess import crop_shape, fourier_crop, normalize, prepare
from pixer.data.tiles import (
    Stitcher,
    extract_tiles,
    fit_tile,
    iter_tile_batches,
    pad_end,
    stitch,
    tile_positions,
    tile_starts,
)

__all__ = [
    "Stitcher",
    "crop_shape",
    "extract_tiles",
    "fit_tile",
    "fourier_crop",
    "iter_tile_batches",
    "pad_end",
    "normalize",
    "prepare",
    "stitch",
    "tile_positions",
    "tile_starts",
]
