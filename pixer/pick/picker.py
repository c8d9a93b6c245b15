"""The core of ``pixer pick``: one micrograph in, a picks table out.

``pick_image`` is the pure function the architecture describes:
``(image, pixel size, model, parameters) → picks``. The micrograph is
Fourier-cropped to the pixel size the model expects (the particle diameter in
Å divided by the model's ``particle_px``), normalised, segmented tile by tile
into a particle-probability map, and the grid-based local-maximum search turns
the map into centres, which are scaled back to the input micrograph's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pixer.data.preprocess import prepare
from pixer.data.tiles import Stitcher, fit_tile, iter_tile_batches
from pixer.pick.localmax import grid_local_maxima
from pixer.pick.suppress import suppress_within


@dataclass
class PickParams:
    """Picking parameters; lengths in Å.

    Attributes
    ----------
    diameter_A
        Particle diameter in Å.
    threshold
        Minimum score (probability map peak, 0-1) a pick must reach.
    min_distance_A
        Two picks closer than this are one particle (default: 0.8 × diameter
        through the local-maximum search's overlap rule).
    grid_fraction
        Grid cell of the local-maximum search as a fraction of the diameter.
    max_picks
        Cap on picks per micrograph (``None``: no cap).
    batch_size
        Tiles per forward pass.
    tile, stride
        Inference tile and stride in pixels at the model's pixel size
        (PIXER: 512 and 256; overlaps are averaged).
    classifier_min
        With a crop classifier, least P(particle) a candidate must have.
    classifier_junk
        With a crop classifier, candidates with P(interference) above this are
        removed (1: none on this ground). The shipped general classifier uses
        this rule rather than ``classifier_min``: faint particles look like
        noise to it, not like junk.
    edge_margin_A
        Drop picks whose centre is closer than this to the micrograph edge
        (0: keep all). The particle's radius drops particles the edge cuts, as
        RELION's LoG picker does and as expert annotations such as CryoPPP's
        (no centre within ~0.6 diameters of the edge) assume.
    invert
        Negate the micrograph before anything else: for particles brighter
        than the background (negative stain, micrographs stored inverted, some
        simulators). The networks are trained on cryo-EM contrast, where
        particles are darker than the ice.
    """

    diameter_A: float
    threshold: float = 0.5
    min_distance_A: float | None = None
    grid_fraction: float = 0.1
    max_picks: int | None = None
    batch_size: int = 8
    tile: int = 512
    stride: int = 256
    classifier_min: float = 0.5
    classifier_junk: float = 1.0
    edge_margin_A: float = 0.0
    invert: bool = False


def model_apix(config: dict, diameter_A: float, apix: float) -> float:
    """Pixel size (Å/px) at which the model sees a particle of ``diameter_A``.

    Models store ``particle_px``, the particle diameter in pixels they were
    trained at; the micrograph is binned to ``diameter_A / particle_px``, but
    never finer than its own pixel size (no upsampling).
    """
    return max(float(apix), float(diameter_A) / float(config["particle_px"]))


@torch.no_grad()
def probability_map(
    image: np.ndarray | torch.Tensor,
    model: torch.nn.Module,
    tile: int,
    stride: int,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> np.ndarray | torch.Tensor:
    """Particle-probability map of a prepared (binned, normalised) image.

    Tiles are pushed through the network in batches and stitched by averaging
    overlaps, so memory is bounded by ``batch_size`` tiles whatever the
    micrograph size. An axis shorter than ``tile`` gets a tile as long as the
    axis (:func:`pixer.data.tiles.fit_tile`), so the network never sees a
    padded band it was not trained on.

    Parameters
    ----------
    image
        ``(h, w)`` float32, already at the model's pixel size and normalised:
        a numpy array, or a torch tensor (then tiles are cut where it lives,
        with no copy through host memory when it is on ``device``).
    model
        Segmentation network returning logits ``(b, 1, t, t)``.
    tile, stride
        Tile size and stride in pixels.

    Returns
    -------
    np.ndarray or torch.Tensor
        ``(h, w)`` float32 probabilities in [0, 1]: numpy for a numpy image, a
        tensor on ``device`` for a tensor.
    """
    model.eval()
    tile_yx, stride = fit_tile(tuple(image.shape), tile, stride)  # never pad: no edge artefacts
    stitcher = Stitcher(tuple(image.shape), tile_yx, device=device)
    for batch, positions in iter_tile_batches(image, tile_yx, stride, batch_size):
        if isinstance(batch, torch.Tensor):
            x = batch.to(device=device, dtype=torch.float32)
        else:
            x = torch.as_tensor(np.ascontiguousarray(batch), dtype=torch.float32, device=device)
        prob = torch.sigmoid(model(x[:, None]))[:, 0]
        stitcher.add(prob, positions)
    out = stitcher.result().float()
    return out if isinstance(image, torch.Tensor) else out.cpu().numpy()


def pick_image(
    image: np.ndarray | torch.Tensor,
    apix: float,
    model: torch.nn.Module,
    config: dict,
    params: PickParams,
    device: str | torch.device = "cpu",
    classifier: tuple[torch.nn.Module, dict] | None = None,
) -> tuple[pd.DataFrame, np.ndarray, float]:
    """Pick particles on one micrograph.

    Parameters
    ----------
    image
        ``(h, w)`` micrograph (any real dtype), finite values: numpy, or a torch
        tensor. With a tensor, or a ``device`` other than the CPU, the whole
        chain (Fourier crop, normalisation, tiles, network, local maxima) runs
        in torch on ``device``; with numpy on the CPU the crop and
        normalisation use numpy/scipy.
    apix
        Its pixel size in Å/px.
    model, config
        Segmentation network and its stored configuration (``particle_px``,
        ``norm_k``).
    params
        Picking parameters (Å).
    classifier
        Optional ``(model, classifier.json)`` from
        :func:`pixer.models.classifier.load_classifier`. Each candidate's crop
        is classified (particle / interference / noise) and candidates with
        ``P(particle) < params.classifier_min`` or ``P(interference) >
        params.classifier_junk`` are removed (PIXER's false-positive removal);
        the score stays the segmentation's.

    Returns
    -------
    picks
        Columns ``x``, ``y`` (micrograph pixels, 0-based, x = column) and
        ``score``, sorted by descending score; with a classifier also
        ``p_particle`` and ``p_interference``.
    prob
        ``(h', w')`` probability map at the binned pixel size.
    apix_used
        Pixel size of ``prob`` in Å/px.
    """
    target = model_apix(config, params.diameter_A, apix)
    if isinstance(image, torch.Tensor):
        data = image.to(device=device, dtype=torch.float32)
    elif torch.device(device).type != "cpu":
        # on a GPU the Fourier crop, normalisation, tiling and local-maximum search run there too:
        # on the host they took ~0.5 s of the 0.7 s per 4096² micrograph on an H100 (bench/README.md)
        data = torch.from_numpy(np.array(image, dtype=np.float32)).to(device)  # a copy: the file may be a read-only map
    else:
        data = np.asarray(image, dtype=np.float32)
    if params.invert:
        data = -data
    small, apix_used = prepare(data, apix, target, k=config.get("norm_k", 3.0))
    prob = probability_map(small, model, params.tile, params.stride, params.batch_size, device)
    diameter_px = params.diameter_A / apix_used
    xy, scores = grid_local_maxima(
        prob,
        diameter_px,
        grid_fraction=params.grid_fraction,
        min_score=params.threshold,
        max_picks=params.max_picks,
    )
    if isinstance(prob, torch.Tensor):
        prob = prob.cpu().numpy()
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    scale_x = image.shape[1] / small.shape[1]
    scale_y = image.shape[0] / small.shape[0]
    picks = pd.DataFrame(
        {"x": xy[:, 0] * scale_x, "y": xy[:, 1] * scale_y, "score": np.asarray(scores, dtype=np.float64)}
    )
    if classifier is not None and len(picks):
        host = image.cpu().numpy() if isinstance(image, torch.Tensor) else image
        host = -np.asarray(host, dtype=np.float32) if params.invert else host
        small_host = small.cpu().numpy() if isinstance(small, torch.Tensor) else small
        probs = classify_candidates(host, apix, picks, classifier, params.diameter_A, target, small_host)
        picks["p_particle"], picks["p_interference"] = probs[:, 0], probs[:, 1]
        picks = picks[(probs[:, 0] >= params.classifier_min) & (probs[:, 1] <= params.classifier_junk)]
    if params.edge_margin_A > 0 and len(picks):
        m = params.edge_margin_A / apix
        h, w = image.shape
        inside = (picks["x"] >= m) & (picks["y"] >= m) & (picks["x"] <= w - 1 - m) & (picks["y"] <= h - 1 - m)
        picks = picks[inside]
    if params.min_distance_A:
        picks = _enforce_min_distance(picks, params.min_distance_A / apix)
    return picks.sort_values("score", ascending=False, ignore_index=True), prob, apix_used


def classifier_rule(info: dict, classifier_min: float | None = None,
                    classifier_junk: float | None = None) -> dict[str, float]:
    """A crop classifier's rule as :class:`PickParams` fields ``classifier_min`` and ``classifier_junk``.

    Each is the value given, else the classifier's own (``particle_min`` / ``junk_max`` in its
    ``classifier.json``), else :class:`PickParams`' default (PIXER's P(particle) ≥ 0.5; no limit on
    P(interference)).
    """
    own = {"classifier_min": info.get("particle_min", PickParams.classifier_min),
           "classifier_junk": info.get("junk_max", PickParams.classifier_junk)}
    given = {"classifier_min": classifier_min, "classifier_junk": classifier_junk}
    return {k: float(given[k] if given[k] is not None else own[k]) for k in own}


def classify_candidates(
    image: np.ndarray,
    apix: float,
    picks: pd.DataFrame,
    classifier: tuple[torch.nn.Module, dict],
    diameter_A: float,
    seg_apix: float,
    seg_image: np.ndarray,
) -> np.ndarray:
    """Class probabilities of each candidate from the crop classifier.

    The classifier sees crops at its own pixel size (``diameter_A /
    particle_px`` of its ``classifier.json``); when that equals the
    segmentation's, the already prepared image is reused.

    Parameters
    ----------
    image
        ``(h, w)`` micrograph at ``apix`` Å/px.
    picks
        Candidates, ``x``, ``y`` in micrograph pixels.
    seg_apix, seg_image
        Target pixel size of the segmentation and the image prepared for it.

    Returns
    -------
    np.ndarray
        ``(n, 2)`` float64: P(particle), P(interference).
    """
    from pixer.models.classifier import CLASS_NAMES, crop_box, extract_crops, predict_crops

    model, info = classifier
    target = max(float(apix), float(diameter_A) / float(info["particle_px"]))
    if abs(target - seg_apix) <= 1e-6 * target:
        small = seg_image
    else:
        small, _ = prepare(np.asarray(image, dtype=np.float32), apix, target, k=info.get("norm_k", 3.0))
    scale = np.array([small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]])
    centres = picks[["x", "y"]].to_numpy(np.float64) * scale
    box = int(info.get("crop") or crop_box(info["particle_px"]))
    probs = predict_crops(model, extract_crops(small, centres, box))
    return probs[:, [CLASS_NAMES.index("particle"), CLASS_NAMES.index("interference")]].astype(np.float64)


def _enforce_min_distance(picks: pd.DataFrame, min_px: float) -> pd.DataFrame:
    """Greedy removal of weaker picks within ``min_px`` of a stronger kept one."""
    if len(picks) < 2:
        return picks
    order = np.argsort(-picks["score"].to_numpy(), kind="stable")
    keep = suppress_within(picks[["x", "y"]].to_numpy()[order], min_px)
    return picks.iloc[order[keep]].reset_index(drop=True)
