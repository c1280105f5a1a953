"""LPIPS: reproduce published LPIPS-alex values on TID2013 pairs, identity, gradients, loader safety."""

from __future__ import annotations

import importlib.util
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cdtcodec.lpips import LPIPS, default_weights_path

DATA = Path(__file__).parent / "data" / "lpips"
REPO = Path(__file__).resolve().parents[1]

# Published LPIPS v0.1 (AlexNet) distances for these TID2013 reference/distorted pairs.
PUBLISHED = {"I03": 0.7237, "I04": 0.2572, "I06": 0.0508, "I08": 0.0521, "I19": 0.4253}


@pytest.fixture(scope="module")
def model() -> LPIPS:
    return LPIPS.from_file()


def _load(path: Path) -> torch.Tensor:
    """8-bit RGB file -> (1, 3, H, W) float in [-1, 1] (x / 255 * 2 - 1, no resizing)."""
    from PIL import Image

    arr = np.array(Image.open(path).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1)[None] / 255.0 * 2.0 - 1.0


def test_default_path_points_to_shipped_weights():
    assert default_weights_path() == REPO / "weights" / "lpips-alex.safetensors"
    assert default_weights_path().is_file()


def test_published_tid2013_values(model):
    names = sorted(PUBLISHED)
    ref = torch.cat([_load(DATA / f"{n}_ref.png") for n in names])
    dist = torch.cat([_load(DATA / f"{n}_dist.png") for n in names])
    with torch.no_grad():
        got = model(dist, ref)
    for n, v in zip(names, got.tolist()):
        assert v == pytest.approx(PUBLISHED[n], abs=1e-3), (n, v)


def test_identical_images_give_zero(model):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 96, generator=g) * 2 - 1
    with torch.no_grad():
        d = model(x, x.clone())
    assert d.shape == (2,)
    assert torch.all(d.abs() < 1e-6)


def test_gradients_flow_to_input_not_params(model):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(2, 3, 64, 64, generator=g) * 2 - 1).requires_grad_(True)
    y = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    d = model(x, y)
    assert d.shape == (2,) and torch.all(d > 0)
    d.sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


def test_training_route_equals_metric(model):
    """As a loss (x needs a gradient, y does not) the reference frames go through without autograd: same
    distances, and the same gradient as the one batch through the network the metric runs."""
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(3, 3, 48, 40, generator=g) * 2 - 1).requires_grad_(True)
    y = torch.rand(3, 3, 48, 40, generator=g) * 2 - 1
    loss = model(x, y)
    with torch.no_grad():
        metric = model(x, y)
    assert (loss.detach() - metric).abs().max() <= 1e-6
    (grad,) = torch.autograd.grad(loss.sum(), x)
    # the metric's formulation, with a gradient: y needing one too sends both through one batch
    (plain,) = torch.autograd.grad(model(x, y.clone().requires_grad_(True)).sum(), x)
    assert (grad - plain).abs().max() <= 1e-5 * plain.abs().max()


def test_video_helper_is_framewise_mean(model):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 3, 48, 48, generator=g) * 2 - 1
    y = torch.rand(2, 3, 3, 48, 48, generator=g) * 2 - 1
    with torch.no_grad():
        v = model.video(x, y)
        v_chunked = model.video(x, y, chunk=2)
        per = torch.stack([model(x[:, :, t], y[:, :, t]) for t in range(3)], dim=1).mean(1)
    assert v.shape == (2,)
    torch.testing.assert_close(v, per, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v_chunked, per, rtol=1e-5, atol=1e-6)


def test_train_mode_is_deterministic(model):
    x = torch.zeros(1, 3, 64, 64)
    y = torch.full((1, 3, 64, 64), 0.5)
    model.train()
    with torch.no_grad():
        a, b = model(x, y), model(x, y)
    model.eval()
    assert torch.equal(a, b)


def _convert_module():
    spec = importlib.util.spec_from_file_location("convert_lpips", REPO / "scripts" / "convert_lpips.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_restricted_unpickler_allows_arrays_only():
    conv = _convert_module()
    good = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)}, "b": [1, (2, "x")]}
    out = conv.safe_load_numpy_pickle(pickle.dumps(good, protocol=3))
    np.testing.assert_array_equal(out["a"]["kernel"], good["a"]["kernel"])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError):
        conv.safe_load_numpy_pickle(pickle.dumps(Evil()))
    with pytest.raises(pickle.UnpicklingError):
        conv.safe_load_numpy_pickle(pickle.dumps(io.BytesIO(b"x")))
