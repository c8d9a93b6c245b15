"""Training labels for the segmentation network."""

from pixer.labels.discs import DEFAULT_FRACTION, disc_labels, disc_labels_for_picks

__all__ = ["DEFAULT_FRACTION", "disc_labels", "disc_labels_for_picks"]
