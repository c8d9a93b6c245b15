"""Training of the segmentation network."""

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
    "TileDataset",
    "TrainConfig",
    "build_training",
    "evaluate",
    "make_loss",
    "train_segmentation",
    "train_step",
]
