"""The general crop classifier shipped with pixer: it loads safely, is small, `pixer pick` uses it
with the general model only, it tells small dark debris from particles, and it removes the general
model's debris picks on empty micrographs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from pixer.cli.main import main
from pixer.models.classifier import CLASS_NAMES, extract_crops, load_classifier, predict_crops
from pixer.models.general import general_classifier_dir, general_model_dir, is_general, resolve_classifier

MAX_BYTES = 5 * 1024 * 1024


def test_shipped_classifier_loads_safely_is_small_and_states_its_rule():
    folder = general_classifier_dir()
    weights = folder / "classifier.pt"
    assert weights.stat().st_size <= MAX_BYTES
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    model, info = load_classifier(folder)
    assert info["particle_px"] == json.loads((general_model_dir() / "config.json").read_text())["particle_px"]
    assert info["class_names"] == list(CLASS_NAMES)
    # its rule: only what it calls junk is removed (faint particles look like noise to it)
    assert info["particle_min"] == 0.0 and 0.5 <= info["junk_max"] < 1.0
    assert "general" in info and "background" in info  # the recipe and what it does to the background
    probs = predict_crops(model, np.zeros((2, info["crop"], info["crop"]), np.float32))
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_auto_means_the_general_classifier_with_the_general_model_only(tmp_path):
    general = general_model_dir()
    shipped = general_classifier_dir()
    assert resolve_classifier(None, general) == shipped == resolve_classifier("auto", general)
    assert resolve_classifier("general", tmp_path) == shipped
    assert resolve_classifier("none", general) is None
    assert resolve_classifier("my/clf", general) == Path("my/clf")
    copy = tmp_path / "copy"
    shutil.copytree(general, copy)  # a copy of the general model is the general model
    assert is_general(copy) and resolve_classifier(None, copy) == shipped
    other = tmp_path / "other"
    shutil.copytree(general, other)
    data = bytearray((other / "model.pt").read_bytes())
    data[-1] ^= 1
    (other / "model.pt").write_bytes(bytes(data))
    assert not is_general(other) and resolve_classifier(None, other) is None
    assert not is_general(tmp_path / "missing")


def test_classifier_calls_debris_junk_and_particles_not(tmp_path):
    """Apoferritin at -10 dB among small dark debris (the simulator's `debris`, nothing else): crops at
    the particles' true centres get P(interference) above the classifier's `junk_max` almost never,
    crops at the debris mostly (measured: 0 of 50 particles, 82-84 % of the debris). The same with a
    quarter of each crop zero, as where a candidate's box leaves the micrograph (0 % / 75 %; the
    first general classifier, which never saw padded junk in training, called 5 % of those debris junk)."""
    from pixer.data.preprocess import prepare
    from pixer.io.coords import read_picks
    from pixer.io.micrographs import read_micrograph
    from pixer.simulate import simulate_dataset

    model, info = load_classifier(general_classifier_dir())
    p_int = {"particles": [], "debris": []}
    padded = {"particles": [], "debris": []}
    for seed in (5, 6):
        out = tmp_path / f"s{seed}"
        simulate_dataset(out, n=1, size=768, apix=2.0, snr_db=-10.0, seed=seed, particles_per_micrograph=25,
                         interference=dict(carbon=0.0, contaminants=0.0, aggregates=0.0, debris=15.0),
                         progress=False, demo="apoferritin")  # fmt: skip
        diameter = json.loads((out / "simulation.json").read_text())["particle_diameter_A"]
        mic = read_micrograph(out / "micrographs" / "mic_0000.mrc")
        image, _ = prepare(mic.data, mic.apix, diameter / info["particle_px"])
        scale = image.shape[0] / mic.data.shape[0]
        junk = read_micrograph(out / "truth" / "mic_0000_junk.mrc", apix=mic.apix, blank_ok=True).data > 0
        labels, n = ndi.label(junk)
        centres = {"particles": read_picks([str(out / "particles.star")])[["x", "y"]].to_numpy(),
                   "debris": np.array(ndi.center_of_mass(junk, labels, range(1, n + 1)))[:, ::-1]}
        for kind, xy in centres.items():
            crops = extract_crops(image, xy * scale, int(info["crop"]))
            probs = predict_crops(model, crops)
            p_int[kind].append(probs[:, CLASS_NAMES.index("interference")])
            for side in range(4):  # the micrograph's edge a quarter of the crop from each side in turn
                edge = np.rot90(crops, side, axes=(1, 2)).copy()
                edge[:, : crops.shape[1] // 4] = 0
                padded[kind].append(predict_crops(model, edge)[:, CLASS_NAMES.index("interference")])
    for got in (p_int, padded):
        particles, debris = np.concatenate(got["particles"]), np.concatenate(got["debris"])
        assert len(debris) >= 10
        assert (particles > info["junk_max"]).mean() <= 0.05
        assert (debris > info["junk_max"]).mean() >= 0.5
    assert len(np.concatenate(p_int["particles"])) == 50


@pytest.mark.slow
def test_pick_removes_the_general_models_debris_picks_on_empty_micrographs(tmp_path):
    """Empty micrographs with debris (docs/general_model.md, "A general classifier"): the general model
    alone picks debris; with its classifier (the default) far fewer, and the run records the rule.
    A rerun with --classifier none recomputes the parts instead of reusing the filtered ones."""
    sim = tmp_path / "empty"
    assert main(["simulate", "--out", str(sim), "--demo", "apoferritin", "--apix", "2.0", "--size", "1024",
                 "--n", "2", "--snr-db", "-10", "--seed", "778", "--particles", "0", "--debris", "12",
                 "--no-progress"]) == 0  # fmt: skip
    base = ["pick", "--micrographs", str(sim / "micrographs"), "--diameter", "125", "--cluster", "none",
            "--no-progress", "--no-diameter-search", "--threshold", "0.5"]
    picks = {}
    for name, extra in (("default", []), ("none", ["--classifier", "none"])):
        out = tmp_path / name
        assert main([*base, "--out", str(out), *extra]) == 0
        picks[name] = json.loads((out / "pixer_pick.json").read_text())
    assert picks["default"]["classifier"]["used"] and not picks["none"]["classifier"]["used"]
    assert picks["none"]["n_picks"] >= 4, picks["none"]["n_picks"]  # the model alone takes debris for particles
    assert picks["default"]["n_picks"] <= picks["none"]["n_picks"] / 2
    # the same folder without the classifier: parts recomputed, same picks as the fresh run
    assert main([*base, "--out", str(tmp_path / "default"), "--classifier", "none"]) == 0
    again = json.loads((tmp_path / "default" / "pixer_pick.json").read_text())
    assert again["n_picks"] == picks["none"]["n_picks"] and again["n_skipped"] == 0
