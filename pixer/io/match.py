"""Matching micrograph names in coordinate files to micrograph files.

Coordinate files name their micrograph in many ways: a RELION path relative to
the project, a bare file name, the stem of a per-micrograph file
(``mic_001_autopick.star``), or a cryoSPARC name with a numeric UID prefix.
:func:`match_micrograph_names` resolves them level by level.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import pandas as pd

from pixer.errors import PixerError

#: Suffixes that coordinate files add to the micrograph stem.
COORD_SUFFIXES = ("_autopick", "_manualpick", "_pick", "_pixer", "_coords")
_CRYOSPARC_UID = re.compile(r"^\d{15,}_")
#: What a file extension looks like: a letter, then at most 5 letters or digits (``mrc``, ``star``,
#: ``tiff``, ``cbox``). A dot followed by anything else is part of the name (``set_2.5A_mic_001``).
_EXTENSION = re.compile(r"[A-Za-z][A-Za-z0-9]{0,5}")


def _strip_coord_suffix(stem: str) -> str:
    """Remove coordinate-file suffixes, also stacked ones (``mic_pixer_coords``)."""
    changed = True
    while changed:
        changed = False
        for suffix in COORD_SUFFIXES:
            if stem.endswith(suffix) and len(stem) > len(suffix):
                stem, changed = stem[: -len(suffix)], True
    return stem


def name_keys(name: str) -> list[str]:
    """Keys of a name from most to least specific: exact, basename, stem,
    stem without a coordinate-file suffix, stem without a cryoSPARC UID."""
    base = PurePosixPath(name.replace("\\", "/")).name
    head, dot, ext = base.rpartition(".")
    stem = head if dot and head and _EXTENSION.fullmatch(ext) else base
    stripped = _strip_coord_suffix(stem)
    return [name, base, stem, stripped, _CRYOSPARC_UID.sub("", stripped)]


def match_micrograph_names(
    picks_df: pd.DataFrame, micrograph_paths: Sequence[str | os.PathLike], on_unknown: str = "error"
) -> pd.Series:
    """Map each pick to its micrograph file.

    A pick's ``micrograph`` name is compared with each file at the first level
    that gives a unique answer: the exact path string (or, for a relative
    name such as ``Movies/a/mic_001.mrc``, the one file whose path ends with
    it), the basename
    (``mic_001.mrc``), the stem (``mic_001``), the stem with a coordinate-file
    suffix (``_autopick``, ``_pick``, ``_manualpick``, ``_pixer``,
    ``_coords``) stripped, and finally without a leading cryoSPARC UID
    (``001281467243737059_``). A key shared by two files is ambiguous at that
    level and is skipped.

    Parameters
    ----------
    picks_df
        Particles table with a ``micrograph`` column.
    micrograph_paths
        Micrograph files, e.g. from :func:`pixer.io.micrographs.list_micrographs`.
    on_unknown
        ``"error"``: raise if a pick's micrograph is not found; ``"drop"``:
        leave those rows out of the result.

    Returns
    -------
    pandas.Series
        Index of ``picks_df`` (without dropped rows) -> ``Path``.
    """
    if on_unknown not in ("error", "drop"):
        raise ValueError(f"on_unknown must be 'error' or 'drop', not {on_unknown!r}")
    paths = [Path(p) for p in micrograph_paths]
    levels: list[dict[str, Path | None]] = [{} for _ in range(5)]
    same_base: dict[str, list[Path]] = {}
    for p in paths:
        same_base.setdefault(p.name, []).append(p)
        for level, key in zip(levels, name_keys(p.as_posix())):
            level[key] = None if key in level and level[key] != p else p
    lookup: dict[str, Path | None] = {}
    for name in pd.unique(picks_df["micrograph"].astype(str)):
        keys = name_keys(name)
        hit = levels[0].get(keys[0])
        if hit is None and "/" in keys[0]:  # a relative path naming one of several same-named files
            tails = [p for p in same_base.get(keys[1], []) if p.as_posix().endswith("/" + keys[0].lstrip("./"))]
            hit = tails[0] if len(tails) == 1 else None
        for level, key in zip(levels[1:], keys[1:]):
            if hit is not None:
                break
            hit = level.get(key)
        lookup[name] = hit
    result = picks_df["micrograph"].astype(str).map(lookup)
    unknown = [n for n, p in lookup.items() if p is None]
    if unknown and on_unknown == "error":
        source = picks_df.attrs.get("source", "picks")
        raise PixerError(
            f"{source}: {len(unknown)} micrograph name(s) match no micrograph file "
            f"(e.g. {', '.join(unknown[:3])}) among {len(paths)} files"
        )
    return result[result.notna()]
