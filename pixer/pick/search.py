"""Choosing the diameter to pick at from the micrographs themselves (no labels).

A network trained on particles of one size (``particle_px`` after binning) finds them best when
the diameter it is told matches what it sees; a diameter 20 % off can cost a third of the F1 at
low SNR, and the diameter users know (from a map, a mask, a paper) is often not the one that
works best. :func:`search_diameter` picks a sample of the run's micrographs at several factors on
the given diameter and keeps the factor at which the candidates hold the most particles beyond
the model's empty-micrograph background (:func:`pixer.pick.threshold.null_particles`): at a
wrong scale the network misses particles, so fewer stand out from the background. Among the
factors within :data:`SEARCH_MARGIN` of the most particles found, the one nearest 1 is taken
(:func:`choose_factor`). The default factors stop at 0.8: told a diameter much smaller than the
particle's, the network fires on parts of it (two sides of a hollow shell: apoferritin told
0.56 × its diameter counted ~1.5 "particles" per particle, more than at the true size).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from pixer.errors import PixerError
from pixer.io.micrographs import read_micrograph
from pixer.pick.batch import picked_area, require_apix
from pixer.pick.picker import PickParams, pick_image
from pixer.pick.threshold import null_particles

#: Factors on the given diameter tried by default.
DEFAULT_FACTORS = (0.8, 0.9, 1.0, 1.1, 1.25, 1.4)
#: Factors finding within this fraction of the most particles count as ties (the one nearest 1 wins).
SEARCH_MARGIN = 0.05
#: Micrographs sampled (evenly over the run) by default.
DEFAULT_SAMPLE = 8
#: Why a model cannot be searched with.
NO_BACKGROUND = ("--diameter-search needs a model that stores its empty-micrograph background (the general "
                 "model does; `pixer train` stores one when validation micrographs without particles are given)")


def background_of(config: dict) -> dict | None:
    """The empty-micrograph background a model stores (``pick_threshold["null"]``), or None."""
    return (config.get("pick_threshold") or {}).get("null") or None


def search_factors(factors: Sequence[float]) -> list[float]:
    """The factors a search tries: sorted, without repeats, 1 always among them."""
    return sorted({round(float(f), 6) for f in factors} | {1.0})


def sample_evenly(items: Sequence, k: int) -> list:
    """``k`` items spread evenly over ``items`` (all of them when there are at most ``k``)."""
    if len(items) <= k:
        return list(items)
    idx = np.unique(np.linspace(0, len(items) - 1, k).round().astype(int))
    return [items[i] for i in idx]


def choose_factor(factors: Sequence[float], found: Sequence[float], margin: float = SEARCH_MARGIN) -> float:
    """The factor nearest 1 among those within ``margin`` of the most particles found.

    So the nominal diameter stays unless another factor finds ``margin`` more
    particles, and near-ties between other factors (noise) go to the smaller change;
    two factors equally far from 1 (0.8 and 1.25) go to the one that finds more.

    Parameters
    ----------
    factors
        Factors, 1 among them.
    found
        Estimated particles at each.

    Returns
    -------
    float
        The chosen factor.
    """
    top = max(found)
    near = [(f, n) for f, n in zip(factors, found, strict=True) if n * (1.0 + margin) >= top]
    # as near to 1 as each other (0.8 and 1.25): the one finding more
    return float(min(near, key=lambda fn: (round(abs(float(np.log(fn[0]))), 9), -fn[1]))[0])


def search_diameter(
    paths: Sequence[str | Path],
    model: torch.nn.Module,
    config: dict,
    params: PickParams,
    factors: Sequence[float] = DEFAULT_FACTORS,
    apix: float | None = None,
    device: str = "cpu",
    sample: int = DEFAULT_SAMPLE,
    progress: bool = True,
) -> tuple[float, pd.DataFrame]:
    """The factor on ``params.diameter_A`` at which the model finds the most particles.

    Parameters
    ----------
    paths
        Micrographs of the run; ``sample`` of them, spread evenly, are picked
        at every factor.
    model, config
        Segmentation network and its ``config.json``, which must hold the
        empty-micrograph background (``pick_threshold["null"]``).
    params
        Picking parameters of the run (diameter in Å, candidate floor, edge margin).
    factors
        Factors tried (1 is always added).
    apix
        Pixel size, Å/px (default: each file's header).

    Returns
    -------
    factor, table
        The chosen factor (:func:`choose_factor`) and one row per factor: ``factor``, ``diameter_A``,
        ``particles`` (estimated particles in the sample), ``per_micrograph``,
        ``chosen``.

    Raises
    ------
    PixerError
        When the model stores no background, or no sampled micrograph can be read.
    """
    null = background_of(config)
    if not null:
        raise PixerError(NO_BACKGROUND)
    factors = search_factors(factors)
    if any(f <= 0 for f in factors):
        raise PixerError(f"--diameter-search: factors must be > 0, got {factors}")
    chosen_paths = sample_evenly(list(paths), max(1, int(sample)))
    scores: dict[float, list[np.ndarray]] = {f: [] for f in factors}
    area = dict.fromkeys(factors, 0.0)
    n_read = 0
    bar = tqdm(total=len(chosen_paths) * len(factors), desc="diameter search", disable=not progress, leave=False)
    for path in chosen_paths:
        try:
            mic = read_micrograph(path, apix=apix)
        except PixerError:
            bar.update(len(factors))
            continue  # the main run reports it
        require_apix(mic, path)
        n_read += 1
        for f in factors:
            p = replace(params, diameter_A=params.diameter_A * f, max_picks=None)
            picks, _, _ = pick_image(mic.data, mic.apix, model, config, p, device=device)
            scores[f].append(picks["score"].to_numpy())
            area[f] += picked_area(mic.data.shape[-2:], mic.apix, p.diameter_A, p.edge_margin_A)
            bar.update(1)
    bar.close()
    if not n_read:
        raise PixerError(f"{chosen_paths[0]}: --diameter-search could not read any sampled micrograph")
    found = {f: null_particles(np.concatenate(scores[f]) if scores[f] else np.zeros(0), area[f], null,
                               micrographs=n_read)
             for f in factors}  # fmt: skip
    factor = choose_factor(factors, [found[f] for f in factors])
    table = pd.DataFrame({
        "factor": factors,
        "diameter_A": [params.diameter_A * f for f in factors],
        "particles": [found[f] for f in factors],
        "per_micrograph": [found[f] / n_read for f in factors],
        "chosen": [f == factor for f in factors],
    })  # fmt: skip
    return factor, table


def search_task(model_dir: str, device: str, paths: Sequence[str], params: PickParams, factors: Sequence[float],
                apix: float | None, sample: int, progress: bool = False) -> tuple[float, pd.DataFrame, dict]:
    """:func:`search_diameter` with the model loaded where it runs (a Dask worker: on a cluster the
    search runs on the workers, next to the GPUs, not on the submitting host), and where that was
    (:func:`pixer.pick.batch.worker_info`)."""
    from pixer.pick.batch import cached_model, worker_info

    model, config = cached_model(model_dir, device)
    factor, table = search_diameter(paths, model, config, params, factors, apix=apix, device=device, sample=sample,
                                    progress=progress)  # fmt: skip
    return factor, table, worker_info()
