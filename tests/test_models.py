"""Segmentation network and its on-disk format."""

from __future__ import annotations

import json
import os

import pytest
import torch

from pixer.errors import PixerError
from pixer.models import (
    TINY_CONFIG,
    AtrousSegNet,
    Trunk,
    load_model,
    n_parameters,
    receptive_field,
    save_model,
)

torch.set_num_threads(1)


def tiny() -> AtrousSegNet:
    torch.manual_seed(0)
    return AtrousSegNet.from_config(TINY_CONFIG).eval()


@pytest.mark.parametrize("shape", [(64, 64), (37, 50), (8, 8), (1, 3)])
def test_output_shape(shape):
    with torch.no_grad():
        out = tiny()(torch.randn(2, 1, *shape))
    assert out.shape == (2, 1, *shape) and out.dtype == torch.float32


def test_architecture_facts():
    m = AtrousSegNet()
    assert [b.rate for b in m.branches] == [2, 4, 6, 8]
    assert receptive_field(m) == 194
    assert [receptive_field(AtrousSegNet(n_branches=n)) for n in (1, 5)] == [98, 258]
    assert 5e5 < n_parameters(m) < 1e6
    with pytest.raises(ValueError):
        AtrousSegNet(n_branches=6)


def test_receptive_field_bounds_the_gradient():
    m = tiny()
    x = torch.randn(1, 1, 320, 320, generator=torch.Generator().manual_seed(0)).requires_grad_()
    m(x)[0, 0, 160, 160].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    extent = int(rows.max() - rows.min() + 1)
    # + up to 8 px: bilinear upsampling mixes two neighbouring feature cells
    assert 0.5 * receptive_field(m) < extent <= receptive_field(m) + 8


def test_equivariant_to_shifts_of_the_output_stride():
    m = tiny()
    x = torch.randn(1, 1, 320, 320)
    with torch.no_grad():  # far from the borders (receptive field 130 px), so no padding effects
        a = m(x)[..., 120:184, 120:184]
        b = m(torch.roll(x, (8, 16), dims=(-2, -1)))[..., 128:192, 136:200]
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_trunk_is_a_reusable_seam():
    m = tiny()
    donor = Trunk(1, TINY_CONFIG.width)
    m.trunk.load_state_dict(donor.state_dict())
    assert isinstance(m.trunk, Trunk) and m.trunk.out_channels == 4 * TINY_CONFIG.width
    assert m.trunk(torch.zeros(1, 1, 64, 64)).shape == (1, 4 * TINY_CONFIG.width, 8, 8)


def test_save_load_round_trip(tmp_path):
    m = tiny()
    m.train()
    m(torch.randn(4, 1, 32, 32))  # move the BatchNorm running statistics
    m.eval()
    save_model(tmp_path, m, {"apix": 4.0, "diameter_A": [100, 150], "tile": 256, "seed": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.pt"]
    m2, cfg = load_model(tmp_path)
    assert cfg["apix"] == 4.0 and cfg["arch"]["width"] == TINY_CONFIG.width and "pixer_version" in cfg
    x = torch.randn(1, 1, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(m2(x), m(x))
    assert isinstance(torch.load(tmp_path / "model.pt", weights_only=True), dict)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(PixerError, match="config.json"):
        load_model(tmp_path)
    save_model(tmp_path, tiny(), {})
    data = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(PixerError, match="model.pt"):
        load_model(tmp_path)
    (tmp_path / "model.pt").unlink()
    with pytest.raises(PixerError, match="model.pt"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(PixerError, match="config.json"):
        load_model(tmp_path)


def test_wrong_architecture_is_refused(tmp_path):
    save_model(tmp_path, tiny(), {})
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["arch"]["width"] = 8
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PixerError, match="do not match"):
        load_model(tmp_path)


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    save_model(tmp_path, tiny(), {})
    marker = tmp_path / "pwned"
    torch.save({"w": _Evil(str(marker))}, tmp_path / "model.pt")
    with pytest.raises(PixerError, match="model.pt"):
        load_model(tmp_path)
    assert not marker.exists()


def test_safetensors_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    m = tiny()
    save_model(tmp_path, m, {}, fmt="safetensors")
    m2, cfg = load_model(tmp_path)
    assert cfg["weights"] == "model.safetensors"
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(m2(x), m(x))
