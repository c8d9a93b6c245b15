"""RELION STAR particle and coordinate files <-> the particles table.

Reads every STAR flavour that holds particle positions into the table of
``docs/CONTRACTS.md`` (``micrograph``, ``x``, ``y`` in micrograph pixels, plus
optional columns), and writes one RELION 3.1+ particles STAR.

Flavours read
-------------
- RELION 3.1/4/5: ``data_optics`` + ``data_particles``; optics columns are
  joined to each particle through ``rlnOpticsGroup``.
- RELION 3.0 and older (one loop, no optics): pixel size from
  ``rlnDetectorPixelSize`` [µm] / ``rlnMagnification`` x 1e4.
- Coordinate / autopick STARs (``rlnCoordinateX/Y`` [+ FOM], no
  ``rlnMicrographName``): the micrograph name is the file stem, e.g.
  ``mic_001_autopick`` (see :func:`pixer.io.match.match_micrograph_names`).
- crYOLO and cryoSPARC (csparc2star) exports: the same columns, with or
  without optics.

Pixel sizes (Å/px)
------------------
``image_apix`` (particle images) = ``rlnImagePixelSize``, else
``rlnDetectorPixelSize * 1e4 / rlnMagnification`` (RELION 3.0).

``apix`` (micrographs; the unit of ``x``/``y``), first found of:
1. the ``apix`` argument;
2. ``micrographs_star`` (a micrographs / CTF STAR), per micrograph;
3. ``rlnMicrographPixelSize``;
4. ``rlnMicrographOriginalPixelSize`` (pre-binning movie pixel: right only if
   motion correction did not bin);
5. ``image_apix`` (what RELION 3.1 assumes when it converts 3.0 files; wrong
   when particles were rescaled at extraction, e.g. EMPIAR-10025).
``df.attrs["apix_source"]`` says which one was used.
"""

from __future__ import annotations

import os
import shlex
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from pixer.errors import file_error
from pixer.io.paths import atomic_path

COORDS = ("rlnCoordinateX", "rlnCoordinateY")
NOT_PARTICLES = "not a particle or coordinate file"
_STRING_COLUMNS = [
    "rlnMicrographName", "rlnImageName", "rlnImageOriginalName", "rlnOpticsGroupName",
    "rlnMicrographCoordinates", "rlnGroupName", "rlnMicrographMovieName",
]
#: canonical column -> RELION label, for columns copied as they are.
_SIMPLE = {
    "score": "rlnAutopickFigureOfMerit",
    "rot": "rlnAngleRot",
    "tilt": "rlnAngleTilt",
    "psi": "rlnAnglePsi",
    "defocus_u": "rlnDefocusU",
    "defocus_v": "rlnDefocusV",
    "defocus_angle": "rlnDefocusAngle",
    "voltage": "rlnVoltage",
    "cs": "rlnSphericalAberration",
    "amp_contrast": "rlnAmplitudeContrast",
}
#: canonical column -> RELION label written in data_particles (besides name, x, y).
_WRITTEN = {k: _SIMPLE[k] for k in ("score", "rot", "tilt", "psi")} | {
    "origin_x_A": "rlnOriginXAngst",
    "origin_y_A": "rlnOriginYAngst",
} | {k: _SIMPLE[k] for k in ("defocus_u", "defocus_v", "defocus_angle")}


def _fields(line: str) -> int:
    """Number of whitespace-separated fields of a STAR data row (quoted values count once)."""
    if '"' in line or "'" in line:
        try:
            return len(shlex.split(line))
        except ValueError:
            pass
    return len(line.split())


def ragged_row(path: str | os.PathLike) -> str | None:
    """The first loop row whose field count differs from its loop's columns, as ``"line N: k fields, the
    loop has m columns"``; None when every row fits (or the file cannot be read as text)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return None
    columns, in_header = 0, False
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if line.startswith("loop_"):
            columns, in_header = 0, True
        elif line.startswith("data_"):
            columns, in_header = 0, False
        elif line.startswith("_") and in_header:
            columns += 1
        elif line and not line.startswith("#") and columns:
            in_header = False
            if _fields(line) != columns:
                return f"line {number}: {_fields(line)} fields, the loop has {columns} columns"
    return None


def read_star_blocks(path: str | os.PathLike) -> dict[str, pd.DataFrame | dict]:
    """Read all data blocks of a STAR file with ``starfile``.

    Name-like columns (``rlnMicrographName``, ``rlnImageName`` ...) stay
    strings, so ``0003`` is not turned into ``3``.

    Returns
    -------
    dict
        Block name (without ``data_``) -> DataFrame (loops) or dict (pairs).

    Raises
    ------
    PixerError
        Missing, unreadable, empty or non-STAR file.
    """
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "no such file")
    try:
        blocks = starfile.read(path, always_dict=True, parse_as_string=_STRING_COLUMNS)
    except Exception as exc:
        what = ragged_row(path) or f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        raise file_error(path, f"not a readable STAR file ({what})") from None
    if not blocks:
        raise file_error(path, "empty or not a STAR file (no data_ blocks)")
    return blocks


def _particle_block(path: Path, blocks: dict) -> tuple[str, pd.DataFrame]:
    """Pick the block holding particle coordinates, or explain why there is none."""
    found = ", ".join(f"data_{n}" for n in blocks)
    tables = {}
    for name, block in blocks.items():
        if isinstance(block, pd.DataFrame):
            tables[name] = block
        elif isinstance(block, dict) and all(c in block for c in COORDS):
            tables[name] = pd.DataFrame([block])  # a single particle written as pairs
    n_coords = {name: sum(c in t.columns for c in COORDS) for name, t in tables.items()}
    if "particles" in tables:
        chosen = ["particles"]
    else:
        chosen = [n for n, k in n_coords.items() if k == 2] or [n for n, k in n_coords.items() if k == 1]
    if chosen:
        name = chosen[0]
        missing = [c for c in COORDS if c not in tables[name].columns]
        if missing:
            problem = f"data_{name} has no {', '.join(missing)} column (found blocks: {found})"
            raise file_error(path, f"{NOT_PARTICLES}: {problem}")
        if len(chosen) > 1:
            warnings.warn(f"{path}: {len(chosen)} blocks hold coordinates ({', '.join(chosen)}); reading data_{name}")
        return name, tables[name]
    if "coordinate_files" in tables:
        hint = "; it lists coordinate files: read it with pixer.io.coords.read_picks"
    elif any("rlnImageName" in t.columns or "rlnMicrographName" in t.columns for t in tables.values()):
        hint = "; it has no rlnCoordinateX, rlnCoordinateY columns"
    else:
        hint = ""
    raise file_error(path, f"{NOT_PARTICLES} (found blocks: {found}){hint}")


def _merge_optics(path: Path, table: pd.DataFrame, optics: object) -> pd.DataFrame:
    """Copy each optics-group column onto the particles (particle columns win)."""
    if not isinstance(optics, pd.DataFrame) or optics.empty:
        return table
    table = table.copy()
    if "rlnOpticsGroup" in table.columns and "rlnOpticsGroup" in optics.columns:
        groups = optics.drop_duplicates("rlnOpticsGroup").set_index("rlnOpticsGroup")
        unknown = sorted(set(table["rlnOpticsGroup"]) - set(groups.index))
        if unknown:
            raise file_error(path, f"optics group(s) {unknown[:3]} used by particles but not in data_optics")
        for col in groups.columns.difference(table.columns):
            table[col] = table["rlnOpticsGroup"].map(groups[col])
    elif len(optics) == 1:
        for col in optics.columns.difference(table.columns):
            table[col] = optics[col].iloc[0]
    else:
        raise file_error(path, f"particles have no rlnOpticsGroup but data_optics has {len(optics)} groups")
    return table


def _numeric(path: Path, table: pd.DataFrame, col: str) -> pd.Series:
    values = pd.to_numeric(table[col], errors="coerce").astype(float)
    bad = int(values.isna().sum() - table[col].isna().sum())
    if bad:
        raise file_error(path, f"{bad} non-numeric values in {col}")
    return values.reset_index(drop=True)


def _image_apix(path: Path, table: pd.DataFrame) -> pd.Series | None:
    if "rlnImagePixelSize" in table.columns:
        return _numeric(path, table, "rlnImagePixelSize")
    if "rlnDetectorPixelSize" in table.columns and "rlnMagnification" in table.columns:
        mag = _numeric(path, table, "rlnMagnification").replace(0.0, np.nan)
        return _numeric(path, table, "rlnDetectorPixelSize") * 1e4 / mag
    return None


def micrograph_pixel_sizes(path: str | os.PathLike) -> dict[str, float]:
    """Micrograph pixel size per micrograph name from a micrographs / CTF STAR.

    Parameters
    ----------
    path
        RELION 3.1+ micrographs STAR (``rlnMicrographPixelSize`` in optics) or
        RELION 3.0 ``micrographs_ctf.star`` (``rlnDetectorPixelSize`` µm /
        ``rlnMagnification``).

    Returns
    -------
    dict
        ``rlnMicrographName`` -> pixel size in Å/px.
    """
    path = Path(path)
    blocks = read_star_blocks(path)
    tables = [(n, b) for n, b in blocks.items() if isinstance(b, pd.DataFrame) and "rlnMicrographName" in b.columns]
    if not tables:
        raise file_error(path, "no rlnMicrographName column: not a micrographs STAR")
    table = _merge_optics(path, tables[0][1], blocks.get("optics"))
    sizes = None
    for col in ("rlnMicrographPixelSize", "rlnMicrographOriginalPixelSize"):
        if col in table.columns:
            sizes = _numeric(path, table, col)
            break
    if sizes is None:
        sizes = _image_apix(path, table)
    if sizes is None:
        raise file_error(path, "no micrograph pixel size (rlnMicrographPixelSize or detector pixel / magnification)")
    return dict(zip(table["rlnMicrographName"].astype(str), sizes))


def read_particles(
    path: str | os.PathLike,
    apix: float | None = None,
    micrographs_star: str | os.PathLike | None = None,
    allow_empty: bool = False,
) -> pd.DataFrame:
    """Read a RELION / crYOLO / cryoSPARC-exported particle or coordinate STAR.

    Parameters
    ----------
    path
        The STAR file.
    apix
        Micrograph pixel size in Å/px; overrides everything in the files.
    micrographs_star
        Micrographs or CTF STAR giving the micrograph pixel size per
        micrograph (matched by name, then basename) when the particle STAR
        does not state it (RELION 3.0).
    allow_empty
        Return an empty table for a file with a header but no rows (RELION
        autopick writes those for micrographs without picks).

    Returns
    -------
    pandas.DataFrame
        One row per particle: ``micrograph`` (str), ``x``, ``y`` (float,
        micrograph pixels) and, when the file has them, ``score``,
        ``rot``/``tilt``/``psi`` (degrees; RELION's ``-999`` = unset -> NaN),
        ``origin_x_A``/``origin_y_A`` (Å), ``apix``/``image_apix`` (Å/px),
        ``defocus_u``/``defocus_v`` (Å), ``defocus_angle`` (degrees),
        ``voltage`` (kV), ``cs`` (mm), ``amp_contrast``, ``optics_group``.
        ``attrs["source"]`` is the path, ``attrs["apix_source"]`` where
        ``apix`` came from (see the module docstring for the order).

    Raises
    ------
    PixerError
        Unreadable or empty file, no rows, or a STAR of another kind (message
        contains ``"not a particle or coordinate file"``).
    """
    path = Path(path)
    blocks = read_star_blocks(path)
    name, table = _particle_block(path, blocks)
    if table.empty and not allow_empty:
        raise file_error(path, f"no particles (data_{name} has 0 rows)")
    table = _merge_optics(path, table.reset_index(drop=True), blocks.get("optics"))
    df = pd.DataFrame(index=pd.RangeIndex(len(table)))
    if "rlnMicrographName" in table.columns:
        df["micrograph"] = table["rlnMicrographName"].astype(str).to_numpy()
    else:
        df["micrograph"] = path.stem
    df["x"] = _numeric(path, table, "rlnCoordinateX")
    df["y"] = _numeric(path, table, "rlnCoordinateY")
    for out, col in _SIMPLE.items():
        if col in table.columns:
            df[out] = _numeric(path, table, col)
    for angle in ("rot", "tilt", "psi"):
        if angle in df.columns:
            df.loc[df[angle] == -999.0, angle] = np.nan
    image_apix = _image_apix(path, table)
    for axis in ("x", "y"):
        label = f"rlnOrigin{axis.upper()}"
        if f"{label}Angst" in table.columns:
            df[f"origin_{axis}_A"] = _numeric(path, table, f"{label}Angst")
        elif label in table.columns:
            shift_px = _numeric(path, table, label)
            df[f"origin_{axis}_A"] = shift_px * image_apix if image_apix is not None else np.nan
    apix_values, source = _apix(path, table, df, image_apix, apix, micrographs_star)
    if apix_values is not None:
        df["apix"] = apix_values
    if image_apix is not None:
        df["image_apix"] = image_apix
    if "rlnOpticsGroup" in table.columns:
        df["optics_group"] = _numeric(path, table, "rlnOpticsGroup").astype(int)
    df.attrs["source"] = str(path)
    df.attrs["apix_source"] = source
    return df


def _apix(path, table, df, image_apix, apix, micrographs_star) -> tuple[pd.Series | float | None, str | None]:
    if apix is not None:
        return float(apix), "apix argument"
    if micrographs_star is not None:
        sizes = micrograph_pixel_sizes(micrographs_star)
        by_base = {Path(k).name: v for k, v in sizes.items()}
        values = df["micrograph"].map(sizes).fillna(df["micrograph"].map(lambda m: by_base.get(Path(m).name)))
        unknown = df.loc[values.isna(), "micrograph"].unique()
        if len(unknown):
            raise file_error(micrographs_star, f"no pixel size for micrograph(s) {', '.join(unknown[:3])} of {path}")
        return values.astype(float), f"{micrographs_star}"
    for col in ("rlnMicrographPixelSize", "rlnMicrographOriginalPixelSize"):
        if col in table.columns:
            return _numeric(path, table, col), col
    if image_apix is not None:
        return image_apix.copy(), "image pixel size (the file states no micrograph pixel size)"
    return None, None


def write_particles_star(
    df: pd.DataFrame,
    path: str | os.PathLike,
    apix: float,
    image_apix: float | None = None,
    box_size: int | None = None,
    voltage: float = 300.0,
    cs: float = 2.7,
    amp_contrast: float = 0.1,
) -> Path:
    """Write a particles table as one RELION 3.1+ particles STAR, atomically.

    Parameters
    ----------
    df
        Particles table (``micrograph``, ``x``, ``y`` in micrograph pixels;
        optional ``score``, ``rot``/``tilt``/``psi``, ``origin_x_A``/
        ``origin_y_A``, ``defocus_u``/``defocus_v``/``defocus_angle`` are
        written when present and not all NaN).
    path
        Output STAR file.
    apix
        Micrograph pixel size in Å/px (``rlnMicrographPixelSize`` and
        ``rlnMicrographOriginalPixelSize``; one optics group for the dataset).
    image_apix
        Particle-image pixel size in Å/px (``rlnImagePixelSize``); default
        ``apix``.
    box_size
        Particle box in pixels (``rlnImageSize``), if known.
    voltage, cs, amp_contrast
        kV, mm, fraction.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    missing = [c for c in ("micrograph", "x", "y") if c not in df.columns]
    if missing:
        raise file_error(path, f"particles table lacks column(s) {', '.join(missing)}")
    optics = {
        "rlnOpticsGroup": 1,
        "rlnOpticsGroupName": "opticsGroup1",
        "rlnMicrographPixelSize": float(apix),
        "rlnMicrographOriginalPixelSize": float(apix),
        "rlnImagePixelSize": float(image_apix if image_apix is not None else apix),
        "rlnVoltage": float(voltage),
        "rlnSphericalAberration": float(cs),
        "rlnAmplitudeContrast": float(amp_contrast),
    }
    if box_size is not None:
        optics["rlnImageSize"] = int(box_size)
    particles = pd.DataFrame(
        {
            "rlnMicrographName": df["micrograph"].astype(str).to_numpy(),
            "rlnCoordinateX": df["x"].astype(float).to_numpy(),
            "rlnCoordinateY": df["y"].astype(float).to_numpy(),
        }
    )
    for col, label in _WRITTEN.items():
        if col in df.columns and df[col].notna().any():
            particles[label] = df[col].astype(float).to_numpy()
    particles["rlnOpticsGroup"] = 1
    with atomic_path(path) as tmp:
        starfile.write({"optics": pd.DataFrame([optics]), "particles": particles}, tmp, na_rep="nan")
    return path
