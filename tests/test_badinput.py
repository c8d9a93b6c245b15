"""Bad input gets one clear line naming the file and what is wrong (twelfth session's sweep).

Each case here printed a traceback, or ran on garbage with exit status 0, before its fix.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pixer.cli.main import main
from pixer.errors import PixerError
from pixer.evaluate.matching import match_tables
from pixer.io.micrographs import read_micrograph, require_room
from pixer.io.mrc_write import write_mrc
from pixer.io.star import read_star_blocks
from pixer.models.segmentation import AtrousSegNet
from pixer.models.store import load_model, save_model


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "nothing on stderr"
    assert not any(line.startswith("Traceback") for line in err)
    return err[-1]


def _tables(tmp_path):
    picks = tmp_path / "picks.csv"
    truth = tmp_path / "truth.csv"
    pd.DataFrame({"micrograph": ["mic_0000.mrc"] * 2, "x": [10.0, 50.0], "y": [10.0, 50.0],
                  "score": [0.9, 0.8]}).to_csv(picks, index=False)
    pd.DataFrame({"micrograph": ["mic_0000.mrc"], "x": [11.0], "y": [10.0]}).to_csv(truth, index=False)
    return picks, truth


def test_an_output_folder_under_a_plain_file_is_one_line(tmp_path, capsys):
    picks, truth = _tables(tmp_path)
    (tmp_path / "plain").write_text("not a folder\n")
    rc = main(["evaluate", "--picks", str(picks), "--truth", str(truth), "--diameter", "20", "--apix", "1",
               "--out", str(tmp_path / "plain" / "sub")])
    assert rc == 2
    line = _error(capsys)
    assert line.startswith("pixer evaluate: error: ") and str(tmp_path / "plain") in line and "folder" in line


def test_infinite_and_nan_physical_parameters_are_refused(tmp_path, capsys):
    picks, truth = _tables(tmp_path)
    for bad in ("inf", "nan", "-inf"):
        with pytest.raises(SystemExit) as exc:
            main(["evaluate", "--picks", str(picks), "--truth", str(truth), f"--diameter={bad}", "--out",
                  str(tmp_path / "e")])
        assert exc.value.code == 2
        assert "finite number > 0" in capsys.readouterr().err


def test_a_blank_micrograph_is_an_error_and_a_blank_mask_is_not(tmp_path):
    write_mrc(tmp_path / "zero.mrc", np.zeros((32, 32), np.float32), apix=2.0)
    with pytest.raises(PixerError, match=r"zero\.mrc: blank micrograph: every pixel is 0"):
        read_micrograph(tmp_path / "zero.mrc")
    assert not read_micrograph(tmp_path / "zero.mrc", blank_ok=True).data.any()


def test_a_micrograph_narrower_than_the_particle_is_an_error(tmp_path):
    require_room("m.mrc", (64, 100), 4.0, 256.0)  # 256 Å across: room for one particle
    with pytest.raises(PixerError, match=r"m\.mrc: the micrograph \(100 × 64 px at 4 Å/px, 256 Å across\) is "
                                         r"smaller than the particle diameter 5000 Å"):
        require_room("m.mrc", (64, 100), 4.0, 5000.0)


def _one_micrograph(tmp_path, size: int):
    """``tmp_path/mics`` with one ``size``² noise micrograph at 4 Å/px, and a coordinate CSV with a
    particle at its centre."""
    (tmp_path / "mics").mkdir()
    image = np.random.default_rng(0).normal(size=(size, size)).astype(np.float32)
    write_mrc(tmp_path / "mics" / "mic_0000.mrc", image, apix=4.0)
    coords = tmp_path / "coords.csv"
    pd.DataFrame({"micrograph": ["mic_0000.mrc"], "x": [size / 2], "y": [size / 2]}).to_csv(coords, index=False)
    return tmp_path / "mics", coords


def test_pick_and_train_refuse_a_diameter_larger_than_the_micrographs(tmp_path, capsys):
    _, coords = _one_micrograph(tmp_path, 64)
    rc = main(["train", "--micrographs", str(tmp_path / "mics"), "--coords", str(coords), "--diameter", "5000",
               "--out", str(tmp_path / "model"), "--steps", "1", "--no-progress"])
    assert rc == 2
    assert "smaller than the particle diameter 5000 Å" in _error(capsys)
    assert not (tmp_path / "model" / "model.pt").exists()
    rc = main(["pick", "--micrographs", str(tmp_path / "mics"), "--diameter", "5000", "--no-diameter-search",
               "--out", str(tmp_path / "picks"), "--cluster", "none", "--no-progress"])
    assert rc == 2
    line = _error(capsys)
    assert "mic_0000.mrc" in line and "smaller than the particle diameter 5000 Å" in line


def _model(tmp_path):
    save_model(tmp_path / "m", AtrousSegNet(width=8, branch_width=8, n_branches=2, rates=(2, 4)), {})
    return tmp_path / "m"


def test_model_folder_mistakes_are_named(tmp_path):
    folder = _model(tmp_path)
    with pytest.raises(PixerError, match=r"model\.pt: is a file: --model takes the model folder"):
        load_model(folder / "model.pt")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({"foo": 1}))
    with pytest.raises(PixerError, match=r'config\.json: not a pixer model config: no "arch" record'):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps([1, 2]))
    with pytest.raises(PixerError, match=r'no "arch" record'):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({**cfg, "particle_px": -24}))
    with pytest.raises(PixerError, match=r"particle_px must be a number > 0, got -24"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({**cfg, "arch": {**cfg["arch"], "width": 16}}))
    with pytest.raises(PixerError, match=r"do not match the architecture in config.json: size mismatch for "):
        load_model(folder)
    assert load_model(_model(tmp_path / "again"))[1]["arch"]["width"] == 8


def test_picks_and_truth_with_no_micrograph_in_common(tmp_path):
    picks = pd.DataFrame({"micrograph": ["a_001.mrc", "a_002.mrc"], "x": [1.0, 2.0], "y": [1.0, 2.0]})
    truth = pd.DataFrame({"micrograph": ["other_9.mrc"], "x": [1.0], "y": [1.0]})
    truth.attrs["source"] = "truth.star"
    with pytest.raises(PixerError, match=r"truth.star: none of its 1 micrograph\(s\) \(e.g. other_9.mrc\) is among "
                                         r"the 2 micrographs of the picks \(e.g. a_001.mrc\)"):
        match_tables(picks, truth, 5.0)
    # one in common: scored as before; no truth at all (empty micrographs): no error
    got, _ = match_tables(picks, truth.assign(micrograph="a_001.mrc"), 5.0)
    assert got["tp"].tolist() == [True, False]
    got, _ = match_tables(picks, truth.iloc[:0], 5.0)
    assert not got["tp"].any()


def test_a_star_row_with_the_wrong_number_of_fields_names_its_line(tmp_path):
    star = tmp_path / "ragged.star"
    star.write_text("data_\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
                    "mic_0000.mrc 10 10\nmic_0000.mrc 100\nmic_0000.mrc 50 50 7 8\n")
    with pytest.raises(PixerError) as exc:
        read_star_blocks(star)
    message = str(exc.value)
    assert "\n" not in message
    assert message.endswith("ragged.star: not a readable STAR file (line 8: 2 fields, the loop has 3 columns)")


def test_train_classifier_negatives_on_no_micrograph_given(tmp_path, capsys):
    _, coords = _one_micrograph(tmp_path, 96)
    negatives = tmp_path / "rejected.csv"
    pd.DataFrame({"micrograph": ["other_0001.mrc"] * 2, "x": [20.0, 70.0], "y": [20.0, 70.0]}).to_csv(
        negatives, index=False)
    rc = main(["train-classifier", "--micrographs", str(tmp_path / "mics"), "--coords", str(coords),
               "--negatives", str(negatives), "--diameter", "80", "--out", str(tmp_path / "clf"), "--steps", "1",
               "--no-progress"])
    assert rc == 2
    assert "rejected.csv: none of its 2 negatives names one of the 1 micrographs given" in _error(capsys)


def test_train_on_a_labels_folder_without_labels_json(tmp_path, capsys):
    (tmp_path / "labels").mkdir()
    _one_micrograph(tmp_path, 64)
    rc = main(["train", "--micrographs", str(tmp_path / "mics"), "--labels", str(tmp_path / "labels"),
               "--out", str(tmp_path / "model"), "--steps", "1", "--no-progress"])
    assert rc == 2
    line = _error(capsys)
    assert "labels" in line and ("label_index.star" in line or "labels.json: not found" in line)



def test_labels_read_only_headers_but_refuse_a_truncated_micrograph(tmp_path):
    """`pixer labels` reads micrograph shapes from the MRC headers alone; a file cut short is still refused."""
    from pixer.labels.inputs import micrograph_files

    rng = np.random.default_rng(0)
    whole, cut = tmp_path / "mic_0000.mrc", tmp_path / "mic_0001.mrc"
    write_mrc(whole, rng.normal(size=(64, 80)).astype(np.float32), apix=2.0)
    cut.write_bytes(whole.read_bytes()[:3000])
    particles = pd.DataFrame({"micrograph": ["mic_0000.mrc"], "x": [10.0], "y": [10.0]})
    shapes, apix = micrograph_files(particles, [whole])
    assert list(shapes.values()) == [(64, 80)] and list(apix.values()) == [2.0]
    with pytest.raises(PixerError, match=r"mic_0001\.mrc: truncated MRC file: 3000 bytes, its header needs 21504"):
        micrograph_files(particles.assign(micrograph="mic_0001.mrc"), [cut])


def test_simulate_refuses_more_particles_or_debris_than_make_sense(tmp_path, capsys):
    from pixer.simulate.dataset import max_particles_per_micrograph

    assert max_particles_per_micrograph(64, 4.0, 128.0) == 16  # 256 Å square, 128 Å particles: 4 × 2²
    rc = main(["simulate", "--out", str(tmp_path / "s"), "--n", "1", "--size", "64", "--apix", "4",
               "--particles", "1000000000", "--no-progress"])
    assert rc == 2
    assert "1000000000 particles per micrograph: at most" in _error(capsys)
    rc = main(["simulate", "--out", str(tmp_path / "s"), "--n", "1", "--size", "64", "--apix", "4",
               "--debris", "1e12", "--no-progress"])
    assert rc == 2
    assert "--debris 1e+12: at most 1000 per micrograph" in _error(capsys)
    assert not (tmp_path / "s" / "micrographs").exists()


def test_evaluate_warns_when_the_truth_covers_only_some_micrographs(tmp_path, capsys):
    picks, _ = _tables(tmp_path)
    truth = tmp_path / "partial.csv"
    pd.DataFrame({"micrograph": ["mic_0000.mrc", "other_0009.mrc"], "x": [11.0, 5.0], "y": [10.0, 5.0]}).to_csv(
        truth, index=False)
    rc = main(["evaluate", "--picks", str(picks), "--truth", str(truth), "--diameter", "20", "--apix", "1",
               "--out", str(tmp_path / "e")])
    assert rc == 0
    line = _error(capsys)
    assert line.startswith("pixer evaluate: warning: ") and "partial.csv: 1 of its 2 micrographs are not among" in line
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["warnings"] == [line.removeprefix("pixer evaluate: warning: ")]
    assert metrics["n_true"] == 2 and metrics["recall"] == 0.5  # the unpicked micrograph's particle counts as missed
