"""bench/foreign_sim.py, the independent simulator pixer is judged on: reproducible sets, truth
inside the micrographs, counts with the pixel size in the header, particles dark and where the
truth says; and pixer's general model finds them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from pixer.io.micrographs import read_micrograph


def test_foreign_set_is_reproducible_and_physical(tmp_path, bench_script):
    fs = bench_script("foreign_sim")
    params = (150.0, 2.5, -5.0, 1.0, 0.25)  # 60 px particles, high SNR
    row = fs.make_set(tmp_path / "a", "s", params, n=2, size=384, seed=7)
    again = fs.make_set(tmp_path / "b", "s", params, n=2, size=384, seed=7)
    a = read_micrograph(tmp_path / "a" / "s" / "micrographs" / "s_000.mrc")
    b = read_micrograph(tmp_path / "b" / "s" / "micrographs" / "s_000.mrc")
    assert a.apix == 2.5 and a.data.shape == (384, 384) and np.array_equal(a.data, b.data)
    assert 30 < float(np.median(a.data)) < 50  # electron counts around the dose, not zero-mean
    truth = pd.read_csv(tmp_path / "a" / "s" / "truth.csv")
    assert row["n_particles"] == again["n_particles"] == len(truth) > 4
    assert truth[["x", "y"]].min().min() >= 0 and truth[["x", "y"]].max().max() <= 383
    # particles are dark: the low-passed image is lower at the truth centres than at random points
    d_px = 60.0
    for name, t in truth.groupby("micrograph"):
        img = gaussian_filter(read_micrograph(tmp_path / "a" / "s" / "micrographs" / name).data.astype(float), d_px / 6)
        at = img[t["y"].round().astype(int), t["x"].round().astype(int)]
        rng = np.random.default_rng(0)
        rand = img[rng.integers(0, 384, 400), rng.integers(0, 384, 400)]
        assert np.median(at) < np.median(rand), name
    # centres keep the minimum spacing asked for
    for _, t in truth.groupby("micrograph"):
        xy = t[["x", "y"]].to_numpy()
        dist = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
        assert dist[np.triu_indices(len(xy), 1)].min() >= d_px


def test_general_model_picks_a_foreign_set(tmp_path, bench_script):
    """pixer pick with no --model on the independent simulator's particles (-10 dB)."""
    from pixer.cli.main import main

    fs = bench_script("foreign_sim")
    fs.make_set(tmp_path, "f", (150.0, 2.5, -10.0, 1.0, 0.25), n=2, size=512, seed=3)
    out = tmp_path / "picks"
    assert main(["pick", "--micrographs", str(tmp_path / "f" / "micrographs"), "--diameter", "150", "--out", str(out),
                 "--cluster", "none", "--no-progress"]) == 0  # fmt: skip
    assert main(["evaluate", "--picks", str(out), "--truth", str(tmp_path / "f" / "truth.csv"), "--diameter", "150",
                 "--out", str(tmp_path / "eval")]) == 0  # fmt: skip
    import json

    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert m["f1"] > 0.7, m
