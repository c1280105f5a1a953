"""Golden files: small committed .cdt files that must keep decoding, forever.

Their content is regenerated here from a fixed seed with integer-only arithmetic (no float
maths, no numpy distribution methods whose streams may change), and compared with what the
reader decodes. Files are named golden_v<major>.<minor>_<coder>.cdt; every one found is
checked, so files of older format versions keep being tested after a version bump. A `prior` file
has its prior weights beside it (golden_v<major>.<minor>_prior.prior.safetensors: small integer
weights, also regenerated here from the seed), so a retrained shipped prior never orphans it.

To add the files for a new format version: bump spec.FORMAT_MINOR/FORMAT_MAJOR, then run
    CDT_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_bitstream_golden.py
Existing files are never overwritten.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import math

import numpy as np
import pytest

from bitstream import AudioPacket, AudioTrack, CdtReader, CdtWriter, Header, spec
from bitstream.prior import PriorArch, PriorWeights, load_prior, save_prior

GOLDEN_DIR = Path(__file__).parent / "data" / "golden"
CODERS = ("range", "zstd", "prior")
SEED = 20240611
PRIOR_ARCH = PriorArch(channels=16, hidden=8, channel_groups=2)


def golden_prior() -> PriorWeights:
    """Integer prior weights from PCG64 raw bits: each layer's weights uniform in +-4096/sqrt(fan-in)."""
    tensors = {}
    shapes = {f"{n}.weight": (k * k * cin, cout) for n, (k, cin, cout) in PRIOR_ARCH.layers().items()}
    shapes.update({f"{n}.bias": (cout,) for n, (k, cin, cout) in PRIOR_ARCH.layers().items()})
    shapes["trunk1.condition"] = (PRIOR_ARCH.conditions, PRIOR_ARCH.hidden)
    for n, key in enumerate(sorted(shapes)):
        size = int(np.prod(shapes[key]))
        raw = np.random.PCG64(SEED + 1000 + n).random_raw(size).astype(np.uint64)
        lim = 4096 // math.isqrt(shapes[key][0]) if key.endswith(".weight") else 1 << 14
        tensors[key] = ((raw % np.uint64(2 * lim + 1)).astype(np.int64) - lim).reshape(shapes[key])
    return PriorWeights(PRIOR_ARCH, tensors)


def prior_path(cdt: Path) -> Path:
    return cdt.with_name(cdt.name.removesuffix(".cdt") + ".prior.safetensors")


def golden_header(coder: str, prior_sha256: str | None = None) -> Header:
    if coder == "prior":
        return replace(golden_header("range"), quant_step=(0.5,), entropy_coder="prior",
                       entropy_params={"prior_sha256": prior_sha256, "reset_interval": 2}).with_defaults()
    return Header(
        model_id="cdt-golden", weights_hash=bytes((7 * i + 3) % 256 for i in range(32)),
        width=42, height=30, coded_width=48, coded_height=32, num_frames=11, coded_frames=13,
        fps_num=30000, fps_den=1001, time_base_num=1001, time_base_den=30000,
        pix_fmt="yuv420p", color_range="tv", color_space="bt709", color_primaries="bt709",
        color_trc="bt709", latent_channels=16, latent_height=4, latent_width=6, latent_frames=4,
        chunk_latent_frames=2, quant_step=tuple(0.25 + 0.125 * i for i in range(16)),
        entropy_coder=coder, seed=123456789, sampling_steps=2,
        extensions={"encoder": b"cdtcodec golden", "note": b"\x00\x01\x02"},
    ).with_defaults()


def golden_symbols(h: Header, i: int) -> np.ndarray:
    """Chunk i: peaked values from PCG64 raw bits with integer maths, per-channel widths, and
    a few int32 extremes that must go through the escape path."""
    shape = h.chunk_shape(i)
    raw = np.random.PCG64(SEED + i).random_raw(int(np.prod(shape))).astype(np.uint64)
    a = ((raw >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.int64)
    mag = (a * a) >> 27  # 0..31, peaked at 0
    chan = np.arange(shape[0]).repeat(int(np.prod(shape[1:])))
    mag = mag >> (chan % 4)
    sign = np.where((raw & np.uint64(1)).astype(bool), -1, 1)
    v = sign * mag + (chan % 3) - 1
    rare = ((raw >> np.uint64(8)) & np.uint64(0x1FF)) == 0
    v = np.where(rare & ((raw >> np.uint64(4)) & np.uint64(1)).astype(bool), spec.SYMBOL_MAX, v)
    v = np.where(rare & ~((raw >> np.uint64(4)) & np.uint64(1)).astype(bool), spec.SYMBOL_MIN, v)
    v = v.reshape(shape)
    v[0, 0, 0, 0] = spec.SYMBOL_MIN if i % 2 else spec.SYMBOL_MAX
    return v.astype(np.int32)


GOLDEN_TRACK = AudioTrack("aac", 44100, 2, "stereo", 1, 44100, 128000, b"\x12\x10")


def golden_packets():
    return [AudioPacket(bytes((i * 31 + j) % 256 for j in range(6 + i)), 1024 * i,
                        1024 * i if i % 2 else None, 1024) for i in range(5)]


def write_golden(path: Path, coder: str) -> None:
    prior = None
    if coder == "prior":
        save_prior(golden_prior(), prior_path(path))
        prior = load_prior(prior_path(path))
    h = golden_header(coder, prior.sha256 if prior else None)
    packets = golden_packets()
    with CdtWriter(path, h, prior=prior) as w:
        w.set_audio_track(GOLDEN_TRACK)
        for i in range(h.num_chunks):
            w.write_chunk(golden_symbols(h, i))
            w.write_audio_packet(packets[i])
        for p in packets[h.num_chunks:]:
            w.write_audio_packet(p)


def current_name(coder: str) -> str:
    major, minor = spec.CODER_VERSION[coder]  # range and zstd files stay version 1
    return f"golden_v{major}.{minor}_{coder}.cdt"


def test_regenerate_only_on_request():
    if os.environ.get("CDT_REGENERATE_GOLDEN") != "1":
        for coder in CODERS:
            assert (GOLDEN_DIR / current_name(coder)).exists(), (
                f"no golden file for format {spec.FORMAT_MAJOR}.{spec.FORMAT_MINOR}; "
                "create it with CDT_REGENERATE_GOLDEN=1")
        return
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for coder in CODERS:
        path = GOLDEN_DIR / current_name(coder)
        if not path.exists():  # golden files are never rewritten: a change of content needs a version bump
            write_golden(path, coder)


def golden_files():
    return sorted(GOLDEN_DIR.glob("golden_v*_*.cdt"))


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.name)
def test_golden_file_still_decodes(path):
    m = re.fullmatch(r"golden_v(\d+)\.(\d+)_(\w+)\.cdt", path.name)
    assert m, path.name
    coder = m.group(3)
    assert path.stat().st_size < 8192  # stays small
    prior = None
    if coder == "prior":
        prior = load_prior(prior_path(path))
        for key, value in golden_prior().tensors.items():
            np.testing.assert_array_equal(prior[key], value)
    with CdtReader(path, prior=prior) as r:
        assert r.header == golden_header(coder, prior.sha256 if prior else None)
        assert r.num_chunks == 3
        for i, got in enumerate(r.chunks()):
            np.testing.assert_array_equal(got, golden_symbols(r.header, i))
        assert r.audio_track == GOLDEN_TRACK
        assert list(r.audio_packets()) == golden_packets()


def test_golden_files_exist_for_both_coders():
    names = {p.name for p in golden_files()}
    for coder in CODERS:
        assert any(n.endswith(f"_{coder}.cdt") for n in names)


def test_reencoding_golden_content_roundtrips(tmp_path):
    for coder in CODERS:
        write_golden(tmp_path / f"{coder}.cdt", coder)
        prior = prior_path(tmp_path / f"{coder}.cdt") if coder == "prior" else None
        with CdtReader(tmp_path / f"{coder}.cdt", prior=prior) as r:
            for i, got in enumerate(r.chunks()):
                np.testing.assert_array_equal(got, golden_symbols(r.header, i))
