"""RELION 3.1 takes pixer's pick outputs as they are: ``relion_preprocess --extract``
with the micrographs STAR and coordinate files pixer writes gives one particle image
per pick, at the same coordinates."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from pixer.io.star import read_particles
from pixer.pick.batch import write_outputs
from pixer.simulate.dataset import simulate_dataset

pytestmark = pytest.mark.skipif(shutil.which("relion_preprocess") is None,
                                reason="RELION 3.1 not installed (apt-get install relion; CI installs it)")  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A RELION-style project folder with simulated micrographs under Raw/."""
    root = tmp_path_factory.mktemp("relion_project")
    simulate_dataset(root / "Raw", n=2, size=384, apix=3.0, snr_db=0, seed=5, progress=False)
    return root


def _extract(project: Path, picks_dir: str) -> pd.DataFrame:
    run = subprocess.run(
        ["relion_preprocess", "--i", f"{picks_dir}/micrographs.star", "--coord_dir", f"{picks_dir}/coords/",
         "--coord_suffix", "_pixer.star", "--part_star", "Extract/particles.star", "--part_dir", "Extract/",
         "--extract", "--extract_size", "64", "--norm", "--bg_radius", "20"],
        cwd=project, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return starfile.read(project / "Extract" / "particles.star")["particles"]


def test_relion_extracts_one_image_per_pick(project, monkeypatch):
    monkeypatch.chdir(project)
    truth = read_particles(project / "Raw" / "particles.star")
    # names as a user in the project folder gives them: relative to the project
    picks = truth[["micrograph", "x", "y"]].assign(
        micrograph=["Raw/" + m for m in truth["micrograph"]], score=np.linspace(1, 0.5, len(truth)))
    names = sorted(picks["micrograph"].unique())
    summary = pd.DataFrame({"micrograph": names, "n_picks": picks.groupby("micrograph").size().loc[names].values})
    write_outputs(project / "Picks", picks, names, apix=3.0, diameter_A=120.0, summary=summary)

    extracted = _extract(project, "Picks")
    assert len(extracted) == len(picks)
    got = extracted[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(float)
    want = picks[["x", "y"]].to_numpy(float)
    np.testing.assert_allclose(np.sort(got, axis=0), np.sort(want, axis=0), atol=0.01)
    stacks = sorted((project / "Extract").rglob("*.mrcs"))
    assert sum(mrcfile.open(s, header_only=True).header.nz for s in stacks) == len(picks)
