"""Safe output naming and atomic writes.

Micrograph names come from STAR files, i.e. from data. Output paths derived from
them must never escape the output folder, and a crash must never leave a
half-written file under a final name: everything is written to a temporary name
in the same folder and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

_UNSAFE = re.compile(r"[^A-Za-z0-9._+@=-]")
_UMASK = os.umask(0)
os.umask(_UMASK)
#: Mode of files written through :func:`atomic_path` (what ``open`` would give; mkstemp gives 0600).
FILE_MODE = 0o666 & ~_UMASK


def safe_relpath(name: str, suffix: str = "", drop_ext: bool = True) -> Path:
    """Turn a micrograph name into a relative path that stays inside a folder.

    Sub-folders are kept (RELION projects nest micrographs in job folders) but
    absolute prefixes, ``..`` and ``.`` components and odd characters are
    removed, so ``../../etc/passwd`` becomes ``etc/passwd``.

    Parameters
    ----------
    name
        Micrograph name, e.g. ``MotionCorr/job002/Movies/mic_001.mrc``.
    suffix
        Appended to the stem, e.g. ``"_pixer.star"``.
    drop_ext
        Remove the file extension of ``name`` first.

    Returns
    -------
    Path
        A relative path with at least one component.
    """
    parts = [p for p in PurePosixPath(str(name).replace("\\", "/")).parts]
    clean = []
    for p in parts:
        if p in ("/", "", ".", "..") or p.endswith(":"):
            continue
        p = _UNSAFE.sub("_", p).lstrip(".")
        if p:
            clean.append(p)
    if not clean:
        clean = ["unnamed"]
    last = clean[-1]
    if drop_ext and "." in last:
        last = last.rsplit(".", 1)[0] or last
    clean[-1] = last + suffix
    return Path(*clean)


def output_path(outdir: str | os.PathLike, name: str, suffix: str = "") -> Path:
    """``outdir / safe_relpath(name, suffix)``, checked to lie inside ``outdir``."""
    root = Path(outdir).resolve()
    path = (root / safe_relpath(name, suffix)).resolve()
    if root != path and root not in path.parents:  # pragma: no cover - safe_relpath prevents it
        raise ValueError(f"{name}: output path escapes {outdir}")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    The temporary name keeps the final suffix so writers that look at the
    extension (mrcfile, matplotlib) behave.

    Examples
    --------
    >>> with atomic_path("out/mic_001.star") as tmp:   # doctest: +SKIP
    ...     df.to_csv(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


#: Names :func:`atomic_path` gives its temporary files (``.{stem}.{8 random}.tmp{suffix}``).
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed run of :func:`atomic_path` left under ``folder``.

    Only names of the exact temporary pattern are touched, never a final output.
    Call it before a run starts writing (a concurrent writer's temp would go too).

    Returns
    -------
    list[Path]
        The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.rglob(".*.tmp*"):
        if path.is_file() and _TEMP_NAME.match(path.name):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
