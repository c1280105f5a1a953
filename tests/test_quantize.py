"""The quality scale (cdtcodec/rate/quantize.py): per-channel steps, gain vectors and their file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cdtcodec.rate.quantize import (
    DEFAULT_SCALE,
    QUALITY_STEPS,
    QualityScale,
    QualityScaleError,
    dequantize,
    load_scale,
    quantize,
    save_scale,
    scale_for,
    scale_path,
)


def _gains(c: int = 16, spread: float = 1.0, seed: int = 0) -> tuple[tuple[float, ...], ...]:
    rng = np.random.default_rng(seed)
    out = []
    for q in range(8):
        logs = rng.normal(0, spread * (8 - q) / 8, c)
        out.append(tuple(float(v) for v in np.exp(logs - logs.mean())))
    return tuple(out)


def test_default_scale_is_the_octave_scale_with_one_step():
    for q, s in QUALITY_STEPS.items():
        assert DEFAULT_SCALE.steps(q) == (s,) and DEFAULT_SCALE.steps_at(s) == (s,)
    assert DEFAULT_SCALE.gain_spread() == (1.0, 1.0)


def test_per_channel_quantize_dequantize():
    z = torch.randn(4, 2, 3, 5) * 3
    steps = (0.5, 1.0, 2.0, 4.0)
    sym = quantize(z, steps)
    for c, s in enumerate(steps):
        np.testing.assert_array_equal(sym[c], torch.round(z[c] / s).numpy().astype(np.int32))
    back = dequantize(sym, steps)
    assert back.dtype == torch.float32 and torch.equal(back[2], torch.from_numpy(sym[2]).float() * 2.0)
    assert torch.equal(dequantize(sym, (0.5,)), dequantize(sym, 0.5))
    with pytest.raises(ValueError, match="3 quantizer steps for 4 latent channels"):
        quantize(z, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="> 0"):
        quantize(z, (1.0, 0.0, 1.0, 1.0))


def test_levels_and_interpolation():
    steps = tuple(4.0 * 2 ** (-6 * i / 7) for i in range(8))
    scale = QualityScale(steps, _gains())
    for q in range(1, 9):
        assert scale.steps(q) == tuple(steps[q - 1] * g for g in scale.gains[q - 1])
        assert np.allclose(scale.gains_at(steps[q - 1]), scale.gains[q - 1])
    mid = math.sqrt(steps[2] * steps[3])  # halfway in log step: the log-gains halfway
    want = np.exp((np.log(scale.gains[2]) + np.log(scale.gains[3])) / 2)
    assert np.allclose(scale.gains_at(mid), want / math.exp(np.mean(np.log(want))))
    assert abs(np.mean(np.log(scale.steps_at(mid))) - math.log(mid)) < 1e-12  # the global step: geometric mean
    assert scale.gains_at(100.0) == scale.gains[0] and scale.gains_at(1e-4) == scale.gains[-1]


@pytest.mark.parametrize("steps, gains, msg", [
    ((1.0,) * 8, None, "must fall"),
    (tuple(2.0 ** -i for i in range(7)), None, "8 finite steps"),
    (tuple(2.0 ** -i for i in range(8)), tuple((2.0,) * 4 for _ in range(8)), "geometric mean 1"),
    (tuple(2.0 ** -i for i in range(8)), tuple((100.0, 0.01) for _ in range(8)), "gain outside"),
    (tuple(2.0 ** -i for i in range(8)), ((1.0, 1.0),) * 7 + ((1.0,),), "one length"),
])
def test_malformed_scales_are_refused(steps, gains, msg):
    with pytest.raises(QualityScaleError, match=msg):
        QualityScale(steps, gains)


def test_scale_file_round_trip_and_lookup(tmp_path):
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(b"weights")
    scale = QualityScale(tuple(4.0 * 2 ** (-i) for i in range(8)), _gains(), "ab" * 32)
    save_scale(scale, scale_path(weights), {"how": "test"})
    assert scale_path(weights).name == "m.quality.safetensors"
    back = load_scale(scale_path(weights))
    assert back.global_steps == scale.global_steps and back.gains == scale.gains
    assert scale_for(weights, "ab" * 32, 16) == (back, "")
    other, note = scale_for(weights, "cd" * 32, 16)
    assert other is DEFAULT_SCALE and "fitted for other weights" in note
    assert scale_for(weights, "ab" * 32, 8)[0] is DEFAULT_SCALE
    assert scale_for(tmp_path / "none.safetensors", "", 16) == (DEFAULT_SCALE, "")
    scale_path(weights).write_bytes(b"\x00" * 20)
    with pytest.raises(QualityScaleError, match="unreadable quality scale"):
        scale_for(weights, "ab" * 32, 16)


def test_a_level_without_gains_writes_one_step():
    gains = list(_gains())
    gains[0] = (1.0,) * 16  # quality 1 fitted without gains (alpha 0)
    scale = QualityScale(tuple(4.0 * 2 ** (-i) for i in range(8)), tuple(gains))
    assert scale.steps(1) == (4.0,) and scale.steps_at(8.0) == (8.0,)
    assert len(scale.steps(2)) == 16 and len(scale.steps_at(3.0)) == 16  # interpolated towards level 2's gains
