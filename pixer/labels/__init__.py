"""Training labels for the segmentation network: discs at picks, or re-projections of a 3D map."""

from pixer.labels.discs import DEFAULT_FRACTION, IGNORE, disc_labels, disc_labels_for_picks, mark_ignored
from pixer.labels.folder import disc_label_results, read_label_index, write_label_folder
from pixer.labels.reconstruction import (
    LabelResult,
    synthesize_labels,
    unknown_micrograph_records,
)
from pixer.labels.threshold import LabelThreshold, fill_holes, iso_level_for_mass

__all__ = [
    "DEFAULT_FRACTION",
    "IGNORE",
    "LabelResult",
    "LabelThreshold",
    "disc_label_results",
    "disc_labels",
    "disc_labels_for_picks",
    "fill_holes",
    "iso_level_for_mass",
    "mark_ignored",
    "read_label_index",
    "synthesize_labels",
    "unknown_micrograph_records",
    "write_label_folder",
]
