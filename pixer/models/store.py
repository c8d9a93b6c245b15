"""Save and load segmentation models as weights + JSON config.

A model folder holds:

- ``model.pt``: a plain ``dict[str, Tensor]`` (the ``state_dict``), written
  with ``torch.save`` and read back with ``torch.load(weights_only=True)``, so
  a tampered file cannot run code on load (it is refused with a
  :class:`~pixer.errors.PixerError`). If the optional ``safetensors`` package
  is installed, ``model.safetensors`` is written/read instead on request.
- ``config.json``: architecture arguments (``arch``), and whatever the caller
  records: target pixel size (Å/px), particle diameter range (Å), tile and
  stride (px), normalisation k, training arguments, seed; plus the pixer
  version. It is written last, so its presence marks a complete folder.

Both files are written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from pixer import __version__
from pixer.errors import PixerError, file_error
from pixer.io.paths import atomic_path, write_text_atomic
from pixer.models.segmentation import AtrousSegNet

WEIGHTS_PT = "model.pt"
WEIGHTS_SAFETENSORS = "model.safetensors"
CONFIG_JSON = "config.json"


def _has_safetensors() -> bool:
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        return False
    return True


def save_model(
    model_dir: str | os.PathLike, model: AtrousSegNet, config: dict, fmt: str = "pt"
) -> Path:
    """Write ``model_dir/model.pt`` (or ``.safetensors``) and ``model_dir/config.json``.

    Parameters
    ----------
    model_dir
        Output folder (created).
    model
        The network; its ``arch_args()`` are stored under ``config["arch"]``.
    config
        JSON-serialisable metadata, e.g. ``apix`` (Å/px the model expects),
        ``diameter_A`` ([min, max] Å), ``tile``, ``stride`` (px), ``norm_k``,
        ``train`` (training arguments), ``seed``.
    fmt
        ``"pt"`` or ``"safetensors"`` (needs the ``safetensors`` package).

    Returns
    -------
    Path
        ``model_dir``.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    if fmt == "pt":
        with atomic_path(model_dir / WEIGHTS_PT) as tmp:
            torch.save(state, tmp)
    elif fmt == "safetensors":
        if not _has_safetensors():
            raise PixerError("saving .safetensors needs the 'safetensors' package")
        from safetensors.torch import save_file

        with atomic_path(model_dir / WEIGHTS_SAFETENSORS) as tmp:
            save_file(state, str(tmp))
    else:
        raise ValueError(f"fmt must be 'pt' or 'safetensors', got {fmt!r}")
    meta = dict(config)
    meta["arch"] = model.arch_args()
    meta["pixer_version"] = __version__
    meta["weights"] = WEIGHTS_PT if fmt == "pt" else WEIGHTS_SAFETENSORS
    write_text_atomic(model_dir / CONFIG_JSON, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return model_dir


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise file_error(path, "model weights not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refusal, truncation, wrong format …
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise file_error(path, f"not a readable weights file ({type(exc).__name__}: {msg[:200]})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise file_error(path, "expected a dict of tensors (a state_dict)")
    return state


def mismatch(exc: Exception) -> str:
    """One line from a ``load_state_dict`` error: its first mismatch, not torch's "Error(s) in loading" heading."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return " ".join(lines[1:2] or lines[:1])[:240]


def load_model(
    model_dir: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[AtrousSegNet, dict]:
    """Load a model folder written by :func:`save_model`.

    Parameters
    ----------
    model_dir
        Folder with ``config.json`` and ``model.pt`` (or ``model.safetensors``).
    device
        Where to put the network.

    Returns
    -------
    model
        :class:`AtrousSegNet` in eval mode on ``device``.
    config
        The stored ``config.json`` contents.

    Raises
    ------
    PixerError
        A missing or corrupt file (naming it), weights that do not match the
        architecture, or a weights file holding anything but tensors (pickled
        objects are never executed).
    """
    model_dir = Path(model_dir)
    if model_dir.is_file():
        raise file_error(model_dir, "is a file: --model takes the model folder (the --out of pixer train), "
                                    f"not {model_dir.name}")
    cfg_path = model_dir / CONFIG_JSON
    if not cfg_path.is_file():
        raise file_error(cfg_path, "model config not found")
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise file_error(cfg_path, f"unreadable model config ({type(exc).__name__}: {exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("arch"), dict):
        raise file_error(cfg_path, "not a pixer model config: no \"arch\" record (write it with pixer train)")
    arch = dict(config["arch"])
    particle_px = config.get("particle_px")  # None: the default
    if particle_px is not None and (not isinstance(particle_px, (int, float)) or not 0 < particle_px < float("inf")):
        raise file_error(cfg_path, f"particle_px must be a number > 0, got {particle_px!r}")
    weights = config.get("weights", WEIGHTS_PT)
    if weights not in (WEIGHTS_PT, WEIGHTS_SAFETENSORS):
        raise file_error(cfg_path, f"unknown weights file {weights!r}")
    path = model_dir / weights
    if weights == WEIGHTS_SAFETENSORS and not _has_safetensors():
        raise file_error(path, "reading .safetensors needs the 'safetensors' package")
    state = _read_state(path)
    try:
        model = AtrousSegNet(**arch)
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise file_error(path, f"weights do not match the architecture in config.json: {mismatch(exc)}") from None
    return model.to(device).eval(), config
