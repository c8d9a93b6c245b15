"""Training checkpoints: everything a run needs to continue bit for bit.

A checkpoint is one file (default ``<model dir>/checkpoint.pt``) replaced
atomically (temporary file + rename), so a run killed at any moment leaves the
previous complete checkpoint. It holds plain data only, read back with
``torch.load(weights_only=True)``:

``step``
    Optimiser steps done.
``model``, ``optimizer``, ``scheduler``
    ``state_dict()`` of each (BatchNorm running statistics included).
``rng``
    One entry per rank: torch CPU, CUDA (every device), numpy (global legacy
    generator) and python ``random`` states.
``config``
    The training configuration (a resumed run must use the same one).
``state``
    Loop bookkeeping: log rows, the loss window, best validation score.

On CPU, a run resumed from step ``k`` ends with parameters bit-identical to an
uninterrupted run (tested): data items depend only on ``(seed, index)`` and
every random state is restored.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from pixer import __version__
from pixer.errors import file_error
from pixer.io.paths import atomic_path

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict:
    """Random states of this process: ``torch`` (uint8 tensor), ``cuda`` (list), ``numpy``, ``python``."""
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": _to_lists(random.getstate()),
    }


def _to_lists(obj):
    return [_to_lists(v) for v in obj] if isinstance(obj, (tuple, list)) else obj


def _to_tuples(obj):
    return tuple(_to_tuples(v) for v in obj) if isinstance(obj, (tuple, list)) else obj


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    n = state["numpy"]
    np.random.set_state({
        "bit_generator": n["bit_generator"],
        "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
        "has_gauss": n["has_gauss"], "gauss": n["gauss"],
    })  # fmt: skip
    random.setstate(_to_tuples(state["python"]))


def save_checkpoint(
    path: str | os.PathLike,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: object,
    config: dict,
    rng: list[dict],
    state: dict | None = None,
) -> Path:
    """Write a checkpoint atomically (call on rank 0 only).

    Parameters
    ----------
    path
        Checkpoint file.
    step
        Optimiser steps done.
    model
        The network (unwrapped from DDP).
    optimizer, scheduler
        Their ``state_dict()`` is stored.
    config
        Training configuration, plain JSON-like data.
    rng
        :func:`rng_state` of every rank, in rank order.
    state
        Loop bookkeeping (plain data).
    """
    obj = {
        "pixer_version": __version__,
        "step": int(step),
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng,
        "config": config,
        "state": state or {},
        "world_size": len(rng),
    }
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint (weights-only unpickling: nothing in the file can run code).

    Raises
    ------
    PixerError
        Missing, truncated or foreign file, naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "checkpoint not found (nothing to resume)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, refused pickle …
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise file_error(path, f"not a readable checkpoint ({type(exc).__name__}: {first[:200]})") from None
    if not isinstance(ckpt, dict) or not {"step", "model", "optimizer", "scheduler", "rng"} <= set(ckpt):
        raise file_error(path, "not a pixer checkpoint (keys missing)")
    return ckpt


def check_config(path: str | os.PathLike, saved: dict, current: dict, ignore: Iterable[str] = ()) -> None:
    """Refuse to resume with a different configuration (fields in ``ignore`` may differ).

    Raises
    ------
    PixerError
        Naming the checkpoint and the differing fields.
    """
    ignore = set(ignore)
    diff = sorted(k for k in set(saved) | set(current)
                  if k not in ignore and _norm(saved.get(k)) != _norm(current.get(k)))  # fmt: skip
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in diff[:4])
        raise file_error(path, f"was written with other training settings ({shown}); "
                               "use the same arguments or a new --out")  # fmt: skip


def _norm(v):
    return [_norm(x) for x in v] if isinstance(v, (tuple, list)) else v


def restore(ckpt: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: object) -> int:
    """Load model, optimiser and scheduler states; return the step (random states: :func:`rank_rng`)."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    return int(ckpt["step"])


def rank_rng(ckpt: dict, rank: int) -> dict:
    """This rank's saved random state; rank 0's when the run now has more ranks (data order does not depend on it)."""
    rngs = ckpt["rng"]
    return rngs[rank] if rank < len(rngs) else rngs[0]
