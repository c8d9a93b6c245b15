"""Crop classifier: shapes, crops by class, trunk transfer into the segmentation net, and
training on simulated micrographs with their interference masks (truth/*_junk.mrc)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pixer.cli.main import main
from pixer.errors import PixerError
from pixer.models import AtrousSegNet, load_model
from pixer.models.classifier import (
    CLASS_NAMES,
    CropClassifier,
    crop_box,
    extract_crops,
    init_trunk,
    save_classifier,
)
from pixer.train.classifier import ClassifierTrainConfig, micrograph_crops

torch.set_num_threads(1)


def test_shapes_and_crop_box():
    model = CropClassifier(width=4)
    assert model(torch.zeros(5, 1, 40, 40)).shape == (5, 3) and len(CLASS_NAMES) == 3
    assert crop_box(24) == 48 and crop_box(16, 1.5) == 24


def test_extract_crops_centre_and_padding():
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    c = extract_crops(img, np.array([[3, 4], [0, 0]]), 5)
    assert c.shape == (2, 5, 5) and c[0, 2, 2] == img[4, 3]
    assert c[1, 2, 2] == img[0, 0] and c[1, 0, 0] == 0 and c[1, 2:, 2:].tolist() == img[:3, :3].tolist()


def test_crops_by_class_respect_particles_and_junk():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(160, 160)).astype(np.float32)  # every value is unique: a crop's centre says where it is
    junk = np.zeros((160, 160), np.uint8)
    junk[:, 110:] = 1
    centres = np.array([[30.0, 30.0], [60.0, 100.0], [90.0, 40.0]])
    cfg = ClassifierTrainConfig(particle_px=16, noise_per_particle=2, junk_per_particle=2, centre_jitter=0)
    crops, labels = micrograph_crops(img, centres, junk, cfg, rng)
    assert crops.shape[1:] == (32, 32) and np.bincount(labels).tolist() == [3, 6, 6]
    # the particle crops are centred on the particles
    assert np.array_equal(crops[0], img[30 - 16 : 30 + 16, 30 - 16 : 30 + 16])
    # interference crops are centred on the mask; noise crops hold none of it, a diameter from every particle
    for crop, lab in zip(crops, labels, strict=True):
        (y, x), = np.argwhere(img == crop[16, 16])
        assert np.array_equal(crop, extract_crops(img, np.array([[x, y]]), 32)[0])
        if lab == 1:
            assert junk[y, x] == 1
        elif lab == 2:
            assert junk[max(0, y - 16) : y + 16, max(0, x - 16) : x + 16].sum() == 0
            assert np.hypot(*(centres - [x, y]).T).min() >= 16


def test_every_class_is_drawn_up_to_the_edges():
    """Particles at the edge give zero-padded crops; interference and noise must too, or padding
    itself says "particle" (the general classifier once passed debris at the edges for that)."""
    rng = np.random.default_rng(3)
    img = rng.normal(size=(160, 160)).astype(np.float32)
    junk = np.zeros((160, 160), np.uint8)
    junk[:, 150:] = 1  # only within half a box (16 px) of the right edge
    centres = np.array([[40.0, 40.0], [80.0, 80.0], [40.0, 120.0]])
    cfg = ClassifierTrainConfig(particle_px=16, noise_per_particle=20, junk_per_particle=3, centre_jitter=0)
    crops, labels = micrograph_crops(img, centres, junk, cfg, rng)
    assert np.bincount(labels, minlength=3)[1] == 9
    padded = (crops == 0).all(axis=1).any(axis=1) | (crops == 0).all(axis=2).any(axis=1)  # a zero row or column
    assert padded[labels == 1].all()
    assert padded[labels == 2].any()


def test_trunk_transfers_exactly(tmp_path):
    torch.manual_seed(0)
    clf = CropClassifier(width=4)
    for p in clf.parameters():
        p.data.normal_()
    clf.trunk.layers[0][1].running_mean.fill_(0.25)
    save_classifier(tmp_path, clf, {"class_names": list(CLASS_NAMES)})
    seg = AtrousSegNet(n_branches=1, width=4)
    init_trunk(seg, tmp_path)
    a, b = clf.trunk.state_dict(), seg.trunk.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(PixerError, match="classifier.json: trunk width 4 does not match the segmentation width 8"):
        init_trunk(AtrousSegNet(n_branches=1, width=8), tmp_path)


@pytest.mark.slow
def test_negatives_become_interference_crops_unless_they_sit_on_a_particle():
    rng = np.random.default_rng(1)
    img = rng.normal(size=(160, 160)).astype(np.float32)
    centres = np.array([[30.0, 30.0], [90.0, 40.0]])
    # the 3rd sits on a particle, the 4th at the edge (kept: its crop is padded), the 5th outside the image
    negatives = np.array([[70.0, 110.0], [120.0, 60.0], [33.0, 28.0], [5.0, 80.0], [170.0, 80.0]])
    cfg = ClassifierTrainConfig(particle_px=16, noise_per_particle=1, junk_per_particle=1, centre_jitter=0)
    crops, labels = micrograph_crops(img, centres, None, cfg, rng, negatives=negatives)
    assert np.bincount(labels, minlength=3).tolist() == [2, 3, 2]
    got = crops[labels == 1]
    assert np.array_equal(got, extract_crops(img, negatives[[0, 1, 3]], 32))
    assert np.array_equal(got[0], img[110 - 16 : 110 + 16, 70 - 16 : 70 + 16])
    # no negatives, no mask: no interference class
    _, labels = micrograph_crops(img, centres, None, cfg, rng)
    assert np.bincount(labels, minlength=3)[1] == 0


def test_train_classifier_cli_takes_rejected_picks_as_negatives(tmp_path, capsys):
    """`--negatives`: picks known not to be particles (here: points on the simulated interference,
    far from every particle) are the interference class; an empty file is a one-line error."""
    import pandas as pd

    from pixer.io.coords import read_picks
    from pixer.io.micrographs import read_micrograph

    sim = tmp_path / "sim"
    assert main(["simulate", "--out", str(sim), "--n", "3", "--size", "256", "--apix", "3", "--snr-db", "-5",
                 "--seed", "2", "--no-progress"]) == 0  # fmt: skip
    truth = read_picks(sim / "particles.star")
    rows = []
    for mic in sorted((sim / "micrographs").glob("*.mrc")):
        junk = read_micrograph(sim / "truth" / f"{mic.stem}_junk.mrc", apix=1.0, blank_ok=True).data > 0
        mine = truth[truth["micrograph"].map(lambda s, m=mic: Path(str(s)).name == m.name)][["x", "y"]].to_numpy()
        ys, xs = np.nonzero(junk)
        far = [(x, y) for x, y in zip(xs[::97], ys[::97], strict=True)
               if 45 <= x < 211 and 45 <= y < 211 and (len(mine) == 0 or np.hypot(*(mine - [x, y]).T).min() > 45)]
        rows += [{"micrograph": mic.name, "x": float(x), "y": float(y)} for x, y in far[:4]]
    assert len(rows) >= 4
    pd.DataFrame(rows).to_csv(tmp_path / "rejected.csv", index=False)
    clf = tmp_path / "clf"
    assert main(["train-classifier", "--micrographs", str(sim / "micrographs"), "--coords", str(sim / "particles.star"),
                 "--diameter", "127", "--particle-px", "16", "--width", "8", "--steps", "5", "--no-progress",
                 "--negatives", str(tmp_path / "rejected.csv"), "--out", str(clf)]) == 0  # fmt: skip
    counts = json.loads((clf / "classifier.json").read_text())["metrics"]["counts"]
    assert counts["interference"] == len(rows)  # exactly the negatives (no --junk-masks)
    (tmp_path / "none.csv").write_text("micrograph,x,y\n")
    assert main(["train-classifier", "--micrographs", str(sim / "micrographs"), "--coords", str(sim / "particles.star"),
                 "--diameter", "127", "--negatives", str(tmp_path / "none.csv"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "none.csv" in err and "no picks" in err, err


def test_train_classifier_on_simulated_junk_then_init_trunk(tmp_path):
    sim = tmp_path / "sim"
    assert main(["simulate", "--out", str(sim), "--n", "8", "--size", "384", "--apix", "3", "--snr-db", "-5",
                 "--seed", "1", "--no-progress"]) == 0  # fmt: skip
    clf = tmp_path / "clf"
    common = ["--micrographs", str(sim / "micrographs"), "--coords", str(sim / "particles.star"), "--diameter", "127",
              "--particle-px", "16", "--width", "8", "--no-progress"]  # fmt: skip
    assert main(["train-classifier", *common, "--junk-masks", str(sim / "truth"), "--out", str(clf),
                 "--steps", "200", "--batch-size", "32", "--lr", "3e-3"]) == 0  # fmt: skip
    info = json.loads((clf / "classifier.json").read_text())
    m = info["metrics"]
    print(f"classifier val accuracy {m['val_accuracy']:.3f}, confusion {m['confusion']}")
    assert info["class_names"] == ["particle", "interference", "noise"] and info["crop"] == 32
    assert info["particle_px"] == 16 and info["apix"] == pytest.approx(127 / 16, rel=0.02)
    assert min(m["counts"].values()) > 100 and m["val_held_out"]
    assert np.asarray(m["confusion"]).shape == (3, 3) and np.sum(m["confusion"]) == m["n_val"]
    assert m["val_accuracy"] >= 0.85, m  # chance is 1/3
    for name in ("classifier.pt", "classifier_log.csv", "classifier_curve.png", "pixer_train-classifier.json"):
        assert (clf / name).is_file()
    seg = tmp_path / "seg"
    assert main(["train", *common, "--branches", "1", "--tile", "64", "--batch-size", "4", "--steps", "2",
                 "--init-trunk", str(clf), "--out", str(seg)]) == 0  # fmt: skip
    _, cfg = load_model(seg)
    assert cfg["train"]["init_trunk"] == str(clf)
