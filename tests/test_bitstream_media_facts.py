"""Format minor 1, the media facts: the DISPLAY header field and FRAME_TIMES records (bitstream/frame_times.py),
through Header, CdtWriter and CdtReader. Files without them stay x.0, byte for byte (test_bitstream_golden.py)."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from dataclasses import replace

import numpy as np
import pytest

from bitstream import CdtReader, CdtWriter, CorruptRecord, InconsistentHeader, LimitExceeded, fuzz, spec
from bitstream.frame_times import Grid, boundary_times, checked_records, encode_record
from bitstream.header import encode_header, parse_header_fields, read_versioned_header

TURNED = dict(display_matrix=(0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30))  # FFmpeg's rotate=90: -90 degrees


def header(**overrides):
    """25 fps in milliseconds (40 ticks a frame), 9 frames."""
    fields = dict(fps_num=25, fps_den=1, time_base_num=1, time_base_den=1000, num_frames=9, coded_frames=9,
                  latent_frames=3)
    return fuzz.sample_header("range", **{**fields, **overrides})


def written(h, ticks=(), seekable=True):
    buf = io.BytesIO()
    with CdtWriter(buf if seekable else _Pipe(buf), h) as w:
        for i in range(h.num_chunks):
            w.write_chunk(np.zeros(h.chunk_shape(i), np.int32))
            if i == 1:
                w.write_frame_times(ticks)
    return buf.getvalue()


class _Pipe(io.RawIOBase):
    def __init__(self, buf):
        self.buf = buf

    def writable(self):
        return True

    def write(self, b):
        return self.buf.write(b)

    def seekable(self):
        return False


# ---------------------------------------------------------------------------------------------------------
# DISPLAY

def test_display_field_round_trips_and_makes_the_file_minor_1():
    plain = encode_header(header())
    assert plain[8:12] == struct.pack("<HH", 1, 0)
    for facts in (TURNED, dict(sample_aspect_num=8, sample_aspect_den=9), {**TURNED, "sample_aspect_num": 4,
                                                                           "sample_aspect_den": 3}):
        h = header(**facts)
        data = encode_header(h)
        assert data[8:12] == struct.pack("<HH", 1, 1) and len(data) == len(plain) + 7 + spec.DISPLAY.size
        back, _, version = read_versioned_header(io.BytesIO(data), len(data))
        assert back == h.with_defaults() and version == (1, 1)
    assert header(**TURNED).rotation == -90.0 and header().rotation == 0.0
    mirrored = header(display_matrix=(-(1 << 16), 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30))
    assert mirrored.mirrored and not header(**TURNED).mirrored


def test_display_is_ignored_in_a_minor_0_file():
    """A tag-11 field in an x.0 file is unknown optional content: skipped, the defaults kept."""
    data = encode_header(header(**TURNED))
    flen = struct.unpack_from("<I", data, 12)[0]
    assert parse_header_fields(data[16:16 + flen], minor=0) == header().with_defaults()


@pytest.mark.parametrize("facts, message", [
    (dict(display_matrix=(1, 2, 3)), "9 integers"),
    (dict(display_matrix=(1 << 16, 0, 1, 0, 1 << 16, 0, 0, 0, 1 << 30)), "u = v = 0"),
    (dict(display_matrix=(1 << 16, 1 << 16, 0, 1 << 16, 1 << 16, 0, 0, 0, 1 << 30)), "singular"),
    (dict(display_matrix=(1 << 31, 0, 0, 0, 1, 0, 0, 0, 1 << 30)), r"display_matrix\[0\]=2147483648 outside"),
    (dict(sample_aspect_num=0), "sample_aspect_num"),
    (dict(sample_aspect_den=1 << 31), "sample_aspect_den"),
])
def test_display_values_are_checked(facts, message):
    with pytest.raises(InconsistentHeader, match=message):
        encode_header(header(**facts))


# ---------------------------------------------------------------------------------------------------------
# FRAME_TIMES

def test_the_grid_is_exact_and_rounds_half_up():
    ntsc_ms = Grid(30000, 1001, 1, 1000)
    assert [ntsc_ms(i) for i in range(5)] == [0, 33, 67, 100, 133] and ntsc_ms.tolerance == 1
    assert [Grid(25, 1, 1, 1000)(i) for i in range(3)] == [0, 40, 80] and Grid(25, 1, 1, 1000).tolerance == 0
    assert Grid(1, 2, 1, 4)(1) == 8 and Grid(3, 1, 1, 2)(1) == 1  # 2/3 tick a frame, rounded half up: 0.67 -> 1
    assert not Grid(3, 1, 1, 2).holds_frame_times and Grid(1, 1, 1, 1).holds_frame_times


def test_times_on_the_grid_write_nothing_and_others_round_trip():
    on_grid = written(header(), [40 * i for i in range(1, 10)])
    assert on_grid == written(header()) and on_grid[8:12] == struct.pack("<HH", 1, 0)
    vfr = [40, 80, 200, 240, 280, 330, 400, 480, 520]  # frame 2 lasts 120 ms; 5 .. 7 irregular; the end on grid
    data = written(header(), vfr)
    r = CdtReader(io.BytesIO(data))
    assert r.version == (1, 1) and r.has_frame_times and list(r.frame_times()) == [0, *vfr]
    assert list(r.frame_time_records()) == [(3, [200]), (6, [330, 400, 480])]
    assert r.stats.frame_times_bytes == 2 * spec.RECORD_OVERHEAD + 2 * spec.FRAME_TIMES_HEAD.size + 4 * 8
    assert r.stats.file_bytes == len(data) and r.stats.other_bytes == 0
    r.verify()


def test_a_dropped_frame_costs_one_time():
    times = [40, 80, 160, 200, 240, 280, 320, 360, 400]  # frame 2 missing: all later frames one interval late
    r = CdtReader(io.BytesIO(written(header(), times)))
    assert list(r.frame_time_records()) == [(3, [160])] and list(r.frame_times()) == [0, *times]


def test_the_writer_keeps_times_increasing_and_within_a_tick():
    h = header(fps_num=30000, fps_den=1001)  # 33.367 ms a frame: a millisecond clock is off by up to one tick
    clock = [round((3 + i) * 1001 / 30) - round(3 * 1001 / 30) for i in range(10)]  # from another origin
    assert not CdtReader(io.BytesIO(written(h, clock[1:]))).has_frame_times
    r = CdtReader(io.BytesIO(written(header(), [40, 40, 120, None, 200, 240, 280, 320, 360])))
    assert list(r.frame_times()) == [0, 40, 41, 120, 160, 200, 240, 280, 320, 360]  # 40 again: moved one tick on


def test_writer_misuse_is_refused(tmp_path):
    with pytest.raises(ValueError, match="seekable"):
        written(header(), [40, 90], seekable=False)
    assert written(header(), [40 * i for i in range(1, 10)], seekable=False) == written(header())
    with pytest.raises(ValueError, match="10 boundaries"):
        written(header(), [40 * i for i in range(1, 11)])
    with pytest.raises(ValueError, match="one tick per frame"):
        written(header(time_base_num=1, time_base_den=10), [1, 5])
    with CdtWriter(tmp_path / "x.cdt", header()) as w:  # a path: the header is rewritten as x.1 at close
        for i in range(w.num_chunks):
            w.write_chunk(np.zeros(w.header.chunk_shape(i), np.int32))
        w.write_frame_times([50])
    assert CdtReader(tmp_path / "x.cdt").version == (1, 1)


def test_records_are_checked_in_closed_form_whatever_the_length():
    """2^28 frames, records at the start and the end: checked and read without a step per frame in between."""
    h = replace(header(), num_frames=spec.MAX_FRAMES - 3, coded_frames=spec.MAX_FRAMES - 3)
    records = [(2, [100]), (h.num_frames - 1, [40 * h.num_frames + 5000, 40 * h.num_frames + 6000])]
    assert list(checked_records(h, records)) == records
    times = boundary_times(h, iter(records))
    assert [next(times) for _ in range(4)] == [0, 40, 100, 140]
    with pytest.raises(CorruptRecord, match="boundary 268435452 at 100 ticks is not after"):
        list(checked_records(h, [(2, [100]), (h.num_frames - 1, [100, 200])]))
    with pytest.raises(CorruptRecord, match="comes after"):
        list(checked_records(h, [(5, [300]), (3, [200])]))
    with pytest.raises(CorruptRecord, match="2\\^63"):
        list(checked_records(h, [(1, [spec.MAX_TICK - 10])]))


def _with_records(h, *payloads):
    data = written(h, [40, 90])  # one real record, then the crafted ones before the index
    for p in payloads:
        data = fuzz.with_record_before_index(data, spec.RecordType.FRAME_TIMES, p)
    return data


@pytest.mark.parametrize("payload, error, message", [
    (struct.pack("<II", 5, (1 << 32) - 1) + b"\0" * 8, CorruptRecord, "4294967295 frame times"),
    (struct.pack("<II", 5, 2) + b"\0" * 8, CorruptRecord, "says 2 frame times"),
    (struct.pack("<II", 9, 2) + struct.pack("<2q", 1000, 2000), CorruptRecord, "outside 1..9"),
    (struct.pack("<II", 1, 1) + struct.pack("<q", 10), CorruptRecord, "comes after"),
    (struct.pack("<II", 5, 1) + struct.pack("<q", 100), CorruptRecord, "boundary 5 at 100 ticks is not after"),
    (encode_record(1, list(range(1, 5000))), LimitExceeded, "more than 4096 frame times"),
])
def test_hostile_frame_times_are_refused_before_allocating(payload, error, message):
    data = _with_records(header(), payload)
    tracemalloc.start()
    try:
        with pytest.raises(error, match=message):
            list(CdtReader(io.BytesIO(data)).frame_time_records())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_frame_times_are_ignored_in_a_minor_0_file():
    """A type-0x80 record in an x.0 file is some older writer's optional record: skipped, counted as other."""
    data = bytearray(written(header(), [40, 90]))
    data[10:12] = b"\0\0"
    flen = struct.unpack_from("<I", data, 12)[0]
    struct.pack_into("<I", data, 16 + flen, zlib.crc32(bytes(data[:16 + flen])))
    r = CdtReader(io.BytesIO(bytes(data)))
    assert r.version == (1, 0) and not r.has_frame_times and list(r.frame_times()) == [40 * i for i in range(10)]
    assert r.stats.frame_times_bytes == 0 and r.stats.other_bytes > 0
