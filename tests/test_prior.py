"""The conditional prior coder (bitstream/prior.py) and its torch twin (cdtcodec/rate/prior_twin.py)."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bitstream import BitstreamError
from bitstream.prior import PriorArch, PriorCoder, load_prior, save_prior
from bitstream.prior_net import condition_log2_step
from bitstream.prior_tables import (
    FAMILY_GAUSS,
    FAMILY_LAPLACE,
    MEAN_OFFSETS,
    SCALES,
    frequency_table,
    log2_fixed,
    step_fixed,
    steps_fixed,
    table_ids,
    table_scale,
)
from cdtcodec.rate.prior_twin import ConditionalPrior, from_integer, rate_bits, to_integer
from cdtcodec.weights import WEIGHTS_DIR

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = WEIGHTS_DIR / "cdt-tiny.prior.safetensors"
ARCHS = [PriorArch(), PriorArch(channel_groups=4), PriorArch(prev_frames=2, channel_groups=2),
         PriorArch(checkerboard=False, family=FAMILY_LAPLACE)]


def _random_weights(arch: PriorArch, seed: int = 0):
    torch.manual_seed(seed)
    return to_integer(ConditionalPrior(arch))


def _symbols(shape, scale=3.0, seed=0):
    rng = np.random.default_rng(seed)
    return np.round(rng.standard_normal(shape) * scale).astype(np.int64)


@pytest.mark.parametrize("arch", ARCHS,
                         ids=lambda a: f"prev{a.prev_frames}-cb{int(a.checkerboard)}-g{a.channel_groups}-fam{a.family}")
def test_round_trip_with_context_and_escapes(arch):
    coder = PriorCoder(_random_weights(arch))
    x = _symbols((16, 2, 8, 12))
    x[3, 1, 2, 5] = 2**31 - 1  # far beyond any table: escapes, both signs
    x[7, 0, 0, 0] = -(2**31)
    x[0, 0, 4, 4] = 40000
    context = [_symbols((16, 8, 12), seed=s) for s in (1, 2, 3)]
    for ctx in ([], context):
        payload = coder.encode(x, 0.5, ctx)
        np.testing.assert_array_equal(coder.decode(payload, x.shape, 0.5, ctx), x)


def test_empty_and_refusals():
    coder = PriorCoder(_random_weights(PriorArch()))
    assert coder.encode(np.zeros((16, 0, 4, 4), np.int64), 0.5) == b""
    assert coder.decode(b"", (16, 0, 4, 4), 0.5).shape == (16, 0, 4, 4)
    with pytest.raises(BitstreamError):
        coder.encode(np.zeros((16, 1, 4, 4), np.int64), 1e-9)  # step outside 2^-12 .. 2^12
    with pytest.raises(ValueError):
        coder.encode(np.zeros((8, 1, 4, 4), np.int64), 0.5)


def test_garbage_raises_bitstream_error_only():
    coder = PriorCoder(_random_weights(PriorArch()))
    x = _symbols((16, 1, 6, 6))
    good = coder.encode(x, 0.5)
    rng = np.random.default_rng(0)
    for trial in range(60):
        bad = bytearray(good)
        if trial % 3 == 0:
            bad = bad[: rng.integers(0, len(bad))]
        else:
            for _ in range(1 + trial % 4):
                bad[rng.integers(0, len(bad))] ^= 1 << int(rng.integers(0, 8))
        try:
            coder.decode(bytes(bad), x.shape, 0.5)
        except BitstreamError:
            pass


def test_frequency_tables_are_valid():
    for family in (FAMILY_GAUSS, FAMILY_LAPLACE):
        for tid in range(0, SCALES * MEAN_OFFSETS, 7):
            lo, f = frequency_table(family, tid)
            assert int(f.sum()) == 1 << 24 and int(f.min()) >= 1 and lo == -(f.size // 2)
    # a centred narrow table puts nearly all mass on the centre symbol
    _, f = frequency_table(FAMILY_GAUSS, 0 * MEAN_OFFSETS + MEAN_OFFSETS // 2)
    assert f[f.size // 2] > (1 << 24) - 64


def test_fixed_point_helpers():
    for step in (2.0, 1.4142, 0.5, 0.1768, 0.013, 3.7):
        q = step_fixed(step)
        assert abs(log2_fixed(q, 8) / 256 - math.log2(q / 65536)) <= 1 / 256
    for k in range(SCALES):
        assert table_scale(k) == pytest.approx(2 ** (-4 + k / 8), rel=1e-8)
    # mean 0.3 latent units at step 0.5 is 0.6 symbols: centre 1, offset -0.4 -> -3/8 (index 1)
    centre, tid = table_ids(np.array([round(0.3 * 256)]), np.array([0]), step_fixed(0.5), 8)
    assert int(centre[0]) == 1 and int(tid[0]) % MEAN_OFFSETS == 1


@pytest.mark.parametrize("arch", [PriorArch(channel_groups=4), PriorArch(checkerboard=False)], ids=["cb-g4", "g1"])
def test_float_twin_matches_integer_net(arch):
    model = from_integer(to_integer(ConditionalPrior(arch)))  # the float twin holding exactly the integer weights
    coder = PriorCoder(to_integer(model))
    sym = _symbols((1, 16, 3, 16, 16))
    with torch.no_grad():
        mean, ls = model(torch.from_numpy(sym).float() * 0.5, torch.tensor([0.5]))
    hist = []
    for t in range(3):
        frame = sym[0, :, t]
        for _, chans, mask, im, il in coder._passes(frame, hist, step_fixed(0.5)):
            for got, want in ((im, mean[0, chans, t].numpy()[:, mask]), (il, ls[0, chans, t].numpy()[:, mask])):
                assert np.abs(got / 256 - want).max() < 4 / 256  # a few activation steps of rounding
        hist.append(frame)


def test_save_load_round_trip(tmp_path):
    w = _random_weights(PriorArch(prev_frames=2))
    sha = save_prior(w, tmp_path / "p.safetensors")
    back = load_prior(tmp_path / "p.safetensors")
    assert back.sha256 == sha and back.arch == w.arch
    for k, v in w.tensors.items():
        np.testing.assert_array_equal(back[k], v)


def test_rate_bits_is_differentiable():
    prior = ConditionalPrior(PriorArch())
    z = torch.randn(1, 16, 3, 8, 8, requires_grad=True)
    for mode in ("noise", "ste"):
        bits = rate_bits(prior, z, 0.5, mode)
        assert bits.ndim == 0 and bits.item() > 0
        bits.backward()
        assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
        z.grad = None


_CHILD = """
import hashlib, sys, numpy as np, torch
from bitstream.prior import PriorArch, PriorCoder, load_prior
from bitstream.prior_tables import frequency_table
from cdtcodec.rate.prior_twin import ConditionalPrior, to_integer
torch.manual_seed(0)
weights = load_prior(sys.argv[1]) if sys.argv[1] != "-" else to_integer(ConditionalPrior(PriorArch(channel_groups=4)))
coder = PriorCoder(weights)
rng = np.random.default_rng(0)
x = np.round(rng.standard_normal((16, 3, 32, 32)) * 4).astype(np.int64)
h = hashlib.sha256()
gains = tuple(0.5 * 2 ** ((c % 5 - 2) / 2) for c in range(16))  # per-channel steps (layout 2)
for step in (2.0, 0.5, 0.1768, gains):
    payload = coder.encode(x, step)
    assert np.array_equal(coder.decode(payload, x.shape, step), x)
    h.update(payload)
for tid in range(0, 648, 5):
    h.update(frequency_table(0, tid)[1].tobytes())
print(h.hexdigest())
"""


def test_tables_and_bytes_identical_under_thread_settings():
    weights = str(SHIPPED) if SHIPPED.is_file() else "-"
    digests = set()
    for threads in (1, 2, 3):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, "-c", _CHILD, weights], env=env, capture_output=True, text=True,
                             check=True, cwd=ROOT)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


# ---- per-channel steps (layout 2) ---------------------------------------------------------------------------
GAINS = tuple(0.5 * 2 ** ((c % 7 - 3) / 3) for c in range(16))  # 0.25 .. 1.0, geometric mean near 0.5


@pytest.mark.parametrize("arch", ARCHS[:3], ids=lambda a: f"prev{a.prev_frames}-g{a.channel_groups}")
def test_per_channel_steps_round_trip(arch):
    coder = PriorCoder(_random_weights(arch, seed=3))
    x = _symbols((16, 2, 6, 10))
    x[5, 0, 1, 1] = -(2**31)
    context = [_symbols((16, 6, 10), seed=s) for s in (4, 5)]
    for ctx in ([], context):
        payload = coder.encode(x, GAINS, ctx)
        np.testing.assert_array_equal(coder.decode(payload, x.shape, GAINS, ctx), x)
        assert payload != coder.encode(x, 0.5, ctx)  # the steps change the tables


def test_equal_per_channel_steps_code_exactly_as_one_step():
    """Layout 2 with C equal steps is layout 1: same condition, same dequantization, same tables, same bytes."""
    coder = PriorCoder(_random_weights(PriorArch(channel_groups=4), seed=1))
    x = _symbols((16, 2, 8, 8), seed=9)
    for step in (0.5, 0.1768, 3.0):
        assert coder.encode(x, (step,) * 16) == coder.encode(x, step)
    q = steps_fixed((0.5,) * 16, 16)
    assert condition_log2_step(q, 8) == log2_fixed(step_fixed(0.5), 8)


def test_condition_is_the_geometric_mean_and_channels_use_their_own_step():
    q = steps_fixed(GAINS, 16)
    geo = math.exp(np.mean(np.log(GAINS)))
    assert abs(condition_log2_step(q, 8) / 256 - math.log2(geo)) <= 2 / 256
    # a mean of one latent unit is 4 symbols at step 0.25 and 1 symbol at step 1.0
    centre, _ = table_ids(np.array([[256], [256]]), np.zeros((2, 1), np.int64),
                          np.array([[step_fixed(0.25)], [step_fixed(1.0)]]), 8)
    assert centre.ravel().tolist() == [4, 1]
    with pytest.raises(BitstreamError, match="3 quantizer steps for 16 channels"):
        steps_fixed((0.5, 0.5, 0.5), 16)
    with pytest.raises(BitstreamError, match="outside"):
        steps_fixed(GAINS[:15] + (1e-9,), 16)


def test_float_twin_matches_integer_net_with_per_channel_steps():
    arch = PriorArch(channel_groups=4)
    model = from_integer(to_integer(ConditionalPrior(arch)))
    coder = PriorCoder(to_integer(model))
    sym = _symbols((1, 16, 2, 12, 12))
    steps = torch.tensor(GAINS).view(1, 16)
    with torch.no_grad():
        mean, ls = model(torch.from_numpy(sym).float() * steps.view(1, 16, 1, 1, 1), steps)
        bits = model.bits(torch.from_numpy(sym).float(), steps)
    hist = []
    for t in range(2):
        frame = sym[0, :, t]
        for _, chans, mask, im, il in coder._passes(frame, hist, steps_fixed(GAINS, 16)):
            for got, want in ((im, mean[0, chans, t].numpy()[:, mask]), (il, ls[0, chans, t].numpy()[:, mask])):
                assert np.abs(got / 256 - want).max() < 4 / 256
        hist.append(frame)
    # the twin's estimate is the integer coder's real size within a few percent
    real = 8 * len(coder.encode(sym[0], GAINS))
    assert abs(real / float(bits.sum()) - 1) < 0.05


def test_rate_bits_takes_per_channel_steps():
    prior = ConditionalPrior(PriorArch())
    z = torch.randn(2, 16, 2, 8, 8) * 2
    one = rate_bits(prior, z, 0.5, "ste")
    assert torch.allclose(rate_bits(prior, z, torch.full((1, 16), 0.5), "ste"), one)
    coarse = torch.full((1, 16), 0.5)
    coarse[0, :8] = 2.0
    assert rate_bits(prior, z, coarse, "ste") < one  # coarser channels: fewer bits
