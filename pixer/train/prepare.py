"""Turn micrograph files and coordinates into training samples.

Micrographs are binned so that the particle diameter spans ``particle_px``
pixels (the scale the network is trained and later applied at), normalised,
and paired with disc labels drawn at the true particle centres.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pixer.data.preprocess import fourier_crop, prepare
from pixer.errors import PixerError
from pixer.io.match import match_micrograph_names
from pixer.io.micrographs import Micrograph, read_micrograph, require_room
from pixer.labels.discs import DEFAULT_FRACTION, disc_labels_for_picks

#: default particle diameter in pixels at the network's pixel size
DEFAULT_PARTICLE_PX = 24.0


def target_apix(apix: float, diameter_A: float, particle_px: float = DEFAULT_PARTICLE_PX) -> float:
    """Pixel size (Å/px) that makes a ``diameter_A`` particle ``particle_px`` wide; never finer than ``apix``."""
    return max(float(apix), float(diameter_A) / float(particle_px))


@dataclass
class PreparedMicrograph:
    """One micrograph ready for training, with its picks.

    Attributes
    ----------
    path
        The micrograph file.
    rows
        Its picks (particles table rows, micrograph pixels).
    mic
        The micrograph as read (``mic.data`` ``(h, w)`` at ``mic_apix``).
    mic_apix
        Its pixel size, Å/px (header, ``--apix``, or the picks' ``apix``).
    image
        ``(h', w')`` float32, binned to the model pixel size and normalised.
    apix_used
        Pixel size of ``image``, Å/px.
    """

    path: Path
    rows: pd.DataFrame
    mic: Micrograph
    mic_apix: float
    image: np.ndarray
    apix_used: float


def prepared_micrographs(
    micrographs: Sequence[Path],
    picks: pd.DataFrame,
    diameter_A: float,
    particle_px: float = DEFAULT_PARTICLE_PX,
    apix: float | None = None,
    norm_k: float = 3.0,
    progress: bool = True,
    desc: str = "prepare",
) -> Iterator[PreparedMicrograph]:
    """Match picks to micrograph files, then read, bin and normalise each micrograph.

    Picks whose micrograph is not among ``micrographs`` are dropped (an error
    when none is left); micrographs without picks are yielded too (negatives).
    The pixel size comes from ``apix``, else the MRC header, else the picks'
    ``apix`` column, else a one-line error naming the file.
    """
    matched = match_micrograph_names(picks, [str(p) for p in micrographs], on_unknown="drop")
    picks = picks.loc[matched.index].assign(_file=[str(p) for p in matched])
    if picks.empty:
        raise PixerError("no pick matches any micrograph: check the micrograph names in the coordinate files")
    for path in tqdm(micrographs, desc=desc, disable=not progress, leave=False):
        mic = read_micrograph(path, apix=apix)
        rows = picks[picks["_file"] == str(path)]
        mic_apix = mic.apix
        if mic_apix is None and "apix" in rows and rows["apix"].notna().any():
            mic_apix = float(rows["apix"].dropna().iloc[0])
        if mic_apix is None:
            raise PixerError(f"{path}: pixel size unknown (not in the header or the coordinates): pass --apix")
        require_room(path, mic.data.shape, mic_apix, diameter_A)
        image, apix_used = prepare(mic.data, mic_apix, target_apix(mic_apix, diameter_A, particle_px), k=norm_k)
        yield PreparedMicrograph(Path(path), rows, mic, mic_apix, image, apix_used)


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
    samples = []
    used = []
    for item in prepared_micrographs(micrographs, picks, diameter_A, particle_px, apix, norm_k, progress):
        path, rows, image, apix_used, mic_apix = item.path, item.rows, item.image, item.apix_used, item.mic_apix
        label = disc_labels_for_picks(
            rows.assign(micrograph=str(path)), str(path), image.shape, apix_used, diameter_A,
            fraction=label_fraction, mic_apix=mic_apix,
        )
        samples.append((image, label))
        used.append(apix_used)
    if not any(label.any() for _, label in samples):
        raise PixerError("no particle lands inside its micrograph: check the coordinates and --apix")
    return samples, float(max(used))


def label_to_grid(label: np.ndarray, mic_shape: tuple[int, int], mic_apix: float, target: float,
                  image_shape: tuple[int, int]) -> np.ndarray:
    """Bring a label image onto the grid of a prepared micrograph.

    A label of the micrograph's shape is binned exactly as the image is
    (:func:`pixer.data.preprocess.fourier_crop` to ``target`` Å/px: an ideal
    low-pass, the band-limited block mean) and thresholded at 0.5, so label and
    image pixels sit at the same positions. A label on another grid (pixel ``j``
    at micrograph position ``j * h / h_label``, as ``pixer labels --out-apix``
    writes) is binned to about the image grid the same way, then mapped by
    nearest neighbour (image pixel ``i`` -> label pixel ``round(i * h_label / h_image)``).

    Parameters
    ----------
    label
        ``(h_l, w_l)`` 0/1 label.
    mic_shape
        ``(h, w)`` of the micrograph, px.
    mic_apix, target
        Micrograph and training pixel sizes, Å/px.
    image_shape
        ``(h', w')`` of the prepared image.

    Returns
    -------
    ``image_shape`` uint8 0/1.
    """
    lab = np.asarray(label, dtype=np.float32)
    if lab.shape == tuple(mic_shape):
        binned, _ = fourier_crop(lab, mic_apix, target)
    else:
        label_apix = mic_apix * mic_shape[0] / lab.shape[0]
        binned, _ = fourier_crop(lab, label_apix, target)
    out = binned >= 0.5
    if out.shape != tuple(image_shape):
        rows = np.minimum(np.round(np.arange(image_shape[0]) * out.shape[0] / image_shape[0]).astype(int),
                          out.shape[0] - 1)
        cols = np.minimum(np.round(np.arange(image_shape[1]) * out.shape[1] / image_shape[1]).astype(int),
                          out.shape[1] - 1)
        out = out[rows[:, None], cols[None, :]]
    return out.astype(np.uint8)


def label_samples(
    micrographs: Sequence[Path],
    label_dir: str | Path,
    diameter_A: float,
    particle_px: float = DEFAULT_PARTICLE_PX,
    apix: float | None = None,
    norm_k: float = 3.0,
    progress: bool = True,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
    """Prepared images and their labels from a ``pixer labels`` folder.

    Parameters
    ----------
    micrographs
        Micrograph files; each is matched to a label by the micrograph names in
        the folder's ``label_index.star`` (see
        :func:`pixer.io.match.match_micrograph_names`). Micrographs without a
        label are left out (unknown, not negatives).
    label_dir
        Folder written by ``pixer labels`` (reconstruction or disc labels).
    diameter_A, particle_px, apix, norm_k
        As in :func:`disc_samples`; ``apix`` defaults to the MRC header, else the
        pixel size recorded in the label index.

    Returns
    -------
    samples
        ``[(image (h', w') float32, label (h', w') uint8), ...]``.
    apix_used
        Pixel size of the prepared images (the largest over micrographs), Å/px.
    """
    from pixer.labels.folder import read_label_index

    index, _ = read_label_index(label_dir)
    index.attrs["source"] = str(Path(label_dir) / "label_index.star")
    matched = match_micrograph_names(index, [str(p) for p in micrographs], on_unknown="drop")
    if matched.empty:
        raise PixerError(f"{label_dir}: no micrograph file matches a micrograph name in label_index.star")
    samples, used = [], []
    for i in tqdm(matched.index, desc="prepare", disable=not progress, leave=False):
        path, entry = Path(matched[i]), index.loc[i]
        mic = read_micrograph(path, apix=apix)
        mic_apix = mic.apix if mic.apix is not None else float(entry["apix"])
        require_room(path, mic.data.shape, mic_apix, diameter_A)
        label = read_micrograph(entry["label_path"], apix=1.0, blank_ok=True).data
        mic_shape = (int(entry["mic_height"]), int(entry["mic_width"]))
        if tuple(mic.data.shape) != mic_shape:
            raise PixerError(f"{entry['label_path']}: made for a {mic_shape[0]} x {mic_shape[1]} micrograph, "
                             f"but {path} is {mic.data.shape[0]} x {mic.data.shape[1]}")
        image, apix_used = prepare(mic.data, mic_apix, target_apix(mic_apix, diameter_A, particle_px), k=norm_k)
        samples.append((image, label_to_grid(label, mic_shape, mic_apix, apix_used, image.shape)))
        used.append(apix_used)
    if not any(label.any() for _, label in samples):
        raise PixerError(f"{label_dir}: the labels of the matched micrographs are all empty")
    return samples, float(max(used))
