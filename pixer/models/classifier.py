"""Crop classifier: particle / interference / noise, on the segmentation net's trunk.

PIXER trains a classifier on particle-box crops first and initialises the
segmentation trunk from it; its figure 3 shows three kinds of crop: particles,
interference (carbon, ice, contamination, aggregates) and background noise.
Here the classifier uses the very :class:`~pixer.models.segmentation.Trunk` of
:class:`~pixer.models.segmentation.AtrousSegNet`, so ``model.trunk``'s weights
load into a segmentation net of the same ``width`` unchanged
(:func:`init_trunk`).

Layout::

    crop (b, in_channels, s, s), normalised, at the model pixel size
    Trunk (output stride 8)                     → (b, 4w, s/8, s/8)
    adaptive average pool to 3 × 3 cells        → (b, 4w, 3, 3)   (centre vs. surroundings)
    flatten → dropout → linear 36w → 4w → ReLU → linear → (b, n_classes) logits

A model folder holds ``classifier.pt`` (state dict, weights-only load) and
``classifier.json`` (``arch``, ``class_names``, ``crop`` px, ``particle_px``,
``apix`` Å/px, ``diameter_A``, training settings and validation metrics),
written atomically, the JSON last.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixer import __version__
from pixer.errors import file_error
from pixer.io.paths import atomic_path, write_text_atomic
from pixer.models.segmentation import AtrousSegNet, Trunk
from pixer.models.store import _read_state, mismatch

#: class index → name (paper Fig. 3)
CLASS_NAMES = ("particle", "interference", "noise")
CLASSIFIER_PT = "classifier.pt"
CLASSIFIER_JSON = "classifier.json"


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture arguments of :class:`CropClassifier`.

    Attributes
    ----------
    width
        Trunk base width ``w`` (must equal the segmentation net's to initialise it).
    in_channels
        Input channels.
    n_classes
        Output classes (3: particle, interference, noise).
    dropout
        Dropout before the first linear layer.
    """

    width: int = 32
    in_channels: int = 1
    n_classes: int = len(CLASS_NAMES)
    dropout: float = 0.2


class CropClassifier(nn.Module):
    """Trunk + small head; see the module docstring.

    Shapes: ``(b, in_channels, s, s)`` float32 → ``(b, n_classes)`` logits,
    any ``s`` ≥ 8 (crops are resized by the trunk's pooling, not here).
    """

    def __init__(self, width: int = 32, in_channels: int = 1, n_classes: int = 3, dropout: float = 0.2) -> None:
        super().__init__()
        self.config = ClassifierConfig(int(width), int(in_channels), int(n_classes), float(dropout))
        self.trunk = Trunk(in_channels, width)
        c = self.trunk.out_channels
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(9 * c, c), nn.ReLU(inplace=True), nn.Linear(c, n_classes),
        )  # fmt: skip

    def arch_args(self) -> dict:
        """JSON-ready architecture arguments."""
        return asdict(self.config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, in_channels, s, s)`` → ``(b, n_classes)`` logits."""
        return self.head(self.trunk(x))


def crop_box(particle_px: float, box_factor: float = 1.75) -> int:
    """Crop side in px at the model pixel size: ``box_factor × particle_px`` rounded up to a multiple of 8."""
    return int(8 * np.ceil(box_factor * particle_px / 8))


def extract_crops(image: np.ndarray, centres: np.ndarray, box: int) -> np.ndarray:
    """Square crops centred on ``centres``, zero-padded past the edges.

    Parameters
    ----------
    image
        ``(h, w)`` float32 image, normalised (0 = mean grey).
    centres
        ``(n, 2)`` ``[x, y]`` in image pixels (x = column, y = row); rounded.
    box
        Crop side, px. Crop pixel ``box // 2`` (row and column) is the centre.

    Returns
    -------
    ``(n, box, box)`` float32.
    """
    image = np.asarray(image, dtype=np.float32)
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    half = box // 2
    pad = half + box
    padded = np.pad(image, pad)
    out = np.empty((len(centres), box, box), np.float32)
    for k, (x, y) in enumerate(np.rint(centres).astype(np.int64)):
        x0, y0 = int(x) - half + pad, int(y) - half + pad
        x0 = min(max(x0, 0), padded.shape[1] - box)
        y0 = min(max(y0, 0), padded.shape[0] - box)
        out[k] = padded[y0 : y0 + box, x0 : x0 + box]
    return out


@torch.no_grad()
def predict_crops(model: CropClassifier, crops: np.ndarray | torch.Tensor, batch_size: int | None = None) -> np.ndarray:
    """Class probabilities of ``(n, s, s)`` crops: ``(n, n_classes)`` float32 (softmax), model in eval mode.

    ``batch_size`` None: 64 crops a pass on the CPU (48² crops on 2 cores: 1600 of them in 2.6 s,
    against 3.5 s at 256, which leave the caches), 512 on a GPU."""
    model.eval()
    device = next(model.parameters()).device
    batch_size = batch_size or (64 if device.type == "cpu" else 512)
    x = torch.as_tensor(np.asarray(crops, np.float32) if not isinstance(crops, torch.Tensor) else crops)
    out = [torch.softmax(model(x[i : i + batch_size, None].to(device).float()), 1).cpu()
           for i in range(0, len(x), batch_size)]  # fmt: skip
    return torch.cat(out).numpy() if out else np.zeros((0, model.config.n_classes), np.float32)


def save_classifier(model_dir: str | os.PathLike, model: CropClassifier, meta: dict) -> Path:
    """Write ``classifier.pt`` then ``classifier.json`` (``meta`` + ``arch`` + version) atomically."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(model_dir / CLASSIFIER_PT) as tmp:
        torch.save(state, tmp)
    info = {**meta, "arch": model.arch_args(), "pixer_version": __version__, "weights": CLASSIFIER_PT}
    write_text_atomic(model_dir / CLASSIFIER_JSON, json.dumps(info, indent=2, sort_keys=True) + "\n")
    return model_dir


def read_classifier_info(model_dir: str | os.PathLike) -> dict:
    """``classifier.json`` of a classifier folder (PixerError naming the file if absent or broken)."""
    path = Path(model_dir) / CLASSIFIER_JSON
    if not path.is_file():
        raise file_error(path, "classifier config not found (is this a `pixer train-classifier` folder?)")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise file_error(path, f"unreadable classifier config ({type(exc).__name__}: {exc})") from None
    if not isinstance(info, dict) or not isinstance(info.get("arch"), dict):
        raise file_error(path, "not a pixer classifier config: no \"arch\" record (made by pixer train-classifier?)")
    return info


def load_classifier(model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[CropClassifier, dict]:
    """Load a classifier folder; returns the model in eval mode and ``classifier.json``."""
    info = read_classifier_info(model_dir)
    path = Path(model_dir) / CLASSIFIER_PT
    state = _read_state(path)
    try:
        model = CropClassifier(**info["arch"])
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise file_error(path, f"weights do not match the architecture in {CLASSIFIER_JSON}: {mismatch(exc)}") from None
    return model.to(device).eval(), info


def init_trunk(model: AtrousSegNet, classifier_dir: str | os.PathLike) -> dict:
    """Copy a trained classifier's trunk into ``model.trunk`` (PIXER's initialisation).

    Returns ``classifier.json``. Raises a PixerError naming the file when the
    trunk widths or input channels differ.
    """
    classifier, info = load_classifier(classifier_dir)
    t = model.trunk
    if (classifier.trunk.width, classifier.trunk.in_channels) != (t.width, t.in_channels):
        raise file_error(Path(classifier_dir) / CLASSIFIER_JSON,
                         f"trunk width {classifier.trunk.width} does not match the segmentation width {t.width}: "
                         f"train with --width {classifier.trunk.width}")  # fmt: skip
    device = next(t.parameters()).device
    t.load_state_dict({k: v.to(device) for k, v in classifier.trunk.state_dict().items()})
    return info
