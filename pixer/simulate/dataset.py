"""Write a simulated dataset: micrographs, RELION STARs and ground truth.

Layout of ``out/``::

    micrographs/mic_0000.mrc        noisy micrographs (float32, pixel size in header)
    micrographs.star                RELION 3.1 micrographs STAR (optics + micrographs)
    particles.star                  RELION 3.1 particles STAR (angles, origins, CTF)
    coords/mic_0000.star            per-micrograph rlnCoordinateX/Y
    truth/mic_0000_clean.mrc        CTF-free projection sum
    truth/mic_0000_mask.mrc         particle mask (int8 0/1)
    truth/mic_0000_junk.mrc         interference mask (int8 0/1)
    map.mrc                         the map used (voxel size in header)
    simulation.json                 parameters, seed, pixer version, diameter

Micrograph ``i`` draws everything from ``numpy.random.default_rng([seed, i])``, so
micrographs can be made in any order or in parallel and the same seed gives
byte-identical files (STAR files carry no time stamp).

Example
-------
>>> simulate_dataset(Path("sim"), n=20, size=1024, apix=2.0, snr_db=-10, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile
import torch
from tqdm import tqdm

import pixer
from pixer.errors import PixerError
from pixer.io.micrographs import require_room, write_micrographs_star
from pixer.io.mrc_write import write_mrc
from pixer.io.paths import atomic_path
from pixer.io.star import write_particles_star
from pixer.physics.project import fourier_volume
from pixer.simulate.density import check_density, demo_density, density_from_model, estimate_diameter, load_map
from pixer.simulate.micrograph import DEFAULT_INTERFERENCE, simulate_micrograph

#: largest |SNR| in dB a simulation accepts (10^±10 in power: beyond that, float overflow or no noise)
SNR_DB_LIMIT = 100.0

_STAMP = "# Created by the starfile Python package"
_LABEL = b"Created by pixer.simulate".ljust(80)


def _strip_stamp(path: Path) -> None:
    """Remove starfile's time-stamp comment so identical runs give identical bytes."""
    text = path.read_text()
    lines = [ln for ln in text.splitlines(keepends=True) if not ln.startswith(_STAMP)]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines))


def _write_mrc(path: Path, data: np.ndarray, apix: float) -> None:
    """:func:`pixer.io.mrc_write.write_mrc`, then replace mrcfile's time-stamped label."""
    write_mrc(path, data, apix)
    with atomic_path(path) as tmp:
        tmp.write_bytes(path.read_bytes())
        with mrcfile.open(tmp, mode="r+") as mrc:
            mrc.header.label[0] = _LABEL


def _write_coords(df: pd.DataFrame, path: Path) -> None:
    table = pd.DataFrame({"rlnCoordinateX": df["x"].astype(float).to_numpy(),
                          "rlnCoordinateY": df["y"].astype(float).to_numpy()})
    with atomic_path(path) as tmp:
        starfile.write(table, tmp)
    _strip_stamp(path)


def _specimen(map_path, map_apix, pdb_path, demo, apix) -> tuple[np.ndarray, float, str]:
    if map_path is not None and pdb_path is not None:
        raise PixerError("give either a map or an atomic model, not both")
    if map_path is not None:
        vol, vol_apix = load_map(map_path, map_apix)
        check_density(vol, map_path)
        return vol, vol_apix, f"map:{os.fspath(map_path)}"
    if pdb_path is not None:
        vol = density_from_model(pdb_path, apix)
        check_density(vol, pdb_path)
        return vol, apix, f"model:{os.fspath(pdb_path)}"
    return demo_density(demo, apix, seed=0), apix, f"demo:{demo}"


def default_particles_per_micrograph(size: int, apix: float, diameter_A: float, fill: float = 0.3) -> int:
    """Particles covering ``fill`` of a ``size``-px square micrograph (~100 for
    1024^2 px of apoferritin at 2 Å/px).

    Raises
    ------
    PixerError
        When ``apix`` or ``diameter_A`` is not a finite number > 0.
    """
    if not (0 < apix < math.inf and 0 < diameter_A < math.inf):
        raise PixerError(f"need a pixel size and a particle diameter > 0 Å, got {apix:g} Å/px and {diameter_A:g} Å")
    disc = math.pi * (diameter_A / apix / 2) ** 2
    return max(1, int(fill * size * size / disc))


def max_particles_per_micrograph(size: int, apix: float, diameter_A: float) -> int:
    """The most particles :func:`simulate_dataset` places on a ``size``-px square micrograph: four
    centres per ``diameter²`` (already heavy overlap; more only costs memory and time)."""
    return max(1, int(4 * (size * apix / diameter_A) ** 2))


def simulate_dataset(
    out: str | os.PathLike,
    n: int,
    size: int,
    apix: float,
    snr_db: float,
    seed: int,
    map_path: str | os.PathLike | None = None,
    pdb_path: str | os.PathLike | None = None,
    demo: str = "apoferritin",
    particles_per_micrograph: int | None = None,
    interference: bool | dict = True,
    progress: bool = True,
    *,
    map_apix: float | None = None,
    defocus_range: tuple[float, float] = (10000.0, 25000.0),
    astigmatism: float = 500.0,
    voltage: float = 300.0,
    cs: float = 2.7,
    amp_contrast: float = 0.1,
    min_distance_A: float | None = None,
) -> dict:
    """Simulate ``n`` micrographs of ``size x size`` px and write them with their truth.

    Parameters
    ----------
    out
        Output folder (created).
    n, size
        Number of micrographs and their edge length in pixels.
    apix
        Micrograph pixel size, Å/px.
    snr_db
        SNR in dB (see :mod:`pixer.simulate.micrograph`), finite, within ±:data:`SNR_DB_LIMIT`.
    seed
        Master seed; micrograph ``i`` uses ``default_rng([seed, i])``.
    map_path, pdb_path, demo
        Specimen: an MRC map, a PDB/mmCIF model, or a built-in demo (default).
    particles_per_micrograph
        Default: :func:`default_particles_per_micrograph`.
    interference
        As in :func:`~pixer.simulate.micrograph.simulate_micrograph`.
    progress
        Show a tqdm bar.
    map_apix
        Voxel size of ``map_path`` when its header has none.
    defocus_range, astigmatism, voltage, cs, amp_contrast
        Optics (Å, Å, kV, mm, fraction).
    min_distance_A
        Least centre-to-centre distance of two particles, Å (default: the
        particle diameter). Below the diameter particles touch and their
        projections overlap, as on densely packed grids.

    Returns
    -------
    dict
        The summary also written to ``simulation.json``.
    """
    out = Path(out)
    if n < 0 or size < 16 or not 0 < apix < math.inf:
        raise PixerError(f"{out}: need n >= 0, size >= 16 px and apix > 0")
    if not -SNR_DB_LIMIT <= snr_db <= SNR_DB_LIMIT:  # also refuses nan
        raise PixerError(f"SNR must be a finite number of dB within ±{SNR_DB_LIMIT:g}, got {snr_db}")
    vol, vol_apix, source = _specimen(map_path, map_apix, pdb_path, demo, apix)
    diameter = estimate_diameter(vol, vol_apix)
    if n:
        require_room(source, (size, size), apix, diameter, hint="raise --size or --apix")
    ppm = (default_particles_per_micrograph(size, apix, diameter) if particles_per_micrograph is None
           else int(particles_per_micrograph))
    most = max_particles_per_micrograph(size, apix, diameter)
    if ppm > most:
        raise PixerError(f"{ppm} particles per micrograph: at most {most} of {diameter:.0f} Å fit on a {size} px "
                         f"micrograph at {apix:g} Å/px (4 per particle area, overlapping)")
    fvol = fourier_volume(torch.from_numpy(np.ascontiguousarray(vol, dtype=np.float32)))
    for sub in ("micrographs", "truth", "coords") if n else ():  # a folder that cannot be made fails before any write
        (out / sub).mkdir(parents=True, exist_ok=True)
    _write_mrc(out / "map.mrc", vol, vol_apix)
    optics = dict(voltage=voltage, cs=cs, amp_contrast=amp_contrast)
    tables, mic_paths, box = [], [], None
    for i in tqdm(range(n), desc="simulate", unit="mic", disable=not progress):
        stem = f"mic_{i:04d}"
        name = f"micrographs/{stem}.mrc"
        res = simulate_micrograph(
            fvol, vol_apix, (size, size), apix, ppm, snr_db, np.random.default_rng([seed, i]),
            defocus_range=defocus_range, astigmatism=astigmatism, interference=interference,
            diameter_A=diameter, name=name, min_distance_A=min_distance_A, **optics)
        box = res.params["box"]
        _write_mrc(out / name, res.image, apix)
        _write_mrc(out / "truth" / f"{stem}_clean.mrc", res.clean, apix)
        _write_mrc(out / "truth" / f"{stem}_mask.mrc", res.mask.astype(np.int8), apix)
        _write_mrc(out / "truth" / f"{stem}_junk.mrc", res.junk_mask.astype(np.int8), apix)
        _write_coords(res.particles, out / "coords" / f"{stem}.star")
        tables.append(res.particles)
        mic_paths.append(out / name)
    particles = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["micrograph", "x", "y"])
    if mic_paths:
        write_micrographs_star(mic_paths, out / "micrographs.star", apix, **optics)
        _strip_stamp(out / "micrographs.star")
    write_particles_star(particles, out / "particles.star", apix, image_apix=apix, box_size=box, **optics)
    _strip_stamp(out / "particles.star")
    summary = {
        "pixer_version": pixer.__version__,
        "seed": seed,
        "n_micrographs": n,
        "size_px": size,
        "apix": apix,
        "snr_db": snr_db,
        "specimen": source,
        "map_apix": vol_apix,
        "map_box": int(vol.shape[0]),
        "particle_diameter_A": round(diameter, 3),
        "particles_per_micrograph": ppm,
        "min_distance_A": round(float(diameter if min_distance_A is None else min_distance_A), 3),
        "n_particles": len(particles),
        "box_px": box,
        "interference": (dict(DEFAULT_INTERFERENCE) if interference is True else
                         {} if interference is False else {**DEFAULT_INTERFERENCE, **interference}),
        "defocus_range_A": list(defocus_range),
        "astigmatism_A": astigmatism,
        **optics,
        "rng": "numpy.random.default_rng([seed, micrograph_index])",
    }
    with atomic_path(out / "simulation.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


__all__ = ["default_particles_per_micrograph", "max_particles_per_micrograph", "simulate_dataset"]
