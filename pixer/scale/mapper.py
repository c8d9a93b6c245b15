"""A sharded map of a per-micrograph function over many paths, serial or on Dask.

:func:`map_micrographs` cuts the list into batches of ``batch`` micrographs,
one Dask task per batch, keeps at most ``max_in_flight`` batches submitted at a
time (so the client's memory and the scheduler's task graph stay bounded
whatever the number of micrographs), and gathers only what ``fn`` returns
(small summary rows; results themselves go to disk inside ``fn``). A tqdm bar
over completions shows micrographs/s and the ETA.

Failures never stop the run: an exception raised by ``fn`` for one item, or
a batch lost for good (a worker killed more often than Dask's
``allowed-failures``, or ``retries`` exhausted), becomes ``on_error(item,
reason)`` for each affected item. Lost workers are handled by Dask: the batch
is recomputed on another worker; ``retries`` re-runs batches that raised.

``fn`` must be picklable and idempotent (``pixer.pick.batch.PickTask`` is:
a rerun finds the part file and skips).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

Row = Any
ErrorRow = Callable[[Any, str], Row]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_batch(fn: Callable[[Any], Row], items: Sequence, on_error: ErrorRow | None = None) -> list[Row]:
    """Apply ``fn`` to each item; an exception becomes ``on_error(item, reason)`` (re-raised without it)."""
    rows = []
    for item in items:
        try:
            rows.append(fn(item))
        except Exception as exc:
            if on_error is None:
                raise
            rows.append(on_error(item, _reason(exc)))
    return rows


def _batches(items: Sequence, size: int) -> list[tuple[int, Sequence]]:
    size = max(1, int(size))
    return [(i, items[i : i + size]) for i in range(0, len(items), size)]


def map_micrographs(
    fn: Callable[[Any], Row],
    items: Sequence,
    *,
    batch: int = 8,
    client=None,
    retries: int = 2,
    on_error: ErrorRow | None = None,
    progress: bool = True,
    desc: str = "pick",
    max_in_flight: int | None = None,
    postfix: Callable[[list[Row]], dict] | None = None,
) -> list[Row]:
    """``[fn(item) for item in items]``, sharded over a Dask cluster.

    Parameters
    ----------
    fn
        Picklable callable ``item -> row`` (a summary dict); writes its own
        results to disk.
    items
        Micrograph paths (or any picklable items).
    batch
        Items per Dask task.
    client
        A :class:`distributed.Client`, or None for a plain loop in this process.
    retries
        Dask retries of a batch that raised (lost workers are always recomputed).
    on_error
        ``(item, reason) -> row`` for items whose batch failed for good, or
        whose ``fn`` raised; None lets the exception propagate.
    progress
        Show a tqdm bar (micrographs/s, ETA).
    desc
        Bar label and Dask task-name prefix.
    max_in_flight
        Most batches submitted at once (default: 4 per worker thread, at least 16).
    postfix
        ``rows_so_far -> dict`` shown beside the bar.

    Returns
    -------
    list
        One row per item, in the order of ``items``.
    """
    items = list(items)
    rows: list[Row] = [None] * len(items)
    bar = tqdm(total=len(items), desc=desc, unit="mic", disable=not progress, smoothing=0.1)
    done: list[Row] = []

    def finish(start: int, chunk_rows: list[Row]) -> None:
        rows[start : start + len(chunk_rows)] = chunk_rows
        done.extend(chunk_rows)
        bar.update(len(chunk_rows))
        if postfix is not None:
            bar.set_postfix(postfix(done), refresh=False)

    try:
        if client is None:
            for start, chunk in _batches(items, 1):
                finish(start, run_batch(fn, chunk, on_error))
            return rows
        _map_dask(fn, items, batch, client, retries, on_error, desc, max_in_flight, finish)
        return rows
    finally:
        bar.close()


def _map_dask(fn, items, batch, client, retries, on_error, desc, max_in_flight, finish) -> None:
    """Submit batches through a bounded window and hand each result to ``finish``."""
    from distributed import as_completed

    if max_in_flight is None:
        threads = sum(client.nthreads().values()) if client.scheduler_info().get("workers") else 4
        max_in_flight = max(16, 4 * threads)
    pending = iter(_batches(items, batch))
    where: dict[str, tuple[int, Sequence]] = {}
    token = uuid.uuid4().hex[:8]

    def submit():
        nxt = next(pending, None)
        if nxt is None:
            return None
        start, chunk = nxt
        fut = client.submit(run_batch, fn, chunk, on_error, key=f"{desc}-{token}-{start}", retries=retries,
                            pure=False)  # fmt: skip
        where[fut.key] = nxt
        return fut

    first = [f for f in (submit() for _ in range(max_in_flight)) if f is not None]
    queue = as_completed(first, with_results=False)
    for fut in queue:
        start, chunk = where.pop(fut.key)
        try:
            chunk_rows = fut.result()
        except Exception as exc:  # KilledWorker, retries exhausted, unpicklable …
            if on_error is None:
                raise
            chunk_rows = [on_error(item, f"batch failed: {_reason(exc)}") for item in chunk]
        fut.release()
        finish(start, chunk_rows)
        nxt = submit()
        if nxt is not None:
            queue.add(nxt)
