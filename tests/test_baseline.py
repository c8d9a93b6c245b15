"""The chance level (pixer.evaluate.baseline): an image-blind hexagonal lattice of picks.

Its F1 must follow the packing of the truth: near 1 when the particles themselves sit on such a
lattice, low when they are sparse, whatever the image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from pixer.evaluate.baseline import (
    chance_level,
    hex_lattice,
    lattice_picks,
    micrograph_shapes,
)


def test_hex_lattice_geometry():
    xy = hex_lattice((400, 600), spacing_px=30.0, edge_px=15.0)
    assert xy[:, 0].min() >= 15 and xy[:, 1].min() >= 15
    assert xy[:, 0].max() <= 599 - 15 and xy[:, 1].max() <= 399 - 15
    # every point's nearest neighbours are one spacing away, six of them inside the lattice
    dist, _ = cKDTree(xy).query(xy, k=7)
    assert np.allclose(dist[:, 1], 30.0)
    inner = (xy[:, 0] > 60) & (xy[:, 0] < 540) & (xy[:, 1] > 60) & (xy[:, 1] < 340)
    assert np.allclose(dist[inner, 1:], 30.0)
    # density of a hexagonal lattice: one point per s²·√3/2
    area = (600 - 1 - 30) * (400 - 1 - 30)
    assert len(xy) == pytest.approx(area / (30.0**2 * np.sqrt(3) / 2), rel=0.1)
    assert len(hex_lattice((20, 20), 30.0, 15.0)) == 0
    with pytest.raises(ValueError):
        hex_lattice((100, 100), 0.0)


def test_chance_level_follows_packing():
    d = 40.0
    shapes = {"a.mrc": (800, 800), "b.mrc": (800, 800)}
    # particles packed on the lattice itself (as on densely packed grids): chance is ~perfect
    packed = lattice_picks(shapes, d, 0.5 * d)[["micrograph", "x", "y"]]
    dense = chance_level(packed, shapes, d)
    assert dense["spacing"] == 1.0 and dense["f1"] == pytest.approx(1.0)
    assert dense["n_true"] == len(packed) and dense["by_spacing"][0.6] < 0.9
    # the same particles jittered by up to a quarter diameter still match within 0.5 d
    rng = np.random.default_rng(0)
    jittered = packed.assign(x=packed.x + rng.uniform(-0.17, 0.17, len(packed)) * d,
                             y=packed.y + rng.uniform(-0.17, 0.17, len(packed)) * d)
    assert chance_level(jittered, shapes, d)["f1"] > 0.95
    # sparse particles (20 per micrograph, ~4 % of the area): the lattice is mostly wrong
    sparse = pd.concat([pd.DataFrame({"micrograph": m, "x": rng.uniform(20, 780, 20), "y": rng.uniform(20, 780, 20)})
                        for m in shapes], ignore_index=True)
    low = chance_level(sparse, shapes, d)
    assert low["f1"] < 0.15 and low["precision"] < 0.1
    assert set(low["by_spacing"]) == {0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2}
    assert low["f1"] == max(low["by_spacing"].values())
    # a stricter radius lowers the chance level of jittered truth
    assert chance_level(jittered, shapes, d, radius_fraction=0.1)["f1"] < 0.5


@pytest.mark.parametrize(("dataset", "diameter", "lo", "hi"),
                         [("10028", 55.0, 0.25, 0.45), ("10059", 36.0, 0.55, 0.68), ("10947", 58.0, 0.52, 0.65)])
def test_chance_level_on_cryoppp_masks(shared_data, dataset, diameter, lo, hi):
    """The masks of the CryoPPP test splits, read as `pixer benchmark` reads them: on the densely
    packed 10059 / 10947 an image-blind lattice reaches F1 ~0.6 within 0.5 d (docs/real_data.md,
    "Chance level"); on 10028, with space between particles, ~0.35."""
    from pixer.evaluate.masks import read_mask_truth

    root = shared_data / "cryoppp_subset" / dataset / "test"
    images = sorted((root / "images").glob("*.png"))
    truth = read_mask_truth(root / "labels", images)
    shapes = micrograph_shapes(images, apix=1.0)
    assert set(shapes.values()) == {(1024, 1024)}
    got = chance_level(truth, shapes, diameter)
    assert lo < got["f1"] < hi, got
