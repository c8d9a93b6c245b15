"""Pick coordinate formats: Topaz, EMAN .box, CSV, RELION coordinate STARs.

All readers return the particles table of ``docs/CONTRACTS.md``: particle
centres ``x`` (column), ``y`` (row) in micrograph pixels, ``micrograph`` a name.

Conventions
-----------
- Topaz text, CSV and RELION STARs hold particle centres.
- EMAN ``.box`` holds the box's lower-left corner and size: centre =
  corner + size / 2 (no y flip; the same as RELION and crYOLO).
- Per-micrograph formats (``.box``, RELION coordinate STARs) take the
  micrograph name from the file stem, e.g. ``mic_001_autopick``;
  :func:`pixer.io.match.match_micrograph_names` maps such names back to micrograph files.

Writers are atomic and derive file names through
:func:`pixer.io.paths.output_path`, so names such as ``../../x.mrc`` or
``/abs/x.mrc`` stay inside the output folder (sub-folders are mirrored).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from pixer.errors import PixerError, file_error
from pixer.io.match import name_keys
from pixer.io.paths import atomic_path, output_path, write_text_atomic
from pixer.io.star import read_particles, read_star_blocks

PICK_SUFFIXES = (".star", ".box", ".txt", ".tsv", ".csv")


def _table(path: Path, micrograph, x, y, score=None) -> pd.DataFrame:
    df = pd.DataFrame({"micrograph": micrograph, "x": x, "y": y})
    if score is not None:
        df["score"] = score
    try:
        df["micrograph"] = df["micrograph"].astype(str)
        for col in ("x", "y", "score"):
            if col in df.columns:
                df[col] = pd.to_numeric(df[col]).astype(float)
    except (ValueError, TypeError) as exc:
        raise file_error(path, f"non-numeric coordinates ({exc})") from None
    df.attrs["source"] = str(path)
    return df


def _read_text(path: Path, **kwargs) -> pd.DataFrame:
    """``pandas.read_csv`` with PixerErrors; an empty file gives an empty frame."""
    if not path.is_file():
        raise file_error(path, "no such file")
    try:
        return pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except Exception as exc:
        raise file_error(path, f"not a readable coordinate file ({type(exc).__name__}: {exc})") from None


def _empty(path: Path, allow_empty: bool) -> pd.DataFrame:
    if not allow_empty:
        raise file_error(path, "no coordinates in file")
    return _table(path, [], [], [])


def read_topaz(path: str | os.PathLike, allow_empty: bool = False) -> pd.DataFrame:
    """Read a Topaz coordinate file: header ``image_name x_coord y_coord [score]``.

    Centres in pixels; ``micrograph`` = ``image_name``. Whitespace-separated
    ``micrograph x y [score]`` is accepted too. With ``allow_empty``
    a header-only or empty file gives an empty table instead of an error.
    """
    return _read_columns(Path(path), allow_empty, sep=r"\s+")


def _read_columns(path: Path, allow_empty: bool, **kwargs) -> pd.DataFrame:
    """Topaz or CSV text: Topaz column names, else the particles-table names."""
    df = _read_text(path, dtype={"micrograph": str, "image_name": str}, **kwargs)
    if df.columns.empty:
        return _empty(path, allow_empty)
    topaz = "image_name" in df.columns and "micrograph" not in df.columns
    names = ("image_name", "x_coord", "y_coord") if topaz else ("micrograph", "x", "y")
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise file_error(path, f"missing column(s) {', '.join(missing)} (found: {', '.join(map(str, df.columns))})")
    out = _table(path, df[names[0]], df[names[1]], df[names[2]], df["score"] if "score" in df.columns else None)
    if not topaz:
        for col in df.columns.difference(out.columns):
            out[col] = df[col].to_numpy()
    return out if len(out) else _empty(path, allow_empty)


def read_csv(path: str | os.PathLike, allow_empty: bool = False) -> pd.DataFrame:
    """Read a CSV of particle centres: header ``micrograph,x,y[,score,...]``.

    Topaz-style ``image_name,x_coord,y_coord[,score]`` is accepted too. Centres
    in micrograph pixels; other particles-table columns are kept. With
    ``allow_empty`` a header-only or empty file gives an empty table.
    """
    return _read_columns(Path(path), allow_empty)


def read_box(path: str | os.PathLike, micrograph: str | None = None, allow_empty: bool = False) -> pd.DataFrame:
    """Read an EMAN ``.box`` file of one micrograph.

    Each line is ``x y w h`` (lower-left corner and box size in pixels; extra
    columns ignored); the table gets the centre ``x + w/2``, ``y + h/2``.
    ``micrograph`` defaults to the file stem. With ``allow_empty`` an empty
    file gives an empty table.
    """
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "no such file")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise file_error(path, f"not a readable .box file ({exc})") from None
    rows = [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        return _empty(path, allow_empty)
    if min(map(len, rows)) < 4:
        raise file_error(path, f"expected 4 columns (x y w h) in a .box file, found {min(map(len, rows))}")
    try:
        v = np.array([[float(w) for w in row[:4]] for row in rows])
    except ValueError as exc:
        raise file_error(path, f"non-numeric values in a .box file ({exc})") from None
    name = micrograph if micrograph is not None else path.stem
    return _table(path, name, v[:, 0] + v[:, 2] / 2, v[:, 1] + v[:, 3] / 2)


def _sniff(path: Path) -> str:
    """Format of a coordinate file: 'star', 'topaz', 'csv' or 'box'."""
    suffix = path.suffix.lower()
    if suffix in (".star", ".box", ".csv"):
        return suffix[1:]
    if path.is_file() and path.stat().st_size == 0:
        return "topaz"  # an empty .txt/.tsv: no picks
    try:
        with open(path, errors="replace") as fh:
            first = next((line for line in fh if line.strip() and not line.startswith("#")), "")
    except OSError as exc:
        raise file_error(path, f"cannot read ({exc})") from None
    words = first.replace(",", " ").split()
    if first.lstrip().startswith("data_"):
        return "star"
    if "image_name" in words or "micrograph" in words:
        return "csv" if "," in first else "topaz"
    if len(words) >= 4 and all(re.fullmatch(r"[-+0-9.eE]+", w) for w in words):
        return "box"
    raise file_error(path, "unknown coordinate format (expected RELION STAR, Topaz, CSV or EMAN .box)")


def _read_one(path: Path) -> pd.DataFrame:
    """Read one coordinate file of any format; files without picks give an empty table."""
    kind = _sniff(path)
    if kind == "star":
        blocks = read_star_blocks(path)
        if "coordinate_files" in blocks:
            return _read_coordinate_list(path, blocks["coordinate_files"])
        return read_particles(path, allow_empty=True)
    reader = {"topaz": read_topaz, "csv": read_csv, "box": read_box}[kind]
    return reader(path, allow_empty=True)


def _resolve(name: str, base: Path) -> Path:
    """A path named in a STAR: absolute, or relative to the STAR, the cwd, or the STAR's parents."""
    if Path(name).is_absolute():
        return Path(name)
    for root in (base, Path.cwd(), *list(base.resolve().parents)[:3]):
        if (root / name).is_file():
            return root / name
    return base / name


def _read_coordinate_list(path: Path, table: pd.DataFrame) -> pd.DataFrame:
    """RELION 4+ ``autopick.star``: one coordinate STAR per micrograph."""
    needed = {"rlnMicrographName", "rlnMicrographCoordinates"}
    if not isinstance(table, pd.DataFrame) or not needed <= set(table.columns):
        raise file_error(path, "data_coordinate_files lacks rlnMicrographName / rlnMicrographCoordinates")
    parts = []
    for mic, coords in zip(table["rlnMicrographName"].astype(str), table["rlnMicrographCoordinates"].astype(str)):
        df = read_particles(_resolve(coords, path.parent), allow_empty=True)
        df["micrograph"] = mic
        parts.append(df)
    return _concat(path, parts)


def _concat(spec, parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        raise PixerError(f"{spec}: no picks found")
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
    df.attrs = {"source": str(spec)}
    return df


def _expand(spec: str | os.PathLike) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        if (path / "autopick.star").is_file():
            return [path / "autopick.star"]
        found = sorted(
            p for p in path.iterdir()
            if p.is_file() and p.suffix.lower() in PICK_SUFFIXES and not p.name.startswith(("coords_suffix", "."))
        )
        if not found:
            raise file_error(path, f"no coordinate files ({', '.join(PICK_SUFFIXES)}) in this folder")
        return found
    if path.is_file():
        return [path]
    if any(c in str(spec) for c in "*?["):
        found = sorted(
            Path(p) for p in glob.glob(str(spec), recursive=True)
            if Path(p).is_file() and not Path(p).name.startswith("coords_suffix")
        )
        if not found:
            raise PixerError(f"{spec}: no files match this pattern")
        return found
    raise file_error(path, "no such file or folder")


def read_picks(
    spec: str | os.PathLike | Sequence[str | os.PathLike], apix: float | None = None
) -> pd.DataFrame:
    """Read picks from any supported format into one particles table.

    Parameters
    ----------
    spec
        A file, a folder (its ``.star/.box/.txt/.tsv/.csv`` files, or its
        ``autopick.star`` if it has one), a glob pattern (``**`` allowed), or
        a list of these. The format is taken from the suffix, else from the
        content: STAR (particles, coordinates, or a RELION 4 ``autopick.star``
        list), Topaz text, CSV, EMAN ``.box``.
    apix
        Micrograph pixel size in Å/px; sets the ``apix`` column for all rows.

    Returns
    -------
    pandas.DataFrame
        The particles table, all files concatenated (centres, micrograph px).
        Files without picks are allowed as long as some file has picks.
    """
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    paths = [p for item in items for p in _expand(item)]
    where = paths[0] if len(paths) == 1 else spec if len(items) == 1 else list(map(str, items))
    df = _concat(where, [_read_one(p) for p in paths])
    if apix is not None:
        df["apix"] = float(apix)
    return df


def _per_micrograph(df: pd.DataFrame, outdir: Path, suffix: str) -> list[tuple[str, Path, pd.DataFrame]]:
    """Group picks by micrograph with their safe output paths; refuse collisions."""
    groups, seen = [], {}
    for name, group in df.groupby("micrograph", sort=True):
        out = output_path(outdir, str(name), suffix)
        if out in seen:
            raise PixerError(f"micrographs {seen[out]} and {name} would both be written to {out}")
        seen[out] = name
        groups.append((str(name), out, group))
    return groups


def _check(df: pd.DataFrame, where) -> None:
    missing = [c for c in ("micrograph", "x", "y") if c not in df.columns]
    if missing:
        raise file_error(where, f"particles table lacks column(s) {', '.join(missing)}")


def write_relion_coords(
    df: pd.DataFrame, outdir: str | os.PathLike, suffix: str = "_pixer", micrographs_star: str = "micrographs.star"
) -> Path:
    """Write RELION coordinate STARs, one per micrograph, plus the list files.

    Parameters
    ----------
    df
        Particles table; ``x``, ``y`` centres in micrograph pixels.
    outdir
        Gets ``<sub-folders>/<stem><suffix>.star`` per micrograph (``data_``
        loop: ``rlnCoordinateX/Y``, ``rlnAutopickFigureOfMerit`` if ``score``,
        ``rlnClassNumber`` 0, ``rlnAnglePsi`` -999, as RELION autopick
        writes), ``coords_suffix<suffix>.star`` (RELION 3.x) and
        ``autopick.star`` (RELION 4+ ``data_coordinate_files``; coordinate
        paths relative to the current folder, RELION's project folder, when
        under it, else absolute).
    suffix
        Added to each micrograph stem (``mic_001_pixer.star``).
    micrographs_star
        The content of ``coords_suffix<suffix>.star``.

    Returns
    -------
    Path
        ``<outdir>/autopick.star``.
    """
    outdir = Path(outdir)
    _check(df, outdir)
    names, files, cwd = [], [], Path.cwd().resolve()
    for name, out, group in _per_micrograph(df, outdir, f"{suffix}.star"):
        table = pd.DataFrame({"rlnCoordinateX": group["x"].astype(float), "rlnCoordinateY": group["y"].astype(float)})
        if "score" in group.columns:
            table["rlnAutopickFigureOfMerit"] = group["score"].astype(float).fillna(0.0)
        table["rlnClassNumber"] = 0
        table["rlnAnglePsi"] = -999.0
        with atomic_path(out) as tmp:
            starfile.write(table.reset_index(drop=True), tmp)
        names.append(name)
        files.append(out.relative_to(cwd).as_posix() if cwd in out.parents else str(out))
    write_text_atomic(outdir / f"coords_suffix{suffix}.star", f"{micrographs_star}\n")
    listing = pd.DataFrame({"rlnMicrographName": names, "rlnMicrographCoordinates": files})
    autopick = outdir / "autopick.star"
    with atomic_path(autopick) as tmp:
        starfile.write({"coordinate_files": listing}, tmp)
    return autopick


def write_topaz(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write picks as one Topaz coordinate file, atomically.

    Parameters
    ----------
    df
        Particles table; ``x``, ``y`` centres in micrograph pixels.
    path
        Output file: tab-separated ``image_name x_coord y_coord [score]``.
        ``image_name`` is the micrograph stem (Topaz matches it to the file
        name without extension); ``score`` is written when present.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    _check(df, path)
    stems = [name_keys(str(m))[2] for m in df["micrograph"]]
    out = pd.DataFrame({"image_name": stems, "x_coord": df["x"].to_numpy(), "y_coord": df["y"].to_numpy()})
    if "score" in df.columns:
        out["score"] = df["score"].to_numpy()
    with atomic_path(path) as tmp:
        out.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    return path


def write_box(df: pd.DataFrame, outdir: str | os.PathLike, box_size_px: float) -> list[Path]:
    """Write one EMAN ``.box`` file per micrograph, atomically.

    Parameters
    ----------
    df
        Particles table; ``x``, ``y`` centres in micrograph pixels.
    outdir
        Output folder; ``<stem>.box`` per micrograph, sub-folders of the
        micrograph names mirrored.
    box_size_px
        Box edge ``b`` in pixels. Each line is ``x - b/2  y - b/2  b  b``
        (lower-left corner, then size), tab-separated.

    Returns
    -------
    list of Path
        The files written.
    """
    outdir = Path(outdir)
    _check(df, outdir)
    half, written = box_size_px / 2.0, []
    for _, out, group in _per_micrograph(df, outdir, ".box"):
        b = f"{box_size_px:g}"
        lines = [f"{x - half:.4f}\t{y - half:.4f}\t{b}\t{b}" for x, y in zip(group["x"], group["y"])]
        written.append(write_text_atomic(out, "\n".join(lines) + "\n"))
    return written


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the particles table as CSV, atomically.

    Parameters
    ----------
    df
        Particles table; all its columns are written, ``micrograph, x, y
        [, score]`` first (centres in micrograph pixels).
    path
        Output ``.csv`` file.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    _check(df, path)
    front = ["micrograph", "x", "y"] + (["score"] if "score" in df.columns else [])
    out = df[front + [c for c in df.columns if c not in front]]
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False, float_format="%.6f")
    return path
