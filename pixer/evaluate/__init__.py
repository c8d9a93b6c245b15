"""Judging picks against ground truth: matching, precision/recall/AUPRC, pictures.

See :mod:`pixer.evaluate.metrics` for exactly what is computed.
"""

from pixer.evaluate.matching import match_picks, match_tables, mic_key
from pixer.evaluate.metrics import (
    average_precision,
    evaluate,
    precision_recall_curve,
    prf,
)

__all__ = [
    "average_precision",
    "evaluate",
    "match_picks",
    "match_tables",
    "mic_key",
    "precision_recall_curve",
    "prf",
]
