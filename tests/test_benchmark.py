"""``pixer benchmark``: a samplesheet of data sets → pick + evaluate each → one comparison
table; bad samplesheets are one line; particle centres from disc masks (synthetic and CryoPPP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pixer.cli.main import main
from pixer.errors import PixerError
from pixer.evaluate.benchmark import TABLE_COLUMNS, read_samplesheet
from pixer.evaluate.masks import mask_centres
from pixer.evaluate.matching import match_picks
from pixer.io.coords import read_picks
from pixer.io.micrographs import read_micrograph
from pixer.io.mrc_write import write_mrc

HEADER = "dataset,micrographs,apix,diameter,truth,model,peers\n"


def _simulate(out: Path, seed: int, snr_db: float) -> None:
    assert main(["simulate", "--out", str(out), "--n", "2", "--size", "256", "--apix", "4", "--snr-db", str(snr_db),
                 "--seed", str(seed), "--no-progress"]) == 0  # fmt: skip


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> Path:
    """Two tiny simulated data sets (different seeds and SNR) and a tiny model trained on the first."""
    root = tmp_path_factory.mktemp("bench")
    _simulate(root / "setA", seed=3, snr_db=-5)
    _simulate(root / "setB", seed=11, snr_db=-8)
    assert main(["train", "--micrographs", str(root / "setA" / "micrographs.star"), "--coords",
                 str(root / "setA" / "particles.star"), "--diameter", "120", "--out", str(root / "model"),
                 "--steps", "60", "--width", "8", "--branches", "1", "--tile", "64", "--batch-size", "4",
                 "--pos-weight", "2", "--lr", "5e-3", "--no-progress"]) == 0  # fmt: skip
    return root


def test_benchmark_two_datasets(sets, tmp_path, monkeypatch, capsys):
    sheet = sets / "samplesheet.csv"
    # Relative paths resolve against the samplesheet's folder, not the current one.
    sheet.write_text(HEADER + "SIM-A,setA/micrographs,,120,setA/particles.star,,\n"
                              "SIM-B,setB/micrographs/*.mrc,4,120,setB/particles.star,model,\"relion,lattice\"\n")  # fmt: skip
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench"
    assert main(["benchmark", "--samplesheet", str(sheet), "--model", str(sets / "model"), "--out", str(out),
                 "--cluster", "none", "--no-progress"]) == 0  # fmt: skip
    table = pd.read_csv(out / "benchmark.csv")
    assert list(table.columns) == TABLE_COLUMNS
    assert list(zip(table["dataset"], table["picker"])) == [("SIM-A", "pixer"), ("SIM-B", "pixer"), ("SIM-B", "relion"),
                                                                 ("SIM-B", "lattice")]
    pixer = table[table["picker"] == "pixer"].set_index("dataset")
    assert (pixer["status"] == "ok").all()
    for name in ("SIM-A", "SIM-B"):
        assert pixer.loc[name, "n_true"] == len(read_picks(sets / f"set{name[-1]}" / "particles.star"))
        assert pixer.loc[name, "n_micrographs"] == 2
        assert 0.3 < pixer.loc[name, "best_f1"] <= 1 and 0 < pixer.loc[name, "auprc"] <= 1
        assert pixer.loc[name, "best_f1"] >= pixer.loc[name, "f1"] - 0.02
    assert pixer.loc["SIM-A", "best_f1"] > 0.8  # the set the model was trained on
    relion = table[table["picker"] == "relion"].iloc[0]
    assert relion["status"] == "ok" or relion["status"].startswith(("not available", "failed"))
    # the chance level: an image-blind lattice, far below a picker on sparse particles
    lattice = table[table["picker"] == "lattice"].iloc[0]
    assert lattice["status"] == "ok" and lattice["n_true"] == pixer.loc["SIM-B", "n_true"]
    assert np.isnan(lattice["auprc"]) and lattice["f1"] <= lattice["best_f1"] < 0.5
    assert pixer.loc["SIM-B", "best_f1"] > lattice["best_f1"] + 0.2, (pixer.loc["SIM-B", "best_f1"], lattice["best_f1"])
    assert len(read_picks(out / "SIM-B" / "lattice" / "picks.csv")) == lattice["n_picks"]
    md = (out / "benchmark.md").read_text()
    assert "| SIM-A | pixer | ok |" in md and "SIM-B" in md
    assert (out / "benchmark.png").stat().st_size > 5000
    assert (out / "SIM-A" / "pixer" / "picks.csv").exists() and (out / "pixer_benchmark.json").exists()
    assert "SIM-B" in capsys.readouterr().out


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("dataset,micrographs,apix\nX,setA/micrographs,4\n", "missing column(s) diameter"),
        (HEADER, "header only"),
        ("", "samplesheet"),
        (HEADER + "X,setA/micrographs,,120,,,\nY,nowhere/*.mrc,,120,,,\n", "row 3 (Y): micrographs"),
        (HEADER + "X,setA/micrographs,,-3,,,\n", "row 2 (X): diameter must be > 0"),
        (HEADER + "X,setA/micrographs,,120,missing.star,,\n", "row 2 (X): truth"),
        (HEADER + "X,setA/micrographs,,120,,nomodel,\n", "row 2 (X): model"),
        (HEADER + "X,setA/micrographs,,120,,,\nX,setB/micrographs,,120,,,\n", "row 3 (X): dataset id used twice"),
        (HEADER + "X,setA/micrographs,,120,,,magic\n", "unknown peer(s) magic"),
    ],
)
def test_bad_samplesheet_is_one_line(sets, content, expected, capsys):
    sheet = sets / "bad.csv"
    sheet.write_text(content)
    err = _error(["benchmark", "--samplesheet", str(sheet), "--model", str(sets / "model"),
                  "--out", str(sets / "never")], capsys)  # fmt: skip
    assert str(sheet) in err and expected in err, err
    assert not (sets / "never").exists()


def test_png_without_apix_is_refused(tmp_path):
    from PIL import Image

    (tmp_path / "mics").mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "mics" / "a.png")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    sheet = tmp_path / "s.csv"
    sheet.write_text(HEADER + "P,mics,,55,,model,\n")
    with pytest.raises(PixerError, match=r"row 2 \(P\): apix is empty but a.png carries no pixel size"):
        read_samplesheet(sheet)


def _disc_mask(shape, centres, r) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, np.uint8)
    for cx, cy in centres:
        mask[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 255
    return mask


def test_mask_centres_separate_touching_discs_and_scale():
    r = 6.0
    # Isolated discs, a pair overlapping at 1.3 r, and a chain of three.
    centres = np.array([[20, 20], [60, 25], [100, 100], [100 + 1.3 * r, 100], [30, 90], [30 + 1.5 * r, 90],
                        [30 + 3 * r, 90]], float)  # fmt: skip
    mask = _disc_mask((128, 128), centres, r)
    got = mask_centres(mask, image_shape=(512, 512))  # a mask at 1/4 of the micrograph's size
    want = (centres + 0.5) * 4 - 0.5
    pi, ti = match_picks(got, want, radius=4 * 2.0)
    assert len(got) == len(want) and len(pi) == len(want)
    assert np.abs(got[pi] - want[ti]).max() <= 4 * 1.5
    assert len(mask_centres(np.zeros((16, 16)))) == 0


@pytest.mark.parametrize(("dataset", "tolerance"), [("10028", 0.02), ("10059", 0.15)])
def test_mask_centres_on_real_cryoppp_mask(shared_data, dataset, tolerance):
    root = shared_data / "cryoppp_subset" / dataset / "test"
    label = min((root / "labels").glob("*.png"))
    ref = pd.read_csv(root / "derived_coords" / f"{label.stem}.csv")
    image = read_micrograph(root / "images" / label.name, apix=1.0).data
    got = mask_centres(read_micrograph(label, apix=1.0, blank_ok=True).data, image.shape)
    assert abs(len(got) - len(ref)) <= tolerance * len(ref), (len(got), len(ref))
    pi, _ = match_picks(got, ref[["x", "y"]].to_numpy(), radius=10.0)
    assert len(pi) >= (1 - 2 * tolerance) * len(ref)


def test_docs_example_samplesheet_reads(shared_data, tmp_path):
    """The CryoPPP samplesheet of docs/benchmark.md is valid (its ../shared/data paths pointed here)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "benchmark.md").read_text()
    block = text.split("```csv\n", 1)[1].split("```", 1)[0]
    sheet = tmp_path / "cryoppp_test.csv"
    sheet.write_text(block.replace("../shared/data", str(shared_data)))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    datasets = read_samplesheet(sheet, model=str(tmp_path / "model"))
    assert [d.name for d in datasets] == ["EMPIAR-10028", "EMPIAR-10059", "EMPIAR-10947"]
    assert [d.n_micrographs for d in datasets] == [5, 5, 5]
    assert datasets[2].peers == ("relion",) and datasets[0].apix == 1.0


def test_read_mask_truth_pairs_by_name_and_scales(tmp_path):
    from PIL import Image

    from pixer.evaluate.masks import is_mask_source, read_mask_truth

    (tmp_path / "mics").mkdir()
    (tmp_path / "masks").mkdir()
    centres = {"a": [(20, 30), (60, 90)], "b": [(100, 40)]}
    for name, xy in centres.items():
        Image.fromarray(np.zeros((256, 256), np.uint8)).save(tmp_path / "mics" / f"{name}.png")
        Image.fromarray(_disc_mask((128, 128), np.array(xy, float), 5)).save(tmp_path / "masks" / f"{name}.png")
    assert is_mask_source(tmp_path / "masks") and not is_mask_source(tmp_path / "nothing.star")
    truth = read_mask_truth(tmp_path / "masks", sorted((tmp_path / "mics").glob("*.png")))
    assert truth["micrograph"].map(lambda m: Path(m).stem).value_counts().to_dict() == {"a": 2, "b": 1}
    got = truth.sort_values(["micrograph", "x"])[["x", "y"]].to_numpy()
    want = (np.array([(20, 30), (60, 90), (100, 40)], float) + 0.5) * 2 - 0.5
    assert np.abs(got - want).max() <= 1.0


def test_rows_without_a_model_use_the_general_model(tmp_path):
    from pixer.models.general import general_model_dir

    (tmp_path / "mics").mkdir()
    write_mrc(tmp_path / "mics" / "a.mrc", np.zeros((32, 32), np.float32), 2.0)
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(HEADER + "A,mics,,55,,,\nB,mics,,55,,general,\n")
    a, b = read_samplesheet(sheet)
    assert Path(a.model) == Path(b.model) == general_model_dir()
