"""Self-training (`pixer pick --adapt`, pixer.train.adapt): pixels the loss must leave out, pseudo-labels
from a model's own candidates, the adapted model on simulated micrographs, reruns, and runs with nothing
to learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pixer.cli.main import main
from pixer.labels.discs import IGNORE, disc_labels, mark_ignored
from pixer.pick.batch import read_part_header, weights_stamp
from pixer.train.adapt import AdaptConfig, NothingToLearn, pseudo_label, self_train
from pixer.train.calibrate import _outside_ignored, label_centres
from pixer.train.segmentation import evaluate, make_loss

#: short rounds: what is tested is the mechanics and that the adapted model still picks
FAST = AdaptConfig(rounds=2, steps=20, max_micrographs=3)


def test_loss_leaves_ignored_pixels_out():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    target = (torch.rand(2, 1, 16, 16) > 0.7).float()
    target[:, :, :4] = IGNORE
    keep = target != IGNORE
    for pos_weight, dice in ((1.0, 0.0), (3.0, 0.5)):
        loss = make_loss(pos_weight, dice)(logits, target)
        t, lg = target[keep], logits[keep]
        want = F.binary_cross_entropy_with_logits(lg, t, pos_weight=torch.tensor(pos_weight))
        if dice:
            p = torch.sigmoid(lg)
            want = want + dice * (1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1))
        assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
        (grad,) = torch.autograd.grad(loss, logits)
        assert float(grad[~keep].abs().max()) == 0.0 and float(grad[keep].abs().max()) > 0
    plain = (torch.rand(2, 1, 16, 16) > 0.7).float()  # no ignored pixel: the plain BCE
    with torch.no_grad():
        assert float(make_loss()(logits, plain)) == float(F.binary_cross_entropy_with_logits(logits, plain))


def test_iou_counts_no_ignored_pixel():
    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits, self.p = logits, torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return self.logits

    y = torch.zeros(1, 1, 8, 8)
    y[..., :2, :2] = 1
    logits = -torch.ones(1, 1, 8, 8)
    logits[..., :2, :2] = 1
    logits[..., 4:, 4:] = 1  # predicted particle where the label is left out
    assert evaluate(Fixed(logits), torch.zeros(1, 1, 8, 8), y, make_loss())[1] == pytest.approx(4 / 20)
    y[..., 4:, 4:] = IGNORE
    assert evaluate(Fixed(logits), torch.zeros(1, 1, 8, 8), y, make_loss())[1] == 1.0


def test_mark_ignored_keeps_particles_and_calibration_skips_ignored():
    label = disc_labels((40, 40), np.array([[10.0, 10.0]]), 3)
    out = mark_ignored(label, np.array([[12.0, 10.0], [30.0, 30.0]]), 5)
    assert (out[label == 1] == 1).all() and label.max() == 1  # particles stay; the input is untouched
    assert out[30, 30] == IGNORE and out[10, 16] == IGNORE and out[0, 39] == 0
    centres = label_centres(out)
    assert centres.shape == (1, 2) and np.allclose(centres[0], [10, 10], atol=0.3)
    xy = np.array([[10.0, 10.0], [30.2, 29.6], [0.0, 39.0]])
    kept, scores = _outside_ignored(xy, np.array([0.9, 0.8, 0.1]), out)
    assert kept.tolist() == [[10.0, 10.0], [0.0, 39.0]] and scores.tolist() == [0.9, 0.1]


def test_pseudo_labels_split_candidates_by_the_rounds_cut():
    xy = np.array([[10.0, 10.0], [40.0, 10.0], [10.0, 40.0], [40.0, 40.0]])
    scores = np.array([0.9, 0.3, 0.12, 0.05])
    label, n_pos, n_ign = pseudo_label((60, 60), xy, scores, 0.5, 24.0, AdaptConfig())
    # particles: >= 0.5 × 0.5; left out: >= 0.2 × 0.5; the rest background
    assert (n_pos, n_ign) == (2, 1)
    assert label[10, 10] == 1 and label[10, 40] == 1 and label[40, 10] == IGNORE and label[40, 40] == 0
    assert (label == 1).sum() == pytest.approx(2 * np.pi * 7.2**2, rel=0.1)  # discs of 0.6 × the radius
    with pytest.raises(Exception, match="ignore fraction"):
        AdaptConfig(ignore_fraction=0.6)


@pytest.fixture(scope="module")
def sims(tmp_path_factory) -> dict:
    """Three micrographs of the 'small' demo at -14 dB (as tests/test_general_model.py) and three with
    no particles, interference on."""
    root = tmp_path_factory.mktemp("adapt")
    common = ["--size", "512", "--apix", "1.2", "--demo", "small", "--no-progress", "--n", "3"]
    assert main(["simulate", "--out", str(root / "sim"), "--snr-db", "-14", "--seed", "4243", *common]) == 0
    assert main(["simulate", "--out", str(root / "empty"), "--snr-db", "-10", "--seed", "4244", "--particles", "0",
                 *common]) == 0  # fmt: skip
    diameter = json.loads((root / "sim" / "simulation.json").read_text())["particle_diameter_A"]
    return {"root": root, "sim": root / "sim", "empty": root / "empty", "diameter": float(diameter)}


def _f1(picks: Path, truth: Path, diameter: float, out: Path) -> float:
    assert main(["evaluate", "--picks", str(picks), "--truth", str(truth), "--diameter", f"{diameter:g}",
                 "--out", str(out)]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    return float(metrics.get("overall", metrics)["f1"])


def test_self_train_writes_a_model_that_picks_and_reruns_reuse_it(sims):
    mics = sorted((sims["sim"] / "micrographs").glob("*.mrc"))
    out = sims["root"] / "adapted"
    record = self_train(mics, sims["diameter"], out, config=FAST, progress=False)
    assert [r["round"] for r in record["rounds"]] == [1, 2]
    first = record["rounds"][0]
    assert first["rule"].startswith("auto: against the model's empty-micrograph background")
    assert first["particles"] > 20 * len(mics) and all(r["pick_threshold"] for r in record["rounds"])
    config = json.loads((out / "config.json").read_text())
    assert config["adapt"] == record and config["particle_px"] == 24
    assert (out / "round_1" / "model.pt").is_file() and (out / "round_2" / "model.pt").is_file()
    assert weights_stamp(out) == weights_stamp(out / "round_2") != weights_stamp(out / "round_1")
    stamp = (out / "model.pt").stat().st_mtime_ns
    assert self_train(mics, sims["diameter"], out, config=FAST, progress=False) == record
    assert (out / "model.pt").stat().st_mtime_ns == stamp  # reused, not retrained
    picks = sims["root"] / "picks_adapted"
    assert main(["pick", "--micrographs", str(sims["sim"] / "micrographs"), "--model", str(out), "--diameter",
                 f"{sims['diameter']:g}", "--out", str(picks), "--cluster", "none", "--no-progress"]) == 0  # fmt: skip
    assert _f1(picks, sims["sim"] / "particles.star", sims["diameter"], sims["root"] / "ev") > 0.85
    other = self_train(mics, sims["diameter"], out, config=AdaptConfig(rounds=1, steps=20), progress=False)
    assert len(other["rounds"]) == 1 and not (out / "round_2").exists()  # other settings: done again


def test_self_train_with_nothing_to_learn_says_so(sims):
    mics = sorted((sims["empty"] / "micrographs").glob("*.mrc"))
    with pytest.raises(NothingToLearn, match="particles? (per micrograph )?above its background"):
        self_train(mics, sims["diameter"], sims["root"] / "nothing", config=FAST, progress=False)
    assert not (sims["root"] / "nothing" / "model.pt").exists()
    # particles, but fewer per micrograph than asked for (as a few debris picks on empty micrographs)
    mics = sorted((sims["sim"] / "micrographs").glob("*.mrc"))
    with pytest.raises(NothingToLearn, match="fewer than 1000 particles per micrograph"):
        self_train(mics, sims["diameter"], sims["root"] / "few", config=AdaptConfig(min_particles=1000),
                   progress=False)  # fmt: skip
    with pytest.raises(Exception, match="at least 2 micrographs"):
        self_train(mics[:1], sims["diameter"], sims["root"] / "one", config=FAST, progress=False)


def test_pick_adapt_picks_with_the_adapted_model_and_reruns_skip(sims, capsys):
    out = sims["root"] / "pick_adapt"
    argv = ["pick", "--micrographs", str(sims["sim"] / "micrographs"), "--diameter", f"{sims['diameter']:g}",
            "--out", str(out), "--cluster", "none", "--no-progress", "--no-diameter-search", "--polarity", "dark"]
    fast = ["--adapt", "--adapt-rounds", "1", "--adapt-steps", "20"]
    assert main([*argv, *fast]) == 0
    record = json.loads((out / "pixer_pick.json").read_text())
    adapt = record["adapt"]
    assert adapt["adapted"] and Path(adapt["model"]) == (out / "adapted_model").resolve()
    assert len(adapt["rounds"]) == 1 and adapt["rounds"][0]["particles"] > 0
    stamp = weights_stamp(out / "adapted_model")
    assert {read_part_header(p)["model"] for p in (out / "parts").rglob("*.csv")} == {stamp}
    # the general classifier learnt the general model's mistakes: not applied to the adapted model
    assert record["classifier"] == {"used": False, "rule": "auto: no classifier for this model"}
    assert {read_part_header(p)["classified"] for p in (out / "parts").rglob("*.csv")} == {0.0}
    assert _f1(out, sims["sim"] / "particles.star", sims["diameter"], sims["root"] / "ev_cli") > 0.85
    assert main([*argv, *fast]) == 0  # rerun: the adapted model and every part are reused
    assert set(pd.read_csv(out / "summary.csv")["status"]) == {"skipped"}
    assert main(argv) == 0  # without --adapt: the general model, so every part is picked again
    assert set(pd.read_csv(out / "summary.csv")["status"]) == {"done"}
    again = json.loads((out / "pixer_pick.json").read_text())
    assert again["adapt"] is None and again["classifier"]["used"]  # the general model: with its classifier
    capsys.readouterr()
    empty = sims["root"] / "pick_adapt_empty"
    assert main(["pick", "--micrographs", str(sims["empty"] / "micrographs"), "--diameter",
                 f"{sims['diameter']:g}", "--out", str(empty), "--cluster", "none", "--no-progress", *fast]) == 0
    assert "self-training skipped: the model finds" in capsys.readouterr().out
    adapt = json.loads((empty / "pixer_pick.json").read_text())["adapt"]
    assert adapt["adapted"] is False and "above its background" in adapt["reason"]
    assert not (empty / "adapted_model" / "model.pt").exists()
    # not adapted: the general model picks, with its classifier
    assert json.loads((empty / "pixer_pick.json").read_text())["classifier"]["used"]
