"""One-to-one matching of picks to ground-truth particles.

A pick and a true particle can match only when their centres are at most
``radius`` pixels apart (``distance <= radius``). Among all one-to-one
assignments of such pairs we take one with the **most matches** and, among
those, the **smallest total distance** (Hungarian algorithm,
:func:`scipy.optimize.linear_sum_assignment`). Candidate pairs come from a KD
tree, and the assignment is solved separately on each connected group of
candidates, so thousands of picks per micrograph stay fast.

Micrographs of the two tables are paired by name: the exact name when both
tables use it, else :func:`mic_key` (file name without folders, extension and
common coordinate-file suffixes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from pixer.errors import PixerError
from pixer.io.match import name_keys

__all__ = ["check_truth_names", "match_picks", "match_tables", "mic_key"]


def mic_key(name: str) -> str:
    """Normalised micrograph key: basename, no extension, no coordinate suffix.

    The same key :func:`pixer.io.match.match_micrograph_names` uses at its
    fourth level.

    >>> mic_key("MotionCorr/job002/Movies/mic_001_autopick.star")
    'mic_001'
    """
    return name_keys(str(name))[3]


def _candidate_pairs(pred: np.ndarray, true: np.ndarray, radius: float) -> tuple[np.ndarray, ...]:
    """All (pred, true) index pairs with ``distance <= radius`` and their distances."""
    if len(pred) == 0 or len(true) == 0 or not radius >= 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    sparse = cKDTree(pred).sparse_distance_matrix(cKDTree(true), radius, output_type="ndarray")
    return sparse["i"].astype(np.int64), sparse["j"].astype(np.int64), sparse["v"].astype(np.float64)


def _solve_group(pi: np.ndarray, ti: np.ndarray, dist: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-cardinality, then minimum-distance assignment of one candidate group."""
    rows, r_inv = np.unique(pi, return_inverse=True)
    cols, c_inv = np.unique(ti, return_inverse=True)
    # A valid pair costs distance - big, a non-pair 0: one more match always
    # outweighs any change in total distance (big > sum of all distances).
    big = (radius + 1.0) * (min(len(rows), len(cols)) + 1)
    cost = np.zeros((len(rows), len(cols)))
    cost[r_inv, c_inv] = dist - big
    r, c = linear_sum_assignment(cost)
    ok = cost[r, c] < 0
    return rows[r[ok]], cols[c[ok]]


def match_picks(pred_xy: np.ndarray, true_xy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Match picks to true particles one-to-one within ``radius``.

    Parameters
    ----------
    pred_xy
        ``(n, 2)`` float pick centres (pixels).
    true_xy
        ``(m, 2)`` float true centres (same pixels).
    radius
        Largest matching distance in pixels (inclusive).

    Returns
    -------
    pred_idx, true_idx
        ``(k,)`` int64 arrays, ``pred_xy[pred_idx[i]]`` matches ``true_xy[true_idx[i]]``;
        ``k`` is the largest possible, and the total distance the smallest for that ``k``.
        Sorted by ``pred_idx``.
    """
    pred = np.asarray(pred_xy, dtype=np.float64).reshape(-1, 2)
    true = np.asarray(true_xy, dtype=np.float64).reshape(-1, 2)
    pi, ti, dist = _candidate_pairs(pred, true, float(radius))
    if len(pi) == 0:
        return pi, ti
    n = len(pred)
    graph = coo_matrix((np.ones(len(pi)), (pi, n + ti)), shape=(n + len(true), n + len(true)))
    _, label = connected_components(graph, directed=False)
    group = label[pi]
    # Groups that are a single pair match directly; the rest go to the Hungarian solver.
    sizes = np.bincount(group, minlength=label.max() + 1)
    single = sizes[group] == 1
    out_p, out_t = [pi[single]], [ti[single]]
    multi = np.flatnonzero(~single)
    if len(multi):
        order = multi[np.argsort(group[multi], kind="stable")]
        bounds = np.flatnonzero(np.diff(group[order])) + 1
        for sel in np.split(order, bounds):
            p, t = _solve_group(pi[sel], ti[sel], dist[sel], float(radius))
            out_p.append(p)
            out_t.append(t)
    p, t = np.concatenate(out_p), np.concatenate(out_t)
    order = np.argsort(p, kind="stable")
    return p[order], t[order]


def _radius_for(radius: float | Mapping | pd.Series, name: str) -> float:
    """Matching radius for one micrograph: a number, or a lookup by name then key."""
    if isinstance(radius, (pd.Series, Mapping)):
        for k in (name, mic_key(name)):
            if k in radius:
                return float(radius[k])
        raise PixerError(f"no matching radius given for micrograph {name}")
    return float(radius)


def _pair_micrographs(pick_names: list[str], true_names: list[str]) -> dict[str, str | None]:
    """Map each picks micrograph name to a truth micrograph name (exact, else by key)."""
    exact = set(true_names)
    by_key: dict[str, list[str]] = {}
    for t in true_names:
        by_key.setdefault(mic_key(t), []).append(t)
    out: dict[str, str | None] = {}
    for p in pick_names:
        if p in exact:
            out[p] = p
            continue
        hits = by_key.get(mic_key(p), [])
        if len(hits) > 1:
            raise PixerError(f"micrograph {p} matches several ground-truth micrographs: {', '.join(hits[:3])}")
        out[p] = hits[0] if hits else None
    return out


def _require(df: pd.DataFrame, what: str) -> None:
    missing = [c for c in ("micrograph", "x", "y") if c not in df.columns]
    if missing:
        raise PixerError(f"{df.attrs.get('source', what)}: missing column(s) {', '.join(missing)}")


def match_tables(
    picks_df: pd.DataFrame, truth_df: pd.DataFrame, radius: float | Mapping | pd.Series
) -> tuple[pd.DataFrame, pd.Series]:
    """Match picks to ground truth micrograph by micrograph.

    Parameters
    ----------
    picks_df, truth_df
        Particle tables (``micrograph``, ``x``, ``y`` in micrograph pixels).
    radius
        Matching radius in pixels: one number, or a Series / mapping from
        micrograph name (or :func:`mic_key`) to radius.

    Returns
    -------
    picks
        A copy of ``picks_df`` with columns ``tp`` (bool, matched), ``truth_row``
        (positional row in ``truth_df`` of the matched particle, -1 if none) and
        ``truth_micrograph`` (the paired truth name, or the pick's own name when
        the truth has no such micrograph).
    n_true
        Number of true particles per micrograph (indexed by truth name),
        including truth micrographs that have no picks.

    Raises
    ------
    PixerError
        A column is missing, or picks and truth (both non-empty) share no micrograph.
    """
    _require(picks_df, "picks")
    _require(truth_df, "ground truth")
    picks = picks_df.copy()
    picks["micrograph"] = picks["micrograph"].astype(str)
    true_names = truth_df["micrograph"].astype(str).to_numpy()
    pairing = _pair_micrographs(list(pd.unique(picks["micrograph"])), list(pd.unique(true_names)))
    if pairing and len(true_names) and not any(pairing.values()):
        check_truth_names(list(pairing), truth_df, f"micrographs of {picks_df.attrs.get('source', 'the picks')}",
                          truth_df.attrs.get("source", "the ground truth"))
    tp = np.zeros(len(picks), dtype=bool)
    truth_row = np.full(len(picks), -1, dtype=np.int64)
    true_rows_by_name = pd.Series(np.arange(len(truth_df))).groupby(true_names).indices
    p_xy = picks[["x", "y"]].to_numpy(dtype=np.float64)
    t_xy = truth_df[["x", "y"]].to_numpy(dtype=np.float64)
    for name, rows in picks.groupby("micrograph", sort=False).indices.items():
        tname = pairing[name]
        if tname is None:
            continue
        trows = true_rows_by_name[tname]
        pi, ti = match_picks(p_xy[rows], t_xy[trows], _radius_for(radius, tname))
        tp[rows[pi]] = True
        truth_row[rows[pi]] = trows[ti]
    picks["tp"] = tp
    picks["truth_row"] = truth_row
    picks["truth_micrograph"] = [pairing[m] or m for m in picks["micrograph"]]
    n_true = pd.Series(true_names).value_counts(sort=False).rename("n_true")
    n_true.index.name = "micrograph"
    return picks, n_true


def check_truth_names(names: Sequence[str], truth: pd.DataFrame, names_where: str, truth_where: str) -> str | None:
    """Check that the truth is about the micrographs ``names`` (paired by :func:`mic_key`).

    Parameters
    ----------
    names
        Micrograph names (or paths) picked.
    truth
        True particles (``micrograph`` column).
    names_where, truth_where
        What to call the two sides in messages, e.g. ``"the micrographs picked in picks/"``
        and the truth file.

    Returns
    -------
    str or None
        A one-line warning when only some micrographs pair (their picks count as false
        positives, the unpaired truth as missed); None when every one pairs or a side is empty.

    Raises
    ------
    PixerError
        No micrograph of the truth pairs with any of ``names``.
    """
    keys = {mic_key(n): str(n) for n in names}
    true_keys = {mic_key(t): t for t in pd.unique(truth["micrograph"].astype(str))} if "micrograph" in truth else {}
    if not keys or not true_keys:
        return None
    shared = keys.keys() & true_keys.keys()
    if not shared:
        one_true, one_picked = (Path(next(iter(d.values()))).name for d in (true_keys, keys))
        raise PixerError(f"{truth_where}: none of its {len(true_keys)} micrograph(s) (e.g. {one_true}) is among the "
                         f"{len(keys)} {names_where} (e.g. {one_picked}); micrographs pair by file name without "
                         "folder and extension")
    no_truth, not_picked = len(keys) - len(shared), len(true_keys) - len(shared)
    if not (no_truth or not_picked):
        return None
    parts = []
    if no_truth:
        parts.append(f"{no_truth} of the {len(keys)} {names_where} have no truth "
                     "(their picks count as false positives)")
    if not_picked:
        parts.append(f"{not_picked} of its {len(true_keys)} micrographs are not among them (their particles count as "
                     "missed)")  # fmt: skip
    return f"{truth_where}: " + "; ".join(parts)
