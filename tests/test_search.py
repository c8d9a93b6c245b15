"""``--diameter-search``: the diameter chosen from the micrographs against the model's background."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pixer.cli.main import main
from pixer.pick.search import DEFAULT_FACTORS, SEARCH_MIN_PER_MICROGRAPH, choose_factor, sample_evenly
from pixer.pick.threshold import NULL_GRID, null_density, null_particles


def test_the_factor_that_finds_most_particles_wins_by_a_margin():
    f = list(DEFAULT_FACTORS)
    assert 1.0 in f and f == sorted(f) and min(f) == 0.8
    # apoferritin at -20 dB told 0.8 x its diameter: a noisy profile, the true size (x 1.25) wins
    assert choose_factor(f, [0.0, 0.0, 30.6, 24.8, 54.9, 48.0]) == 1.25
    # ... and at -15 dB: x 1.25 and x 1.4 within 5 % of each other, the smaller change wins
    assert choose_factor(f, [84.6, 32.6, 48.3, 90.8, 101.5, 102.2]) == 1.25
    assert choose_factor(f, [27, 25, 23, 22, 18, 10]) == 0.8  # the masks' diameter was generous (EMPIAR-10947)
    assert choose_factor(f, [99, 100, 101, 102, 100, 90]) == 1.0  # within 5 %: the nominal diameter stays
    assert choose_factor(f, [0, 0, 0, 0, 0, 0]) == 1.0  # nothing above the background anywhere
    assert choose_factor(f, [10, 50, 10, 10, 50, 10]) == 0.9  # a tie goes to the factor nearest 1
    assert choose_factor([1.0], [3.0]) == 1.0
    # small protein at -15 dB told 0.8 x its diameter: x 0.8 (parts of particles) and x 1.25 (the
    # true size) are as far from 1 and both within 5 % of the most: the one finding more wins
    assert choose_factor(f, [159.0, 148.2, 152.3, 157.1, 165.8, 166.5]) == 1.25
    assert choose_factor(f, [165.8, 148.2, 152.3, 157.1, 159.0, 166.5]) == 0.8


def test_too_few_particles_keep_the_given_diameter():
    f = list(DEFAULT_FACTORS)
    # an empty simulated set full of debris, 3 micrographs: nothing at the given diameter, debris the size
    # of particles at x 1.1 (2.3 per micrograph) -- not evidence enough to change the user's diameter
    found = [0.0, 0.0, 0.0, 6.8, 5.9, 5.0]
    assert choose_factor(f, found) == 1.1
    assert choose_factor(f, found, least=SEARCH_MIN_PER_MICROGRAPH * 3) == 1.0
    # EMPIAR-10947's sample (5 micrographs, 31 per micrograph at x 0.8) still moves
    assert choose_factor(f, [154.9, 131.4, 126.8, 106.3, 95.1, 79.2], least=SEARCH_MIN_PER_MICROGRAPH * 5) == 0.8
    # the bar is reached at exactly `least`
    assert choose_factor(f, [0, 0, 0, 30.0, 0, 0], least=30.0) == 1.1


def test_sample_evenly_spans_the_run():
    assert sample_evenly(list(range(5)), 8) == [0, 1, 2, 3, 4]
    assert sample_evenly(list(range(100)), 3) == [0, 50, 99]


def test_null_particles_counts_the_excess_over_the_background():
    import numpy as np

    rng = np.random.default_rng(0)
    background = 1 / (1 + np.exp(-rng.normal(-3.5, 1.0, 500)))
    null = {"grid": list(NULL_GRID), "density": null_density(background, 1000.0)}
    run_bg = 1 / (1 + np.exp(-rng.normal(-3.5, 1.0, 200)))  # 400 particle areas of background
    for k in (50, 150):
        particles = 1 / (1 + np.exp(-rng.normal(1.0, 1.0, k)))
        assert null_particles(np.r_[run_bg, particles], 400.0, null) == pytest.approx(k, rel=0.2)
    assert null_particles(run_bg, 400.0, null) == 0.0


@pytest.fixture(scope="module")
def apoferritin(tmp_path_factory) -> tuple[Path, float]:
    sim = tmp_path_factory.mktemp("search") / "sim"
    assert main(["simulate", "--out", str(sim), "--n", "2", "--size", "1024", "--apix", "2", "--snr-db", "-15",
                 "--seed", "4545", "--demo", "apoferritin", "--no-progress"]) == 0  # fmt: skip
    return sim, float(json.loads((sim / "simulation.json").read_text())["particle_diameter_A"])


def _f1(picks: Path, sim: Path, diameter: float) -> float:
    assert main(["evaluate", "--picks", str(picks), "--truth", str(sim / "particles.star"), "--diameter",
                 f"{diameter:g}", "--out", str(picks / "eval")]) == 0  # fmt: skip
    return json.loads((picks / "eval" / "metrics.json").read_text())["f1"]


def test_search_is_on_by_default_and_recovers_a_diameter_given_too_small(apoferritin, tmp_path):
    """Told 0.8 x apoferritin's diameter, the general model at -15 dB misses half the particles;
    the search (on by default with it) finds x 1.25 (the true size) and the F1 comes back."""
    sim, d = apoferritin
    given = 0.8 * d
    common = ["pick", "--micrographs", str(sim / "micrographs"), "--diameter", f"{given:g}", "--cluster", "none",
              "--no-progress"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "plain"), "--no-diameter-search"]) == 0
    record = json.loads((tmp_path / "plain" / "pixer_pick.json").read_text())
    assert record["diameter_search"] is None and record["diameter_used_A"] == pytest.approx(given)
    assert main([*common, "--out", str(tmp_path / "search")]) == 0
    record = json.loads((tmp_path / "search" / "pixer_pick.json").read_text())
    search = record["diameter_search"]
    assert search["factor"] == 1.25 and search["micrographs"] == 2
    assert record["diameter_used_A"] == pytest.approx(1.25 * given) == pytest.approx(d)
    assert search["table"]["factor"] == list(DEFAULT_FACTORS)
    plain, searched = _f1(tmp_path / "plain", sim, d), _f1(tmp_path / "search", sim, d)
    assert searched >= 0.95 and searched >= plain + 0.15, (plain, searched)


def test_search_keeps_the_right_diameter_and_needs_a_background(apoferritin, tmp_path, capsys):
    sim, d = apoferritin
    common = ["pick", "--micrographs", str(sim / "micrographs"), "--cluster", "none", "--no-progress"]
    assert main([*common, "--diameter", f"{d:g}", "--out", str(tmp_path / "a"), "--diameter-search", "0.9", "1.1",
                 "--search-micrographs", "1"]) == 0  # fmt: skip
    search = json.loads((tmp_path / "a" / "pixer_pick.json").read_text())["diameter_search"]
    assert search["factor"] == 1.0 and search["micrographs"] == 1 and search["table"]["factor"] == [0.9, 1.0, 1.1]
    # a model without a stored background
    import shutil

    from pixer.models.general import general_model_dir

    model = tmp_path / "model"
    shutil.copytree(general_model_dir(), model)
    cfg = json.loads((model / "config.json").read_text())
    del cfg["pick_threshold"]["null"]
    (model / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    assert main([*common, "--diameter", f"{d:g}", "--model", str(model), "--out", str(tmp_path / "b"),
                 "--diameter-search"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--diameter-search" in err and "background" in err, err
    # by default such a model picks at the diameter given, and so does --no-diameter-search
    assert main([*common, "--diameter", f"{d:g}", "--model", str(model), "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "pixer_pick.json").read_text())["diameter_search"] is None


def test_on_a_dask_cluster_the_search_runs_on_a_worker_and_agrees(apoferritin, tmp_path):
    sim, d = apoferritin
    common = ["pick", "--micrographs", str(sim / "micrographs"), "--no-progress", "--diameter", f"{0.8 * d:g}",
              "--torch-threads", "1", "--diameter-search", "1.1", "1.25"]  # fmt: skip
    assert main([*common, "--cluster", "none", "--out", str(tmp_path / "serial")]) == 0
    assert main([*common, "--cluster", "local", "--workers", "1", "--out", str(tmp_path / "dask")]) == 0
    a, b = (json.loads((tmp_path / k / "pixer_pick.json").read_text())["diameter_search"] for k in ("serial", "dask"))
    assert a["factor"] == b["factor"] == 1.25
    assert b["table"]["particles"] == pytest.approx(a["table"]["particles"], rel=1e-3)
    assert (tmp_path / "dask" / "picks.csv").read_text() == (tmp_path / "serial" / "picks.csv").read_text()


def test_a_rerun_reuses_the_search_unless_its_inputs_change(apoferritin, tmp_path, capsys):
    sim, d = apoferritin
    argv = ["pick", "--micrographs", str(sim / "micrographs"), "--no-progress", "--diameter", f"{0.8 * d:g}",
            "--cluster", "none", "--out", str(tmp_path / "run"), "--diameter-search", "1.1", "1.25"]  # fmt: skip
    assert main(argv) == 0
    first = json.loads((tmp_path / "run" / "pixer_pick.json").read_text())["diameter_search"]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "diameter search: reused" in out and "estimated particles" not in out
    assert json.loads((tmp_path / "run" / "pixer_pick.json").read_text())["diameter_search"] == first
    assert main([*argv, "--search-micrographs", "1"]) == 0  # another sample: searched again
    out = capsys.readouterr().out
    assert "reused" not in out and "diameter search on 1 micrograph" in out


def test_the_inverted_contrast_must_find_clearly_more():
    from pixer.pick.search import POLARITY_MARGIN, choose_polarity

    assert POLARITY_MARGIN == 0.2
    # measured with the general model at the given diameter (particles per micrograph, dark, bright)
    assert not choose_polarity(101.8, 79.4)  # apoferritin -10 dB: a hollow shell is a ring either way
    assert choose_polarity(79.4, 101.8)  # ... the same micrographs inverted
    assert not choose_polarity(100.0, 0.0) and choose_polarity(0.0, 100.0)  # ribosome -15 dB, as is / inverted
    assert not choose_polarity(46.4, 11.4)  # EMPIAR-10947 (CryoPPP), the faintest real set
    assert not choose_polarity(0.0, 0.0)  # empty micrographs: nothing either way keeps cryo-EM's contrast
    assert not choose_polarity(10.0, 11.9) and choose_polarity(10.0, 12.0)
    # a little junk passing for particles when inverted, where nothing stands out as they are
    assert not choose_polarity(0.0, 1.9) and choose_polarity(0.0, 2.0)


@pytest.fixture(scope="module")
def ribosome_both_ways(tmp_path_factory) -> tuple[Path, Path, float]:
    """Simulated ribosomes at -15 dB as simulated (dark, as in cryo-EM) and the same files inverted."""
    import mrcfile
    import numpy as np

    root = tmp_path_factory.mktemp("contrast")
    sim = root / "sim"
    assert main(["simulate", "--out", str(sim), "--n", "2", "--size", "768", "--apix", "4", "--snr-db", "-15",
                 "--seed", "2121", "--demo", "ribosome", "--no-progress"]) == 0  # fmt: skip
    inverted = root / "inverted"
    inverted.mkdir()
    for path in sorted((sim / "micrographs").glob("*.mrc")):
        with mrcfile.open(path) as m:
            data, voxel = np.asarray(m.data, dtype=np.float32), m.voxel_size
        with mrcfile.new(inverted / path.name) as m:
            m.set_data(-data)
            m.voxel_size = voxel
    return sim, inverted, float(json.loads((sim / "simulation.json").read_text())["particle_diameter_A"])


def test_bright_particles_are_found_by_inverting_the_run(ribosome_both_ways, tmp_path, capsys):
    """The general model knows cryo-EM contrast only: on the inverted micrographs it finds nearly
    nothing, unless the run checks the contrast (the default) and inverts them back."""
    sim, inverted, d = ribosome_both_ways
    common = ["pick", "--diameter", f"{d:g}", "--cluster", "none", "--no-progress", "--no-diameter-search"]
    runs = {"as_is": (sim / "micrographs", []), "inverted": (inverted, []),
            "inverted_dark": (inverted, ["--polarity", "dark"]),
            "inverted_bright": (inverted, ["--polarity", "bright"])}  # fmt: skip
    f1, contrast = {}, {}
    for name, (folder, extra) in runs.items():
        out = tmp_path / name
        assert main([*common, "--micrographs", str(folder), "--out", str(out), *extra]) == 0
        record = json.loads((out / "pixer_pick.json").read_text())
        contrast[name] = record["contrast"]
        assert record["diameter_search"] is None  # no diameter search: the contrast check alone
        f1[name] = _f1(out, sim, d)
    assert contrast["as_is"]["polarity"] == "dark" and not contrast["as_is"]["invert"]
    assert contrast["as_is"]["dark"] > 10 * max(contrast["as_is"]["bright"], 1.0), contrast["as_is"]
    assert contrast["inverted"]["polarity"] == "bright" and contrast["inverted"]["invert"]
    assert contrast["inverted"]["rule"].startswith("auto")
    assert contrast["inverted_dark"]["rule"].startswith("given") and "bright" not in contrast["inverted_dark"]
    assert f1["as_is"] > 0.9 and f1["inverted"] > 0.9 and f1["inverted_bright"] > 0.9, f1
    assert f1["inverted_dark"] < 0.5, f1
    assert abs(f1["inverted"] - f1["as_is"]) < 0.02, f1
    # a rerun at the other contrast does not reuse the parts picked the first way
    capsys.readouterr()
    assert main([*common, "--micrographs", str(inverted), "--out", str(tmp_path / "inverted_dark")]) == 0
    summary = json.loads((tmp_path / "inverted_dark" / "pixer_pick.json").read_text())
    assert summary["n_skipped"] == 0 and summary["contrast"]["invert"], summary
    assert _f1(tmp_path / "inverted_dark", sim, d) == pytest.approx(f1["inverted"], abs=1e-9)


def test_search_crop_keeps_small_micrographs_and_centres_large_ones():
    """The search picks at most SEARCH_MAX_SIDE_PX binned pixels per side of each sample micrograph."""
    import numpy as np

    from pixer.pick.search import SEARCH_MAX_SIDE_PX, search_crop

    config = {"particle_px": 24}
    small = np.zeros((1024, 1024), np.float32)
    assert search_crop(small, 2.0, config, 120.0).shape == (1024, 1024)  # 410² binned: whole
    big = np.arange(4096 * 3000, dtype=np.float32).reshape(4096, 3000)
    crop = search_crop(big, 1.0, config, 96.0)  # binned to 4 Å/px: 1024 binned px = 4096 raw px
    assert crop.shape == (4096, 3000)
    crop = search_crop(big, 0.5, config, 96.0)  # 8× binning: at most 1024 · 8 = 8192 raw px: whole
    assert crop.shape == (4096, 3000)
    crop = search_crop(big, 2.0, config, 96.0)  # 2× binning: 2048 raw px, centred
    assert crop.shape == (2048, 2048) and np.shares_memory(crop, big)
    assert crop[0, 0] == big[1024, 476] and crop[-1, -1] == big[1024 + 2047, 476 + 2047]
    assert SEARCH_MAX_SIDE_PX == 1024
