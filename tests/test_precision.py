"""bfloat16: when auto picks it, what it does to the numbers, and that every face of the tool takes --precision."""

import copy
import json

import pytest
import torch
from typer.testing import CliRunner

from cdtcodec.cli import app
from cdtcodec.model.layers import ChannelNorm, conv3d
from cdtcodec.precision import describe_cpu, fast_bf16, resolve
from cdtcodec.sampling import frame_noise
from cdtcodec.stream import StreamDecoder, StreamEncoder
from cdtcodec.weights import load_model

# Frames are in [-1, 1]. bf16 keeps 8 significant bits, so each layer's output is rounded to ~0.4% of its
# size; through cdt-tiny's ~40 layers that leaves decoded pixels within a few 8-bit levels of fp32. The bounds:
# max 0.06 (~8 levels), mean 0.01 (~1.3 levels); an error in the bf16 route (a wrong cast, a layer skipped,
# a cache in the wrong dtype) is of the order of the signal (~0.5).
MAX_ERR, MEAN_ERR = 0.06, 0.01


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("precision")


def test_auto_takes_bf16_only_where_the_cpu_has_it():
    assert resolve("auto", "cpu", flags=frozenset({"avx2", "fma", "avx512f"})) == "fp32"
    assert resolve("auto", "cpu", flags=frozenset()) == "fp32"
    assert resolve("auto", "cpu", flags=frozenset({"avx512f", "avx512_bf16"})) == "bf16"
    assert resolve("auto", "cpu", flags=frozenset({"amx_tile", "amx_bf16"})) == "bf16"
    assert not fast_bf16("cpu", flags=frozenset({"avx2"}))
    # an explicit choice is kept whatever the CPU has
    assert resolve("bf16", "cpu", flags=frozenset()) == "bf16"
    assert resolve("fp32", "cpu", flags=frozenset({"amx_bf16"})) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve("fp16", "cpu")
    assert "bf16" in describe_cpu() or "no fast bf16" in describe_cpu()


@pytest.fixture(scope="module")
def models(one_thread):
    """The shipped weights (random ones have no meaningful output scale) in fp32 and in bf16."""
    fp32 = load_model(None)[0]
    return fp32, copy.deepcopy(fp32).set_precision(torch.bfloat16)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype == torch.float32
    err = (a - b).abs()
    assert err.max() <= MAX_ERR and err.mean() <= MEAN_ERR, (err.max().item(), err.mean().item())


def test_bf16_model_runs_in_bf16_and_returns_fp32(models):
    fp32, bf16 = models
    assert fp32.dtype == torch.float32 and bf16.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    assert bf16.alphas_cumprod.dtype == torch.float32  # the schedule stays exact
    seen = []
    hook = bf16.denoiser.final_conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.no_grad():
        out = bf16.decode(torch.randn(1, 16, 1, 2, 2), frame_noise(0, 0, 1, 16, 16))
    hook.remove()
    assert seen == [torch.bfloat16] and out.dtype == torch.float32


def test_bf16_encode_and_decode_match_fp32(models):
    fp32, bf16 = models
    torch.manual_seed(1)
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        m32, m16 = fp32.moments(video), bf16.moments(video)
        z = m32[:, :16]
        noise = frame_noise(0, 0, 9, 32, 32)
        _close(fp32.decode(z, noise), bf16.decode(z, noise))
    err = (m32 - m16).abs()  # the moments: latents of std ~1.2 and log-variances, within 1% of their peak
    assert err.max() <= 0.01 * m32.abs().max() and err.mean() <= 0.01 * m32.abs().mean()


def test_bf16_streaming_equals_full_pass(models):
    _, bf16 = models
    torch.manual_seed(2)
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        full = bf16.moments(video)
        enc = StreamEncoder(bf16)
        streamed = torch.cat(enc.push(video[:, :, :1]) + enc.push(video[:, :, 1:]) + enc.finish(), dim=2)
        assert (streamed - full).abs().max() <= MAX_ERR
        z = full[:, :16]
        whole = bf16.decode(z, frame_noise(0, 0, 9, 32, 32))
        dec = StreamDecoder(bf16, seed=0)
        _close(torch.cat(dec.push(z[:, :, :1]) + dec.push(z[:, :, 1:]), dim=2), whole)


def test_conv_route_under_autocast_is_bf16_with_fp32_master_weights():
    torch.manual_seed(3)
    x = torch.randn(1, 8, 4, 10, 10).contiguous(memory_format=torch.channels_last_3d)
    w = torch.randn(16, 8, 3, 3, 3, requires_grad=True)
    b = torch.randn(16, requires_grad=True)
    reference = torch.nn.functional.conv3d(x, w, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv3d(x, w, b)
    assert y.dtype == torch.bfloat16
    assert ((y.float() - reference).abs().max() / reference.abs().max()) < 0.02
    y.float().sum().backward()
    assert w.grad.dtype == torch.float32 and b.grad.dtype == torch.float32
    assert torch.allclose(b.grad, torch.full_like(b, 8 * 8 * 2))  # each output pixel adds its bias once


@pytest.mark.parametrize("size", [(2, 5, 6), (4, 128, 128)])
def test_bf16_channel_norm_takes_its_gradients_in_fp32(size):
    """The norm's bf16 backward runs the fp32 kernel (torch's bf16 one gets the gain and bias gradients 20-40% off
    at 4 x 128 x 128): the input gradient is the exact one rounded to bf16, the weights' gradients the exact ones
    to fp32's precision; the output is torch's bf16 kernel's."""
    torch.manual_seed(0)
    norm = ChannelNorm(16)
    with torch.no_grad():
        norm.g.normal_()
        norm.b.normal_()
    x = (torch.randn(1, 16, *size) * 3 + 1).bfloat16().contiguous(memory_format=torch.channels_last_3d)
    x.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = norm.channels_last(x)
    assert "BFloat16LayerNorm" in type(y.grad_fn).__name__
    weights = torch.randn_like(y)
    y.backward(weights)

    rows = x.detach().permute(0, 2, 3, 4, 1).requires_grad_()
    g, b = norm.g.detach().flatten().requires_grad_(), norm.b.detach().flatten().requires_grad_()
    reference = torch.nn.functional.layer_norm(rows, (16,), g, b, norm.eps)  # torch's bf16 kernel
    assert torch.equal(y, reference)
    exact_rows = rows.detach().double().requires_grad_()
    exact = torch.nn.functional.layer_norm(exact_rows, (16,), g.double(), b.double(), norm.eps)
    exact_x, exact_g, exact_b = torch.autograd.grad(exact, (exact_rows, g, b), weights.double())
    fast_x = x.grad.permute(0, 2, 3, 4, 1).double()
    assert x.grad.dtype == torch.bfloat16
    assert ((fast_x - exact_x).abs() <= 2**-8 * exact_x.abs() + 1e-5 * exact_x.abs().max()).all()
    for fast, truth in ((norm.g.grad.flatten(), exact_g), (norm.b.grad.flatten(), exact_b)):
        assert fast.dtype == torch.float32
        assert (fast.double() - truth).abs().max() <= 1e-5 * truth.abs().max()


def test_bf16_channel_norm_with_bf16_weights_backpropagates():
    """A model cast to bf16 for inference (CDT.set_precision) keeps working under autograd: each position adds
    its bias once."""
    norm = ChannelNorm(16).bfloat16()
    x = torch.randn(1, 16, 2, 4, 4, dtype=torch.bfloat16, requires_grad=True)
    norm(x).sum().backward()
    assert norm.g.grad.dtype == norm.b.grad.dtype == x.grad.dtype == torch.bfloat16
    assert torch.equal(norm.b.grad.flatten(), torch.full((16,), 32.0, dtype=torch.bfloat16))


def test_cli_precision_bad_value_is_one_line(tmp_path):
    for args in (["decode", str(tmp_path / "x.cdt"), "-o", str(tmp_path / "y.mp4")],
                 ["encode", str(tmp_path / "x.mp4"), "-o", str(tmp_path / "y.cdt")], ["demo"]):
        result = CliRunner().invoke(app, args + ["--precision", "fp16"])
        assert result.exit_code != 0
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "--precision fp16" in lines[0] and "Traceback" not in result.output


def test_encode_and_decode_report_their_precision(toy, tmp_path):
    clip = tmp_path / "clip.y4m"
    with open(clip, "wb") as f:  # 5 frames of 16 x 16 gray ramps, 4:2:0
        f.write(b"YUV4MPEG2 W16 H16 F24:1 Ip A1:1 C420jpeg\n")
        for i in range(5):
            f.write(b"FRAME\n" + bytes((16 * i + j) % 256 for j in range(256)) + bytes([128]) * 128)
    runner = CliRunner()
    for precision in ("fp32", "bf16"):
        cdt = tmp_path / f"{precision}.cdt"
        enc = runner.invoke(app, ["encode", str(clip), "-o", str(cdt), "--model", str(toy), "--precision",
                                  precision, "--json", "--entropy", "range"])
        assert enc.exit_code == 0, enc.output
        assert json.loads(enc.stdout)["precision"] == precision
        dec = runner.invoke(app, ["decode", str(cdt), "-o", str(tmp_path / f"{precision}.y4m"), "--model", str(toy),
                                  "--precision", precision, "--json"])
        assert dec.exit_code == 0, dec.output
        assert json.loads(dec.stdout)["precision"] == precision
