"""Pick thresholds: Otsu's split, the ``auto`` rule, and the model's own calibrated cut."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixer.labels import disc_labels
from pixer.pick.threshold import (
    AUTO_SCORE_FLOOR,
    CANDIDATE_FLOOR,
    FALLBACK_THRESHOLD,
    NULL_GRID,
    auto_threshold,
    null_density,
    null_overdispersion,
    null_threshold,
    otsu_threshold,
)
from pixer.train.calibrate import calibrate_pick_threshold, label_centres

D = 16.0  # particle diameter, px


class MapAsLogits(torch.nn.Module):
    """A stand-in 'network' whose probability map is its input image (values in (0, 1))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logit(x.clamp(1e-4, 1 - 1e-4))


def blobs(shape, centres, heights, d=D):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.full(shape, 1e-3, np.float32)
    for (x, y), h in zip(centres, heights, strict=True):
        out = np.maximum(out, h * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (0.15 * d) ** 2)))
    return out.astype(np.float32)


def test_otsu_splits_two_modes_and_reports_separability():
    rng = np.random.default_rng(0)
    s = np.concatenate([rng.uniform(0.05, 0.2, 300), rng.uniform(0.8, 0.95, 100)])
    t, eta = otsu_threshold(s)
    assert 0.2 <= t <= 0.8 and eta > 0.9
    t_auto, rule = auto_threshold(s)
    assert t_auto == pytest.approx(t) and rule.startswith("auto: Otsu")


def test_auto_ignores_the_faint_candidates_kept_below_its_own_floor():
    # parts keep candidates down to 0.001 for the curve; the auto rule sees what it saw before
    assert CANDIDATE_FLOOR < AUTO_SCORE_FLOOR
    rng = np.random.default_rng(2)
    bimodal = np.concatenate([rng.uniform(0.06, 0.2, 300), rng.uniform(0.8, 0.95, 100)])
    faint = rng.uniform(CANDIDATE_FLOOR, AUTO_SCORE_FLOOR, 5000)
    assert auto_threshold(np.concatenate([bimodal, faint])) == auto_threshold(bimodal)
    own = {"value": 0.42, "f1": 0.7, "n_true": 50, "n_micrographs": 1}
    t, rule = auto_threshold(np.concatenate([rng.uniform(0.06, 1.0, 10), faint]), own)
    assert t == 0.42 and "only 10 candidates" in rule


def test_auto_prefers_a_clear_split_then_the_models_own_cut_then_the_fallback():
    rng = np.random.default_rng(1)
    unimodal = rng.uniform(0.05, 1.0, 500)
    bimodal = np.concatenate([rng.uniform(0.05, 0.2, 300), rng.uniform(0.8, 0.95, 100)])
    own = {"value": 0.31, "f1": 0.8, "n_true": 120, "n_micrographs": 2}
    assert auto_threshold(unimodal)[0] == FALLBACK_THRESHOLD
    assert auto_threshold(unimodal[:5])[0] == FALLBACK_THRESHOLD
    t, rule = auto_threshold(unimodal, own)
    assert t == 0.31 and "model's own" in rule and "120 particles" in rule and "not bimodal" in rule
    assert auto_threshold(unimodal[:5], own)[0] == 0.31
    t, rule = auto_threshold(bimodal, own)
    assert t == pytest.approx(otsu_threshold(bimodal)[0]) and rule.startswith("auto: Otsu")


def test_label_centres_are_disc_centres():
    centres = np.array([[10.0, 12.0], [40.5, 30.0], [70.0, 55.0]])
    label = disc_labels((80, 90), centres, 5)
    found = label_centres(label)
    order = np.argsort(found[:, 0])
    np.testing.assert_allclose(found[order], centres, atol=0.51)
    assert label_centres(np.zeros((5, 5))).shape == (0, 2)


def test_calibration_cuts_between_true_particles_and_decoys():
    """True particles peak at 0.35-0.45 (an under-confident, fine-tuned-like model), decoys
    (not in the labels) at 0.15-0.25: the model's own cut lies between them and gives F1 1,
    where the fixed 0.5 would keep nothing."""
    rng = np.random.default_rng(2)
    samples = []
    for _ in range(2):
        pts = rng.permutation([(x, y) for x in range(20, 180, 30) for y in range(20, 140, 30)]).astype(float)
        true, decoy = pts[:14], pts[14:]
        prob = blobs((160, 200), np.vstack([true, decoy]),
                     np.r_[rng.uniform(0.35, 0.45, len(true)), rng.uniform(0.15, 0.25, len(decoy))])
        samples.append((prob, disc_labels(prob.shape, true, 0.3 * D)))
    calib = calibrate_pick_threshold(MapAsLogits(), samples, D, tile=128, stride=64)
    assert calib is not None and calib["n_true"] == 28 and calib["n_micrographs"] == 2
    assert calib["f1"] == pytest.approx(1.0) and calib["precision"] == calib["recall"] == 1.0
    assert CANDIDATE_FLOOR < calib["value"] < 0.45  # every true peak is below 0.5
    # too few labelled particles: no calibration
    assert calibrate_pick_threshold(MapAsLogits(), [(samples[0][0], np.zeros_like(samples[0][1]))], D) is None


def test_empty_validation_micrographs_raise_the_cut_until_they_stay_clean():
    """Two labelled micrographs (true peaks 0.85-1, decoys 0.15-0.25) and two empty ones whose
    junk peaks at 0.45-0.7: the F1-optimal cut, midway between decoys and particles, would
    leave junk picks on the empty micrographs; the calibrated cut rises above the junk and
    still keeps every true particle."""
    rng = np.random.default_rng(3)
    grid = [(x, y) for x in range(20, 180, 30) for y in range(20, 140, 30)]
    samples = []
    for k in range(4):
        pts = rng.permutation(grid).astype(float)
        if k < 2:
            true, decoy = pts[:14], pts[14:]
            prob = blobs((160, 200), np.vstack([true, decoy]),
                         np.r_[rng.uniform(0.85, 1.0, len(true)), rng.uniform(0.15, 0.25, len(decoy))])
            samples.append((prob, disc_labels(prob.shape, true, 0.3 * D)))
        else:
            junk = pts[:5]
            prob = blobs((160, 200), junk, rng.uniform(0.45, 0.7, len(junk)))
            samples.append((prob, np.zeros(prob.shape, np.uint8)))
    calib = calibrate_pick_threshold(MapAsLogits(), samples, D, tile=128, stride=64, max_picks_per_empty=1.0)
    assert calib["n_empty"] == 2 and calib["n_true"] == 28
    assert calib["f1_cut"] < calib["empty_cut"] == calib["value"]
    assert calib["picks_per_empty"] <= 1.0 and calib["recall"] == 1.0
    loose = calibrate_pick_threshold(MapAsLogits(), samples, D, tile=128, stride=64, max_picks_per_empty=10.0)
    assert loose["value"] == loose["f1_cut"] and loose["picks_per_empty"] > 1.0
    # the empty micrographs' candidates are kept as the model's background density (per particle area)
    null = calib["null"]
    assert null["grid"] == list(NULL_GRID) and null["area"] == pytest.approx(2 * 160 * 200 / D**2)
    density = np.asarray(null["density"])
    assert density[0] * null["area"] == pytest.approx(10, abs=0.01)  # the 5 junk peaks of each
    assert np.all(np.diff(density) <= 0) and density[np.asarray(NULL_GRID) >= 0.7].max() == 0.0
    assert density[np.asarray(NULL_GRID) <= 0.2].min() == pytest.approx(density[0])  # all junk peaks are higher
    # ... with their spread between micrographs: 5 junk peaks on each, so no more than Poisson
    assert len(null["kappa"]) == len(NULL_GRID) and null["kappa"][0] == 0.0


def logit_scores(rng, n, mean, sd):
    """``n`` candidate scores whose logits are normal (what a network's local maxima look like)."""
    s = 1.0 / (1.0 + np.exp(-rng.normal(mean, sd, n)))
    return s[s > CANDIDATE_FLOOR]


def test_null_density_counts_candidates_above_each_grid_score_per_area():
    scores = np.array([0.0015, 0.01, 0.01, 0.2, 0.9])
    density = null_density(scores, area=10.0)
    assert len(density) == len(NULL_GRID) and NULL_GRID[0] == CANDIDATE_FLOOR and NULL_GRID[-1] == 1.0
    grid = np.asarray(NULL_GRID)
    for t, d in zip(grid, density, strict=True):
        assert d == pytest.approx((scores > t).sum() / 10.0)
    assert np.all(np.diff(density) <= 0) and density[-1] == 0.0
    with pytest.raises(ValueError):
        null_density(scores, 0.0)


def best_f1(scores, is_particle, n_particles):
    order = np.argsort(-scores)
    tp = np.cumsum(is_particle[order])
    n = np.arange(1, len(scores) + 1)
    return float(np.max(2 * tp / (n + n_particles)))


def f1_at(t, scores, is_particle, n_particles):
    kept = scores > t
    tp = int(is_particle[kept].sum())
    return 2 * tp / (kept.sum() + n_particles)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_null_rule_follows_faint_particles_down_and_leaves_empty_runs_alone(seed):
    """Background candidates (0.5 per particle area, logits N(-3.5, 1)) measured on 1000 particle
    areas of empty micrographs are the model's null. A run of 400 particle areas holds 200
    particles whose scores are low and overlap the background's tail (logits N(-0.5, 1), as the
    general model at -20 dB or on real data): the model's own cut (0.54) keeps a third of them;
    the null rule's cut comes within 0.05 of the best F1 any cut gives. A run of background only, drawn
    afresh, gets no cut from it, so `auto` falls back to the model's own."""
    rng = np.random.default_rng(seed)
    null = {"grid": list(NULL_GRID), "density": null_density(logit_scores(rng, 500, -3.5, 1.0), 1000.0)}
    background = logit_scores(rng, 200, -3.5, 1.0)
    particles = logit_scores(rng, 200, -0.5, 1.0)
    scores = np.concatenate([background, particles])
    truth = np.r_[np.zeros(len(background), bool), np.ones(len(particles), bool)]
    t, rule = null_threshold(scores, 400.0, null)
    assert "background" in rule
    own = {"value": 0.54, "f1": 0.66, "n_true": 1980, "n_micrographs": 44, "null": null}
    assert auto_threshold(scores, own, area=400.0) == (t, rule)
    assert auto_threshold(scores, own)[0] == 0.54  # no area: the rule is skipped
    best = best_f1(scores, truth, len(particles))
    assert f1_at(t, scores, truth, len(particles)) >= best - 0.05
    assert f1_at(t, scores, truth, len(particles)) >= f1_at(0.54, scores, truth, len(particles)) + 0.2
    empty_run = logit_scores(rng, 200, -3.5, 1.0)
    assert null_threshold(empty_run, 400.0, null) is None
    assert auto_threshold(empty_run, own, area=400.0)[0] == 0.54
    # ... also when the empty run is noisier than the null (tail twice as dense above 0.01)
    noisier = np.concatenate([empty_run, logit_scores(rng, 40, -2.5, 0.7)])
    assert null_threshold(noisier, 400.0, null) is None


def test_overdispersion_is_zero_for_poisson_counts_and_measures_clumpy_junk():
    """Empty micrographs whose background counts are Poisson with one mean give κ ≈ 0; when
    the junk's amount changes between micrographs (means 0.2 and 1.8 × the average, as with and
    without a carbon edge), κ ≈ 0.64, the squared relative spread of those means."""
    rng = np.random.default_rng(5)
    areas = [200.0] * 400
    even = [np.full(rng.poisson(0.2 * a), 0.5) for a in areas]
    kappa = np.asarray(null_overdispersion(even, areas))
    assert len(kappa) == len(NULL_GRID)
    grid = np.asarray(NULL_GRID)
    assert abs(kappa[grid < 0.5].mean()) < 0.05 and np.all(kappa[grid >= 0.5] == 0.0)  # nothing above 0.5
    clumpy = [np.full(rng.poisson((0.2 * 0.2 if k % 2 else 1.8 * 0.2) * a), 0.5) for k, a in enumerate(areas)]
    assert np.asarray(null_overdispersion(clumpy, areas))[grid < 0.5].mean() == pytest.approx(0.64, abs=0.08)
    assert null_overdispersion(clumpy[:1], areas[:1]) == [0.0] * len(NULL_GRID)  # one micrograph: no spread
    with pytest.raises(ValueError):
        null_overdispersion(even, areas[:-1])


def test_a_clumpy_background_needs_a_larger_excess_on_few_micrographs():
    """Background 0.02 per particle area up to 0.8 on average, but clumpy (κ = 4: micrographs'
    junk varies by twice its mean). Three empty micrographs of 100 particle areas that hold 4 ×
    the average junk (24 picks where 6 are expected) pass a Poisson test (excess 18 ≥ 4 √7) but
    not one that knows the spread (σ² = 7 + 4 · 36 / 3); 200 true particles on the same run
    pass both."""
    null = {"grid": list(NULL_GRID), "density": [0.02 if t < 0.8 else 0.0 for t in NULL_GRID]}
    junk = np.full(24, 0.6)
    assert null_threshold(junk, 300.0, null, micrographs=3) is not None  # no kappa stored: Poisson only
    clumpy = {**null, "kappa": [4.0] * len(NULL_GRID)}
    assert null_threshold(junk, 300.0, clumpy) is not None  # micrographs unknown: Poisson only
    assert null_threshold(junk, 300.0, clumpy, micrographs=3) is None
    assert null_threshold(junk, 300.0, clumpy, micrographs=300) is not None  # spread averages out
    particles = np.concatenate([junk, np.full(200, 0.9)])
    found = null_threshold(particles, 300.0, clumpy, micrographs=3)
    assert found is not None and found == null_threshold(particles, 300.0, null, micrographs=3)
