"""Training: the segmentation network (single process or DDP, resumable) and the crop classifier."""

from pixer.train.checkpoint import load_checkpoint, save_checkpoint
from pixer.train.classifier import ClassifierTrainConfig, train_classifier
from pixer.train.segmentation import (
    TileDataset,
    TrainConfig,
    build_training,
    evaluate,
    make_loss,
    train_segmentation,
    train_step,
)

__all__ = [
    "ClassifierTrainConfig",
    "TileDataset",
    "TrainConfig",
    "build_training",
    "evaluate",
    "load_checkpoint",
    "make_loss",
    "save_checkpoint",
    "train_classifier",
    "train_segmentation",
    "train_step",
]
