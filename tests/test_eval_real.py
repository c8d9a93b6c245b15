"""bench/eval_real.py: the PNG → MRC conversion every picker reads keeps pixels and orientation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "cryoppp_subset"


def test_png_to_mrc_keeps_pixels_and_orientation(tmp_path, bench_script):
    from PIL import Image

    from pixer.io.micrographs import read_micrograph

    img = np.zeros((40, 60), np.uint8)
    img[5, 50] = 200  # row 5, column 50: x = 50, y = 5
    img[30:35, 2:4] = 17
    Image.fromarray(img).save(tmp_path / "a.png")
    data = bench_script("eval_real").png_to_mrc(tmp_path / "a.png", tmp_path / "a.mrc", apix=1.0)
    back = read_micrograph(tmp_path / "a.mrc", apix=1.0).data
    assert data.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(back), img.astype(np.float32))


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/cryoppp_subset not present")
def test_real_png_round_trip(tmp_path, bench_script):
    import mrcfile
    from PIL import Image

    png = sorted((SHARED / "10028" / "test" / "images").glob("*.png"))[0]
    bench_script("eval_real").png_to_mrc(png, tmp_path / "m.mrc")
    with mrcfile.open(tmp_path / "m.mrc") as f:
        np.testing.assert_array_equal(f.data, np.asarray(Image.open(png), dtype=np.float32))


def test_fp_contrast_tells_particle_like_false_positives_from_empty_ones(tmp_path, capsys, bench_script):
    """bench/fp_contrast.py: a micrograph with 12 dark discs, 8 of them in the truth. Picks on all 12
    (4 'false positives' on unlabelled discs) and on 4 empty spots: the unlabelled discs score like
    the true positives, the empty spots like random points."""
    import pandas as pd

    from pixer.io.mrc_write import write_mrc

    mod = bench_script("fp_contrast")
    rng = np.random.default_rng(1)
    d = 20.0
    yy, xx = np.mgrid[:300, :300]
    discs = [(40 + 60 * (k % 4), 50 + 90 * (k // 4)) for k in range(12)]
    img = rng.normal(0, 1, (300, 300)).astype(np.float32)
    for x, y in discs:
        img[(xx - x) ** 2 + (yy - y) ** 2 <= (d / 2) ** 2] -= 1.5
    write_mrc(tmp_path / "m.mrc", img, apix=1.0)
    empty = [(70, 20), (130, 95), (190, 140), (250, 275)]
    mic = str(tmp_path / "m.mrc")
    pd.DataFrame({"micrograph": mic, "x": [p[0] for p in discs + empty], "y": [p[1] for p in discs + empty],
                  "score": 0.9}).to_csv(tmp_path / "picks.csv", index=False)
    pd.DataFrame({"micrograph": "m.mrc", "x": [p[0] for p in discs[:8]], "y": [p[1] for p in discs[:8]]}).to_csv(
        tmp_path / "truth.csv", index=False)
    from PIL import Image

    (tmp_path / "labels").mkdir()
    label = np.zeros((150, 150), np.uint8)  # half resolution, as CryoPPP's 10059 / 10947 masks
    for x, y in discs[:8]:
        label[(xx[::2, ::2] - x) ** 2 + (yy[::2, ::2] - y) ** 2 <= (d / 2) ** 2] = 255
    Image.fromarray(label).save(tmp_path / "labels" / "m.png")
    assert mod.main(["--picks", str(tmp_path / "picks.csv"), "--truth", str(tmp_path / "truth.csv"),
                     "--diameter", str(d), "--plot", str(tmp_path / "fp.png"),
                     "--masks", str(tmp_path / "labels")]) == 0
    out = capsys.readouterr().out
    contrast, size = (t.strip().splitlines() for t in out.split("\n\n")[:2])
    rows = {line.split("|")[1].strip(): line.split("|")[2:4] for line in contrast if not line.startswith(("| points", "|-"))}
    n = {k: int(v[0]) for k, v in rows.items()}
    med = {k: float(v[1]) for k, v in rows.items() if v[1].strip() != "–"}
    assert n["true positives"] == 8 and n["false positives"] == 8 and n["missed (FN)"] == 0
    assert med["true positives"] > 3 and abs(med["random points"]) < 0.1
    # the false positives are half discs, half empty spots: their median sits between
    assert 0.5 < med["false positives"] < med["true positives"]
    # the discs' apparent size is the diameter given
    sizes = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in size
             if not line.startswith(("| points", "|-"))}
    assert 0.85 <= sizes["true positives"] <= 1.15
    # none of the false positives is on a labelled pixel; the 4 unlabelled discs pass as particles,
    # the 4 empty spots do not: ceiling F1 = 2·8 / (2·8 + 4)
    assert "false positives on a labelled pixel: 0 of 8" in out
    assert "4 of 8" in out and "F1 0.800" in out
    assert (tmp_path / "fp.png").read_bytes()[:4] == b"\x89PNG"
