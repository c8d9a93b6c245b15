"""Reports for people: one self-contained HTML page about a ``pixer pick`` run.

:func:`build_report` reads a run folder (:func:`load_run`), draws its figures
(:mod:`pixer.report.figures`) and writes the page (:mod:`pixer.report.html`).
"""

from pixer.report.build import build_report
from pixer.report.run import PickRun, find_micrographs, load_run

__all__ = ["PickRun", "build_report", "find_micrographs", "load_run"]
