"""bench/eval_real.py: the PNG → MRC conversion every picker reads keeps pixels and orientation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "cryoppp_subset"


def _module():
    spec = importlib.util.spec_from_file_location("eval_real", ROOT / "bench" / "eval_real.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_png_to_mrc_keeps_pixels_and_orientation(tmp_path):
    from PIL import Image

    from pixer.io.micrographs import read_micrograph

    img = np.zeros((40, 60), np.uint8)
    img[5, 50] = 200  # row 5, column 50: x = 50, y = 5
    img[30:35, 2:4] = 17
    Image.fromarray(img).save(tmp_path / "a.png")
    data = _module().png_to_mrc(tmp_path / "a.png", tmp_path / "a.mrc", apix=1.0)
    back = read_micrograph(tmp_path / "a.mrc", apix=1.0).data
    assert data.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(back), img.astype(np.float32))


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/cryoppp_subset not present")
def test_real_png_round_trip(tmp_path):
    from PIL import Image

    import mrcfile

    png = sorted((SHARED / "10028" / "test" / "images").glob("*.png"))[0]
    _module().png_to_mrc(png, tmp_path / "m.mrc")
    with mrcfile.open(tmp_path / "m.mrc") as f:
        np.testing.assert_array_equal(f.data, np.asarray(Image.open(png), dtype=np.float32))
