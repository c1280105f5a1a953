"""The fast CPU routes in cdtcodec.model.layers equal the plain PyTorch formulation of each layer.

The plain formulations below are written straight from ARCHITECTURE.md (and were the project's first
implementation); the whole model is also checked against the official code's goldens in test_conformance.
Tolerance: 1e-5 absolute on unit-scale float32 outputs (rounding of a different summation order).
"""

import pytest
import torch
import torch.nn.functional as F

from cdtcodec.model import layers
from cdtcodec.model.layers import (
    AttentionBlock,
    Block,
    ChannelNorm,
    TimeDownsample,
    TimeUpsample,
    _pad_time_space,
    conv3d,
)

TOL = 1e-5
CL = torch.channels_last_3d


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = TOL) -> None:
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item())


def _same_gradients(fast: torch.Tensor, plain: torch.Tensor, leaves, tol: float = TOL) -> None:
    """Both outputs back-propagate the same random weighting of their elements to the same gradients."""
    weights = torch.randn_like(plain)
    for a, b in zip(torch.autograd.grad((fast * weights).sum(), leaves),
                    torch.autograd.grad((plain * weights).sum(), leaves)):
        _close(a, b, tol)


@pytest.mark.parametrize("cin,cout,kernel,stride", [
    (16, 16, (3, 3, 3), (1, 1, 1)),
    (6, 16, (3, 7, 7), (1, 1, 1)),
    (16, 3, (3, 7, 7), (1, 1, 1)),  # fewer than 8 outputs: computed as 8, sliced
    (16, 48, (1, 1, 1), (1, 1, 1)),  # pointwise: a matrix product
    (16, 16, (1, 3, 3), (1, 2, 2)),  # spatial downsample
    (16, 16, (3, 1, 1), (2, 1, 1)),  # temporal downsample
])
@pytest.mark.parametrize("layout", [CL, torch.contiguous_format])
def test_conv3d_equals_plain_convolution(cin, cout, kernel, stride, layout):
    torch.manual_seed(0)
    x = torch.randn(1, cin, 6, 20, 18).contiguous(memory_format=layout)
    weight = (torch.randn(cout, cin, *kernel) / (cin * kernel[0] * kernel[1] * kernel[2]) ** 0.5)
    weight = weight.contiguous(memory_format=layout)
    bias = torch.randn(cout)
    with torch.no_grad():
        _close(conv3d(x, weight, bias, stride), F.conv3d(x, weight, bias, stride))
        _close(conv3d(x, weight, None, stride), F.conv3d(x, weight, None, stride))


def test_conv3d_gradients_equal_plain_convolution():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 5, 12, 12, requires_grad=True)
    weight = torch.randn(3, 8, 3, 3, 3, requires_grad=True)
    bias = torch.randn(3, requires_grad=True)
    grads = []
    for conv in (conv3d, F.conv3d):
        out = conv(x, weight, bias)
        grads.append(torch.autograd.grad((out * out).sum(), (x, weight, bias)))
    for fast, plain in zip(*grads):
        _close(fast, plain, 1e-4)


@pytest.mark.parametrize("avx2", [False, True])  # fewer than 8 outputs: padded to 8 in the backward on AVX2 only
@pytest.mark.parametrize("blocked", [False, True])  # the two weight-gradient routes, whichever this CPU takes
@pytest.mark.parametrize("cin,cout,kernel,stride,input_grad,bias", [
    (8, 16, (3, 3, 3), (1, 1, 1), True, True),
    (8, 3, (3, 7, 7), (1, 1, 1), True, True),  # fewer than 8 outputs
    (3, 8, (3, 7, 7), (1, 1, 1), False, True),  # a video input: weight gradients only
    (8, 8, (1, 3, 3), (1, 2, 2), True, False),  # spatial downsample, no bias
    (8, 8, (3, 1, 1), (2, 1, 1), True, True),  # temporal downsample
])
def test_conv3d_backward_routes_equal_plain_convolution(monkeypatch, avx2, blocked, cin, cout, kernel, stride,
                                                        input_grad, bias):
    monkeypatch.setattr(layers, "_weight_grad_blocked", lambda x, weight, grad: blocked)
    monkeypatch.setattr(layers, "_avx2", lambda: avx2)
    torch.manual_seed(0)
    x = torch.randn(2, cin, 7, 13, 12).contiguous(memory_format=CL).requires_grad_(input_grad)
    weight = (torch.randn(cout, cin, *kernel) / (cin * kernel[0] * kernel[1] * kernel[2]) ** 0.5)
    weight = weight.contiguous(memory_format=CL).requires_grad_()
    b = torch.randn(cout, requires_grad=True) if bias else None
    fast, plain = conv3d(x, weight, b, stride), F.conv3d(x, weight, b, stride)
    assert fast.grad_fn is not None and "OneDNN" in type(fast.grad_fn).__name__
    _close(fast, plain)
    leaves = [t for t in (x, weight, b) if t is not None and t.requires_grad]
    _same_gradients(fast, plain, leaves, 1e-4)


def test_block_gradients_equal_plain_formulation():
    """Block's ReLU runs in place on the norm's channels-last tensor (autograd recorded an in-place ReLU on
    the permuted view as a copy of the whole base, a zero-filled gradient and two more copies)."""
    block = _randomised(Block(6, 8, large=False, pad_mode="replicate"))
    x = torch.randn(2, 6, 5, 9, 8).contiguous(memory_format=CL).requires_grad_()
    fast = block(x)
    plain = F.relu(block.norm(F.conv3d(F.pad(x, (1, 1, 1, 1, 2, 0), mode="replicate"), block.conv.weight,
                                       block.conv.bias)))
    _close(fast, plain)
    _same_gradients(fast, plain, (x, *block.parameters()), 1e-4)


def test_training_objective_gradients_equal_float64_plain_route(monkeypatch):
    """The whole training objective (fast CPU routes in float32, each weight-gradient route) against the
    same model in float64, where every convolution takes PyTorch's plain route."""
    from cdtcodec.config import CDTConfig
    from cdtcodec.model import CDT
    from cdtcodec.train.losses import LossWeights, Objective

    torch.manual_seed(0)
    model = CDT(CDTConfig(context_dim=8, unet_dim=4)).train()
    plain = CDT(CDTConfig(context_dim=8, unet_dim=4)).train().double()
    plain.load_state_dict(model.state_dict())
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1

    def gradients(network, video):
        network.zero_grad(set_to_none=True)
        Objective(network, LossWeights(lpips=0), None)(video, torch.Generator().manual_seed(3))["loss"].backward()
        return [p.grad.double() for p in network.parameters()]

    reference = gradients(plain, video.double())
    for blocked in (False, True):
        monkeypatch.setattr(layers, "_weight_grad_blocked", lambda x, weight, grad: blocked)
        for fast, exact in zip(gradients(model, video), reference, strict=True):
            assert (fast - exact).abs().max() <= 1e-3 * exact.abs().max() + 1e-7


def test_conv3d_float64_takes_the_plain_route():
    x = torch.randn(1, 4, 3, 8, 8, dtype=torch.float64)
    weight = torch.randn(5, 4, 3, 3, 3, dtype=torch.float64)
    assert torch.equal(conv3d(x, weight, None), F.conv3d(x, weight))


@pytest.mark.parametrize("mode", ["replicate", "constant"])
@pytest.mark.parametrize("front,ph,pw,held", [(2, 1, 1, 0), (0, 3, 3, 2), (1, 0, 0, 1), (2, 0, 0, 0), (0, 1, 2, 2)])
def test_pad_time_space_equals_cat_then_pad(mode, front, ph, pw, held):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 7, 6, requires_grad=True)
    past = torch.randn(2, 5, held, 7, 6, requires_grad=True) if held else None
    plain = torch.cat([past, x], dim=2) if held else x
    plain = F.pad(plain, (pw, pw, ph, ph, front, 0), mode=mode)
    fast = _pad_time_space(x, front, ph, pw, mode, past)
    assert torch.equal(fast, plain)  # a copy: exactly equal
    _same_gradients(fast, plain, (x, past) if held else (x,))


def test_channel_norm_equals_formula():
    torch.manual_seed(0)
    norm = ChannelNorm(12)
    with torch.no_grad():
        norm.g.normal_()
        norm.b.normal_()
    x = torch.randn(1, 12, 3, 10, 9) * 3 + 1
    var = torch.var(x, dim=1, unbiased=False, keepdim=True)
    plain = (x - x.mean(dim=1, keepdim=True)) / (var + norm.eps).sqrt() * norm.g + norm.b
    with torch.no_grad():
        _close(norm(x), plain)


def _plain_attention(attn: AttentionBlock, x: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = x.shape
    qkv = F.conv3d(attn.norm(x), attn.to_qkv.weight)
    q, k, v = qkv.permute(0, 2, 1, 3, 4).reshape(b * t, 3 * c, h * w).chunk(3, dim=1)
    q = q.softmax(dim=1) * attn.scale
    k = k.softmax(dim=-1)
    context = torch.einsum("bdn,ben->bde", k, v)
    out = torch.einsum("bde,bdn->ben", context, q).reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
    return F.conv3d(out, attn.to_out.weight, attn.to_out.bias) + x


@pytest.mark.parametrize("size", [(6, 5), (8, 8)])  # 30 pixels: rows as they are; 64: joined 8 at a time
def test_attention_equals_per_frame_linear_attention(size):
    attn = _randomised(AttentionBlock(8))
    x = torch.randn(2, 8, 3, *size, requires_grad=True)
    fast, plain = attn(x), _plain_attention(attn, x)
    _close(fast, plain)
    _same_gradients(fast, plain, (x, *attn.parameters()), 1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels,size", [(16, (8, 8)), (16, (3, 5)), (96, (4, 4))])  # joined 4 at a time, not, not
def test_add_per_channel_equals_broadcast(dtype, channels, size):
    torch.manual_seed(0)
    x = torch.randn(2, channels, 3, *size, dtype=dtype).contiguous(memory_format=CL).requires_grad_()
    bias = torch.randn(2, channels, dtype=dtype, requires_grad=True)
    fast, plain = layers._add_per_channel(x, bias), x + bias[:, :, None, None, None]
    assert torch.equal(fast, plain) and fast.is_contiguous(memory_format=CL)
    _same_gradients(fast.float(), plain.float(), (x, bias), 1e-2 if dtype == torch.bfloat16 else TOL)


def _per_pixel_conv1d(conv: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """The official formulation: fold every pixel into the batch and run the Conv1d over time."""
    b, c, t, h, w = x.shape
    y = conv(x.permute(0, 3, 4, 1, 2).reshape(b * h * w, c, t))
    return y.reshape(b, h, w, y.shape[1], y.shape[2]).permute(0, 3, 4, 1, 2)


def _randomised(module: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    return module


def test_time_downsample_equals_per_pixel_conv1d():
    down = _randomised(TimeDownsample(6, "replicate"))
    x = torch.randn(1, 6, 5, 7, 4)
    with torch.no_grad():
        padded = torch.cat([x[:, :, :1], x[:, :, :1], x], dim=2)
        _close(down(x), _per_pixel_conv1d(down.conv, padded))


def test_time_upsample_equals_per_pixel_conv1d():
    up = _randomised(TimeUpsample(6))
    x = torch.randn(1, 6, 3, 7, 4)
    with torch.no_grad():
        y = _per_pixel_conv1d(up.conv, x)  # (B, 2C, T, H, W): channel 2c + p is channel c of frame 2t + p
        b, _, t, h, w = y.shape
        plain = y.reshape(b, 6, 2, t, h, w).transpose(2, 3).reshape(b, 6, 2 * t, h, w)
        _close(up(x), plain[:, :, 1:])  # a first chunk drops its first frame
        _close(up(x, {up: True}), plain)  # later chunks keep every frame
