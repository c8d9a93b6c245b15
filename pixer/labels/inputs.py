"""Inputs of label synthesis: which micrographs, their shapes and their pixel sizes.

Label synthesis needs, for every micrograph, its shape ``(h, w)`` and its pixel
size (the unit of ``rlnCoordinateX/Y``). They come from the micrograph files
(MRC header: shape and pixel size, read without loading the data), from flags
(``--shape H W``, ``--apix``) or from STAR files (``--micrographs-star``;
``rlnImageSizeX/Y`` for ``--shape-from-star``).

Micrograph pixel size, first found of: ``--apix``; the particles STAR when it
states the micrograph pixel size (``rlnMicrographPixelSize``, a
``--micrographs-star``; see :func:`pixer.io.star.read_particles`); the MRC
header of the micrograph. A STAR that states only the particle-image pixel size
(RELION 3.0 ``rlnDetectorPixelSize``/``rlnMagnification``) is *not* trusted for
the coordinates: particles are often rescaled at extraction (EMPIAR-10025:
micrographs 0.6575 Å/px, particles 0.9819 Å/px), so that is an error asking for
``--apix`` or ``--micrographs-star``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd

from pixer.errors import PixerError, file_error
from pixer.io.match import match_micrograph_names
from pixer.io.micrographs import MRC_SUFFIXES, header_apix, read_micrograph, require_room
from pixer.io.star import read_star_blocks

#: ``attrs["apix_source"]`` prefix of read_particles' last-resort guess
_IMAGE_APIX_GUESS = "image pixel size"


def micrograph_files(particles: pd.DataFrame, files: Sequence[Path]) -> tuple[dict, dict]:
    """Shapes and header pixel sizes of micrograph files, keyed by the names labels will carry.

    A file holding particles is keyed by the particles' ``micrograph`` name; a
    file without particles by its file name (it gets an empty label).

    Returns
    -------
    shapes
        name -> ``(h, w)`` px.
    header_apix
        name -> Å/px from the MRC header (names without one are absent).
    """
    matched = match_micrograph_names(particles, [str(p) for p in files], on_unknown="drop")
    by_file: dict[str, str] = {}
    for name, path in zip(particles.loc[matched.index, "micrograph"].astype(str), matched.astype(str)):
        by_file.setdefault(path, name)
    shapes, header_apix = {}, {}
    for path in files:
        name = by_file.get(str(path), Path(path).name)
        shapes[name], value = _shape_and_apix(Path(path))
        if value is not None:
            header_apix[name] = value
    return shapes, header_apix


def _shape_and_apix(path: Path) -> tuple[tuple[int, int], float | None]:
    """``(h, w)`` and header pixel size of a micrograph; MRC headers only, no pixel data read."""
    if path.suffix.lower() not in MRC_SUFFIXES:
        mic = read_micrograph(path, mmap=True, raw=True)
        return (int(mic.data.shape[0]), int(mic.data.shape[1])), mic.apix
    try:
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            nx, ny, nz = int(mrc.header.nx), int(mrc.header.ny), int(mrc.header.nz)
            value = header_apix(mrc)
            itemsize = mrcfile.utils.dtype_from_mode(mrc.header.mode).itemsize
            expected = 1024 + int(mrc.header.nsymbt) + nx * ny * nz * itemsize
    except Exception as exc:  # mrcfile raises ValueError/OSError/EOFError
        raise file_error(path, f"not a readable MRC file ({exc})") from None
    if nz != 1 or nx < 1 or ny < 1:
        raise file_error(path, f"expected a 2D micrograph, header says {nx} x {ny} x {nz}")
    if path.stat().st_size < expected:  # the header alone would pass; the pixels would be missing later
        raise file_error(path, f"truncated MRC file: {path.stat().st_size} bytes, its header needs {expected}")
    return (ny, nx), value


def shapes_from_star(path: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """Micrograph shapes from a micrographs STAR with ``rlnImageSizeX/Y`` (per row or per optics group)."""
    path = Path(path)
    blocks = read_star_blocks(path)
    table = next((b for b in blocks.values() if isinstance(b, pd.DataFrame) and "rlnMicrographName" in b), None)
    if table is None:
        raise file_error(path, "no rlnMicrographName column: not a micrographs STAR")
    optics = blocks.get("optics")
    if isinstance(optics, pd.DataFrame) and "rlnOpticsGroup" in table and "rlnOpticsGroup" in optics:
        table = table.merge(optics, on="rlnOpticsGroup", how="left", suffixes=("", "_optics"))
    if not {"rlnImageSizeX", "rlnImageSizeY"} <= set(table.columns):
        raise file_error(path, "no rlnImageSizeX/rlnImageSizeY: give the micrographs or --shape H W")
    w = pd.to_numeric(table["rlnImageSizeX"], errors="coerce")
    h = pd.to_numeric(table["rlnImageSizeY"], errors="coerce")
    if (w.isna() | h.isna() | (w < 1) | (h < 1)).any():
        raise file_error(path, "invalid rlnImageSizeX/rlnImageSizeY values")
    return {str(n): (int(a), int(b)) for n, a, b in zip(table["rlnMicrographName"], h, w)}


def resolve_apix(
    particles: pd.DataFrame,
    names: Sequence[str],
    apix: float | None = None,
    header_apix: dict[str, float] | None = None,
) -> dict[str, float]:
    """Micrograph pixel size (Å/px) of each name, by the order in the module docstring.

    Raises
    ------
    PixerError
        One line naming the particles file when a pixel size cannot be determined.
    """
    source = particles.attrs.get("source", "particles")
    if apix is not None:
        return {n: float(apix) for n in names}
    header_apix = header_apix or {}
    star_source = str(particles.attrs.get("apix_source") or "")
    trusted = "apix" in particles.columns and not star_source.startswith(_IMAGE_APIX_GUESS)
    per_name: dict[str, float] = {}
    if trusted:
        col = particles[["micrograph", "apix"]].dropna()
        per_name = dict(zip(col["micrograph"].astype(str), col["apix"].astype(float)))
    common = set(per_name.values())
    out = {}
    for n in names:
        value = per_name.get(n, header_apix.get(n))
        if value is None and len(common) == 1:
            value = next(iter(common))
        if value is None or not np.isfinite(value) or value <= 0:
            raise PixerError(_apix_error(source, n, particles, star_source))
        out[n] = float(value)
    return out


def check_diameter(
    diameter_A: float,
    shapes: Mapping[str, tuple[int, int]],
    apix: float | Mapping[str, float],
    what: str = "particle diameter",
) -> None:
    """Refuse a particle larger than a micrograph (:func:`pixer.io.micrographs.require_room` on each).

    Parameters
    ----------
    diameter_A
        Particle (or label disc) diameter, Å.
    shapes
        Micrograph name -> ``(h, w)``, px.
    apix
        Micrograph pixel size, Å/px: a number or a name -> value mapping.
    what
        What ``diameter_A`` is, for the message.

    Raises
    ------
    PixerError
        A diameter that is not a finite number > 0, or one line naming the first
        micrograph whose smaller side (× its pixel size) is shorter than ``diameter_A``.
    """
    if not 0 < diameter_A < math.inf:
        raise PixerError(f"{what} must be a finite number > 0 Å, got {diameter_A}")
    for name, (h, w) in shapes.items():
        require_room(name, (int(h), int(w)), float(apix[name] if isinstance(apix, Mapping) else apix), diameter_A,
                     what=what)


def _apix_error(source: str, name: str, particles: pd.DataFrame, star_source: str) -> str:
    if star_source.startswith(_IMAGE_APIX_GUESS) and "image_apix" in particles.columns:
        img = particles["image_apix"].dropna()
        stated = f" ({img.iloc[0]:.4g} Å/px)" if len(img) else ""
        return (f"{source}: micrograph pixel size unknown: the STAR states only the particle-image pixel size"
                f"{stated}, which differs from the micrographs' when particles were rescaled at extraction; "
                f"pass --apix or --micrographs-star")
    return f"{source}: micrograph pixel size unknown for {name}: pass --apix or --micrographs-star"


__all__ = ["check_diameter", "micrograph_files", "resolve_apix", "shapes_from_star"]
