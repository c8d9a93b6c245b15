"""Picking: turn particle-probability maps into particle centres.

The grid-based local-maximum search (:mod:`pixer.pick.localmax`) is re-exported
here; the model-driven picker lives in :mod:`pixer.pick.picker`.
"""

from pixer.pick.localmax import grid_local_maxima, picks_to_frame

__all__ = ["grid_local_maxima", "picks_to_frame"]
