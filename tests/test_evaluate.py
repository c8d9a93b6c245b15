"""Matching, metrics and plots against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pixer.errors import PixerError
from pixer.evaluate import (
    average_precision,
    evaluate,
    match_picks,
    match_tables,
    mic_key,
    precision_recall_curve,
)
from pixer.evaluate.plots import plot_picks, plot_pr_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def frame(mic, xy, scores=None):
    xy = np.asarray(xy, float).reshape(-1, 2)
    df = pd.DataFrame({"micrograph": [mic] * len(xy), "x": xy[:, 0], "y": xy[:, 1]})
    if scores is not None:
        df["score"] = scores
    return df


def test_mic_key():
    assert mic_key("MotionCorr/job002/Movies/mic_001.mrc") == "mic_001"
    assert mic_key("mic_001_autopick.star") == "mic_001"
    assert mic_key(r"C:\data\mic_001_manualpick.box") == "mic_001"
    assert mic_key("mic_001_pixer_coords.txt") == "mic_001"
    assert mic_key("mic_001") == "mic_001"
    # a dot inside the name is not an extension: a coordinate file's stem keeps it
    assert mic_key("set_2.5A_10dB_000.mrc") == mic_key("set_2.5A_10dB_000_autopick") == "set_2.5A_10dB_000"
    assert mic_key("run_1.2_mic") == "run_1.2_mic" and mic_key("a.mrc.tiff") == "a.mrc"
    assert mic_key(".hidden") == ".hidden"


def test_match_hand_case():
    true = [[0, 0], [10, 0]]
    pred = [[1, 0], [10, 2], [50, 50]]  # distances 1, 2, far
    pi, ti = match_picks(pred, true, radius=3)
    assert pi.tolist() == [0, 1] and ti.tolist() == [0, 1]


def test_hungarian_beats_greedy_nearest():
    # Pick 0 is nearest to truth 1, so greedy nearest would take (0, 1) and leave
    # pick 1 (which only reaches truth 1) unmatched; the optimum matches both.
    true = [[0.0, 0.0], [3.0, 0.0]]
    pred = [[2.0, 0.0], [5.5, 0.0]]
    pi, ti = match_picks(pred, true, radius=2.6)
    assert sorted(zip(pi.tolist(), ti.tolist())) == [(0, 0), (1, 1)]


def test_minimum_distance_among_maximum_matchings():
    pred = [[0.0, 0.0], [1.0, 0.0]]
    true = [[0.9, 0.0], [0.1, 0.0]]
    pi, ti = match_picks(pred, true, radius=2)
    assert dict(zip(pi.tolist(), ti.tolist())) == {0: 1, 1: 0}


def test_radius_boundary_is_inclusive_and_exact_overlap_matches():
    assert len(match_picks([[3.0, 4.0]], [[0.0, 0.0]], 5.0)[0]) == 1
    assert len(match_picks([[3.0, 4.0]], [[0.0, 0.0]], 4.999)[0]) == 0
    assert len(match_picks([[1.0, 1.0]], [[1.0, 1.0]], 0.5)[0]) == 1  # zero distance
    assert len(match_picks(np.zeros((0, 2)), [[1.0, 1.0]], 5)[0]) == 0


def test_match_many_is_fast_and_one_to_one():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 4000, (3000, 2))
    pred = np.r_[true + rng.normal(0, 3, true.shape), rng.uniform(0, 4000, (1000, 2))]
    pi, ti = match_picks(pred, true, 10.0)
    assert len(set(pi.tolist())) == len(pi) and len(set(ti.tolist())) == len(ti)
    assert len(pi) >= 2980  # ~0.4 % of the shifted picks fall beyond 10 px
    assert np.all(np.hypot(*(pred[pi] - true[ti]).T) <= 10.0)


def test_match_tables_pairs_names_by_key():
    picks = pd.concat([frame("out/mic_1_pixer.star", [[0, 0], [20, 0]]), frame("mic_9.mrc", [[0, 0]])])
    truth = pd.concat([frame("Movies/mic_1.mrc", [[1, 0]]), frame("Movies/mic_2.mrc", [[5, 5]])])
    out, n_true = match_tables(picks, truth, 5.0)
    assert out["tp"].tolist() == [True, False, False]
    assert n_true.to_dict() == {"Movies/mic_1.mrc": 1, "Movies/mic_2.mrc": 1}
    with pytest.raises(PixerError):
        match_tables(picks.drop(columns="x"), truth, 5.0)


def test_pr_curve_and_ties():
    scores = np.array([0.9, 0.8, 0.8, 0.1])
    tp = np.array([True, False, True, False])
    p, r, t = precision_recall_curve(scores, tp, n_true=4)
    np.testing.assert_allclose(t, [0.9, 0.8, 0.1])
    np.testing.assert_allclose(p, [1.0, 2 / 3, 0.5])
    np.testing.assert_allclose(r, [0.25, 0.5, 0.5])
    assert average_precision(p, r) == pytest.approx(0.25 * 1.0 + 0.25 * 2 / 3)


def test_auprc_perfect_and_random_rankings():
    tp = np.r_[np.ones(300, bool), np.zeros(700, bool)]
    p, r, _ = precision_recall_curve(np.linspace(1, 0, 1000), tp, n_true=400)
    assert average_precision(p, r) == pytest.approx(r.max()) == pytest.approx(0.75)
    rng = np.random.default_rng(0)
    p, r, _ = precision_recall_curve(rng.random(1000), tp, n_true=300)
    assert average_precision(p, r) == pytest.approx(0.3, abs=0.05)


def test_evaluate_hand_case_and_threshold():
    picks = frame("mic_1", [[1, 0], [10, 2], [50, 50]], scores=[0.9, 0.5, 0.7])
    truth = frame("mic_1", [[0, 0], [10, 0]])
    res = evaluate(picks, truth, diameter_px=6)  # radius 3
    assert res["tp"] == 2 and res["n_picks"] == 3 and res["n_true"] == 2
    assert res["precision"] == pytest.approx(2 / 3) and res["recall"] == 1.0
    assert res["f1"] == pytest.approx(0.8)
    assert res["best_f1"] == pytest.approx(0.8) and res["best_threshold"] == pytest.approx(0.5)
    # curve: 0.9 TP (P1 R.5), 0.7 FP (P.5 R.5), 0.5 TP (P2/3 R1) -> AP = .5 + .5 * 2/3
    assert res["auprc"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    at = evaluate(picks, truth, radius_px=3, threshold=0.8)
    assert (at["precision"], at["recall"], at["n_picks"]) == (1.0, 0.5, 1)
    row = at["per_micrograph"].iloc[0]
    assert (row["micrograph"], row["n_picks"], row["n_true"], row["tp"]) == ("mic_1", 1, 2, 1)
    assert far_radius_fails(picks, truth)


def far_radius_fails(picks, truth):
    return evaluate(picks, truth, radius_px=0.5)["tp"] == 0


def test_evaluate_empty_conventions():
    truth = frame("mic_1", [[0, 0]])
    no_picks = evaluate(frame("mic_1", np.zeros((0, 2)), scores=[]), truth, diameter_px=10)
    assert (no_picks["precision"], no_picks["recall"], no_picks["f1"]) == (1.0, 0.0, 0.0)
    assert no_picks["auprc"] == 0.0 and no_picks["best_threshold"] is None
    no_truth = evaluate(frame("mic_1", [[0, 0]], scores=[1.0]), frame("mic_1", np.zeros((0, 2))), diameter_px=10)
    assert (no_truth["precision"], no_truth["recall"], no_truth["f1"]) == (0.0, 0.0, 0.0)
    with pytest.raises(PixerError):
        evaluate(no_picks_frame := frame("m", [[0, 0]]), truth)  # noqa: F841 - no radius given


def test_per_micrograph_includes_truth_without_picks():
    picks = frame("a", [[0, 0]], scores=[1.0])
    truth = pd.concat([frame("a", [[0, 0]]), frame("b", [[5, 5], [9, 9]])])
    table = evaluate(picks, truth, diameter_px=4)["per_micrograph"].set_index("micrograph")
    assert table.loc["b", "n_true"] == 2 and table.loc["b", "n_picks"] == 0
    assert table.loc["a", "f1"] == 1.0


def test_plots_write_png(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(300, 400)).astype(np.float32)
    picks = rng.uniform(20, 280, (15, 2))
    truth = np.r_[picks[:10] + 1, rng.uniform(20, 280, (3, 2))]
    paths = [
        plot_picks(image, picks, truth, diameter_px=20, path=tmp_path / "a.png"),
        plot_picks(image, picks, diameter_px=20, path=tmp_path / "sub" / "b.png", lowpass=False),
        plot_pr_curve({"pixer": (np.array([1.0, 0.8]), np.array([0.4, 0.9])), "empty": ([], [])}, tmp_path / "pr.png"),
    ]
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    assert sorted(f.name for f in tmp_path.rglob("*") if f.is_file()) == ["a.png", "b.png", "pr.png"]


def test_evaluate_radius_fraction_and_curve_keys():
    picks = frame("m", [[2.0, 0.0]], scores=[0.5])
    truth = frame("m", [[0.0, 0.0]])
    assert evaluate(picks, truth, diameter_px=10, radius_fraction=0.1)["tp"] == 0
    res = evaluate(picks, truth, diameter_px=10)
    assert res["tp"] == 1 and res["radius_px"] == 5.0
    assert res["precision_curve"].tolist() == [1.0] and res["recall_curve"].tolist() == [1.0]
    assert res["thresholds"].tolist() == [0.5]
