"""LPIPS v0.1 perceptual distance (Zhang et al., 2018) in plain PyTorch, without torchvision.

Inputs are RGB images laid out ``(B, 3, H, W)`` with values in ``[-1, 1]`` (i.e. ``2 * x - 1`` for
an image ``x`` in ``[0, 1]``); the output is one distance per batch item, shape ``(B,)``, where 0
means identical. Video tensors ``(B, 3, T, H, W)`` go through :meth:`LPIPS.video`, which averages
the per-frame distances.

The network follows LPIPS v0.1 exactly:

* fixed input scaling ``(x - shift) / scale`` with shift ``(-0.030, -0.088, -0.188)`` and scale
  ``(0.458, 0.448, 0.450)``;
* backbone features: AlexNet (torchvision layout) relu1..relu5, or VGG16 relu1_2 .. relu5_3;
* each feature map is normalised to unit length along channels (eps 1e-10), the two maps are
  subtracted and squared, weighted per channel by the learned 1x1 'lin' layer (no bias),
  averaged over space, and the five layer scores are summed.

Weights come from ``weights/lpips-alex.safetensors`` (see ``scripts/convert_lpips.py``
and ``weights/README-lpips.md``). All parameters are frozen, but the module is differentiable with
respect to its inputs so it can be used as a training loss.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LPIPS", "default_weights_path"]

_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)

# (out_channels, kernel, stride, padding) for AlexNet convs; None marks the 3x3/2 max-pool.
_ALEX = [(64, 11, 4, 2), "relu", None, (192, 5, 1, 2), "relu", None, (384, 3, 1, 1), "relu",
         (256, 3, 1, 1), "relu", (256, 3, 1, 1), "relu"]
_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]

_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def default_weights_path(net: str = "alex") -> Path:
    """Path of the shipped weights: ``weights/lpips-<net>.safetensors`` (package data)."""
    from cdtcodec.weights import WEIGHTS_DIR  # here: cdtcodec.weights imports the model, which needs no LPIPS

    return WEIGHTS_DIR / f"lpips-{net}.safetensors"


class _AlexFeatures(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 64, 11, stride=4, padding=2)
        self.conv1 = nn.Conv2d(64, 192, 5, padding=2)
        self.conv2 = nn.Conv2d(192, 384, 3, padding=1)
        self.conv3 = nn.Conv2d(384, 256, 3, padding=1)
        self.conv4 = nn.Conv2d(256, 256, 3, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h1 = F.relu(self.conv0(x))
        h2 = F.relu(self.conv1(F.max_pool2d(h1, 3, 2)))
        h3 = F.relu(self.conv2(F.max_pool2d(h2, 3, 2)))
        h4 = F.relu(self.conv3(h3))
        h5 = F.relu(self.conv4(h4))
        return [h1, h2, h3, h4, h5]


class _VGGFeatures(nn.Module):
    _TAPS = (1, 3, 6, 9, 12)  # conv indices whose relu outputs are used (relu1_2 .. relu5_3)
    _POOL_AFTER = (1, 3, 6, 9)

    def __init__(self) -> None:
        super().__init__()
        c_in = 3
        i = 0
        for v in _VGG16:
            if v == "M":
                continue
            setattr(self, f"conv{i}", nn.Conv2d(c_in, v, 3, padding=1))
            c_in = v
            i += 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(13):
            x = F.relu(getattr(self, f"conv{i}")(x))
            if i in self._TAPS:
                outs.append(x)
            if i in self._POOL_AFTER:
                x = F.max_pool2d(x, 2, 2)
        return outs


def _unit_normalize(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return feat / (torch.sqrt(torch.sum(feat * feat, dim=1, keepdim=True)) + eps)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance. ``forward(x, y) -> (B,)`` for ``(B, 3, H, W)`` images in ``[-1, 1]``.

    Build it with :meth:`from_file`. The module holds no trainable parameters
    (``requires_grad`` is False everywhere), yet gradients flow to ``x`` and ``y``.
    """

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in _CHANNELS:
            raise ValueError(f"unknown LPIPS backbone {net!r}; expected 'alex' or 'vgg'")
        self.net_type = net
        self.net = _AlexFeatures() if net == "alex" else _VGGFeatures()
        for i, c in enumerate(_CHANNELS[net]):
            setattr(self, f"lin{i}", nn.Conv2d(c, 1, 1, bias=False))
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str | Path | None = None, net: str = "alex") -> "LPIPS":
        """Load converted weights (default: the shipped ``lpips-<net>.safetensors``)."""
        from safetensors.torch import load_file

        path = Path(path) if path is not None else default_weights_path(net)
        if not path.is_file():
            raise FileNotFoundError(
                f"LPIPS weights not found at {path}; create them with scripts/convert_lpips.py --net {net}"
            )
        state = load_file(str(path))
        state = {k: v for k, v in state.items() if not k.startswith("scaling.")}
        model = cls(net)
        model.load_state_dict(state, strict=True)
        model.requires_grad_(False)
        return model.eval()

    def train(self, mode: bool = True) -> "LPIPS":
        # No dropout or batch statistics: the metric behaves the same in both modes. Keep eval.
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per item: ``x``, ``y`` are ``(B, 3, H, W)`` in ``[-1, 1]``; returns ``(B,)``."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected two (B, 3, H, W) tensors, got {tuple(x.shape)} and {tuple(y.shape)}")
        b = x.shape[0]
        dtype = self.shift.dtype
        if torch.is_grad_enabled() and x.requires_grad and not y.requires_grad:
            # As a training loss: the reference frames go through without autograd, which spares the
            # backward through the whole network for half of the batch (its data gradients, never used).
            pairs = zip(self._features(x), self._features(y, grad=False))
        else:  # one batch through the network (the metric, as it always ran)
            pairs = ((f[:b], f[b:]) for f in self._features(torch.cat([x, y], dim=0)))
        total = x.new_zeros(b, dtype=dtype)
        for i, (fx, fy) in enumerate(pairs):
            d = (_unit_normalize(fx) - _unit_normalize(fy)) ** 2
            total = total + getattr(self, f"lin{i}")(d).mean(dim=(1, 2, 3))
        return total

    def _features(self, x: torch.Tensor, grad: bool = True) -> list[torch.Tensor]:
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return self.net((x.to(self.shift.dtype) - self.shift) / self.scale)

    def video(self, x: torch.Tensor, y: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Mean per-frame LPIPS of video tensors ``(B, 3, T, H, W)`` in ``[-1, 1]``; returns ``(B,)``.

        ``chunk`` limits how many frames go through the network at once (memory); None = all.
        """
        if x.shape != y.shape or x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected two (B, 3, T, H, W) tensors, got {tuple(x.shape)} and {tuple(y.shape)}")
        b, c, t, h, w = x.shape
        xf = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        yf = y.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        if chunk is None or chunk >= b * t:
            d = self.forward(xf, yf)
        else:
            d = torch.cat([self.forward(xf[i:i + chunk], yf[i:i + chunk]) for i in range(0, b * t, chunk)])
        return d.view(b, t).mean(dim=1)
