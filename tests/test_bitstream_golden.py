"""Golden files: small committed .cdt files that must keep decoding, forever.

Their content is regenerated here from a fixed seed with integer-only arithmetic (no float
maths, no numpy distribution methods whose streams may change), and compared with what the
reader decodes. Files are named golden_v<major>.<minor>_<coder>.cdt; every one found is
checked, so files of older format versions keep being tested after a version bump. A `prior` file
has its prior weights beside it (golden_v<major>.<minor>_prior.prior.safetensors: small integer
weights, also regenerated here from the seed), so a retrained shipped prior never orphans it.
Minor 1 files add the media facts (a DISPLAY field, FRAME_TIMES records); content without them is
still written as minor 0, byte for byte the committed x.0 files.

To add the files for a new format version: bump spec.FORMAT_MINOR/FORMAT_MAJOR, then run
    CDT_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_bitstream_golden.py
Existing files are never overwritten.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bitstream import AudioPacket, AudioTrack, CdtReader, CdtWriter, Header, spec
from bitstream.prior import PriorArch, PriorWeights, load_prior, save_prior

GOLDEN_DIR = Path(__file__).parent / "data" / "golden"
#: "prior_steps": the prior with one quantizer step per channel (layout 2, the range file's sixteen steps)
CODERS = ("range", "zstd", "prior", "prior_steps")
MINORS = (0, spec.MEDIA_FACTS_MINOR)
#: minor 1 content: shown turned (FFmpeg's `rotate=90`: the display matrix of -90 degrees) with 10:11 samples, and
#: frames 2, 7 and 12 of the 30000/1001 grid dropped (ticks of 1001/30000 s: one a frame), the end included
GOLDEN_DISPLAY = dict(display_matrix=(0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30), sample_aspect_num=10,
                      sample_aspect_den=11)
GOLDEN_TIMES = (0, 1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 14)
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


def base_coder(coder: str) -> str:
    return "prior" if coder.startswith("prior") else coder


def prior_path(cdt: Path) -> Path:
    return cdt.with_name(cdt.name.removesuffix(".cdt") + ".prior.safetensors")


FIRST_PRIOR = GOLDEN_DIR / "golden_v2.0_prior.prior.safetensors"


def golden_header(coder: str, prior_sha256: str | None = None, minor: int = 0) -> Header:
    if minor:
        return replace(golden_header(coder, prior_sha256), **GOLDEN_DISPLAY)
    if coder == "prior":
        return replace(golden_header("range"), quant_step=(0.5,), entropy_coder="prior",
                       entropy_params={"prior_sha256": prior_sha256, "reset_interval": 2}).with_defaults()
    if coder == "prior_steps":  # keeps the range header's sixteen steps: layout 2
        return replace(golden_header("range"), entropy_coder="prior",
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


def write_golden(path: Path, coder: str, minor: int = 0, times=None) -> None:
    """The golden content of `coder` at `minor`; `times` (default: the content's own, on the grid for minor 0)
    go to write_frame_times a third at a time, between the chunks."""
    prior = None
    if coder.startswith("prior"):
        if FIRST_PRIOR.is_file():  # the same bytes beside every prior golden file (safetensors' own layout of
            prior_path(path).write_bytes(FIRST_PRIOR.read_bytes())  # its metadata has changed across versions)
        else:
            save_prior(golden_prior(), prior_path(path))
        prior = load_prior(prior_path(path))
    h = golden_header(coder, prior.sha256 if prior else None, minor)
    times = list(times if times is not None else GOLDEN_TIMES if minor else [])[1:]  # t_0 = 0 is implied
    packets = golden_packets()
    with CdtWriter(path, h, prior=prior) as w:
        w.set_audio_track(GOLDEN_TRACK)
        for i in range(h.num_chunks):
            w.write_chunk(golden_symbols(h, i))
            w.write_audio_packet(packets[i])
            w.write_frame_times(times[i * len(times) // 3: (i + 1) * len(times) // 3])
        for p in packets[h.num_chunks:]:
            w.write_audio_packet(p)


def current_name(coder: str, minor: int = 0) -> str:
    major, base = spec.CODER_VERSION[base_coder(coder)]  # range and zstd files stay version 1
    return f"golden_v{major}.{max(base, minor)}_{coder}.cdt"


def test_regenerate_only_on_request():
    if os.environ.get("CDT_REGENERATE_GOLDEN") != "1":
        for coder in CODERS:
            for minor in MINORS:
                assert (GOLDEN_DIR / current_name(coder, minor)).exists(), (
                    f"no golden file {current_name(coder, minor)}; create it with CDT_REGENERATE_GOLDEN=1")
        return
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for coder in CODERS:
        for minor in MINORS:
            path = GOLDEN_DIR / current_name(coder, minor)
            if not path.exists():  # golden files are never rewritten: a change of content needs a version bump
                write_golden(path, coder, minor)


def golden_files():
    return sorted(GOLDEN_DIR.glob("golden_v*_*.cdt"))


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.name)
def test_golden_file_still_decodes(path):
    m = re.fullmatch(r"golden_v(\d+)\.(\d+)_(\w+)\.cdt", path.name)
    assert m, path.name
    coder, minor = m.group(3), int(m.group(2))
    assert path.stat().st_size < 8192  # stays small
    prior = None
    if coder.startswith("prior"):
        prior = load_prior(prior_path(path))
        for key, value in golden_prior().tensors.items():
            np.testing.assert_array_equal(prior[key], value)
    with CdtReader(path, prior=prior) as r:
        assert r.version == (int(m.group(1)), minor)
        assert r.header == golden_header(coder, prior.sha256 if prior else None, minor)
        assert r.num_chunks == 3
        for i, got in enumerate(r.chunks()):
            np.testing.assert_array_equal(got, golden_symbols(r.header, i))
        assert r.audio_track == GOLDEN_TRACK
        assert list(r.audio_packets()) == golden_packets()
        assert r.has_frame_times == bool(minor)
        assert list(r.frame_times()) == (list(GOLDEN_TIMES) if minor else list(range(12)))  # 11 frames, 12 boundaries
        if minor:
            assert r.header.rotation == -90.0 and r.stats.frame_times_bytes == 3 * (9 + 8 + 8)  # boundaries 3, 8, 11


def test_golden_files_exist_for_both_coders():
    names = {p.name for p in golden_files()}
    for coder in CODERS:
        assert any(n.endswith(f"_{coder}.cdt") for n in names)


def test_reencoding_golden_content_roundtrips(tmp_path):
    for coder in CODERS:
        write_golden(tmp_path / f"{coder}.cdt", coder)
        prior = prior_path(tmp_path / f"{coder}.cdt") if coder.startswith("prior") else None
        with CdtReader(tmp_path / f"{coder}.cdt", prior=prior) as r:
            for i, got in enumerate(r.chunks()):
                np.testing.assert_array_equal(got, golden_symbols(r.header, i))


@pytest.mark.parametrize("coder", CODERS)
def test_content_without_media_facts_is_written_as_before(tmp_path, coder):
    """Frame times on the grid and an unturned display write nothing: the bytes are those of the committed x.0
    golden file, written before frame times existed; off-grid times make the same content x.1."""
    committed = GOLDEN_DIR / current_name(coder, 0)
    write_golden(tmp_path / "uniform.cdt", coder, 0, times=range(12))
    assert (tmp_path / "uniform.cdt").read_bytes() == committed.read_bytes()
    write_golden(tmp_path / "vfr.cdt", coder, 0, times=GOLDEN_TIMES)
    data = (tmp_path / "vfr.cdt").read_bytes()
    assert data[8:12] == spec.PREAMBLE.pack(spec.MAGIC, spec.CODER_VERSION[base_coder(coder)][0], 1, 0)[8:12]
    assert len(data) == len(committed.read_bytes()) + 3 * (9 + 8 + 8)
