"""Entropy coders: exact round trips for any int32 array, the frozen model, real vs ideal rate."""

from __future__ import annotations

from decimal import Decimal, getcontext

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bitstream import DEFAULT_CODER, ENTROPY_CODERS, BitstreamError, best_coder, measure, spec
from bitstream.entropy import RangeCoder, ZstdCoder, _varint_decode, _varint_encode, model_table

CODERS = [RangeCoder(), ZstdCoder(level=3)]
I32 = st.integers(spec.SYMBOL_MIN, spec.SYMBOL_MAX)

def _roundtrip(coder, a):
    payload = coder.encode(a)
    out = coder.decode(payload, a.shape)
    assert out.dtype == np.int32
    assert out.shape == a.shape
    np.testing.assert_array_equal(out, a.astype(np.int64))
    return payload


@pytest.mark.parametrize("coder", CODERS, ids=lambda c: c.name)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_roundtrip_any_int_array(coder, data):
    dtype = data.draw(st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16]))
    info = np.iinfo(dtype)
    lo, hi = max(info.min, spec.SYMBOL_MIN), min(info.max, spec.SYMBOL_MAX)
    a = data.draw(hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=7),
                             elements=st.integers(lo, hi)))
    _roundtrip(coder, a)


@pytest.mark.parametrize("coder", CODERS, ids=lambda c: c.name)
@settings(max_examples=40, deadline=None)
@given(body=hnp.arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(1, 300)),
                       elements=st.integers(-40, 40)),
       spikes=st.lists(st.tuples(st.integers(0, 10 ** 6), I32), max_size=6))
def test_roundtrip_laplacian_like_with_extreme_escapes(coder, body, spikes):
    a = body.copy()
    for pos, v in spikes:
        a.flat[pos % a.size] = v
    _roundtrip(coder, a)


@pytest.mark.parametrize("coder", CODERS, ids=lambda c: c.name)
@pytest.mark.parametrize("a", [
    np.zeros((0,), np.int32), np.zeros((16, 0, 4, 4), np.int32), np.zeros((3, 5, 0), np.int64),
    np.array(7), np.array([-3]), np.array([[spec.SYMBOL_MAX]]), np.array([[spec.SYMBOL_MIN]]),
    np.array([spec.SYMBOL_MIN, spec.SYMBOL_MAX, 0, -1, 1] * 9),
    np.full((2, 3, 4, 5), 123456), np.full((1, 1000), -2 ** 30),
], ids=lambda a: f"shape{a.shape}")
def test_roundtrip_edge_cases(coder, a):
    payload = _roundtrip(coder, a)
    if a.size == 0:
        assert payload == b""


@pytest.mark.parametrize("coder", CODERS, ids=lambda c: c.name)
def test_rejects_non_int32_and_non_integer(coder):
    with pytest.raises(ValueError):
        coder.encode(np.array([2 ** 31]))
    with pytest.raises(ValueError):
        coder.encode(np.array([-(2 ** 31) - 1]))
    with pytest.raises(TypeError):
        coder.encode(np.array([1.0, 2.0]))
    with pytest.raises(TypeError):
        coder.encode(np.array([True, False]))


@pytest.mark.parametrize("coder", CODERS, ids=lambda c: c.name)
def test_decode_garbage_raises_bitstream_error_only(coder):
    rng = np.random.default_rng(5)
    good = coder.encode(np.round(rng.laplace(0, 4, (4, 64))).astype(np.int64))
    for trial in range(200):
        b = bytearray(good)
        for _ in range(1 + trial % 5):
            b[rng.integers(len(b))] = rng.integers(256)
        if trial % 7 == 0:
            b = b[:rng.integers(len(b))]
        try:
            out = coder.decode(bytes(b), (4, 64))
            assert out.shape == (4, 64)
        except BitstreamError:
            pass


def test_varint_roundtrip_and_strictness():
    v = np.array([0, 1, 127, 128, 300, 2 ** 31, 2 ** 33 - 1], dtype=np.int64)
    b = _varint_encode(v)
    np.testing.assert_array_equal(_varint_decode(b, v.size, "t"), v)
    with pytest.raises(BitstreamError):
        _varint_decode(b + b"\x00", v.size, "t")  # one value too many
    with pytest.raises(BitstreamError):
        _varint_decode(b"\x80\x80\x80\x80\x80\x01", 1, "t")  # longer than 5 bytes


# ----------------------------------------------------------------------------------------------
# the frozen model
# ----------------------------------------------------------------------------------------------
def test_exp2_table_matches_its_definition():
    getcontext().prec = 60
    for i, t in enumerate(spec.EXP2_Q30):
        exact = Decimal(2) ** 30 * Decimal(2) ** (Decimal(-i) / 256)
        assert t == int(exact.to_integral_value()), i


@settings(max_examples=200, deadline=None)
@given(fam=st.sampled_from([0, 1, 2]),
       mean=st.floats(-60000, 60000).map(lambda v: float(np.float16(v))),
       scale=st.floats(2.0 ** -14, 65504).map(lambda v: float(np.float16(v))))
def test_model_table_is_a_valid_distribution(fam, mean, scale):
    lo, f = model_table(fam, mean, scale)
    assert f.dtype == np.int64
    assert int(f.sum()) == 1 << spec.RANGE_PRECISION
    assert f.min() >= 1
    assert 5 <= f.size <= 2 * spec.RANGE_MAX_HALF_WIDTH + 1 and f.size % 2 == 1
    assert lo + f.size // 2 == np.floor(mean + 0.5)
    # the mode sits at the mean, up to the flat top that the 1/256 resolution of t gives
    # (unless every weight underflowed and the table fell back to uniform: scale << 1/32)
    if not (f[1:] == f[1]).all():
        mode = int(np.argmax(f))
        assert abs(lo + mode - mean) <= 1.0 + scale / 16
    else:
        assert scale < 1 / 32


def test_model_table_known_values():
    """Pinned tables: if one of these changes, old files no longer decode (bump the version)."""
    lo, f = model_table(0, 0.0, 1.0)
    assert lo == -32 and f.size == 65
    assert (int(f[31]), int(f[32]), int(f[33])) == (2796192, 5592414, 2796192)
    lo, f = model_table(1, 0.25, 2.0)
    assert lo == -12
    assert f.tolist() == [1, 1, 1, 2, 30, 437, 4527, 33208, 172262, 631859, 1638838, 3005642, 3897847,
                          3574331, 2317667, 1062655, 344524, 78983, 12804, 1468, 119, 7, 1, 1, 1]
    lo, f = model_table(2, -3.5, 0.5)
    assert lo == -515 and f.size == 1025
    assert f[511:515].tolist() == [5826868, 5826348, 1165270, 448181]


def test_model_table_rejects_bad_parameters():
    for fam, m, s in [(3, 0.0, 1.0), (0, float("nan"), 1.0), (0, 0.0, 0.0), (1, 0.0, -1.0),
                      (2, float("inf"), 1.0), (0, 0.0, float("inf"))]:
        with pytest.raises(BitstreamError):
            model_table(fam, m, s)


def test_constriction_codes_with_exactly_our_table():
    """A symbol of frequency 1 costs exactly 24 bits, one of frequency 2^23 exactly one bit: the
    coder uses our integers, not a re-quantised version of them."""
    import constriction

    f = np.ones(9, dtype=np.int64)
    f[4] = (1 << 23)
    f[0] = (1 << 24) - int(f.sum()) + 1
    model = constriction.stream.model.Categorical((f - 1).astype(np.float32), perfect=False)
    for sym, bits in [(3, 24), (4, 1)]:
        enc = constriction.stream.queue.RangeEncoder()
        enc.encode(np.full(4000, sym, dtype=np.int32), model)
        assert abs(enc.num_bits() - 4000 * bits) <= 64


# ----------------------------------------------------------------------------------------------
# real rate
# ----------------------------------------------------------------------------------------------
def laplacian_latents(seed=0, frames=1):
    rng = np.random.default_rng(seed)
    stds = np.linspace(0.5, 3.0, 16)
    lat = rng.laplace(0.0, stds[:, None, None, None] / np.sqrt(2), size=(16, frames, 32, 32))
    return np.round(lat / 0.25).astype(np.int32)


def test_range_coder_within_one_percent_of_its_model():
    m = measure(laplacian_latents(), "range")
    assert m.model_bits > 0
    assert 0 <= m.coder_gap < 0.01
    # the stored parameters are small next to the data
    assert m.side_bytes <= 16 * 4 + 4 + 4
    # the model is close to the per-channel empirical entropy (which it cannot beat by much)
    assert m.model_bits < 1.03 * m.empirical_bits


def test_range_is_the_default_because_it_is_smaller():
    sym = laplacian_latents(seed=3)
    sizes = measure(sym)
    assert set(sizes) == set(ENTROPY_CODERS) == {"zstd", "range"}
    assert sizes["range"].total_bytes < sizes["zstd"].total_bytes
    assert best_coder(sym) == DEFAULT_CODER == "range"


def test_range_model_picks_a_family_that_fits():
    rng = np.random.default_rng(2)
    gauss = np.round(rng.normal(0, 6, (1, 4096))).astype(np.int64)
    lap = np.round(rng.laplace(0, 6, (1, 4096))).astype(np.int64)
    cauchy = np.clip(np.round(rng.standard_cauchy((1, 4096)) * 3), -10 ** 6, 10 ** 6).astype(np.int64)
    for data, fam in [(gauss, spec.Family.GAUSS), (lap, spec.Family.LAPLACE), (cauchy, spec.Family.CAUCHY)]:
        _, info = RangeCoder()._encode(data)
        assert info["params"][0][0] == fam
