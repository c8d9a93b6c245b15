"""Overlapping tiles of a micrograph and stitching of per-tile outputs.

PIXER runs its network on 512×512 tiles with stride 256 and averages the
overlapping outputs. Tiles here always cover the whole image: the last tile of
each axis is flush with the image edge. An axis shorter than the tile is
**zero-padded** at its end (bottom / right); images reaching the network are
normalised to zero mean, so zero is the mean grey level. Stitching crops the
padding away again.

Tile positions are ``(n, 2)`` int64 ``[y0, x0]`` (row, column of the tile's
top-left pixel). Everything works on numpy arrays and on torch tensors;
:class:`Stitcher` is torch-based so outputs can be stitched on the GPU without
ever holding every tile of an 8k micrograph at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


def tile_starts(length: int, tile: int = 512, stride: int = 256) -> list[int]:
    """Start offsets of tiles covering ``[0, length)``.

    Parameters
    ----------
    length
        Axis length, pixels.
    tile
        Tile size, pixels.
    stride
        Step between tiles, pixels; ``0 < stride <= tile``.

    Returns
    -------
    list[int]
        Ascending starts; the last equals ``length - tile`` (flush with the end).
        ``[0]`` when ``length <= tile`` (the tile is then zero-padded).
    """
    if tile <= 0 or not 0 < stride <= tile:
        raise ValueError(f"need tile > 0 and 0 < stride <= tile, got tile={tile}, stride={stride}")
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def tile_positions(shape: tuple[int, int], tile: int = 512, stride: int = 256) -> np.ndarray:
    """All tile positions for an image of ``shape = (h, w)``: ``(n, 2)`` int64 ``[y0, x0]``, row-major."""
    ys, xs = tile_starts(shape[0], tile, stride), tile_starts(shape[1], tile, stride)
    return np.array([(y, x) for y in ys for x in xs], dtype=np.int64).reshape(-1, 2)


def _pad_to_tile(image: Array, tile: int) -> Array:
    """Zero-pad the last two axes at their end up to at least ``tile``."""
    h, w = image.shape[-2], image.shape[-1]
    ph, pw = max(0, tile - h), max(0, tile - w)
    if ph == 0 and pw == 0:
        return image
    if isinstance(image, torch.Tensor):
        return torch.nn.functional.pad(image, (0, pw, 0, ph))
    pad = [(0, 0)] * (image.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(image, pad)


def _gather(image: Array, positions: np.ndarray, tile: int) -> Array:
    crops = [image[..., y : y + tile, x : x + tile] for y, x in positions]
    if isinstance(image, torch.Tensor):
        return torch.stack(crops)
    return np.stack(crops)


def extract_tiles(image: Array, tile: int = 512, stride: int = 256) -> tuple[Array, np.ndarray]:
    """Cut an image into overlapping tiles covering it.

    Parameters
    ----------
    image
        ``(..., h, w)`` numpy array or torch tensor.
    tile, stride
        Tile size and step, pixels (see :func:`tile_starts`).

    Returns
    -------
    tiles
        ``(n, ..., tile, tile)``, same kind and dtype as ``image``.
    positions
        ``(n, 2)`` int64 ``[y0, x0]``.
    """
    positions = tile_positions(image.shape[-2:], tile, stride)
    return _gather(_pad_to_tile(image, tile), positions, tile), positions


def iter_tile_batches(
    image: Array, tile: int = 512, stride: int = 256, batch_size: int = 8
) -> Iterator[tuple[Array, np.ndarray]]:
    """Yield tiles batch by batch, so memory holds at most ``batch_size`` tiles.

    Parameters
    ----------
    image
        ``(..., h, w)`` numpy array or torch tensor.
    tile, stride
        Tile size and step, pixels.
    batch_size
        Tiles per batch (the last batch may be smaller).

    Yields
    ------
    batch
        ``(b, ..., tile, tile)``, same kind as ``image``.
    positions
        ``(b, 2)`` int64 ``[y0, x0]``.
    """
    positions = tile_positions(image.shape[-2:], tile, stride)
    padded = _pad_to_tile(image, tile)
    for i in range(0, len(positions), batch_size):
        pos = positions[i : i + batch_size]
        yield _gather(padded, pos, tile), pos


class Stitcher:
    """Streaming average of overlapping tile outputs (torch; CPU or GPU).

    Parameters
    ----------
    shape
        ``(h, w)`` of the image the tiles came from, pixels.
    tile
        Tile size, pixels.
    device
        Where the accumulators live.
    dtype
        Accumulator dtype. float64 (default) makes averaging identical values
        exact, so ``stitch(extract_tiles(x)) == x`` bit for bit.

    Examples
    --------
    >>> st = Stitcher((h, w), 512)                              # doctest: +SKIP
    >>> for batch, pos in iter_tile_batches(img, 512, 256, 8):  # doctest: +SKIP
    ...     st.add(model(batch[:, None]), pos)
    >>> prob = st.result()                                       # (1, h, w)
    """

    def __init__(
        self,
        shape: tuple[int, int],
        tile: int,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.tile = int(tile)
        self.device = torch.device(device)
        self.dtype = dtype
        self._padded = (max(self.shape[0], self.tile), max(self.shape[1], self.tile))
        self._sum: torch.Tensor | None = None
        self._count = torch.zeros(self._padded, dtype=dtype, device=self.device)
        self._out_dtype: torch.dtype | None = None

    def add(self, batch_out: Array, positions: np.ndarray | torch.Tensor) -> None:
        """Accumulate a batch of tile outputs.

        Parameters
        ----------
        batch_out
            ``(b, ..., tile, tile)`` numpy or torch; trailing-leading dims
            (``...``, e.g. channels) must be the same for every batch.
        positions
            ``(b, 2)`` ``[y0, x0]`` of each tile.
        """
        t = torch.as_tensor(batch_out)
        if t.shape[-2:] != (self.tile, self.tile):
            raise ValueError(f"tiles must be {self.tile}x{self.tile}, got {tuple(t.shape[-2:])}")
        if self._sum is None:
            self._out_dtype = t.dtype if t.is_floating_point() else torch.float32
            self._sum = torch.zeros(
                (*t.shape[1:-2], *self._padded), dtype=self.dtype, device=self.device
            )
        t = t.to(device=self.device, dtype=self.dtype)
        s = self.tile
        for tile_out, (y, x) in zip(t, np.asarray(torch.as_tensor(positions).cpu()), strict=True):
            y, x = int(y), int(x)
            self._sum[..., y : y + s, x : x + s] += tile_out
            self._count[y : y + s, x : x + s] += 1

    def result(self) -> torch.Tensor:
        """The stitched average, ``(..., h, w)`` in the tiles' float dtype (float32 for ints) on ``device``.

        Pixels no tile covered (only if tiles were skipped) are 0.
        """
        if self._sum is None:
            raise ValueError("Stitcher.result() called before any add()")
        h, w = self.shape
        count = self._count[:h, :w]
        out = self._sum[..., :h, :w] / count.clamp(min=1)
        return out.to(self._out_dtype)


def stitch(tiles: Array, positions: np.ndarray, shape: tuple[int, int], tile: int) -> Array:
    """Average overlapping tiles back into an image.

    Parameters
    ----------
    tiles
        ``(n, ..., tile, tile)`` numpy or torch.
    positions
        ``(n, 2)`` ``[y0, x0]`` as returned by :func:`extract_tiles`.
    shape
        ``(h, w)`` of the original image, pixels.
    tile
        Tile size, pixels.

    Returns
    -------
    ``(..., h, w)``, same kind as ``tiles`` (on the tiles' device); the tiles'
    float dtype, float32 for integer tiles. Averaging is done in float64, so
    ``stitch(*extract_tiles(x, t, s), x.shape, t) == x`` exactly.
    """
    is_torch = isinstance(tiles, torch.Tensor)
    device = tiles.device if is_torch else "cpu"
    st = Stitcher(shape, tile, device=device)
    st.add(tiles, positions)
    out = st.result()
    return out if is_torch else out.numpy()
