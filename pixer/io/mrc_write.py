"""Atomic MRC writing."""

from __future__ import annotations

import os
from pathlib import Path

import mrcfile
import numpy as np

from pixer.io.paths import atomic_path


def write_mrc(path: str | os.PathLike, data: np.ndarray, apix: float) -> Path:
    """Write a 2D image or 3D volume/stack to an MRC file atomically.

    Parameters
    ----------
    path
        Destination (``.mrc`` or ``.mrcs``); parent folders are created.
    data
        ``(h, w)`` image, ``(d, h, w)`` volume or stack. float64 is stored as
        float32; int8/int16/uint16/float16/float32 are stored as they are.
    apix
        Pixel (voxel) size in Å, written to the header.
    """
    arr = np.asarray(data)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if arr.dtype == bool:
        arr = arr.astype(np.int8)
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(arr))
            mrc.voxel_size = float(apix)
            if str(path).endswith(".mrcs") and arr.ndim == 3:
                mrc.set_image_stack()
    return Path(path)
