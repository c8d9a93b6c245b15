"""Overlapping tiles of a micrograph and stitching of per-tile outputs.

PIXER runs its network on 512×512 tiles with stride 256 and averages the
overlapping outputs. Tiles here always cover the whole image: the last tile of
each axis is flush with the image edge. A tile is ``t`` (square) or
``(th, tw)`` (rectangular) pixels. An axis shorter than the tile is padded at its
end (bottom / right) with the image's mirror image (:func:`pad_end`); stitching
crops the padding away again. The picker keeps that padding under 8 px by
clamping the tile to the image (:func:`fit_tile`): a network shown a wide padded
band (zero or mirrored) at the bottom / right — never seen in training — put
spurious picks along those edges of small micrographs.

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
        ``[0]`` when ``length <= tile`` (the tile is then padded, see :func:`pad_end`).
    """
    if tile <= 0 or not 0 < stride <= tile:
        raise ValueError(f"need tile > 0 and 0 < stride <= tile, got tile={tile}, stride={stride}")
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


TileSize = int | tuple[int, int]


def tile_hw(tile: TileSize) -> tuple[int, int]:
    """``(th, tw)`` of a tile given as ``t`` or ``(th, tw)``."""
    if isinstance(tile, int | np.integer):
        return int(tile), int(tile)
    th, tw = tile
    return int(th), int(tw)


def fit_tile(shape: tuple[int, int], tile: int, stride: int, multiple: int = 8) -> tuple[tuple[int, int], int]:
    """Clamp a square tile to an image so that a short axis is one tile with (almost) no padding.

    Parameters
    ----------
    shape
        ``(h, w)`` of the image, pixels.
    tile, stride
        Requested square tile and stride, pixels.
    multiple
        A clamped side is the axis rounded **up** to a multiple of this (the
        network's output stride): the image is mirror-padded by fewer than
        ``multiple`` px at its end. (Rounding down would need a second, almost
        identical tile per short axis: 4 network passes instead of 1 on a
        410² image.) A side never exceeds ``tile``.

    Returns
    -------
    tile_hw
        ``(th, tw)``: ``tile`` for an axis at least that long, else the axis
        rounded up to ``multiple``.
    stride
        ``min(stride, th, tw)``.
    """
    def side(n: int) -> int:
        if n >= tile:
            return tile
        return min(tile, n + (-n) % multiple)

    th, tw = side(int(shape[0])), side(int(shape[1]))
    return (th, tw), max(1, min(stride, th, tw))


def tile_positions(shape: tuple[int, int], tile: TileSize = 512, stride: int = 256) -> np.ndarray:
    """All tile positions for an image of ``shape = (h, w)``: ``(n, 2)`` int64 ``[y0, x0]``, row-major."""
    th, tw = tile_hw(tile)
    ys, xs = tile_starts(shape[0], th, stride), tile_starts(shape[1], tw, stride)
    return np.array([(y, x) for y in ys for x in xs], dtype=np.int64).reshape(-1, 2)


def mirror_indices(length: int, total: int) -> np.ndarray:
    """Indices ``(total,)`` extending ``range(length)`` by mirroring at its end.

    ``0, 1, …, n−1, n−1, n−2, …, 0, 0, 1, …`` (edge pixel repeated, as
    ``numpy.pad(mode="symmetric")``), for any ``total >= length`` — also when the
    padding is longer than the axis.
    """
    if length <= 0 or total < length:
        raise ValueError(f"need 0 < length <= total, got length={length}, total={total}")
    period = np.arange(total) % (2 * length)
    return np.where(period < length, period, 2 * length - 1 - period).astype(np.int64)


def pad_end(image: Array, ph: int, pw: int) -> Array:
    """Pad the last two axes at their end (bottom by ``ph``, right by ``pw`` px) with their mirror image.

    Parameters
    ----------
    image
        ``(..., h, w)`` numpy array or torch tensor.
    ph, pw
        Rows and columns to add, ``>= 0``; the reflection repeats the edge pixel
        and works for any pad length.

    Returns
    -------
    Array
        ``(..., h + ph, w + pw)``, same kind and dtype as ``image``.
    """
    if ph == 0 and pw == 0:
        return image
    h, w = image.shape[-2], image.shape[-1]
    iy, ix = mirror_indices(h, h + ph), mirror_indices(w, w + pw)
    if isinstance(image, torch.Tensor):
        iy_t = torch.from_numpy(iy).to(image.device)
        ix_t = torch.from_numpy(ix).to(image.device)
        return image.index_select(-2, iy_t).index_select(-1, ix_t)
    return image[..., iy, :][..., ix]


def _pad_to_tile(image: Array, tile: TileSize) -> Array:
    """Mirror-pad the last two axes at their end up to at least the tile."""
    th, tw = tile_hw(tile)
    h, w = image.shape[-2], image.shape[-1]
    return pad_end(image, max(0, th - h), max(0, tw - w))


def _gather(image: Array, positions: np.ndarray, tile: TileSize) -> Array:
    th, tw = tile_hw(tile)
    crops = [image[..., y : y + th, x : x + tw] for y, x in positions]
    if isinstance(image, torch.Tensor):
        return torch.stack(crops)
    return np.stack(crops)


def extract_tiles(image: Array, tile: TileSize = 512, stride: int = 256) -> tuple[Array, np.ndarray]:
    """Cut an image into overlapping tiles covering it.

    Parameters
    ----------
    image
        ``(..., h, w)`` numpy array or torch tensor.
    tile, stride
        Tile size (``t`` or ``(th, tw)``) and step, pixels (see :func:`tile_starts`).

    Returns
    -------
    tiles
        ``(n, ..., th, tw)``, same kind and dtype as ``image``.
    positions
        ``(n, 2)`` int64 ``[y0, x0]``.
    """
    positions = tile_positions(image.shape[-2:], tile, stride)
    return _gather(_pad_to_tile(image, tile), positions, tile), positions


def iter_tile_batches(
    image: Array, tile: TileSize = 512, stride: int = 256, batch_size: int = 8
) -> Iterator[tuple[Array, np.ndarray]]:
    """Yield tiles batch by batch, so memory holds at most ``batch_size`` tiles.

    Parameters
    ----------
    image
        ``(..., h, w)`` numpy array or torch tensor.
    tile, stride
        Tile size (``t`` or ``(th, tw)``) and step, pixels.
    batch_size
        Tiles per batch (the last batch may be smaller).

    Yields
    ------
    batch
        ``(b, ..., th, tw)``, same kind as ``image``.
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
        Tile size, pixels: ``t`` or ``(th, tw)``.
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
        tile: TileSize,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.tile = tile_hw(tile)
        self.device = torch.device(device)
        self.dtype = dtype
        self._padded = (max(self.shape[0], self.tile[0]), max(self.shape[1], self.tile[1]))
        self._sum: torch.Tensor | None = None
        self._count = torch.zeros(self._padded, dtype=dtype, device=self.device)
        self._out_dtype: torch.dtype | None = None

    def add(self, batch_out: Array, positions: np.ndarray | torch.Tensor) -> None:
        """Accumulate a batch of tile outputs.

        Parameters
        ----------
        batch_out
            ``(b, ..., th, tw)`` numpy or torch; trailing-leading dims
            (``...``, e.g. channels) must be the same for every batch.
        positions
            ``(b, 2)`` ``[y0, x0]`` of each tile.
        """
        t = torch.as_tensor(batch_out)
        if tuple(t.shape[-2:]) != self.tile:
            raise ValueError(f"tiles must be {self.tile[0]}x{self.tile[1]}, got {tuple(t.shape[-2:])}")
        if self._sum is None:
            self._out_dtype = t.dtype if t.is_floating_point() else torch.float32
            self._sum = torch.zeros(
                (*t.shape[1:-2], *self._padded), dtype=self.dtype, device=self.device
            )
        t = t.to(device=self.device, dtype=self.dtype)
        th, tw = self.tile
        for tile_out, (y, x) in zip(t, np.asarray(torch.as_tensor(positions).cpu()), strict=True):
            y, x = int(y), int(x)
            self._sum[..., y : y + th, x : x + tw] += tile_out
            self._count[y : y + th, x : x + tw] += 1

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


def stitch(tiles: Array, positions: np.ndarray, shape: tuple[int, int], tile: TileSize) -> Array:
    """Average overlapping tiles back into an image.

    Parameters
    ----------
    tiles
        ``(n, ..., th, tw)`` numpy or torch.
    positions
        ``(n, 2)`` ``[y0, x0]`` as returned by :func:`extract_tiles`.
    shape
        ``(h, w)`` of the original image, pixels.
    tile
        Tile size, pixels: ``t`` or ``(th, tw)``.

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
