"""Version-2 files (coder `prior`) through CdtWriter / CdtReader: chunks conditioned on the chunks before them,
context resets, random access, damage, salvage, and the header rules of the coder."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest

from bitstream import CdtReader, CdtWriter, CorruptRecord, InconsistentHeader, UnsupportedFeature, fuzz, spec
from bitstream.header import encode_header
from bitstream.prior import PriorWeights


def _file(reset_interval=3, latent_frames=8, seed=0):
    prior = fuzz.sample_prior()
    h = fuzz.sample_header("prior", latent_frames=latent_frames, coded_frames=1 + 4 * (latent_frames - 1),
                           num_frames=1 + 4 * (latent_frames - 1),
                           entropy_params={"prior_sha256": prior.sha256, "reset_interval": reset_interval})
    rng = np.random.default_rng(seed)
    base = np.round(rng.laplace(0, 3, size=(16, 1, 5, 7)))
    chunks = [np.round(base + rng.laplace(0, 1, size=h.chunk_shape(i))).astype(np.int64) for i in range(h.num_chunks)]
    buf = io.BytesIO()
    with CdtWriter(buf, h, prior=prior) as w:
        for c in chunks:
            w.write_chunk(c)
    return buf.getvalue(), chunks


def test_round_trip_in_order_and_at_random():
    data, chunks = _file()
    assert struct.unpack_from("<HH", data, 8) == (2, 0)
    with CdtReader(io.BytesIO(data), prior=fuzz.sample_prior()) as r:
        assert r.header.entropy_coder == "prior"
        for i, got in enumerate(r.chunks()):
            np.testing.assert_array_equal(got, chunks[i])
        for i in (5, 1, 7, 7, 0, 4, 6, 2):  # out of order: decodes from the last reset before i
            np.testing.assert_array_equal(r.read_chunk(i), chunks[i])


def test_reset_flags_follow_the_interval():
    for interval, resets in ((3, {0, 3, 6}), (0, {0}), (1, set(range(8)))):
        data, chunks = _file(reset_interval=interval)
        with CdtReader(io.BytesIO(data), prior=fuzz.sample_prior()) as r:
            flags = {i for i in range(r.num_chunks) if r.chunk_payload(i)[0] & spec.PRIOR_FLAG_RESET}
            assert flags == resets
            np.testing.assert_array_equal(r.read_chunk(7), chunks[7])


def _damage_chunk(data: bytes, i: int) -> bytes:
    """Flip a bit in chunk i's range words and fix its CRC: the record reads, its symbols are wrong or refused."""
    lay = fuzz.layout(data)
    off, rtype, length = [r for r in lay.records if r[1] == spec.RecordType.CHUNK][i]
    b = bytearray(data)
    b[off + 5 + 8 + 1 + 4 + 2] ^= 0x10  # prefix (8), flags (1), word count (4), into the first word
    struct.pack_into("<I", b, off + 5 + length, zlib.crc32(bytes(b[off:off + 5 + length])))
    return bytes(b)


def test_a_damaged_chunk_breaks_the_chunks_up_to_the_next_reset_only():
    data, chunks = _file(reset_interval=3)
    bad = bytearray(data)
    off = [r for r in fuzz.layout(data).records if r[1] == spec.RecordType.CHUNK][4][0]
    bad[off + 20] ^= 0xFF  # CRC no longer matches: chunk 4 is unreadable
    with CdtReader(io.BytesIO(bytes(bad)), prior=fuzz.sample_prior()) as r:
        for i in (0, 1, 2, 3, 6, 7):
            np.testing.assert_array_equal(r.read_chunk(i), chunks[i])
        with pytest.raises(Exception, match="chunk 4: checksum mismatch"):
            r.read_chunk(4)
        with pytest.raises(CorruptRecord, match="chunk 5: not decodable: it is conditioned on chunk 4"):
            r.read_chunk(5)
        np.testing.assert_array_equal(r.read_chunk(6), chunks[6])  # the next reset decodes again
    # damage that passes the CRC: chunk 4 decodes to other symbols or is refused, never a crash
    with CdtReader(io.BytesIO(_damage_chunk(data, 4)), prior=fuzz.sample_prior()) as r:
        try:
            assert not np.array_equal(r.read_chunk(4), chunks[4])
        except CorruptRecord:
            pass
        np.testing.assert_array_equal(r.read_chunk(6), chunks[6])


def test_salvage_serves_the_leading_chunks_of_a_truncated_file():
    data, chunks = _file(reset_interval=3)
    lay = fuzz.layout(data)
    cut = [r for r in lay.records if r[1] == spec.RecordType.CHUNK][6][0] + 7  # inside chunk 6
    with CdtReader(io.BytesIO(data[:cut]), salvage=True, prior=fuzz.sample_prior()) as r:
        assert r.salvaged and r.num_chunks == 6
        for i in range(6):
            np.testing.assert_array_equal(r.read_chunk(i), chunks[i])


def test_prior_weights_are_required_and_checked():
    data, _ = _file()
    with CdtReader(io.BytesIO(data)) as r:  # header, index and stats need no prior
        assert r.stats.file_bytes == len(data) and r.num_chunks == 8
        with pytest.raises(UnsupportedFeature, match="no prior weights were given"):
            r.read_chunk(0)
    other = fuzz.sample_prior()
    other = PriorWeights(other.arch, other.tensors, sha256="0" * 64)
    with CdtReader(io.BytesIO(data), prior=other) as r:
        with pytest.raises(UnsupportedFeature, match="sha256"):
            r.read_chunk(0)
    with pytest.raises(UnsupportedFeature):
        CdtWriter(io.BytesIO(), fuzz.sample_header("prior"))


def test_header_rules_of_the_prior_coder():
    h = fuzz.sample_header("prior")
    assert encode_header(h)[8:12] == struct.pack("<HH", 2, 0)
    assert encode_header(fuzz.sample_header("range"))[8:12] == struct.pack("<HH", 1, 0)
    for bad in ({"quant_step": (0.5,) * 8}, {"quant_step": (1e-5,)}, {"quant_step": (1e5,)},
                {"quant_step": (0.5,) * 15 + (1e5,)},
                {"entropy_params": {"prior_sha256": "xyz", "reset_interval": 2}},
                {"entropy_params": {**h.entropy_params, "layout": 2}},  # layout 2 with one step
                {"quant_step": (0.5,) * 16, "entropy_params": {**h.entropy_params, "layout": 1}}):
        with pytest.raises(InconsistentHeader):
            encode_header(replace(h, **bad))
    # sixteen steps: layout 2 (per-channel steps), still version 2.0
    assert encode_header(replace(h, quant_step=(0.5,) * 16))[8:12] == struct.pack("<HH", 2, 0)
    with pytest.raises(UnsupportedFeature):
        encode_header(replace(h, entropy_params={**h.entropy_params, "layout": 3}))
    # a version-1 preamble around prior parameters is refused
    b = bytearray(encode_header(h))
    struct.pack_into("<H", b, 8, 1)
    struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[:-4])))
    with pytest.raises(InconsistentHeader, match="coder prior in a version 1.0 file"):
        CdtReader(io.BytesIO(bytes(b) + b"\0" * 64))
