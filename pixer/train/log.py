"""Training curves: the log table (CSV) and its plot (PNG), both written atomically.

Rows are dicts with a ``step`` and float columns; the segmentation trainer logs
``loss, val_loss, val_iou, lr``, the classifier trainer ``loss, val_loss,
val_acc, lr``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pixer.io.paths import atomic_path, write_text_atomic


def write_log(path: str | Path, rows: Sequence[dict], columns: Sequence[str]) -> Path:
    """Write ``step,<columns>`` CSV rows (6 significant digits)."""
    lines = [",".join(["step", *columns])]
    lines += [",".join([str(r["step"]), *(f"{r[c]:.6g}" for c in columns)]) for r in rows]
    return write_text_atomic(path, "\n".join(lines) + "\n")


def plot_curve(path: str | Path, rows: Sequence[dict], score: str = "val_iou", score_label: str = "val IoU @ 0.5") -> None:
    """Train / validation loss against step, and ``score`` (0-1) on a second axis, as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["loss"] for r in rows], label="train loss")
    ax.plot(steps, [r["val_loss"] for r in rows], label="val loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(steps, [r[score] for r in rows], "g.-", label=score_label)
    ax2.set_ylabel(score_label)
    ax2.set_ylim(0, 1)
    fig.legend(loc="upper center", ncol=3, fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
