"""Helpers shared by the command modules (argument groups, run records)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from pixer import __version__
from pixer.io.paths import write_text_atomic


def finite_float(text: str) -> float:
    """argparse type: a finite float (not nan, not ±inf)."""
    value = float(text)
    if not abs(value) < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int > 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def jsonable(value: Any) -> Any:
    """Make argparse values JSON friendly (paths → str, callables dropped)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if callable(value):
        return None
    return value


def write_run_record(outdir: str | Path, command: str, args: argparse.Namespace, **extra: Any) -> Path:
    """Write ``outdir/pixer_<command>.json``: version, arguments, extra facts.

    Every run leaves its resolved configuration next to its outputs so it can
    be rerun exactly.
    """
    record = {
        "pixer_version": __version__,
        "command": command,
        "argv": sys.argv,
        "arguments": {k: jsonable(v) for k, v in vars(args).items() if not k.startswith("_")},
        "python": platform.python_version(),
        "host": platform.node(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **{k: jsonable(v) for k, v in extra.items()},
    }
    path = Path(outdir) / f"pixer_{command}.json"
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    return path
