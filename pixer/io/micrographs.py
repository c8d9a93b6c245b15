"""Reading micrographs and listing them.

A micrograph is a 2D image ``data[y, x]`` (``y`` = row, ``x`` = column, as
mrcfile returns it) with a pixel size in Å/px. MRC files are memory-mapped so a
4k-8k micrograph costs no memory until it is used (float32 data stays a
read-only memory map; other modes are converted to float32). TIFF, PNG and JPEG
are read whole; PNG/JPEG carry no pixel size, so one must be given (a TIFF
without one gives ``apix=None``).

Pixel size from an MRC header
-----------------------------
``voxel_size.x`` is used when it is > 0 and != 1.0. Many programs write 0 or
1.0 (cell = grid size) when they do not know the pixel size, so both mean
"unknown" (``apix=None``). An explicit ``apix`` argument always wins.
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

from pixer.errors import PixerError, file_error
from pixer.io.paths import atomic_path
from pixer.io.star import ragged_row

MRC_SUFFIXES = (".mrc", ".mrcs", ".map")
TIFF_SUFFIXES = (".tif", ".tiff")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Suffixes :func:`list_micrographs` collects from a folder.
MICROGRAPH_SUFFIXES = (".mrc",) + TIFF_SUFFIXES + RASTER_SUFFIXES


@dataclass
class Micrograph:
    """One micrograph.

    Attributes
    ----------
    data
        ``(h, w)`` image, ``data[y, x]``; float32 unless raw data was requested
        (then the stored dtype, possibly a read-only memory map).
    apix
        Pixel size in Å/px, ``None`` when unknown.
    path
        The file it was read from.
    name
        File name without folder and extension, e.g. ``mic_001``.
    """

    data: np.ndarray
    apix: float | None
    path: Path
    name: str


def read_micrograph(
    path: str | os.PathLike, apix: float | None = None, mmap: bool = True, raw: bool = False,
    blank_ok: bool = False,
) -> Micrograph:
    """Read a 2D micrograph (MRC, TIFF, PNG or JPEG).

    Parameters
    ----------
    path
        MRC (modes int8/int16/uint16/float16/float32; a ``(1, h, w)`` stack is
        squeezed), TIFF, or 8/16-bit PNG/JPEG (colour is averaged to grey).
    apix
        Pixel size in Å/px; overrides the MRC header. Required for PNG/JPEG.
    mmap
        Memory-map MRC files instead of reading them (default).
    raw
        Return the stored dtype (a read-only memory map for MRC with ``mmap``)
        instead of float32.
    blank_ok
        Accept an image whose pixels are all the same (a mask or label image
        with nothing marked); a micrograph like that is an error.

    Returns
    -------
    Micrograph
        ``data`` of shape ``(h, w)``, float32 unless ``raw``.

    Raises
    ------
    PixerError
        Missing, truncated or corrupt file; a stack with more than one image;
        NaN/Inf pixels; a blank image (every pixel the same); an image format
        without pixel size and no ``apix``.
    """
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "no such micrograph file")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES or suffix in RASTER_SUFFIXES:
        data = _read_tiff(path) if suffix in TIFF_SUFFIXES else _read_raster(path)
        header_apix = None
    else:
        data, header_apix = _read_mrc(path, mmap)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise file_error(path, f"expected a 2D micrograph, found an array of shape {data.shape}")
    if data.dtype.kind == "f":
        n_bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        if n_bad:
            raise file_error(path, f"{n_bad} NaN/Inf pixels")
    if not blank_ok and (data.size == 0 or data.min() == data.max()):
        raise file_error(path, f"blank micrograph: every pixel is {data.flat[0] if data.size else 'missing'}")
    if not raw and data.dtype != np.float32:
        data = data.astype(np.float32)
    if apix is not None and not apix > 0:
        raise file_error(path, f"pixel size must be > 0 Å/px, got {apix}")
    final_apix = float(apix) if apix is not None else header_apix
    if final_apix is None and suffix in RASTER_SUFFIXES:
        raise file_error(path, "pixel size unknown: pass --apix")
    return Micrograph(data=data, apix=final_apix, path=path, name=path.stem)


def require_room(path: str | os.PathLike, shape: tuple[int, ...], apix: float, diameter_A: float,
                 what: str = "particle diameter", hint: str = "check --diameter and --apix") -> None:
    """A one-line error when a ``(h, w)`` micrograph of ``apix`` Å/px is narrower than one particle.

    Parameters
    ----------
    path
        The micrograph (or what to name in the message).
    shape
        ``(..., h, w)`` in px.
    apix
        Pixel size, Å/px.
    diameter_A
        Particle (or label disc) diameter, Å; a micrograph exactly that wide passes.
    what, hint
        What ``diameter_A`` is, and the advice that ends the message.

    Raises
    ------
    PixerError
        ``min(h, w) · apix < diameter_A``: the diameter or the pixel size is wrong.
    """
    h, w = shape[-2:]
    side = min(h, w) * float(apix)
    if side < diameter_A:
        raise file_error(path, f"the micrograph ({w} × {h} px at {apix:g} Å/px, {side:.0f} Å across) is smaller "
                               f"than the {what} {diameter_A:g} Å: {hint}")


def _read_mrc(path: Path, mmap: bool) -> tuple[np.ndarray, float | None]:
    """Return ``(data, apix or None)``; strict header check, then a permissive
    retry only for old-style files that lack the ``MAP`` id string."""
    opener = mrcfile.mmap if mmap else mrcfile.open
    try:
        with warnings.catch_warnings():  # the error below says what is wrong; no RuntimeWarning lines first
            warnings.simplefilter("ignore")
            with opener(path, mode="r", permissive=False) as mrc:
                return mrc.data, header_apix(mrc)
    except ValueError as exc:
        if "Map ID string not found" not in str(exc):
            raise file_error(path, f"not a readable MRC file ({exc})") from None
        strict_error = exc
    except Exception as exc:  # OSError, EOFError, ...
        raise file_error(path, f"not a readable MRC file ({exc})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with opener(path, mode="r", permissive=True) as mrc:
                data, h = mrc.data, mrc.header
                if data is not None and data.size > 0 and data.size == int(h.nx) * int(h.ny) * int(h.nz):
                    return data, header_apix(mrc)
    except Exception:
        pass
    raise file_error(path, f"not a readable MRC file ({strict_error})")


def header_apix(mrc) -> float | None:
    """Pixel size (Å/px) in an open mrcfile's header; None for 0, 1.0 (a common "unset") or non-finite."""
    value = float(mrc.voxel_size.x)
    return value if value > 0 and value != 1.0 and np.isfinite(value) else None


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        return np.asarray(tifffile.imread(path))
    except Exception as exc:
        raise file_error(path, f"not a readable TIFF file ({exc})") from None


def _read_raster(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGB", "RGBA", "P", "LA", "CMYK"):
                img = img.convert("RGB")
            arr = np.asarray(img)
    except Exception as exc:
        raise file_error(path, f"not a readable image ({exc})") from None
    if arr.ndim == 3:
        arr = arr.astype(np.float32).mean(axis=2)
    return arr


def _is_glob(spec: str) -> bool:
    return any(c in spec for c in "*?[")


def list_micrographs(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Expand a micrograph specification into a list of files.

    Parameters
    ----------
    spec
        A folder (its ``*.mrc``, ``*.tif(f)``, ``*.png``, ``*.jp(e)g``,
        non-recursive), a glob pattern (``**`` allowed), a single image file,
        a RELION micrographs STAR (``rlnMicrographName``), or a list of these.
        Relative names in a STAR are looked up against the STAR's folder first,
        then the current directory, then the STAR's parent folders (RELION
        writes them relative to the project folder).

    Returns
    -------
    list of Path
        Sorted within each folder/glob, in order for lists; duplicates removed.

    Raises
    ------
    PixerError
        Nothing found, or micrographs named in a STAR are missing.
    """
    if isinstance(spec, (str, os.PathLike)):
        found = _list_one(spec)
    else:
        found = [p for item in spec for p in _list_one(item)]
        if not found:
            raise PixerError(f"no micrographs found in {list(map(str, spec))}")
    seen: dict[Path, None] = {}
    for p in found:
        seen.setdefault(p, None)
    return list(seen)


def _list_one(spec: str | os.PathLike) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MICROGRAPH_SUFFIXES)
        if not found:
            raise file_error(path, f"no micrographs ({', '.join(MICROGRAPH_SUFFIXES)}) in this folder")
        return found
    if path.is_file():
        return _read_micrographs_star(path) if path.suffix.lower() == ".star" else [path]
    if _is_glob(str(spec)):
        found = sorted(Path(p) for p in glob.glob(str(spec), recursive=True) if Path(p).is_file())
        if not found:
            raise PixerError(f"{spec}: no files match this pattern")
        return found
    raise file_error(path, "no such file or folder")


def _read_micrographs_star(path: Path) -> list[Path]:
    try:
        blocks = starfile.read(path, always_dict=True, parse_as_string=["rlnMicrographName"])
    except Exception as exc:
        what = ragged_row(path) or f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        raise file_error(path, f"not a readable STAR file ({what})") from None
    tables = [pd.DataFrame(b) if isinstance(b, pd.DataFrame) else pd.DataFrame([b]) for b in blocks.values()]
    tables = [t for t in tables if "rlnMicrographName" in t.columns]
    if not tables:
        raise file_error(path, f"no rlnMicrographName column (found blocks: {', '.join(map(str, blocks)) or 'none'})")
    names = pd.unique(tables[0]["rlnMicrographName"].astype(str))
    if len(names) == 0:
        raise file_error(path, "no micrographs listed")
    roots = [path.parent, Path.cwd(), *list(path.resolve().parent.parents)[:3]]
    out, missing = [], []
    for name in names:
        candidates = [Path(name)] if Path(name).is_absolute() else [r / name for r in roots]
        hit = next((c for c in candidates if c.is_file()), None)
        (out if hit is not None else missing).append(hit if hit is not None else name)
    if missing:
        raise file_error(
            path,
            f"{len(missing)} of {len(names)} micrographs not found, e.g. {', '.join(missing[:3])} "
            "(looked relative to the STAR's folder, the current folder and the STAR's parents)",
        )
    return out


def write_micrographs_star(
    paths: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    apix: float,
    voltage: float = 300.0,
    cs: float = 2.7,
    amp_contrast: float = 0.1,
    names: str = "star",
) -> Path:
    """Write a RELION 3.1+ micrographs STAR (one optics group), atomically.

    Parameters
    ----------
    paths
        Micrograph files.
    names
        How names are written. ``"star"``: relative to the STAR's folder
        when the file lies inside it (a self-contained data set), else
        absolute. ``"as-given"``: the paths exactly as given, which is
        RELION's convention (relative to the project folder, the current
        folder); coordinate files written for the same names then match
        ``relion_preprocess --coord_dir``.
    out_path
        The STAR to write.
    apix
        Micrograph pixel size in Å/px (``rlnMicrographPixelSize``).
    voltage, cs, amp_contrast
        Acceleration voltage in kV, spherical aberration in mm, amplitude
        contrast as a fraction.

    Returns
    -------
    Path
        ``out_path``.
    """
    out_path = Path(out_path)
    if not paths:
        raise file_error(out_path, "no micrographs to write")
    if names not in ("star", "as-given"):
        raise ValueError(f"names must be 'star' or 'as-given', not {names!r}")
    root = out_path.parent.resolve()
    written = []
    for p in paths:
        full = Path(p).resolve()
        if names == "as-given":
            written.append(Path(p).as_posix())
        else:
            written.append(full.relative_to(root).as_posix() if root in full.parents else str(full))
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnMicrographPixelSize": [float(apix)],
            "rlnVoltage": [float(voltage)],
            "rlnSphericalAberration": [float(cs)],
            "rlnAmplitudeContrast": [float(amp_contrast)],
        }
    )
    mics = pd.DataFrame({"rlnMicrographName": written, "rlnOpticsGroup": 1})
    with atomic_path(out_path) as tmp:
        starfile.write({"optics": optics, "micrographs": mics}, tmp)
    return out_path
