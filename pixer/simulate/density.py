"""3D density maps for simulation: from atoms, atomic models, MRC files or built-in demos.

All maps are ``(d, d, d)`` float32 arrays indexed ``vol[z, y, x]`` with the molecule's
(weighted) centre of mass on voxel ``d // 2`` (RELION's box centre). Coordinates are
in Å with ``(x, y, z)`` columns.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import mrcfile
import numpy as np

from pixer.errors import PixerError, file_error

_CHUNK = 4096  # atoms per splatting chunk


def density_from_atoms(
    coords_A: np.ndarray,
    weights: np.ndarray | None,
    apix: float,
    box: int | None = None,
    bfactor: float | None = None,
) -> np.ndarray:
    """Sum of one 3D Gaussian per atom, centred in the box.

    Parameters
    ----------
    coords_A
        ``(n, 3)`` atom positions ``(x, y, z)`` in Å.
    weights
        ``(n,)`` atom weights (e.g. atomic numbers); None means 1.
    apix
        Voxel size, Å.
    box
        Box size in voxels; default: just large enough for the molecule plus a
        margin, rounded up to an even number.
    bfactor
        Gaussian width as a B-factor in Å^2 (``sigma^2 = B / (8 pi^2)``); default
        ``sigma = apix``. Widths below ``0.5 * apix`` are raised to it (aliasing).

    Returns
    -------
    np.ndarray
        ``(box, box, box)`` float32; the weighted centre of mass is at voxel
        ``box // 2``; the map sums to ``sum(weights)`` (atoms inside the box).
    """
    xyz = np.asarray(coords_A, dtype=np.float64).reshape(-1, 3)
    w = np.ones(len(xyz)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(xyz) == 0 or len(w) != len(xyz):
        raise PixerError("density_from_atoms: need n >= 1 atoms and one weight per atom")
    sigma = apix if bfactor is None else math.sqrt(max(bfactor, 0.0) / (8 * math.pi**2))
    sigma = max(sigma, 0.5 * apix)
    com = (xyz * w[:, None]).sum(0) / w.sum()
    xyz = xyz - com
    if box is None:
        extent = np.sqrt((xyz**2).sum(1)).max() + 3 * sigma + 2 * apix
        box = int(2 * math.ceil(extent / apix)) + 2
    pos = xyz / apix + box // 2  # voxel coordinates (x, y, z)
    r = int(math.ceil(3 * sigma / apix))
    off = np.arange(-r, r + 1)
    out = np.zeros(box**3, dtype=np.float64)
    for i in range(0, len(pos), _CHUNK):
        p, wc = pos[i:i + _CHUNK], w[i:i + _CHUNK]
        base = np.floor(p).astype(np.int64)
        idx = base[:, :, None] + off  # (m, 3, k)
        g = np.exp(-0.5 * ((idx - p[:, :, None]) * (apix / sigma)) ** 2)
        g /= g.sum(-1, keepdims=True)
        inside = (idx >= 0) & (idx < box)
        g = g * inside
        idx = np.clip(idx, 0, box - 1)
        gx, gy, gz = g[:, 0], g[:, 1], g[:, 2]
        vals = (wc[:, None, None, None] * gz[:, :, None, None] * gy[:, None, :, None] * gx[:, None, None, :])
        flat = (idx[:, 2, :, None, None] * box + idx[:, 1, None, :, None]) * box + idx[:, 0, None, None, :]
        out += np.bincount(flat.ravel(), weights=vals.ravel(), minlength=box**3)
    return out.reshape(box, box, box).astype(np.float32)


def density_from_model(path: str | os.PathLike, apix: float, box: int | None = None,
                       bfactor: float | None = None) -> np.ndarray:
    """Density of a PDB / mmCIF model (first model, no hydrogens or waters).

    Atoms are weighted by atomic number and centred on their weighted centre of
    mass; see :func:`density_from_atoms` for ``box`` and ``bfactor``.
    """
    import gemmi

    path = Path(path)
    try:
        st = gemmi.read_structure(str(path))
        st.setup_entities()
        st.remove_hydrogens()
        st.remove_waters()
    except Exception as exc:  # gemmi raises RuntimeError/ValueError/OSError
        raise file_error(path, f"cannot read atomic model ({exc})") from None
    if len(st) == 0:
        raise file_error(path, "no models in the file")
    xyz, z = [], []
    for chain in st[0]:
        for res in chain:
            for atom in res:
                xyz.append(atom.pos.tolist())
                z.append(atom.element.atomic_number)
    if not xyz:
        raise file_error(path, "no atoms in the first model")
    return density_from_atoms(np.array(xyz), np.array(z, dtype=np.float64), apix, box, bfactor)


def load_map(path: str | os.PathLike, apix: float | None = None) -> tuple[np.ndarray, float]:
    """Read a cubic MRC map.

    Parameters
    ----------
    path
        MRC/MAP file.
    apix
        Voxel size in Å overriding the header (needed when the header has 0).

    Returns
    -------
    vol, apix
        ``(d, d, d)`` float32 ``vol[z, y, x]`` and the voxel size in Å.
    """
    path = Path(path)
    try:
        with mrcfile.open(path, permissive=True) as mrc:
            if mrc.data is None:
                raise ValueError("no data")
            vol = np.asarray(mrc.data, dtype=np.float32).copy()
            header_apix = float(mrc.voxel_size.x)
    except (OSError, ValueError) as exc:
        raise file_error(path, f"cannot read MRC map ({exc})") from None
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise file_error(path, f"map must be a cubic 3D volume, got shape {vol.shape}")
    if not np.isfinite(vol).all():
        raise file_error(path, "map contains NaN or infinite values")
    apix = header_apix if apix is None else float(apix)
    if not apix > 0:
        raise file_error(path, "voxel size is not set in the header; give it explicitly")
    return vol, apix


def check_density(vol: np.ndarray, source: str | os.PathLike) -> None:
    """Refuse a map with nothing to project: non-finite values, no positive density, or constant.

    Parameters
    ----------
    vol
        ``(d, d, d)`` map, protein positive.
    source
        The map's file (or a description) named in the error.

    Raises
    ------
    PixerError
        One line naming ``source`` and what is wrong.
    """
    v = np.asarray(vol)
    if v.size == 0:
        raise file_error(source, "map is empty")
    if not np.isfinite(v).all():
        raise file_error(source, "map contains NaN or infinite values")
    lo, hi = float(v.min()), float(v.max())
    if hi <= 0:
        raise file_error(source, f"map has no positive density (maximum {hi:g}; protein must be positive: "
                                 f"an empty or inverted map?)")
    if lo == hi:
        raise file_error(source, f"map is constant ({hi:g} everywhere): no particle to project")


def estimate_diameter(vol: np.ndarray, apix: float, fraction: float = 0.99) -> float:
    """Particle diameter in Å: twice the radius around the box centre holding
    ``fraction`` of the positive density above 5 % of the maximum.

    Raises
    ------
    PixerError
        When the map has no positive (finite) density, so no diameter.
    """
    v = np.asarray(vol, dtype=np.float64)
    if not (np.isfinite(v).all() and v.size and v.max() > 0):
        raise PixerError("cannot estimate the particle diameter: the map has no positive finite density")
    v = np.clip(v, 0, None)
    v = np.where(v > 0.05 * v.max(), v, 0.0)
    d = v.shape[0]
    c = np.arange(d) - d // 2
    r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2).ravel()
    order = np.argsort(r)
    cum = np.cumsum(v.ravel()[order])
    k = np.searchsorted(cum, fraction * cum[-1])
    return float(2 * r[order][min(k, len(r) - 1)] * apix)


# ---------------------------------------------------------------- demo models

def _octahedral_rotations() -> np.ndarray:
    """The 24 proper rotations of the cube, ``(24, 3, 3)``."""
    import itertools

    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            m[range(3), perm] = signs
            if np.linalg.det(m) > 0:
                mats.append(m)
    return np.array(mats)


def _ellipsoid_points(rng: np.random.Generator, n: int, radii) -> np.ndarray:
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    return p * rng.random((n, 1)) ** (1 / 3) * np.asarray(radii, dtype=float)


def _frame(u: np.ndarray) -> np.ndarray:
    """Orthonormal frame (3, 3) whose third column is ``u``."""
    u = u / np.linalg.norm(u)
    a = np.cross(u, [0.0, 0.0, 1.0] if abs(u[2]) < 0.9 else [1.0, 0.0, 0.0])
    a /= np.linalg.norm(a)
    return np.stack([a, np.cross(u, a), u], 1)


def _apoferritin(rng: np.random.Generator) -> np.ndarray:
    # one subunit: a four-helix bundle (4 rods, 5 Å radius, 45 Å long) lying tangentially
    rods = []
    for dx, dy in ((-5.5, -5.5), (-5.5, 5.5), (5.5, -5.5), (5.5, 5.5)):
        p = _ellipsoid_points(rng, 260, (5.0, 5.0, 1.0))
        p[:, 2] = rng.uniform(-22.5, 22.5, len(p))
        rods.append(p + [dx, dy, 0.0])
    sub = np.concatenate(rods)  # bundle axis along z
    centre_dir = np.array([1.0, 0.42, 0.17])
    f = _frame(centre_dir)  # third column radial
    # bundle axis tangential: map local z -> f[:, 0], local x -> radial, local y -> f[:, 1]
    local = np.stack([f[:, 2], f[:, 1], f[:, 0]], 1)
    sub = sub @ local.T + 50.0 * centre_dir / np.linalg.norm(centre_dir)
    return np.concatenate([sub @ m.T for m in _octahedral_rotations()])


def _small(rng: np.random.Generator) -> np.ndarray:
    # elongated two-domain protein, ~60 Å long
    a = _ellipsoid_points(rng, 1500, (16.0, 14.0, 18.0)) + [0, 0, -12.0]
    b = _ellipsoid_points(rng, 900, (12.0, 11.0, 13.0)) + [3.0, 2.0, 16.0]
    return np.concatenate([a, b])


def _ribosome(rng: np.random.Generator) -> np.ndarray:
    # large subunit ~230 Å across, small subunit flattened and offset, with clumps
    large = _ellipsoid_points(rng, 36000, (115.0, 105.0, 95.0)) + [0, 0, -30.0]
    small = _ellipsoid_points(rng, 18000, (100.0, 75.0, 45.0)) + [10.0, 0, 75.0]
    clumps = np.concatenate([_ellipsoid_points(rng, 400, (14.0, 14.0, 14.0)) + c
                             for c in _ellipsoid_points(rng, 20, (95.0, 85.0, 90.0))])
    return np.concatenate([large, small, clumps])


_DEMOS = {"apoferritin": (_apoferritin, 7.0), "small": (_small, 7.0), "ribosome": (_ribosome, 7.0)}
DEMO_KINDS = tuple(_DEMOS)


def demo_density(kind: str, apix: float, seed: int = 0, box: int | None = None) -> np.ndarray:
    """A pseudo-atomic test specimen built in code (deterministic for a seed).

    Parameters
    ----------
    kind
        ``"apoferritin"`` (octahedral 24-mer shell, outer diameter ~120 Å, inner
        ~80 Å), ``"small"`` (elongated two-domain protein, ~60 Å) or
        ``"ribosome"`` (two subunits, ~250 Å).
    apix
        Voxel size, Å.
    seed
        Seed of the pseudo-atom positions.
    box
        Box size in voxels (default: fits the specimen).

    Returns
    -------
    np.ndarray
        ``(d, d, d)`` float32 map.
    """
    if kind not in _DEMOS:
        raise PixerError(f"unknown demo specimen {kind!r}; choose one of {', '.join(_DEMOS)}")
    build, weight = _DEMOS[kind]
    xyz = build(np.random.default_rng(seed))
    return density_from_atoms(xyz, np.full(len(xyz), weight), apix, box, bfactor=8 * math.pi**2 * max(apix, 2.0) ** 2)


__all__ = ["DEMO_KINDS", "check_density", "demo_density", "density_from_atoms", "density_from_model",
           "estimate_diameter", "load_map"]
