"""Building blocks of CDT: causal 3D convolutions with an explicit feature cache, norms, blocks, resamplers.

Tensors are (B, C, T, H, W). Layers that look at past frames take ``cache``: a plain dict owned by the
caller, keyed by the layer itself, holding the few trailing input frames that the next chunk needs.
``cache=None`` means a single full pass (training); a fresh ``{}`` starts a new stream. Feeding a video
chunk by chunk through one cache gives the same output as one full pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Cache = dict  # {layer: tensor of trailing frames, or True for "first chunk done"}


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, T, H, W, C): a view when x is channels-last already (our usual layout)."""
    return x.permute(0, 2, 3, 4, 1)


def from_channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 4, 1, 2, 3)


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
           stride: tuple[int, int, int] = (1, 1, 1)) -> torch.Tensor:
    """An unpadded 3D convolution by the fastest CPU route; same arithmetic, so results agree to rounding.

    A 1x1x1 kernel is a matrix product over channels (oneDNN runs those at a few GFLOP/s). PyTorch sends
    the other batch-1 convolutions with few channels or frames (most of ours when streaming) to its im2col
    kernel, 2-5x slower than oneDNN, so the CPU calls oneDNN directly; under autograd through _OneDNNConv3d,
    whose backward picks the faster weight-gradient route.
    """
    if weight.shape[2:] == (1, 1, 1) and tuple(stride) == (1, 1, 1):
        # On a contiguous (B, T, H, W, C) view F.linear is one matrix product with the bias fused; on any other
        # layout it adds the bias in a separate broadcast pass (in bf16, 20x the time of the product).
        if not torch.jit.is_tracing():  # ONNX has no memory formats
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return from_channels_last(F.linear(to_channels_last(x), weight.flatten(1), bias))
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    if (x.device.type == "cpu" and dtype in (torch.float32, torch.bfloat16) and torch.backends.mkldnn.is_available()
            and not torch.jit.is_tracing()):  # the ONNX tracer gets the plain Conv
        # Under autocast, cast here as autocast would for F.conv3d (it does not see this route): fp32 master
        # weights, a bf16 convolution whose weight gradient autograd casts back.
        x, weight = x.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
            return _OneDNNConv3d.apply(x, weight, bias, tuple(stride))
        return _onednn_conv3d(x, weight, bias, tuple(stride))
    return F.conv3d(x, weight, bias, stride)


def _onednn_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   stride: tuple[int, int, int]) -> torch.Tensor:
    cout = weight.shape[0]
    if cout < 8:
        # oneDNN's AVX2 kernels fill 8 output channels at a time; a 3-channel output takes over twice as
        # long as an 8-channel one, so compute 8 with zero weights and keep the real ones.
        weight, bias = _eight_outputs(weight, bias)
    return torch.mkldnn_convolution(x, weight, bias, (0, 0, 0), stride, (1, 1, 1), 1)[:, :cout]


def _eight_outputs(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    pad = 8 - weight.shape[0]
    weight = torch.cat([weight, weight.new_zeros(pad, *weight.shape[1:])]).contiguous(
        memory_format=torch.channels_last_3d)
    return weight, (torch.cat([bias, bias.new_zeros(pad)]) if bias is not None else None)


def _avx2() -> bool:
    """Whether torch runs its AVX2 kernels (a CPU without AVX-512, or one capped to AVX2 by ATEN_CPU_CAPABILITY)."""
    return torch.backends.cpu.get_cpu_capability() == "AVX2"


def _weight_grad_blocked(x: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor) -> bool:
    """Whether oneDNN computes this weight gradient faster from plain (N, C, T, H, W) tensors than from our
    channels-last ones. On AVX2 its channels-last backward-weights kernel is its old direct one, while plain
    inputs get reordered into its blocked layout and the blocked kernel: at 32 channels and more, from 24 x 24
    pixels up, that took half the time even with the two extra copies (32 -> 32 channels at 48 x 48, 9 frames,
    batch 2: 121-151 ms against 57-70 ms). Narrow or small convolutions lose the copies; AVX-512 has other
    kernels and was not measured, so it keeps the direct route."""
    cout, cin = weight.shape[:2]
    return (_avx2() and cin >= 32 and cin * cout >= 32 * 32
            and grad.shape[3] * grad.shape[4] >= 24 * 24)


class _OneDNNConv3d(torch.autograd.Function):
    """_onednn_conv3d with its backward written out: oneDNN's data and weight gradients, the latter through
    plain tensors where that is faster (_weight_grad_blocked); what autograd records for
    torch.mkldnn_convolution always takes the channels-last route, 2.3x the forward's time on AVX2."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride):
        ctx.save_for_backward(x, weight)
        ctx.stride = stride
        ctx.has_bias = bias is not None
        return _onednn_conv3d(x, weight, bias, stride)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        cout = weight.shape[0]
        if cout < 8 and _avx2():  # on AVX-512 the padded data gradient took twice as long (16 -> 3, 3x7x7)
            weight = _eight_outputs(weight, None)[0]
            g = torch.cat([g, g.new_zeros(g.shape[0], 8 - cout, *g.shape[2:])], dim=1)
        g = g.contiguous(memory_format=torch.channels_last_3d)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and ctx.has_bias
        geometry = (ctx.stride, [0, 0, 0], [1, 1, 1], False, [0, 0, 0], 1)
        backward = torch.ops.aten.convolution_backward
        bias_sizes = [weight.shape[0]] if ctx.has_bias else None
        if (need_w or need_b) and _weight_grad_blocked(x, weight, g):
            grad_x = backward(g, x, weight, None, *geometry, [True, False, False])[0] if need_x else None
            _, grad_w, grad_b = backward(g.contiguous(), x.contiguous(), weight.contiguous(), bias_sizes, *geometry,
                                         [False, need_w, need_b])
            if grad_w is not None:
                grad_w = grad_w.contiguous(memory_format=torch.channels_last_3d)
        else:
            grad_x, grad_w, grad_b = backward(g, x, weight, bias_sizes, *geometry, [need_x, need_w, need_b])
        if grad_w is not None:
            grad_w = grad_w[:cout]
        if grad_b is not None:
            grad_b = grad_b[:cout]
        return grad_x, grad_w, grad_b, None


def _pad_time_space(x: torch.Tensor, front: int, ph: int, pw: int, mode: str,
                    past: torch.Tensor | None = None) -> torch.Tensor:
    """[past, x] along time, with `front` frames before and ph / pw pixels around: zeros ('constant') or edge
    values ('replicate').

    Built in one channels-last buffer: one copy of the data where torch.cat + F.pad make two, and F.pad's
    replicate kernel is slow on channels-last tensors (2.3x faster in all at 16 x 256 x 256). The ONNX tracer
    gets the plain formulation, which it turns into Concat + Pad. Under autograd the buffer is built the same
    way and its backward is written out (_PaddedBuffer): autograd's own record of the slice copies made
    zero-filled full-size gradients for each of them, 30% of a training step in copies and fills.
    """
    if torch.jit.is_tracing():
        x = x if past is None else torch.cat([past, x], dim=2)
        return x if front == ph == pw == 0 else F.pad(x, (pw, pw, ph, ph, front, 0), mode=mode)
    if past is None and front == ph == pw == 0:
        return x
    if torch.is_grad_enabled() and (x.requires_grad or (past is not None and past.requires_grad)):
        return _PaddedBuffer.apply(x, past, front, ph, pw, mode)
    return _build_padded(x, front, ph, pw, mode, past)


class _PaddedBuffer(torch.autograd.Function):
    """_build_padded with its adjoint: the gradient of the body, plus, for 'replicate', the gradient of every
    copied border summed onto the edge it was copied from.

    Replicate padding is separable, so its adjoint folds one axis at a time, in place on the padded gradient:
    W's borders onto the edge columns over every row and frame, then H's onto the edge rows over every frame
    (corners included, since W's fold reached them), then the front frames onto the first: an add per padded
    slice, then one copy of the body, a contiguous channels-last tensor as the layers below want it. Folding
    each border slice out of place took 20-35 operations per convolution: 90 ms of a cdt-tiny training step
    (2 x 9 x 96 x 96, 2 threads, fp32 or bf16, profiled), against 30 now.
    """

    @staticmethod
    def forward(ctx, x, past, front, ph, pw, mode):
        ctx.geometry = (front, ph, pw, mode, 0 if past is None else past.shape[2], x.shape[3], x.shape[4])
        ctx.past_needs_grad = past is not None and past.requires_grad
        return _build_padded(x, front, ph, pw, mode, past)

    @staticmethod
    def backward(ctx, g):
        front, ph, pw, mode, held, h, w = ctx.geometry
        if mode == "replicate":
            # the padded buffer's one reader is its convolution, whose data gradient arrives here fresh and
            # is read by no other node: it is folded in place (a view or another layout is copied first)
            if g._base is not None or not g.is_contiguous(memory_format=torch.channels_last_3d):
                g = g.clone(memory_format=torch.channels_last_3d)
            _fold_borders(g, 4, pw, w)
            _fold_borders(g[..., pw : pw + w], 3, ph, h)
            _fold_borders(g[:, :, :, ph : ph + h, pw : pw + w], 2, front, 0)
            body = g[:, :, front:, ph : ph + h, pw : pw + w].clone(memory_format=torch.channels_last_3d)
        else:
            body = g[:, :, front:, ph : ph + h, pw : pw + w]
        grad_past = body[:, :, :held] if ctx.past_needs_grad else None
        return body[:, :, held:], grad_past, None, None, None, None


def _fold_borders(g: torch.Tensor, dim: int, pad: int, n: int) -> None:
    """In place: add the `pad` values before the body along `dim` onto its first value, and, when n > 0 (a body of
    n values with `pad` after it too), the `pad` values after it onto its last: the adjoint of replicate padding
    along that axis, left in the body's slots. One add per padded slice: torch's sum across a few strided slices
    took 2-5x as long (front frames at 2 x 16 x 96 x 96: 0.57 ms fp32, 1.0 bf16, against 0.1)."""
    first = g.narrow(dim, pad, 1)
    for i in range(pad):
        first.add_(g.narrow(dim, i, 1))
    if n:
        last = g.narrow(dim, pad + n - 1, 1)
        for i in range(pad):
            last.add_(g.narrow(dim, pad + n + i, 1))


def _build_padded(x: torch.Tensor, front: int, ph: int, pw: int, mode: str,
                  past: torch.Tensor | None) -> torch.Tensor:
    b, c, t, h, w = x.shape
    held = 0 if past is None else past.shape[2]
    out = torch.empty(b, c, front + held + t, h + 2 * ph, w + 2 * pw, dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last_3d)
    body = out[:, :, front:, ph : ph + h, pw : pw + w]
    if past is not None:
        body[:, :, :held].copy_(past)
    body[:, :, held:].copy_(x)
    rows, frames = out[:, :, front:, ph : ph + h], out[:, :, front:]
    if mode == "constant":
        for border in (rows[..., :pw], rows[..., pw + w :], frames[:, :, :, :ph], frames[:, :, :, ph + h :],
                       out[:, :, :front]):
            border.zero_()
    else:  # edges along W, then along H (corners included), then the first frame backwards in time
        rows[..., :pw].copy_(rows[..., pw : pw + 1])
        rows[..., pw + w :].copy_(rows[..., pw + w - 1 : pw + w])
        frames[:, :, :, :ph].copy_(frames[:, :, :, ph : ph + 1])
        frames[:, :, :, ph + h :].copy_(frames[:, :, :, ph + h - 1 : ph + h])
        out[:, :, :front].copy_(out[:, :, front : front + 1])
    return out


class CausalConv3d(nn.Conv3d):
    """Conv3d that pads only the past in time (kt - 1 frames) and symmetrically in space.

    Streaming: keeps the last kt - 1 unpadded input frames; the next chunk sees them in place of padding.
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int], stride=(1, 1, 1), pad_mode="constant",
                 bias: bool = True):
        super().__init__(cin, cout, kernel, stride=stride, bias=bias)
        kt, kh, kw = kernel
        self.time_context = kt - 1
        self.space_pad = ((kh - 1) // 2, (kw - 1) // 2)
        self.pad_mode = pad_mode

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        keeps_frames = cache is not None and self.time_context > 0
        past = cache.get(self) if keeps_frames else None
        front = self.time_context - (0 if past is None else past.shape[2])
        padded = _pad_time_space(x, front, *self.space_pad, self.pad_mode, past)
        if keeps_frames:
            ph, pw = self.space_pad
            seen = padded[:, :, front:, ph : padded.shape[3] - ph, pw : padded.shape[4] - pw]
            cache[self] = seen[:, :, -self.time_context :].detach().clone()
        return conv3d(padded, self.weight, self.bias, self.stride)


class ChannelNorm(nn.Module):
    """LayerNorm over channels at every (t, h, w): biased variance, eps inside the root (as the official code)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, dim, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return from_channels_last(self.channels_last(x))

    def channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """The norm as a (B, T, H, W, C) tensor: layer_norm over a channels-last view is one fused pass, and
        its channels-last output is the layout the convolutions prefer, so the whole network settles into it."""
        x, g, b = to_channels_last(x), self.g.flatten(), self.b.flatten()
        if x.dtype == torch.bfloat16 and torch.is_grad_enabled() and not torch.jit.is_tracing():
            return _BFloat16LayerNorm.apply(x, g, b, self.eps)
        return F.layer_norm(x, b.shape, g, b, self.eps)


class _BFloat16LayerNorm(torch.autograd.Function):
    """F.layer_norm of a bf16 tensor with fp32 weights, its backward taken by the fp32 kernel on upcast copies.

    torch's bf16 backward kernel (2.13, CPU) gets the gain and bias gradients wrong by 10-30% of their size over
    our 10^4-10^5 rows (its sums lose precision). Its input gradient beside the fp32 kernel for the weights'
    gradients is also slower than the fp32 kernel for all three with the casts: 2.6-4.0 against 2.1-3.5 ms at
    2 x 9 x 96 x 96 x 16 on 2 threads (the bf16 kernel at times 7-9 ms), 15-20% more at the step's smaller
    norms. The forward keeps the bf16 kernel.
    """

    @staticmethod
    def forward(ctx, x, g, b, eps):
        x = x.contiguous()
        y, mean, rstd = torch.native_layer_norm(x, b.shape, g, b, eps)
        ctx.save_for_backward(x, g, b, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, g, b, mean, rstd = ctx.saved_tensors
        needs = list(ctx.needs_input_grad[:3])
        dx, dg, db = torch.ops.aten.native_layer_norm_backward(  # bf16 weights give bf16 statistics: all cast
            dy.float(), x.float(), b.shape, mean.float(), rstd.float(), g.float(), b.float(), needs)
        return (None if dx is None else dx.to(x.dtype), None if dg is None else dg.to(g.dtype),
                None if db is None else db.to(b.dtype), None)


class Block(nn.Module):
    """Causal conv (3x7x7 if large else 3x3x3) -> ChannelNorm -> ReLU."""

    def __init__(self, cin: int, cout: int, large: bool, pad_mode: str):
        super().__init__()
        self.conv = CausalConv3d(cin, cout, (3, 7, 7) if large else (3, 3, 3), pad_mode=pad_mode)
        self.norm = ChannelNorm(cout)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        return from_channels_last(self.norm.channels_last(self.conv(x, cache)).relu_())


def _joined(c: int, rows: int) -> int:
    """How many consecutive rows of c values to join into one of 64 or more, for a broadcast or a reduction over
    rows: torch's bf16 kernels run one whose innermost run is shorter than a vector (32 values) element by element
    (a per-channel add at 2 x 9 x 96 x 96 x 16, 2 threads: 3.0 ms, joined 0.4; fp32 0.5 and 0.2). `rows`, the rows
    in each group, must divide evenly; 1 where they do not."""
    join = max(1, 64 // c)
    return join if rows % join == 0 else 1


def _add_per_channel(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x (B, C, T, H, W) + bias (B, C), along the channels-last view: a (B, C, 1, 1, 1) operand made the sum a
    strided pass in the plain layout, 10x slower, then copied back by the next convolution."""
    b, c, t, h, w = x.shape
    rows = to_channels_last(x)
    join = _joined(c, t * h * w)
    out = rows.reshape(b, -1, join * c) + bias.repeat(1, join)[:, None]
    return from_channels_last(out.view(rows.shape))


class ResnetBlock(nn.Module):
    """Block1 (+ per-channel time bias) -> Block2, plus a 1x1x1 residual projection when widths differ."""

    def __init__(self, cin: int, cout: int, pad_mode: str, time_dim: int | None = None, large: bool = False):
        super().__init__()
        self.time_proj = nn.Linear(time_dim, cout) if time_dim else None
        self.block1 = Block(cin, cout, large, pad_mode)
        self.block2 = Block(cout, cout, False, pad_mode)
        self.res_conv = CausalConv3d(cin, cout, (1, 1, 1)) if cin != cout else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None, cache: Cache | None = None) -> torch.Tensor:
        h = self.block1(x, cache)
        if self.time_proj is not None:
            h = _add_per_channel(h, self.time_proj(F.leaky_relu(temb, 0.2)))
        h = self.block2(h, cache)
        return h + (self.res_conv(x) if self.res_conv is not None else x)


class AttentionBlock(nn.Module):
    """Residual(PreNorm(linear attention)), one head, computed per frame (frames never interact)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim**-0.5
        self.norm = ChannelNorm(dim)
        self.to_qkv = CausalConv3d(dim, dim * 3, (1, 1, 1), bias=False)
        self.to_out = CausalConv3d(dim, dim, (1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The per-pixel passes are the cost at full resolution, so everything that can move onto the (C, C)
        # context does: the scale, to_out and its bias (q's rows sum to 1, so q @ (M + bias) = q @ M + bias),
        # k's softmax denominator; the residual rides in the last matrix product. 1.2-1.5x the plain form.
        b, c, t, h, w = x.shape
        tokens = to_channels_last(self.norm(x)).reshape(b * t, h * w, c)  # one row per pixel, frame by frame
        w_q, w_k, w_v = self.to_qkv.weight.flatten(1).split(c)
        # over channels, at each pixel; in fp32, since torch's bf16 softmax over a short last dimension runs its
        # backward at a ninth of the fp32 rate (16 ms of a 1.1 s bf16 training step on 2 threads)
        q = F.linear(tokens, w_q).float().softmax(dim=-1).to(tokens.dtype)
        k = F.linear(tokens, w_k)  # softmax over pixels, normalised below; on joined rows (_joined)
        join = _joined(c, h * w)
        k_rows = k.view(b * t, -1, join * c)
        peak = k_rows.amax(dim=1).view(b * t, join, c).amax(dim=1, keepdim=True).detach()
        e = (k_rows - peak.repeat(1, 1, join)).exp_().view(k.shape)
        context = (e.transpose(1, 2) @ F.linear(tokens, w_v)) / e.sum(dim=1).unsqueeze(-1)  # (BT, C, C)
        mix = (context @ self.to_out.weight.flatten(1).t()) * self.scale + self.to_out.bias
        out = torch.baddbmm(to_channels_last(x).reshape(b * t, h * w, c), q, mix)
        return from_channels_last(out.reshape(b, t, h, w, c))


class Downsample(nn.Module):
    """Halve H and W: a (1,3,3) conv with stride (1,2,2); H_out = ceil(H / 2)."""

    def __init__(self, dim: int, pad_mode: str):
        super().__init__()
        self.conv = CausalConv3d(dim, dim, (1, 3, 3), stride=(1, 2, 2), pad_mode=pad_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class NearestUpsample(nn.Module):
    """Double H and W: pixel duplication then a (1,5,5) conv (the base preset's upsampler)."""

    def __init__(self, cin: int, cout: int, pad_mode: str):
        super().__init__()
        self.conv = CausalConv3d(cin, cout, (1, 5, 5), pad_mode=pad_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest"))


class TransposedUpsample(nn.Module):
    """Double H and W with a (1,5,5) transposed conv of stride (1,2,2) (the small preset's upsampler)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.ConvTranspose3d(
            cin, cout, (1, 5, 5), stride=(1, 2, 2), padding=(0, 2, 2), output_padding=(0, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def make_upsample(cin: int, cout: int, new_upsample: bool, pad_mode: str) -> nn.Module:
    return NearestUpsample(cin, cout, pad_mode) if new_upsample else TransposedUpsample(cin, cout)


def _as_conv3d(conv: nn.Conv1d) -> torch.Tensor:
    """A temporal Conv1d's weight (Cout, Cin, k) as the (k, 1, 1) Conv3d that applies it at every pixel."""
    return conv.weight[..., None, None]


class TimeDownsample(nn.Module):
    """Halve T causally: output frame j sees input frames 2j-2, 2j-1, 2j (front pad 2; 1+2k -> 1+k).

    Streaming: keeps the last input frame; chunks after a first odd-length one must have even length.
    """

    def __init__(self, dim: int, pad_mode: str):
        super().__init__()
        self.pad_mode = pad_mode
        self.conv = nn.Conv1d(dim, dim, 3, stride=2)
        self.init_identity()

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        past = cache.get(self) if cache is not None else None
        if cache is not None:
            cache[self] = x[:, :, -1:].detach()
        if past is not None and x.shape[2] % 2:
            raise ValueError("after the first chunk, TimeDownsample needs an even number of frames per chunk")
        x = _pad_time_space(x, 2 if past is None else 0, 0, 0, self.pad_mode, past)
        return conv3d(x, _as_conv3d(self.conv), self.conv.bias, (2, 1, 1))

    def init_identity(self) -> None:
        """Start as the sum of the two newest frames in each window (the official initialisation)."""
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            idx = torch.arange(self.conv.weight.shape[0])
            self.conv.weight[idx, idx, 1] = 1.0
            self.conv.weight[idx, idx, 2] = 1.0


class TimeUpsample(nn.Module):
    """Double T: a per-pixel 1x1 conv C -> 2C whose channel 2c+p becomes channel c of frame 2t+p.

    The first chunk of a stream drops its first output frame, so 1+k frames become 1+2k. The cache only
    remembers that the first chunk has been seen; ``cache=None`` is a whole video, hence a first chunk.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim * 2, 1)
        self.init_identity()

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        first_chunk = cache is None or self not in cache
        if cache is not None:
            cache[self] = True
        y = F.linear(to_channels_last(x), self.conv.weight.flatten(1), self.conv.bias)  # (B, T, H, W, 2C)
        y = y.unflatten(-1, (c, 2)).permute(0, 1, 5, 2, 3, 4).reshape(b, 2 * t, h, w, c)
        y = from_channels_last(y)
        return y[:, :, 1:] if first_chunk else y

    def init_identity(self) -> None:
        """Start as frame duplication (the official initialisation)."""
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            idx = torch.arange(self.conv.weight.shape[1])
            self.conv.weight[2 * idx, idx, 0] = 1.0
            self.conv.weight[2 * idx + 1, idx, 0] = 1.0
