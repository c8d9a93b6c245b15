"""``pixer report``: one self-contained HTML page about a pick run, checked as text and as
rendered by headless Chromium (skipped when ``chromium`` is absent)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pixer.cli.main import main

#: A micrograph whose name is markup: it must come out escaped.
BAD_NAME = "bad<i>&x.mrc"
SECTIONS = ["Picks on micrographs", "Scores and threshold", "Picks per micrograph", "Accuracy against the truth",
            "Failed micrographs (1)", "Configuration"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    """Three simulated micrographs + one corrupt file, a tiny model, a pick run (about 20 s on 1 CPU)."""
    root = tmp_path_factory.mktemp("report")
    sim, model, mics, picks = root / "sim", root / "model", root / "mics", root / "picks"
    assert main(["simulate", "--out", str(sim), "--n", "3", "--size", "256", "--apix", "4", "--snr-db", "-5",
                 "--seed", "3", "--no-progress"]) == 0  # fmt: skip
    assert main(["train", "--micrographs", str(sim / "micrographs.star"), "--coords", str(sim / "particles.star"),
                 "--diameter", "120", "--out", str(model), "--steps", "60", "--width", "8", "--branches", "1",
                 "--tile", "64", "--batch-size", "4", "--pos-weight", "2", "--lr", "5e-3", "--no-progress"]) == 0  # fmt: skip
    shutil.copytree(sim / "micrographs", mics)
    (mics / BAD_NAME).write_bytes(b"not an MRC file at all")
    assert main(["pick", "--micrographs", str(mics), "--model", str(model), "--diameter", "120", "--out", str(picks),
                 "--cluster", "none", "--no-progress"]) == 0  # fmt: skip
    return {"root": root, "sim": sim, "picks": picks}


@pytest.fixture(scope="module")
def report(run) -> Path:
    out = run["root"] / "out" / "report.html"
    assert main(["report", "--picks", str(run["picks"]), "--truth", str(run["sim"] / "particles.star"),
                 "--sample", "2", "--out", str(out)]) == 0  # fmt: skip
    return out


def test_report_is_self_contained_and_escaped(report):
    text = report.read_text()
    for title in SECTIONS:
        assert f">{title}</h2>" in text, title
    # Pictures: 2 micrographs, score histogram, picks per micrograph, PR curve; all embedded.
    assert text.count('src="data:image/png;base64,') == 5
    assert not re.search(r'(src|href)="(?!data:|#)', text), "something would be fetched"
    assert "<script" not in text and "<link" not in text
    assert "bad&lt;i&gt;&amp;x" in text and "<i>" not in text
    assert (report.parent / "pixer_report.json").exists()
    # the configuration says which contrast was picked (a model without background: not checked)
    assert "particle contrast" in text and "dark (not checked: the model stores no background)" in text
    assert report.stat().st_mode & 0o044, "the page should be readable as the umask allows"


def test_report_numbers_match_evaluate(run, report, tmp_path):
    assert main(["evaluate", "--picks", str(run["picks"]), "--truth", str(run["sim"] / "particles.star"),
                 "--diameter", "120", "--out", str(tmp_path)]) == 0  # fmt: skip
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    cards = re.findall(r'<div class="v">([^<]*)</div><div class="k">([^<]*)</div>', report.read_text())
    by_name = {name: value for value, name in cards}
    assert by_name["F1"] == f"{metrics['f1']:.3f}"
    assert by_name["AUPRC"] == f"{metrics['auprc']:.3f}"  # both sweep every stored candidate
    assert by_name["failed"] == "1"


def test_report_without_truth(run, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", "--picks", str(run["picks"]), "--sample", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Accuracy against the truth" not in text and "&#9711; pick" in text
    assert text.count('src="data:image/png;base64,') == 3
    assert "report written to" in capsys.readouterr().out


def test_report_bad_folder_is_one_line(tmp_path, capsys):
    assert main(["report", "--picks", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nope" in err and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium not installed (apt-get install -y chromium): cannot check the page renders")
    return exe


def _headless(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]  # fmt: skip
    return subprocess.run([exe, *flags, *args], check=False, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(sys.platform != "linux", reason="headless Chromium check runs on Linux")
def test_report_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    exe = _chromium()
    shot = tmp_path / "shot.png"
    done = _headless(exe, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000",
                     report.resolve().as_uri())  # fmt: skip
    assert shot.exists(), done.stderr[-2000:]
    assert shot.stat().st_size > 50_000
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[:2] == (2000, 1280)
    colours = np.unique(pixels.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 200, "the page rendered (nearly) blank"
    dom = _headless(exe, tmp_path / "profile2", "--dump-dom", report.resolve().as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    for title in SECTIONS:
        assert title in dom.stdout, title
    assert dom.stdout.count("<img") == 5


def test_score_histogram_goes_log_when_faint_candidates_pile_up():
    from pixer.report.figures import needs_log_counts, score_histogram_png

    assert not needs_log_counts(np.array([30, 25, 0, 12, 40, 33]))
    assert needs_log_counts(np.array([3000, 4, 0, 6, 9, 5]))
    assert not needs_log_counts(np.zeros(5))
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(0.001, 0.02, 3000), rng.uniform(0.5, 1.0, 100)])
    assert score_histogram_png(scores, 0.4, None, 0.001)[:4] == b"\x89PNG"
