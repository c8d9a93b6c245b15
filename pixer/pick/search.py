"""Choosing the diameter to pick at from the micrographs themselves (no labels).

A network trained on particles of one size (``particle_px`` after binning) finds them best when
the diameter it is told matches what it sees; a diameter 20 % off can cost a third of the F1 at
low SNR, and the diameter users know (from a map, a mask, a paper) is often not the one that
works best. :func:`search_diameter` picks a sample of the run's micrographs at several factors on
the given diameter and keeps the factor at which the candidates hold the most particles beyond
the model's empty-micrograph background (:func:`pixer.pick.threshold.null_particles`): at a
wrong scale the network misses particles, so fewer stand out from the background. Among the
factors within :data:`SEARCH_MARGIN` of the most particles found, the one nearest 1 is taken
(:func:`choose_factor`), and only when that factor finds at least
:data:`SEARCH_MIN_PER_MICROGRAPH` particles per micrograph: below it the counts are a few spots of
debris or noise (an empty simulated set full of debris counted 0 at the given diameter and 2.3 per
micrograph at × 1.1, where the debris looked the size of particles), not evidence to change the
user's diameter. The default factors stop at 0.8: told a diameter much smaller than the
particle's, the network fires on parts of it (two sides of a hollow shell: apoferritin told
0.56 × its diameter counted ~1.5 "particles" per particle, more than at the true size).

The same count tells the contrast: the networks learn cryo-EM micrographs, where particles are
darker than the ice, and on micrographs whose particles are brighter (negative stain, inverted
files, some simulators) they find few or none (simulated ribosomes at −15 dB, inverted: F1 0).
With ``polarity="auto"`` the sample is also picked inverted at the given diameter, and the run
is inverted when that finds :data:`POLARITY_MARGIN` more particles, and at least
:data:`POLARITY_MIN_PER_MICROGRAPH` per micrograph (:func:`choose_polarity`).
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
from pixer.pick.picker import PickParams, model_apix, pick_image
from pixer.pick.threshold import null_particles

#: Factors on the given diameter tried by default.
DEFAULT_FACTORS = (0.8, 0.9, 1.0, 1.1, 1.25, 1.4)
#: Factors finding within this fraction of the most particles count as ties (the one nearest 1 wins).
SEARCH_MARGIN = 0.05
#: The search moves off the given diameter only when the chosen factor finds at least this many particles per
#: micrograph beyond the background (the bar ``pixer pick --adapt`` sets before it learns from a run:
#: :attr:`pixer.train.adapt.AdaptConfig.min_particles`). The real and simulated sets with particles find 18-400
#: (docs/general_model.md).
SEARCH_MIN_PER_MICROGRAPH = 10.0
#: The inverted contrast is taken when it finds at least this fraction more particles than cryo-EM's
#: usual one (dark particles) at the given diameter. On dark simulated sets the inverted picture
#: found 0-0.78 × as many (0.78: apoferritin's hollow shell, a ring either way), on the real CryoPPP
#: sets 0.05-0.25 ×; the same sets inverted find 1.28 × (apoferritin) to far more.
POLARITY_MARGIN = 0.2
#: ... and at least this many particles per micrograph (a few junk spots that pass for particles
#: when inverted, on micrographs where nothing stands out as they are, must not flip a run).
POLARITY_MIN_PER_MICROGRAPH = 2.0
#: ``polarity`` values: ``dark`` particles (cryo-EM), ``bright`` ones (the run is inverted), or ``auto``.
POLARITIES = ("auto", "dark", "bright")
#: Micrographs sampled (evenly over the run) by default.
DEFAULT_SAMPLE = 8
#: The search picks at most this many pixels per side of each sampled micrograph, as the network sees
#: them (binned for the smallest factor): a centre crop of larger ones. 1024² binned pixels hold
#: ~1800 particles' areas, plenty for the count, and the crop keeps the search's one-off cost at
#: 4096² micrographs (14-56 extra network passes) a third of the full micrographs'.
SEARCH_MAX_SIDE_PX = 1024
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


def choose_factor(factors: Sequence[float], found: Sequence[float], margin: float = SEARCH_MARGIN,
                  least: float = 0.0) -> float:
    """The factor nearest 1 among those within ``margin`` of the most particles found.

    So the nominal diameter stays unless another factor finds ``margin`` more
    particles, and near-ties between other factors (noise) go to the smaller change;
    two factors equally far from 1 (0.8 and 1.25) go to the one that finds more.
    When no factor finds ``least`` particles, 1.

    Parameters
    ----------
    factors
        Factors, 1 among them.
    found
        Estimated particles at each.
    least
        Fewest particles (at the best factor) to move off 1 for.

    Returns
    -------
    float
        The chosen factor.
    """
    top = max(found)
    if top < least:
        return 1.0
    near = [(f, n) for f, n in zip(factors, found, strict=True) if n * (1.0 + margin) >= top]
    # as near to 1 as each other (0.8 and 1.25): the one finding more
    return float(min(near, key=lambda fn: (round(abs(float(np.log(fn[0]))), 9), -fn[1]))[0])


def choose_polarity(dark: float, bright: float, margin: float = POLARITY_MARGIN,
                    least: float = POLARITY_MIN_PER_MICROGRAPH) -> bool:
    """Whether to invert the run: the inverted micrographs hold ``margin`` more particles, and at
    least ``least`` per micrograph.

    Parameters
    ----------
    dark, bright
        Estimated particles per micrograph (beyond the model's background) as
        the micrographs are, and inverted, at the same diameter.

    Returns
    -------
    bool
        True to invert (the particles are brighter than the background); ties,
        and little or nothing found either way, keep cryo-EM's dark particles.
    """
    return bright >= least and bright >= (1.0 + margin) * dark


def search_crop(data: np.ndarray, apix: float, config: dict, diameter_A: float,
                max_side_px: int = SEARCH_MAX_SIDE_PX) -> np.ndarray:
    """Centre crop of a micrograph to at most ``max_side_px`` per side once binned for ``diameter_A``.

    Parameters
    ----------
    data
        ``(h, w)`` micrograph at ``apix`` Å/px.
    config
        The model's ``config.json`` (its ``particle_px`` sets the binning: :func:`pixer.pick.picker.model_apix`).
    diameter_A
        The smallest diameter the search tries (the finest binning).

    Returns
    -------
    np.ndarray
        A view of ``data``: ``(min(h, m), min(w, m))`` with ``m = ceil(max_side_px · binned / apix)``.
    """
    m = int(np.ceil(max_side_px * model_apix(config, diameter_A, apix) / float(apix)))
    h, w = data.shape[-2:]
    y0, x0 = max(0, (h - m) // 2), max(0, (w - m) // 2)
    return data[..., y0:y0 + min(h, m), x0:x0 + min(w, m)]


def _estimate(paths: Sequence[str | Path], model: torch.nn.Module, config: dict, params: PickParams,
              settings: Sequence[tuple[bool, float]], apix: float | None, device: str, bar,
              crop_diameter_A: float, classifier=None) -> tuple[dict, int]:
    """Estimated particles in ``paths`` picked at each ``(invert, factor)`` of ``settings`` (each
    micrograph read once, cropped by :func:`search_crop` for ``crop_diameter_A``, so that every
    setting of a search counts on the same area), and how many micrographs could be read."""
    scores: dict[tuple[bool, float], list[np.ndarray]] = {k: [] for k in settings}
    area = dict.fromkeys(settings, 0.0)
    n_read = 0
    for path in paths:
        try:
            mic = read_micrograph(path, apix=apix)
        except PixerError:
            bar.update(len(settings))
            continue  # the main run reports it
        require_apix(mic, path)
        n_read += 1
        data = search_crop(mic.data, mic.apix, config, crop_diameter_A)
        for invert, f in settings:
            p = replace(params, diameter_A=params.diameter_A * f, max_picks=None, invert=invert)
            picks, _, _ = pick_image(data, mic.apix, model, config, p, device=device, classifier=classifier)
            scores[invert, f].append(picks["score"].to_numpy())
            area[invert, f] += picked_area(data.shape[-2:], mic.apix, p.diameter_A, p.edge_margin_A)
            bar.update(1)
    null = background_of(config)
    found = {k: null_particles(np.concatenate(scores[k]) if scores[k] else np.zeros(0), area[k], null,
                               micrographs=n_read)
             for k in settings}  # fmt: skip
    return found, n_read


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
    polarity: str = "dark",
    classifier=None,
) -> tuple[float, pd.DataFrame, dict]:
    """The factor on ``params.diameter_A`` (and the contrast) at which the model finds the most particles.

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
        Factors tried (1 is always added); ``[1]`` only checks the contrast.
    apix
        Pixel size, Å/px (default: each file's header).
    polarity
        ``dark`` (cryo-EM: particles darker than the ice), ``bright`` (the
        micrographs are inverted) or ``auto``: the sample is also picked inverted
        at the given diameter and the run inverted when that finds more
        (:func:`choose_polarity`; the factors are then searched inverted).
    classifier
        Optional crop classifier (:func:`pixer.models.classifier.load_classifier`)
        that filters the candidates as in the run (``params`` holds its rule).

    Returns
    -------
    factor, table, contrast
        The chosen factor (:func:`choose_factor`); one row per factor at the
        chosen contrast: ``factor``, ``diameter_A``, ``particles`` (estimated
        particles in the sample), ``per_micrograph``, ``chosen``; and
        ``{"polarity": "dark" | "bright", "invert": bool}``, with ``auto`` also
        ``dark`` and ``bright``: particles per micrograph each way at the given diameter.

    Raises
    ------
    PixerError
        When the model stores no background, or no sampled micrograph can be read.
    """
    if not background_of(config):
        raise PixerError(NO_BACKGROUND)
    if polarity not in POLARITIES:
        raise PixerError(f"polarity must be one of {', '.join(POLARITIES)}, got {polarity!r}")
    factors = search_factors(factors)
    if any(f <= 0 for f in factors):
        raise PixerError(f"--diameter-search: factors must be > 0, got {factors}")
    chosen_paths = sample_evenly(list(paths), max(1, int(sample)))
    invert = polarity == "bright"
    settings = [(invert, f) for f in factors] + ([(True, 1.0)] if polarity == "auto" else [])
    total = len(chosen_paths) * len(settings)
    what = [w for w, on in (("diameter search", len(factors) > 1), ("contrast check", polarity == "auto")) if on]
    bar = tqdm(total=total, desc=" + ".join(what) or "diameter search", disable=not progress, leave=False)
    crop_diameter_A = params.diameter_A * min(factors)
    found, n_read = _estimate(chosen_paths, model, config, params, settings, apix, device, bar, crop_diameter_A,
                              classifier)
    if not n_read:
        bar.close()
        raise PixerError(f"{chosen_paths[0]}: the diameter search (and contrast check) could not read any "
                         "sampled micrograph")
    contrast: dict = {}
    if polarity == "auto":
        dark, bright = found[False, 1.0] / n_read, found[True, 1.0] / n_read
        invert = choose_polarity(dark, bright)
        contrast = {"dark": dark, "bright": bright}
        rest = [(True, f) for f in factors if f != 1.0]
        if invert and rest:
            bar.total = total + len(chosen_paths) * len(rest)
            found.update(_estimate(chosen_paths, model, config, params, rest, apix, device, bar, crop_diameter_A,
                                   classifier)[0])
    bar.close()
    counts = [found[invert, f] for f in factors]
    factor = choose_factor(factors, counts, least=SEARCH_MIN_PER_MICROGRAPH * n_read)
    table = pd.DataFrame({
        "factor": factors,
        "diameter_A": [params.diameter_A * f for f in factors],
        "particles": counts,
        "per_micrograph": [n / n_read for n in counts],
        "chosen": [f == factor for f in factors],
    })  # fmt: skip
    return factor, table, {"polarity": "bright" if invert else "dark", "invert": invert, **contrast}


def search_task(model_dir: str, device: str, paths: Sequence[str], params: PickParams, factors: Sequence[float],
                apix: float | None, sample: int, progress: bool = False, polarity: str = "dark",
                classifier_dir: str | None = None) -> tuple[float, pd.DataFrame, dict, dict]:
    """:func:`search_diameter` with the model loaded where it runs (a Dask worker: on a cluster the
    search runs on the workers, next to the GPUs, not on the submitting host), and where that was
    (:func:`pixer.pick.batch.worker_info`)."""
    from pixer.pick.batch import cached_classifier, cached_model, worker_info

    model, config = cached_model(model_dir, device)
    classifier = cached_classifier(classifier_dir, device) if classifier_dir else None
    factor, table, contrast = search_diameter(paths, model, config, params, factors, apix=apix, device=device,
                                              sample=sample, progress=progress, polarity=polarity,
                                              classifier=classifier)  # fmt: skip
    return factor, table, contrast, worker_info()
