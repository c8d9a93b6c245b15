"""Pre-processing, tiling and disc labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pixer.data import (
    Stitcher,
    crop_shape,
    extract_tiles,
    fourier_crop,
    iter_tile_batches,
    normalize,
    pad_end,
    prepare,
    stitch,
    tile_starts,
)
from pixer.errors import PixerError
from pixer.labels import disc_labels, disc_labels_for_picks

torch.set_num_threads(1)


# --------------------------------------------------------------------------- fourier_crop
@pytest.mark.parametrize("shape", [(128, 128), (128, 96), (127, 101)])
def test_fourier_crop_keeps_low_frequencies_and_mean(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 1.0, shape).astype(np.float32)
    y, apix = fourier_crop(x, 1.0, 2.0)
    h, w = shape
    ho, wo = y.shape
    assert (ho, wo) == crop_shape(shape, 1.0, 2.0) and ho % 2 == 0 and wo % 2 == 0
    assert apix == pytest.approx(0.5 * (h / ho + w / wo))
    assert y.dtype == np.float32
    assert y.mean() == pytest.approx(x.mean(), abs=1e-5)
    fx = np.fft.fft2(x.astype(np.float64))
    fy = np.fft.fft2(y.astype(np.float64)) * (h * w) / (ho * wo)
    ky = np.r_[0 : ho // 2, -(ho // 2) + 1 : 0]  # below the output Nyquist
    kx = np.r_[0 : wo // 2, -(wo // 2) + 1 : 0]
    np.testing.assert_allclose(fy[np.ix_(ky, kx)], fx[np.ix_(ky, kx)], atol=1e-2 * np.abs(fx).max() * 1e-3)


def test_fourier_crop_band_limited_signal_is_exact():
    n = 128
    yy, xx = np.mgrid[:n, :n]
    f = lambda y, x, m: np.cos(2 * np.pi * (3 * x + 5 * y) / m) + 0.5 * np.sin(2 * np.pi * 7 * y / m)  # noqa: E731
    y, apix = fourier_crop(f(yy, xx, n).astype(np.float32), 1.5, 3.0)
    assert y.shape == (64, 64) and apix == 3.0
    y2, x2 = np.mgrid[:64, :64]
    np.testing.assert_allclose(y, f(y2, x2, 64), atol=1e-5)


def test_fourier_crop_noop_and_torch():
    x = np.random.default_rng(1).normal(size=(2, 64, 80)).astype(np.float32)
    y, apix = fourier_crop(x, 2.0, 1.0)
    assert apix == 2.0 and np.array_equal(y, x) and y is not x
    yn, _ = fourier_crop(x, 1.0, 2.5)
    yt, at = fourier_crop(torch.from_numpy(x), 1.0, 2.5)
    assert isinstance(yt, torch.Tensor) and yt.shape == (2, 26, 32)
    np.testing.assert_allclose(yt.numpy(), yn, atol=1e-5)


def test_normalize_is_robust_to_contamination():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (128, 128))
    x[:13] = 50.0  # a bright carbon strip, 10 % of the image
    y = normalize(x, k=3.0)
    assert y.dtype == np.float32
    assert abs(y.mean()) < 1e-5 and y.std() == pytest.approx(1.0, abs=1e-4)
    assert y[13:].std() > 0.4  # a plain mean ± 3σ clip would squash the noise to ~0.07
    assert np.allclose(y[:13], y[0, 0])  # the strip is clipped to one level
    assert np.array_equal(normalize(np.ones((8, 8))), np.zeros((8, 8), np.float32))
    yt = normalize(torch.from_numpy(x))
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-4)


def test_prepare():
    x = np.random.default_rng(3).normal(5, 2, (100, 120))
    y, apix = prepare(x, 1.0, 4.0)
    assert y.shape == (26, 30) and y.dtype == np.float32
    assert apix == pytest.approx(0.5 * (100 / 26 + 120 / 30))
    assert abs(y.mean()) < 1e-5 and y.std() == pytest.approx(1, abs=1e-4)


# --------------------------------------------------------------------------- tiles
def test_tile_starts():
    assert tile_starts(1000, 512, 256) == [0, 256, 488]
    assert tile_starts(512, 512, 256) == [0]
    assert tile_starts(100, 512, 256) == [0]
    assert tile_starts(768, 512, 256) == [0, 256]
    with pytest.raises(ValueError):
        tile_starts(100, 64, 65)


SHAPES = [(64, 64), (100, 100), (1, 1), (30, 200), (129, 64), (200, 65), (63, 17)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stride", [64, 32, 17])
def test_stitch_round_trip_is_exact(shape, stride):
    x = np.random.default_rng(4).normal(size=shape).astype(np.float32)
    tiles, pos = extract_tiles(x, 64, stride)
    assert tiles.shape[1:] == (64, 64) and pos.shape == (len(tiles), 2)
    assert np.array_equal(stitch(tiles, pos, shape, 64), x)
    xt = torch.from_numpy(x)
    tt, pt = extract_tiles(xt, 64, stride)
    assert torch.equal(stitch(tt, pt, shape, 64), xt)


def test_streaming_tiles_and_stitcher_with_channels():
    x = np.random.default_rng(5).normal(size=(2, 150, 97)).astype(np.float32)  # (c, h, w)
    st = Stitcher((150, 97), 64)
    n = 0
    for batch, pos in iter_tile_batches(x, 64, 32, batch_size=3):
        assert batch.shape[0] <= 3 and batch.shape[1:] == (2, 64, 64)
        st.add(batch, pos)
        n += len(batch)
    assert n == len(extract_tiles(x, 64, 32)[1])
    out = st.result()
    assert out.dtype == torch.float32 and torch.equal(out, torch.from_numpy(x))


# --------------------------------------------------------------------------- discs
def test_disc_labels_match_brute_force():
    xy = np.array([[10.3, 20.7], [0.0, 0.0], [55.5, 3.2], [-2.0, 40.0], [np.nan, 1.0]])
    lab = disc_labels((48, 60), xy, 4.5)
    rr, cc = np.mgrid[:48, :60]
    ref = np.zeros((48, 60), bool)
    for x, y in xy[:4]:
        ref |= (cc - x) ** 2 + (rr - y) ** 2 <= 4.5**2
    assert lab.dtype == np.uint8 and np.array_equal(lab, ref.astype(np.uint8))
    assert disc_labels((5, 5), np.zeros((0, 2)), 3).sum() == 0


def test_disc_labels_for_picks_scales_and_uses_origin():
    df = pd.DataFrame(
        dict(micrograph=["a", "a", "b"], x=[40.0, 80.0, 8.0], y=[40.0, 20.0, 8.0],
             apix=[1.0, 1.0, 1.0], origin_x_A=[4.0, np.nan, 0.0], origin_y_A=[0.0, 0.0, 0.0])
    )  # fmt: skip
    lab = disc_labels_for_picks(df, "a", (30, 30), apix=4.0, diameter_A=40.0, fraction=0.5)
    # centres (40-4)/4 = 9, 40/4 = 10 and 20, 5; radius 0.5 * 20 Å / 4 = 2.5 px
    ref = disc_labels((30, 30), np.array([[9.0, 10.0], [20.0, 5.0]]), 2.5)
    assert np.array_equal(lab, ref)
    assert disc_labels_for_picks(df, "none", (30, 30), 4.0, 40.0).sum() == 0
    with pytest.raises(PixerError, match="missing column"):
        disc_labels_for_picks(df.drop(columns="x"), "a", (30, 30), 4.0, 40.0)


@pytest.mark.parametrize("shape,ph,pw", [((5, 7), 3, 0), ((5, 7), 0, 20), ((3, 2), 11, 9), ((4, 4), 0, 0)])
def test_pad_end_mirrors_like_numpy_symmetric_for_any_length(shape, ph, pw):
    x = np.random.default_rng(6).normal(size=(2, *shape)).astype(np.float32)
    ref = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="symmetric")
    assert np.array_equal(pad_end(x, ph, pw), ref)
    assert torch.equal(pad_end(torch.from_numpy(x), ph, pw), torch.from_numpy(ref))


def test_short_axis_tile_is_padded_with_micrograph_texture_not_a_flat_slab():
    x = np.random.default_rng(7).normal(size=(40, 30)).astype(np.float32)
    (tile,), _ = extract_tiles(x, 64, 32)
    assert np.array_equal(tile[:40, :30], x)
    assert tile[40:].std() > 0.5 and tile[:, 30:].std() > 0.5  # zero padding would give std 0


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((410, 1000), ((416, 512), 256)), ((512, 600), ((512, 512), 256)), ((5, 300), ((8, 304), 8)),
     ((100, 96), ((104, 96), 96))],
)
def test_fit_tile_makes_a_short_axis_one_tile_rounded_up(shape, expected):
    from pixer.data.tiles import fit_tile, tile_positions

    assert fit_tile(shape, 512, 256) == expected
    (th, tw), stride = expected
    starts = {int(y) for y, _ in tile_positions(shape, (th, tw), stride)}
    if shape[0] < 512:
        assert starts == {0}  # one pass over the short axis (rounding down took two)


def test_probability_map_of_a_small_image_is_one_pass_and_exact_where_the_input_is():
    from pixer.pick.picker import probability_map

    class Identity(torch.nn.Module):
        """probability = input, so the stitched map must equal the image wherever it is not padding."""

        def __init__(self) -> None:
            super().__init__()
            self.tiles = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.tiles += x.shape[0]
            return torch.logit(x.clamp(1e-6, 1 - 1e-6))

    img = np.random.default_rng(3).uniform(0.05, 0.95, (410, 300)).astype(np.float32)
    net = Identity()
    out = probability_map(img, net, 512, 256)
    assert net.tiles == 1 and out.shape == img.shape
    np.testing.assert_allclose(out, img, atol=1e-5)
