"""Training data for the segmentation network: random augmented tiles and validation tiles.

Samples are ``(image (h, w) float32, label (h, w) uint8)`` pairs already prepared at
the model's pixel size. Item ``i`` of :class:`TileDataset` depends only on
``(seed, i)``, so a stream of tiles can be split across DDP ranks and resumed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pixer.data.tiles import extract_tiles

#: one training sample: (image (h, w) float32, label (h, w) uint8)
Sample = tuple[np.ndarray, np.ndarray]


def _pad(a: np.ndarray, tile: int) -> np.ndarray:
    ph, pw = max(0, tile - a.shape[0]), max(0, tile - a.shape[1])
    return np.pad(a, ((0, ph), (0, pw))) if ph or pw else a


class TileDataset(torch.utils.data.Dataset):
    """Random training crops; item ``i`` is a pure function of ``(seed, i)``.

    Parameters
    ----------
    samples
        ``[(image (h, w) float32, label (h, w) uint8), ...]``; images smaller
        than ``tile`` are zero-padded (label 0).
    tile
        Crop size, px.
    length
        Number of items (``steps × batch_size`` for one pass).
    seed
        Base seed.
    augment
        Apply one of the 8 flips / 90° rotations.

    Items: ``(image (1, tile, tile) float32, label (1, tile, tile) float32)``.
    Micrographs are drawn with probability proportional to their area.
    """

    def __init__(self, samples: Sequence[Sample], tile: int, length: int, seed: int = 0,
                 augment: bool = True) -> None:  # fmt: skip
        self.images = [_pad(np.asarray(im, dtype=np.float32), tile) for im, _ in samples]
        self.labels = [_pad(np.asarray(lb, dtype=np.uint8), tile) for _, lb in samples]
        area = np.array([im.size for im in self.images], dtype=np.float64)
        self.p = area / area.sum()
        self.tile, self.length, self.seed, self.augment = int(tile), int(length), int(seed), augment

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(i)])
        j = int(rng.choice(len(self.images), p=self.p))
        im, lb = self.images[j], self.labels[j]
        t = self.tile
        y0 = int(rng.integers(0, im.shape[0] - t + 1))
        x0 = int(rng.integers(0, im.shape[1] - t + 1))
        im, lb = im[y0 : y0 + t, x0 : x0 + t], lb[y0 : y0 + t, x0 : x0 + t]
        if self.augment:
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            im, lb = np.rot90(im, k), np.rot90(lb, k)
            if flip:
                im, lb = im[:, ::-1], lb[:, ::-1]
        im = torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32))[None]
        lb = torch.from_numpy(np.ascontiguousarray(lb, dtype=np.float32))[None]
        return im, lb


def split_samples(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    if n < 2 or fraction <= 0:
        return list(range(n)), list(range(n))
    order = np.random.default_rng([seed, 7919]).permutation(n)
    n_val = min(n - 1, max(1, int(round(fraction * n))))
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def validation_tiles(samples: Sequence[Sample], tile: int, cap: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for im, lb in samples:
        xs.append(extract_tiles(np.asarray(im, np.float32), tile, tile)[0])
        ys.append(extract_tiles(np.asarray(lb, np.float32), tile, tile)[0])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(x) > cap:
        keep = np.linspace(0, len(x) - 1, cap).round().astype(int)
        x, y = x[keep], y[keep]
    return torch.from_numpy(x)[:, None], torch.from_numpy(y)[:, None]
