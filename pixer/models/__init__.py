"""Networks (segmentation, crop classifier) and their on-disk format."""

from pixer.models.classifier import CropClassifier, init_trunk, load_classifier, save_classifier
from pixer.models.segmentation import (
    TINY_CONFIG,
    AtrousSegNet,
    SegNetConfig,
    Trunk,
    n_parameters,
    receptive_field,
)
from pixer.models.store import load_model, save_model

__all__ = [
    "CropClassifier",
    "init_trunk",
    "load_classifier",
    "save_classifier",
    "TINY_CONFIG",
    "AtrousSegNet",
    "SegNetConfig",
    "Trunk",
    "load_model",
    "n_parameters",
    "receptive_field",
    "save_model",
]
