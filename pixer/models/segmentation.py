"""PIXER-style segmentation network: a small conv trunk plus parallel atrous branches.

Architecture (after Zhang et al. 2019 and the authors' DeepLab-v2 code)::

    input (b, in_channels, h, w), normalised micrograph tile
    Trunk: 7 × [3×3 conv → BatchNorm → ReLU] with 3 × 2×2 max-pools → output stride 8
        c1 | pool | c2 c3 | pool | c4 c5 | pool | c6 c7        channels w, w, 2w, 2w, 4w, 4w, 4w
    n parallel branches on the trunk output, rate d ∈ rates:
        3×3 conv dilation d → ReLU → 1×1 → ReLU → 1×1 to 1 logit channel
    branch logits summed, bilinear upsampling ×8 back to (h, w)
    output: particle logits (b, 1, h, w)

PIXER used two-class softmax outputs; one sigmoid logit is equivalent.
Down-sampling by 2×2 pooling (not strided 3×3 convs) keeps trunk feature ``i``
centred on input pixel ``8i + 3.5``, which is exactly where
``F.interpolate(scale_factor=8, align_corners=False)`` puts it, so the
probability map is not shifted relative to the input. Inputs whose size is not a
multiple of 8 are zero-padded (zero = mean grey after normalisation) and cropped.

Receptive field (see :func:`receptive_field`): 66 px for the trunk, plus
``16 · max(rates)`` for the widest branch: **194 px** for the default
4 branches (rates 2, 4, 6, 8); 98, 130, 162, 258 px with 1, 2, 3, 5 branches.
Bilinear upsampling mixes two neighbouring feature cells, so an output pixel
can see up to 8 px more. The *effective* field (where the weights are large)
is smaller, concentrated near the centre. A particle (plus some context)
must fit inside it at the model's pixel size: at 4 Å/px the default net sees
776 Å, ample for particles up to ~300-400 Å; bin larger particles further.

The trunk is a separate module (``model.trunk``) so that a classifier trained
first can initialise it, as PIXER does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_RATES = (2, 4, 6, 8, 12)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class Trunk(nn.Module):
    """Seven 3×3 conv/BN/ReLU layers with three 2×2 max-pools (output stride 8).

    Parameters
    ----------
    in_channels
        Input channels (1 for a micrograph).
    width
        Base channel count ``w``; layer widths are w, w, 2w, 2w, 4w, 4w, 4w.

    Shapes: ``(b, in_channels, h, w)`` → ``(b, 4·width, h // 8, w // 8)``.
    """

    output_stride = 8

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        w = int(width)
        self.in_channels, self.width, self.out_channels = int(in_channels), w, 4 * w
        pool = lambda: nn.MaxPool2d(2)  # noqa: E731
        self.layers = nn.Sequential(
            _conv_bn_relu(in_channels, w), pool(),
            _conv_bn_relu(w, w), _conv_bn_relu(w, 2 * w), pool(),
            _conv_bn_relu(2 * w, 2 * w), _conv_bn_relu(2 * w, 4 * w), pool(),
            _conv_bn_relu(4 * w, 4 * w), _conv_bn_relu(4 * w, 4 * w),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, in_channels, h, w)`` → ``(b, 4·width, h // 8, w // 8)`` features."""
        return self.layers(x)


class AtrousBranch(nn.Module):
    """Dilated 3×3 conv → ReLU → 1×1 → ReLU → 1×1 to one logit channel (stride 1)."""

    def __init__(self, in_channels: int, hidden: int, rate: int) -> None:
        super().__init__()
        self.rate = int(rate)
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=rate, dilation=rate), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, c, h', w')`` features → ``(b, 1, h', w')`` logits."""
        return self.layers(x)


@dataclass(frozen=True)
class SegNetConfig:
    """Architecture arguments of :class:`AtrousSegNet` (saved in ``config.json``).

    Attributes
    ----------
    n_branches
        Parallel atrous branches, 1-5 (PIXER: 4).
    rates
        Dilation rates; default ``(2, 4, 6, 8, 12)[:n_branches]``.
    width
        Trunk base width ``w`` (trunk output has ``4w`` channels).
    branch_width
        Hidden channels of each branch; default ``2w``.
    in_channels
        Input channels.
    prior
        Initial particle probability the output bias is set to (stabilises
        early training when particles cover a small part of the image).
    """

    n_branches: int = 4
    rates: tuple[int, ...] | None = None
    width: int = 32
    branch_width: int | None = None
    in_channels: int = 1
    prior: float = 0.1


#: Tiny network for tests (a few thousand parameters).
TINY_CONFIG = SegNetConfig(n_branches=2, width=4, branch_width=8)


class AtrousSegNet(nn.Module):
    """PIXER-like segmentation net; see the module docstring for the layout.

    Parameters
    ----------
    n_branches, rates, width, branch_width, in_channels, prior
        See :class:`SegNetConfig`.

    Shapes: ``(b, in_channels, h, w)`` float32 → ``(b, 1, h, w)`` logits
    (probability = sigmoid(logit)). Any ``h, w`` ≥ 1.
    """

    def __init__(
        self,
        n_branches: int = 4,
        rates: tuple[int, ...] | None = None,
        width: int = 32,
        branch_width: int | None = None,
        in_channels: int = 1,
        prior: float = 0.1,
    ) -> None:
        super().__init__()
        if not 1 <= n_branches <= len(DEFAULT_RATES) and rates is None:
            raise ValueError(f"n_branches must be 1-{len(DEFAULT_RATES)}, got {n_branches}")
        rates = tuple(int(r) for r in (rates if rates is not None else DEFAULT_RATES[:n_branches]))
        if len(rates) != n_branches:
            raise ValueError(f"{n_branches} branches need {n_branches} rates, got {rates}")
        branch_width = int(branch_width or 2 * width)
        self.config = SegNetConfig(n_branches, rates, int(width), branch_width, int(in_channels), prior)
        self.trunk = Trunk(in_channels, width)
        self.branches = nn.ModuleList(
            AtrousBranch(self.trunk.out_channels, branch_width, r) for r in rates
        )
        bias = math.log(prior / (1 - prior)) / n_branches
        for b in self.branches:
            nn.init.constant_(b.layers[-1].bias, bias)

    @classmethod
    def from_config(cls, config: SegNetConfig | dict) -> AtrousSegNet:
        """Build from a :class:`SegNetConfig` or its ``asdict`` form."""
        return cls(**(asdict(config) if isinstance(config, SegNetConfig) else dict(config)))

    def arch_args(self) -> dict:
        """JSON-ready architecture arguments (``rates`` as a list)."""
        d = asdict(self.config)
        d["rates"] = list(d["rates"])
        return d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, in_channels, h, w)`` → ``(b, 1, h, w)`` logits."""
        h, w = x.shape[-2:]
        s = Trunk.output_stride
        ph, pw = (-h) % s, (-w) % s
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        f = self.trunk(x)
        logits = self.branches[0](f)
        for b in self.branches[1:]:
            logits = logits + b(f)
        logits = F.interpolate(logits, scale_factor=s, mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


def _walk_rf(modules, rf: int = 1, jump: int = 1) -> tuple[int, int]:
    for m in modules:
        if isinstance(m, nn.Conv2d | nn.MaxPool2d):
            k, st, d = (m.kernel_size, m.stride, m.dilation)
            k, st, d = (v[0] if isinstance(v, tuple) else v for v in (k, st, d))
            rf += (k - 1) * d * jump
            jump *= st
    return rf, jump


def receptive_field(model: AtrousSegNet) -> int:
    """Receptive field of the network output, pixels (side of the square).

    Computed by walking the trunk's convolutions and pools and adding the
    widest branch: ``rf = rf_trunk + 2 · max(rate) · 8``.
    """
    rf, jump = _walk_rf(model.trunk.modules())
    return max(_walk_rf(b.modules(), rf, jump)[0] for b in model.branches)


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
