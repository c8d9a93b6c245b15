"""``pick_image``: the all-torch chain (what runs on a GPU) against the numpy one, on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixer.evaluate import match_picks
from pixer.io import read_micrograph
from pixer.models import load_model
from pixer.models.general import general_model_dir
from pixer.pick.picker import PickParams, pick_image, probability_map
from pixer.simulate import simulate_dataset

APIX, DIAMETER = 2.0, 120.0


@pytest.fixture(scope="module")
def micrograph(tmp_path_factory) -> np.ndarray:
    out = tmp_path_factory.mktemp("picker")
    simulate_dataset(out, n=1, size=768, apix=APIX, snr_db=-8.0, seed=11, progress=False)
    return read_micrograph(next((out / "micrographs").glob("*.mrc"))).data


def test_tensor_micrograph_takes_the_torch_chain_and_picks_as_numpy(micrograph):
    model, config = load_model(general_model_dir())
    params = PickParams(diameter_A=DIAMETER, threshold=0.3)
    a, prob_a, apix_a = pick_image(micrograph, APIX, model, config, params)
    b, prob_b, apix_b = pick_image(torch.from_numpy(micrograph.copy()), APIX, model, config, params)
    assert isinstance(prob_b, np.ndarray) and prob_b.shape == prob_a.shape and apix_a == apix_b
    # the chains differ only in rounding (torch's median is the lower middle value, numpy's the mean of two)
    assert np.abs(prob_a - prob_b).max() < 2e-3
    assert len(a) > 30
    pred, _ = match_picks(b[["x", "y"]].to_numpy(), a[["x", "y"]].to_numpy(), radius=2.0)
    assert len(pred) >= 0.97 * max(len(a), len(b)), (len(pred), len(a), len(b))


def test_probability_map_returns_the_kind_it_was_given():
    model, _ = load_model(general_model_dir())
    image = np.random.default_rng(1).normal(size=(200, 300)).astype(np.float32)
    a = probability_map(image, model, 128, 64)
    b = probability_map(torch.from_numpy(image), model, 128, 64)
    assert isinstance(a, np.ndarray) and isinstance(b, torch.Tensor)
    assert a.shape == tuple(b.shape) == (200, 300)
    np.testing.assert_allclose(a, b.numpy(), atol=1e-6)


def test_invert_picks_the_negated_micrograph_on_both_chains(micrograph):
    """``PickParams.invert`` is the same as picking ``-image``, on the numpy and the torch chain,
    and a micrograph inverted and picked with ``invert`` gives the picks of the original."""
    model, config = load_model(general_model_dir())
    plain = PickParams(diameter_A=DIAMETER, threshold=0.3)
    inverted = PickParams(diameter_A=DIAMETER, threshold=0.3, invert=True)
    original, prob, _ = pick_image(micrograph, APIX, model, config, plain)
    for image in (-micrograph, torch.from_numpy(-micrograph)):
        back, prob_back, _ = pick_image(image, APIX, model, config, inverted)
        np.testing.assert_allclose(prob_back, prob, atol=2e-3)
        pred, _ = match_picks(back[["x", "y"]].to_numpy(), original[["x", "y"]].to_numpy(), radius=2.0)
        assert len(original) > 30 and len(pred) >= 0.97 * max(len(back), len(original))
