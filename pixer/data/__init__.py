"""Micrograph pre-processing (Fourier-crop binning, robust normalisation) and tiling."""

from pixer.data.preprocess import crop_shape, fourier_crop, normalize, prepare
from pixer.data.tiles import (
    Stitcher,
    extract_tiles,
    iter_tile_batches,
    stitch,
    tile_positions,
    tile_starts,
)

__all__ = [
    "Stitcher",
    "crop_shape",
    "extract_tiles",
    "fourier_crop",
    "iter_tile_batches",
    "normalize",
    "prepare",
    "stitch",
    "tile_positions",
    "tile_starts",
]
