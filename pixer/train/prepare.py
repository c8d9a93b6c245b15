"""Turn micrograph files and coordinates into training samples.

Micrographs are binned so that the particle diameter spans ``particle_px``
pixels (the scale the network is trained and later applied at), normalised,
and paired with disc labels drawn at the true particle centres.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pixer.data.preprocess import prepare
from pixer.errors import PixerError
from pixer.io.match import match_micrograph_names
from pixer.io.micrographs import read_micrograph
from pixer.labels.discs import DEFAULT_FRACTION, disc_labels_for_picks

#: default particle diameter in pixels at the network's pixel size
DEFAULT_PARTICLE_PX = 24.0


def target_apix(apix: float, diameter_A: float, particle_px: float = DEFAULT_PARTICLE_PX) -> float:
    """Pixel size (Å/px) that makes a ``diameter_A`` particle ``particle_px`` wide; never finer than ``apix``."""
    return max(float(apix), float(diameter_A) / float(particle_px))


def disc_samples(
    micrographs: Sequence[Path],
    picks: pd.DataFrame,
    diameter_A: float,
    particle_px: float = DEFAULT_PARTICLE_PX,
    apix: float | None = None,
    label_fraction: float = DEFAULT_FRACTION,
    norm_k: float = 3.0,
    progress: bool = True,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
    """Prepared images and disc labels for every micrograph.

    Parameters
    ----------
    micrographs
        Micrograph files; each pick's ``micrograph`` name is matched to one
        (exact path, basename, stem, ...; see
        :func:`pixer.io.match.match_micrograph_names`). Micrographs without
        picks are kept as negatives.
    picks
        Particles table in micrograph pixels.
    diameter_A
        Particle diameter in Å.
    particle_px
        Diameter in pixels after binning.
    apix
        Micrograph pixel size, Å/px (default: the MRC header, else the picks'
        ``apix`` column).
    label_fraction
        Disc radius as a fraction of the particle radius.

    Returns
    -------
    samples
        ``[(image (h', w') float32, label (h', w') uint8), ...]``.
    apix_used
        Pixel size of the prepared images (the largest over micrographs), Å/px.
    """
    matched = match_micrograph_names(picks, [str(p) for p in micrographs], on_unknown="drop")
    picks = picks.loc[matched.index].assign(_file=[str(p) for p in matched])
    if picks.empty:
        raise PixerError("no pick matches any micrograph: check the micrograph names in the coordinate files")
    samples = []
    used = []
    for path in tqdm(micrographs, desc="prepare", disable=not progress, leave=False):
        mic = read_micrograph(path, apix=apix)
        rows = picks[picks["_file"] == str(path)]
        mic_apix = mic.apix
        if mic_apix is None and "apix" in rows and rows["apix"].notna().any():
            mic_apix = float(rows["apix"].dropna().iloc[0])
        if mic_apix is None:
            raise PixerError(f"{path}: pixel size unknown (not in the header or the coordinates): pass --apix")
        image, apix_used = prepare(mic.data, mic_apix, target_apix(mic_apix, diameter_A, particle_px), k=norm_k)
        label = disc_labels_for_picks(
            rows.assign(micrograph=str(path)), str(path), image.shape, apix_used, diameter_A,
            fraction=label_fraction, mic_apix=mic_apix,
        )
        samples.append((image, label))
        used.append(apix_used)
    if not any(label.any() for _, label in samples):
        raise PixerError("no particle lands inside its micrograph: check the coordinates and --apix")
    return samples, float(max(used))
