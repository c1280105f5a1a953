"""Header: byte round trip, validation, forward compatibility, refusal of bad files."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitstream import (
    BadMagic,
    ChecksumMismatch,
    Header,
    InconsistentHeader,
    LimitExceeded,
    Truncated,
    UnsupportedFeature,
    UnsupportedVersion,
    spec,
)
from bitstream.fuzz import sample_header
from bitstream.header import encode_header, read_header


def roundtrip(h: Header, extra=()) -> Header:
    b = encode_header(h, extra)
    out, n = read_header(io.BytesIO(b), len(b))
    assert n == len(b)
    return out


def test_header_roundtrip_fills_coder_defaults():
    h = sample_header()
    out = roundtrip(h)
    assert out == h.with_defaults()
    assert out.entropy_params == {"model": 1, "precision": 24}
    z = roundtrip(sample_header("zstd", entropy_params={"level": 5}))
    assert z.entropy_coder == "zstd" and z.entropy_params == {"level": 5}


ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@settings(max_examples=60, deadline=None)
@given(w=st.integers(1, 4000), hgt=st.integers(1, 4000), lat_f=st.integers(1, 500),
       k=st.integers(1, 16), c=st.integers(1, 64),
       fps=st.tuples(st.integers(1, 2 ** 32 - 1), st.integers(1, 2 ** 32 - 1)),
       seed=st.integers(0, 2 ** 64 - 1), steps=st.integers(0, spec.MAX_SAMPLING_STEPS),
       strs=st.lists(ascii_text, min_size=5, max_size=5),
       model=ascii_text.filter(bool), global_q=st.booleans(), coder=st.sampled_from(["zstd", "range"]),
       ext=st.dictionaries(ascii_text.filter(bool), st.binary(max_size=50), max_size=3))
def test_header_roundtrip_property(w, hgt, lat_f, k, c, fps, seed, steps, strs, model, global_q, coder, ext):
    cw, ch = -(-w // 8) * 8, -(-hgt // 8) * 8
    cf = 1 + 4 * (lat_f - 1)
    qs = (0.37,) if global_q else tuple(0.1 + i / 7 for i in range(c))
    h = Header(model_id=model, weights_hash=bytes(32), width=w, height=hgt, coded_width=cw, coded_height=ch,
               num_frames=max(1, cf - 3), coded_frames=cf, fps_num=fps[0], fps_den=fps[1],
               time_base_num=1, time_base_den=90000, pix_fmt=strs[0], color_range=strs[1],
               color_space=strs[2], color_primaries=strs[3], color_trc=strs[4],
               latent_channels=c, latent_height=ch // 8, latent_width=cw // 8, latent_frames=lat_f,
               chunk_latent_frames=k, quant_step=qs, entropy_coder=coder, seed=seed, sampling_steps=steps,
               extensions=ext)
    if c * max(1, min(k, lat_f - 1)) * (ch // 8) * (cw // 8) > spec.MAX_CHUNK_SYMBOLS:
        # Rare draws pass the format's chunk-size limit: those headers are refused, not written.
        with pytest.raises(LimitExceeded, match="symbols"):
            encode_header(h)
        return
    out = roundtrip(h)
    assert out == h.with_defaults()
    assert out.num_chunks == 1 + -(-(lat_f - 1) // k)
    assert sum(out.chunk_frames(i) for i in range(out.num_chunks)) == lat_f
    assert out.chunk_frames(0) == 1


def test_chunk_layout():
    h = sample_header(latent_frames=8, coded_frames=29, num_frames=29, chunk_latent_frames=3)
    assert h.num_chunks == 4
    assert [h.chunk_frames(i) for i in range(4)] == [1, 3, 3, 1]
    assert [h.chunk_start_frame(i) for i in range(4)] == [0, 1, 4, 7]
    with pytest.raises(IndexError):
        h.chunk_frames(4)


@pytest.mark.parametrize("change, msg", [
    (dict(coded_width=60), "latent_width"),
    (dict(latent_height=4), "latent_height"),
    (dict(coded_frames=10), "coded_frames"),
    (dict(num_frames=10), "num_frames"),
    (dict(width=57), "original size"),
    (dict(quant_step=(0.5, 0.5)), "quant_step"),
    (dict(quant_step=(float("nan"),)), "quant_step"),
    (dict(quant_step=(-1.0,)), "quant_step"),
    (dict(weights_hash=b"short"), "weights_hash"),
    (dict(model_id=""), "model_id"),
    (dict(model_id="caf\u00e9"), "model_id"),
    (dict(entropy_coder="lzma"), "entropy coder"),
    (dict(entropy_params={"level": 99}), "zstd level"),
    (dict(fps_den=0), "fps_den"),
    (dict(seed=-1), "seed"),
    (dict(extensions={"k": "not bytes"}), "extension"),
])
def test_validation_names_the_problem(change, msg):
    coder = "zstd" if "entropy_params" in change else "range"
    h = replace(sample_header(coder), **change)
    with pytest.raises(InconsistentHeader, match=msg):
        encode_header(h)


def test_chunk_size_limit():
    h = sample_header(width=8192, height=8192, coded_width=8192, coded_height=8192,
                      latent_height=1024, latent_width=1024, latent_channels=256)
    with pytest.raises(LimitExceeded):
        encode_header(h)


def test_unknown_optional_field_is_skipped_unknown_required_refused():
    h = sample_header()
    assert roundtrip(h, extra=[(999, False, b"future stuff")]) == h.with_defaults()
    with pytest.raises(UnsupportedFeature, match="unknown required field 999"):
        roundtrip(h, extra=[(999, True, b"future stuff")])


def _damage(b: bytes, pos: int, value: bytes, fix_crc=True) -> bytes:
    b = bytearray(b)
    b[pos:pos + len(value)] = value
    if fix_crc:
        flen = struct.unpack_from("<I", b, 12)[0]
        struct.pack_into("<I", b, 16 + flen, zlib.crc32(bytes(b[:16 + flen])))
    return bytes(b)


def test_refusals_are_typed_and_one_line():
    b = encode_header(sample_header())
    cases = [
        (b"RIFF" + b[4:], BadMagic, "bad magic"),
        (b"", BadMagic, None),
        (b[:5], Truncated, None),
        (b[:20], Truncated, None),
        (b[:-1], Truncated, None),
        (_damage(b, 8, struct.pack("<H", 3)), UnsupportedVersion, "version 3.0"),
        (_damage(b, 8, struct.pack("<H", 2)), InconsistentHeader, "coder range in a version 2.0 file"),
        (_damage(b, 12, struct.pack("<I", 1 << 30), fix_crc=False), LimitExceeded, None),
        (_damage(b, 40, b"\xff", fix_crc=False), ChecksumMismatch, "header: checksum mismatch"),
    ]
    for data, err, msg in cases:
        with pytest.raises(err) as ei:
            read_header(io.BytesIO(data), len(data))
        assert "\n" not in str(ei.value)
        if msg:
            assert msg in str(ei.value)


def test_newer_minor_version_is_read():
    b = _damage(encode_header(sample_header()), 10, struct.pack("<H", 7))
    h, _ = read_header(io.BytesIO(b), len(b))
    assert h == sample_header().with_defaults()


def test_missing_or_duplicate_required_field():
    h = sample_header()
    with pytest.raises(InconsistentHeader, match="twice"):
        roundtrip(h, extra=[(spec.Tag.SAMPLING, True, spec.SAMPLING.pack(1, 1))])
    # drop the SAMPLING field by hand
    b = encode_header(h)
    flen = struct.unpack_from("<I", b, 12)[0]
    body = b[16:16 + flen]
    pos, kept = 0, b""
    while pos < len(body):
        tag, flags, ln = spec.FIELD_HEAD.unpack_from(body, pos)
        if tag != spec.Tag.SAMPLING:
            kept += body[pos:pos + 7 + ln]
        pos += 7 + ln
    pre = spec.PREAMBLE.pack(spec.MAGIC, 1, 0, len(kept))
    data = pre + kept + struct.pack("<I", zlib.crc32(pre + kept))
    with pytest.raises(InconsistentHeader, match="missing required field"):
        read_header(io.BytesIO(data), len(data))


def test_bitstream_never_imports_torch():
    root = Path(__file__).resolve().parents[1]
    code = ("import sys, bitstream, bitstream.fuzz, bitstream.entropy, bitstream.reader, bitstream.writer; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
    for p in (root / "bitstream").glob("*.py"):
        assert "import torch" not in p.read_text() and "from torch" not in p.read_text(), p


def test_header_accepts_numpy_ints_and_none_strings_and_hashes():
    import numpy as np

    h = replace(sample_header(), width=np.int64(50), latent_frames=np.int32(3), pix_fmt=None)
    assert type(h.width) is int and h.pix_fmt == ""
    out = roundtrip(h)
    assert out == h.with_defaults()
    assert hash(out) == hash(h.with_defaults())
    assert len({out, h.with_defaults()}) == 1


def test_sampling_steps_limit():
    """Each sampling step is a network pass with its own cache: a header may not ask for more than 1,000."""
    encode_header(sample_header(sampling_steps=spec.MAX_SAMPLING_STEPS))
    with pytest.raises(InconsistentHeader, match="sampling_steps"):
        encode_header(sample_header(sampling_steps=spec.MAX_SAMPLING_STEPS + 1))


# ---- per-channel quantizer steps with the prior (layout 2) -------------------------------------------------
GAINS = tuple(0.5 * 2 ** ((i - 7.5) / 8) for i in range(16))  # 16 different steps around 0.5


def test_per_channel_prior_steps_round_trip_as_layout_2():
    h = sample_header("prior", quant_step=GAINS)
    assert h.full_entropy_params()["layout"] == spec.PRIOR_LAYOUT_PER_CHANNEL
    out = roundtrip(h)
    assert out == h.with_defaults() and out.quant_step == GAINS  # f64: exact
    one = sample_header("prior")  # one step: layout 1, the bytes of every earlier prior file
    assert one.full_entropy_params()["layout"] == spec.PRIOR_LAYOUT_V1 == roundtrip(one).entropy_params["layout"]
    layout_byte = encode_header(h).index(bytes.fromhex(h.entropy_params["prior_sha256"])) - 2
    assert encode_header(h)[layout_byte] == 2 and encode_header(one)[encode_header(one).index(
        bytes.fromhex(one.entropy_params["prior_sha256"])) - 2] == 1


@pytest.mark.parametrize("change, msg", [
    (dict(quant_step=GAINS, entropy_params={"layout": 1}), "layout 1 needs one global quantizer step"),
    (dict(quant_step=(0.5,), entropy_params={"layout": 2}), "layout 2 needs one quantizer step per channel"),
    (dict(quant_step=GAINS[:15] + (2.0 ** -13,)), r"step .* \(channel 15\) outside the prior's"),
    (dict(quant_step=(5000.0,) + GAINS[1:]), r"\(channel 0\) outside"),
    (dict(quant_step=GAINS[:8]), "quant_step has 8 entries"),
])
def test_malformed_per_channel_prior_steps_are_refused(change, msg):
    h = sample_header("prior")
    params = {**h.entropy_params, **change.pop("entropy_params", {})}
    with pytest.raises(InconsistentHeader, match=msg):
        encode_header(replace(h, entropy_params=params, **change))


def test_layout_2_in_a_layout_1_header_is_refused_when_read():
    """Bytes with 16 steps but layout byte 1 (or an unknown layout 3) are refused by the parser, one line."""
    good = encode_header(sample_header("prior", quant_step=GAINS))
    at = good.index(bytes.fromhex(sample_header("prior").entropy_params["prior_sha256"])) - 2
    with pytest.raises(InconsistentHeader, match="layout 1 needs one global quantizer step"):
        _read(_damage(good, at, b"\x01"))
    with pytest.raises(UnsupportedFeature, match="unknown prior layout id 3") as e:
        _read(_damage(good, at, b"\x03"))
    assert "\n" not in str(e.value)


def test_an_earlier_reader_refuses_layout_2(monkeypatch):
    """A reader that knows only layout 1 (as every reader before per-channel steps) refuses a layout-2 file with
    UnsupportedFeature, not a misread: the layout id is the field it checks."""
    data = encode_header(sample_header("prior", quant_step=GAINS))
    monkeypatch.setattr(spec, "PRIOR_LAYOUTS", (spec.PRIOR_LAYOUT_V1,))
    with pytest.raises(UnsupportedFeature, match="unknown prior layout id 2"):
        _read(data)
    _read(encode_header(sample_header("prior")))  # layout 1 still read


def _read(data: bytes):
    return read_header(io.BytesIO(data), len(data))
