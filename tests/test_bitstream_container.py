"""Container: streaming write/read, atomic output, random access, damage detection, stats."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest

from bitstream import (
    AudioPacket,
    AudioTrack,
    BitstreamError,
    CdtReader,
    CdtWriter,
    ChecksumMismatch,
    Truncated,
    UnsupportedFeature,
    spec,
)
from bitstream.fuzz import layout, sample_file, sample_header

TRACK = AudioTrack("opus", 48000, 2, "stereo", 1, 48000, 96000, b"OpusHead\x01\x02")


def chunks_for(h, seed=0):
    rng = np.random.default_rng(seed)
    return [np.round(rng.laplace(0, 2.5, h.chunk_shape(i))).astype(np.int32) for i in range(h.num_chunks)]


@pytest.mark.parametrize("coder", ["range", "zstd"])
def test_write_read_roundtrip_with_audio(tmp_path, coder):
    h = sample_header(coder, latent_frames=6, coded_frames=21, num_frames=19, chunk_latent_frames=2)
    chunks = chunks_for(h)
    packets = [AudioPacket(bytes([i]) * (i + 1), i * 960 if i != 2 else None, i * 960, 960) for i in range(7)]
    path = tmp_path / "clip.cdt"
    with CdtWriter(path, h) as w:
        w.write_chunk(chunks[0])
        w.set_audio_track(TRACK)  # interleaved with chunks
        for i, c in enumerate(chunks[1:], 1):
            w.write_audio_packet(packets[i - 1])
            w.write_chunk(c)
        for p in packets[len(chunks) - 1:]:
            w.write_audio_packet(p)
    assert sorted(os.listdir(tmp_path)) == ["clip.cdt"]  # no temporary left behind
    with CdtReader(str(path)) as r:
        assert r.header == h.with_defaults()
        assert r.num_chunks == h.num_chunks == 4
        assert [c.shape[1] for c in r.chunks()] == [1, 2, 2, 1]
        for got, want in zip(r.chunks(), chunks):
            assert got.dtype == np.int32
            np.testing.assert_array_equal(got, want)
        # random access, in any order
        for i in (3, 0, 2, 1, 3):
            np.testing.assert_array_equal(r.read_chunk(i), chunks[i])
        assert r.audio_track == TRACK
        assert list(r.audio_packets()) == packets
        st = r.stats
        assert st.file_bytes == path.stat().st_size
        total = st.header_bytes + st.index_bytes + st.payload_bytes + st.chunk_framing_bytes + st.audio_bytes
        assert total == st.file_bytes and st.other_bytes == 0
        assert len(st.chunk_payload_bytes) == 4 and min(st.chunk_payload_bytes) > 0
        assert st.index_bytes == spec.RECORD_OVERHEAD + spec.INDEX_HEAD.size + 4 * 12 + spec.TRAILER.size


def test_file_object_in_and_out_and_no_audio():
    h = sample_header()
    chunks = chunks_for(h, 1)
    buf = io.BytesIO(b"prefix")
    buf.seek(6)
    with CdtWriter(buf, h) as w:
        for c in chunks:
            w.write_chunk(c)
    buf.seek(6)  # the .cdt may sit inside another stream
    r = CdtReader(buf)
    assert r.audio_track is None and list(r.audio_packets()) == []
    np.testing.assert_array_equal(r.read_chunk(2), chunks[2])

    class Pipe(io.RawIOBase):
        def seekable(self):
            return False

    with pytest.raises(ValueError, match="seekable") as ei:
        CdtReader(Pipe())
    assert not isinstance(ei.value, BitstreamError)


def test_exception_leaves_nothing_at_final_name(tmp_path):
    h = sample_header()
    path = tmp_path / "out.cdt"
    with pytest.raises(RuntimeError):
        with CdtWriter(path, h) as w:
            w.write_chunk(chunks_for(h)[0])
            raise RuntimeError("encoder died")
    assert os.listdir(tmp_path) == []
    # an existing file is not clobbered by a failed write
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match="only 1 of 3 chunks"):
        with CdtWriter(path, h) as w:
            w.write_chunk(chunks_for(h)[0])
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.cdt"]


def test_writer_rejects_misuse(tmp_path):
    h = sample_header()
    w = CdtWriter(tmp_path / "x.cdt", h)
    with pytest.raises(ValueError, match="shape"):
        w.write_chunk(np.zeros((16, 2, 5, 7), np.int32))
    with pytest.raises(ValueError, match="set_audio_track"):
        w.write_audio_packet(AudioPacket(b"x", 0, 0, 1))
    w.set_audio_track(TRACK)
    with pytest.raises(ValueError, match="already"):
        w.set_audio_track(TRACK)
    with pytest.raises(ValueError, match="int64"):
        w.write_audio_packet(AudioPacket(b"x", 2 ** 63, 0, 1))
    for c in chunks_for(h):
        w.write_chunk(c)
    with pytest.raises(ValueError, match="already written"):
        w.write_chunk(chunks_for(h)[0])
    w.close()
    assert CdtReader(tmp_path / "x.cdt").num_chunks == 3


def _with_byte_flipped_in_record(data: bytes, record_no: int) -> bytes:
    lay = layout(data)
    off, _, length = lay.records[record_no]
    b = bytearray(data)
    b[off + spec.RECORD_HEAD.size + length // 2] ^= 0x10
    return bytes(b)


def test_damaged_chunk_is_detected_and_named_and_others_still_read():
    data = sample_file("range", audio=False, latent_frames=5, coded_frames=17, num_frames=17)
    bad = _with_byte_flipped_in_record(data, 3)  # records: chunk 0..4, index
    r = CdtReader(io.BytesIO(bad))
    for i in (0, 1, 2, 4):
        r.read_chunk(i)
    with pytest.raises(ChecksumMismatch, match=r"^chunk 3: checksum mismatch$"):
        r.read_chunk(3)
    with pytest.raises(ChecksumMismatch, match="chunk 3"):
        list(r.chunks())


def test_damaged_audio_packet_is_named():
    data = sample_file("zstd")
    lay = layout(data)
    kinds = [t for _, t, _ in lay.records]
    second_packet = [i for i, t in enumerate(kinds) if t == spec.RecordType.AUDIO_PACKET][1]
    r = CdtReader(io.BytesIO(_with_byte_flipped_in_record(data, second_packet)))
    with pytest.raises(ChecksumMismatch, match="audio packet 1: checksum mismatch"):
        list(r.audio_packets())


def test_truncated_file_refused_but_salvageable():
    data = sample_file("range", latent_frames=5, coded_frames=17, num_frames=17)
    lay = layout(data)
    chunk_offsets = [off for off, t, _ in lay.records if t == spec.RecordType.CHUNK]
    cut = data[:chunk_offsets[3] + 11]  # inside chunk 3
    with pytest.raises(Truncated, match="truncated"):
        CdtReader(io.BytesIO(cut))
    r = CdtReader(io.BytesIO(cut), salvage=True)
    assert r.salvaged and r.num_chunks == 3
    full = CdtReader(io.BytesIO(data))
    for i in range(3):
        np.testing.assert_array_equal(r.read_chunk(i), full.read_chunk(i))
    assert r.audio_track == full.audio_track


def test_damaged_index_and_trailer():
    data = sample_file("range")
    lay = layout(data)
    off, _, length = lay.records[-1]
    b = bytearray(data)
    b[off + spec.RECORD_HEAD.size + spec.INDEX_HEAD.size + 3] ^= 1
    with pytest.raises(ChecksumMismatch, match="index: checksum mismatch"):
        CdtReader(io.BytesIO(bytes(b)))
    b = bytearray(data)
    b[-10] ^= 1
    with pytest.raises(ChecksumMismatch, match="trailer"):
        CdtReader(io.BytesIO(bytes(b)))
    # a consistent-looking index that points at the wrong record is caught too
    b = bytearray(data)
    entry0 = off + spec.RECORD_HEAD.size + spec.INDEX_HEAD.size
    o1, l1 = spec.INDEX_ENTRY.unpack_from(b, entry0 + 12)
    o2, l2 = spec.INDEX_ENTRY.unpack_from(b, entry0 + 24)
    spec.INDEX_ENTRY.pack_into(b, entry0 + 12, o1, l1)  # unchanged
    spec.INDEX_ENTRY.pack_into(b, entry0 + 24, o1 + l1, l2 + 1)
    end = off + spec.RECORD_HEAD.size + length
    struct.pack_into("<I", b, end, zlib.crc32(bytes(b[off:end])))
    r = CdtReader(io.BytesIO(bytes(b)))
    with pytest.raises(BitstreamError, match="chunk 2"):
        r.read_chunk(2)


def test_unknown_optional_record_skipped_required_refused():
    data = sample_file("zstd", audio=True)
    lay = layout(data)
    for rtype, ok in [(0x90, True), (0x30, False)]:
        # splice an unknown record in front of the index and fix the index offset / trailer
        payload = b"from the future"
        head = spec.RECORD_HEAD.pack(rtype, len(payload))
        rec = head + payload + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head)))
        idx_off = lay.records[-1][0]
        b = bytearray(data[:idx_off] + rec + data[idx_off:])
        new_idx = idx_off + len(rec)
        t = len(b) - spec.TRAILER.size
        _, ilen, _, _ = spec.TRAILER.unpack_from(b, t)
        t12 = struct.pack("<QI", new_idx, ilen)
        spec.TRAILER.pack_into(b, t, new_idx, ilen, zlib.crc32(t12), spec.END_MAGIC)
        r = CdtReader(io.BytesIO(bytes(b)))
        r.verify() if ok else None
        if ok:
            assert len(list(r.audio_packets())) == 3 and r.stats.other_bytes == len(rec)
        else:
            with pytest.raises(UnsupportedFeature, match="record type 48"):
                list(r.audio_packets())


def test_overhead_of_a_ten_second_256px_clip_is_under_two_percent():
    """61 chunks of 16x32x32, symbols at a typical rate (~2-3 bits each)."""
    h = sample_header(width=256, height=256, coded_width=256, coded_height=256, latent_height=32,
                      latent_width=32, latent_frames=61, coded_frames=241, num_frames=240)
    rng = np.random.default_rng(0)
    stds = np.linspace(0.5, 3.0, 16)[:, None, None, None]
    buf = io.BytesIO()
    with CdtWriter(buf, h) as w:
        for i in range(h.num_chunks):
            lat = rng.laplace(0.0, stds / np.sqrt(2), size=h.chunk_shape(i))
            w.write_chunk(np.round(lat / 0.5).astype(np.int32))
    buf.seek(0)
    st = CdtReader(buf).stats
    assert st.file_bytes == len(buf.getvalue())
    assert len(st.chunk_payload_bytes) == 61
    assert (st.header_bytes + st.index_bytes) / st.file_bytes < 0.02
    assert st.overhead_bytes / st.file_bytes < 0.02
