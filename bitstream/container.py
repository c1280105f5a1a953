"""Streaming .cdt writer and reader.

File = header, body records, index record, trailer (docs/bitstream.md):

    header    (header.py)
    records   RECORD_HEAD(type, length) payload CRC32(type+length+payload), in any order:
              one CHUNK per latent-time chunk (in chunk order), at most one AUDIO_TRACK,
              AUDIO_PACKETs after it, FRAME_TIMES (minor 1, frame_times.py) in boundary order,
              other optional record types (>= 0x80) anywhere
    index     an INDEX record: chunk count, audio track offset, audio packet count,
              (offset, length) of every chunk record
    trailer   index offset, index length, CRC32 of those, END_MAGIC

The writer keeps O(1) memory in the number of chunks (index entries are spooled to a temporary
file beyond 1 MiB) and writes to a temporary beside the final name first (atomic.py), then renames. The reader
checks the header, trailer and the whole index (streamed) on open and reads index entries
on demand, so it too is O(1) in the number of chunks.

Why one module of ~600 lines: the writer and the reader are the two halves of one byte layout (records,
index, trailer) and are checked against each other line by line; apart, each would restate the other.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Iterator

import numpy as np

from . import spec
from .atomic import AtomicOutput, CloseOrAbort, deferred_signals
from .audio import AudioPacket, AudioTrack
from .chunk_coding import chunk_coder
from .errors import (
    BitstreamError,
    ChecksumMismatch,
    CorruptRecord,
    InconsistentHeader,
    LimitExceeded,
    Truncated,
    UnsupportedFeature,
)
from .frame_times import TimesWriter, boundary_times, check_record_length, checked_records, decode_record
from .header import Header, encode_header, format_version, read_exact, read_versioned_header

_BLOCK = 1 << 16


# ------------------------------------------------------------------------------------------------
# audio payloads
# ------------------------------------------------------------------------------------------------
def _short_str(s: str, what: str) -> bytes:
    if not isinstance(s, str):
        raise ValueError(f"{what} must be a string")
    b = s.encode("ascii")
    if len(b) > spec.MAX_STR:
        raise ValueError(f"{what} longer than {spec.MAX_STR} bytes")
    return spec.STR_LEN.pack(len(b)) + b


def encode_audio_track(t: AudioTrack) -> bytes:
    if not 1 <= t.time_base_num < 1 << 32 or not 1 <= t.time_base_den < 1 << 32:
        raise ValueError("audio time base must be positive 32-bit integers")
    if not 0 <= t.sample_rate < 1 << 32 or not 0 <= t.channels < 1 << 16 or not 0 <= t.bit_rate < 1 << 64:
        raise ValueError("audio sample_rate/channels/bit_rate out of range")
    extradata = bytes(t.extradata or b"")
    if len(extradata) > spec.MAX_EXTRADATA:
        raise ValueError(f"audio extradata longer than {spec.MAX_EXTRADATA} bytes")
    return (_short_str(t.codec_name, "audio codec_name")
            + spec.AUDIO_TRACK_MID.pack(t.sample_rate, t.channels)
            + _short_str(t.layout, "audio layout")
            + spec.AUDIO_TRACK_TAIL.pack(t.time_base_num, t.time_base_den, t.bit_rate)
            + extradata)


def decode_audio_track(p: bytes) -> AudioTrack:
    pos = 0

    def take(n):
        nonlocal pos
        if pos + n > len(p):
            raise CorruptRecord("audio track: record too short")
        b = p[pos:pos + n]
        pos += n
        return b

    def string(what):
        (n,) = spec.STR_LEN.unpack(take(1))
        try:
            return take(n).decode("ascii")
        except UnicodeDecodeError:
            raise CorruptRecord(f"audio track: {what} is not ASCII") from None

    codec = string("codec name")
    rate, channels = spec.AUDIO_TRACK_MID.unpack(take(spec.AUDIO_TRACK_MID.size))
    layout = string("layout")
    tbn, tbd, bit_rate = spec.AUDIO_TRACK_TAIL.unpack(take(spec.AUDIO_TRACK_TAIL.size))
    if tbn == 0 or tbd == 0:
        raise CorruptRecord("audio track: zero time base")
    extradata = p[pos:]
    if len(extradata) > spec.MAX_EXTRADATA:
        raise LimitExceeded(f"audio track: extradata of {len(extradata)} bytes exceeds {spec.MAX_EXTRADATA}")
    return AudioTrack(codec, rate, channels, layout, tbn, tbd, bit_rate, bytes(extradata))


def encode_audio_packet(pk: AudioPacket) -> bytes:
    data = bytes(pk.data)
    if len(data) > spec.MAX_AUDIO_PACKET:
        raise ValueError(f"audio packet longer than {spec.MAX_AUDIO_PACKET} bytes")
    for name in ("pts", "dts", "duration"):
        v = getattr(pk, name)
        if v is not None and not -(1 << 63) <= int(v) < (1 << 63):
            raise ValueError(f"audio packet {name} {v} does not fit in int64")
    if pk.duration is None:
        raise ValueError("audio packet duration is None")
    flags = (spec.AUDIO_PTS_PRESENT if pk.pts is not None else 0) | (
        spec.AUDIO_DTS_PRESENT if pk.dts is not None else 0)
    return spec.AUDIO_PACKET_HEAD.pack(flags, int(pk.pts or 0), int(pk.dts or 0), int(pk.duration)) + data


def decode_audio_packet(p: bytes, what: str) -> AudioPacket:
    if len(p) < spec.AUDIO_PACKET_HEAD.size:
        raise CorruptRecord(f"{what}: record too short")
    flags, pts, dts, dur = spec.AUDIO_PACKET_HEAD.unpack_from(p, 0)
    if flags & ~(spec.AUDIO_PTS_PRESENT | spec.AUDIO_DTS_PRESENT):
        raise CorruptRecord(f"{what}: unknown flags {flags:#x}")
    if (not flags & spec.AUDIO_PTS_PRESENT and pts) or (not flags & spec.AUDIO_DTS_PRESENT and dts):
        raise CorruptRecord(f"{what}: timestamp set but flagged absent")
    return AudioPacket(bytes(p[spec.AUDIO_PACKET_HEAD.size:]),
                       pts if flags & spec.AUDIO_PTS_PRESENT else None,
                       dts if flags & spec.AUDIO_DTS_PRESENT else None, dur)


# ------------------------------------------------------------------------------------------------
# writer
# ------------------------------------------------------------------------------------------------
class CdtWriter(CloseOrAbort):
    """Write a .cdt file chunk by chunk.

    `dest` is a path (written via a temporary in the same directory, fsync'd and renamed on
    successful close; removed on error) or a writable binary file object (written in place,
    never seeked, so pipes work). Use as a context manager or call close()/abort().
    `prior` (PriorWeights or the path of its file) is needed for the coder `prior` (chunk_coding.py).
    """

    def __init__(self, dest, header: Header, *, prior=None):
        self.header = header.with_defaults()
        head = encode_header(self.header)  # validates
        self._written_version = format_version(self.header)  # the version `head` declares
        self._coder = chunk_coder(self.header, prior)
        self._times = TimesWriter(self.header)
        self._output: AtomicOutput | None = None
        self._f: BinaryIO | None = None
        self._index = None
        self._restated = False
        self._pos = 0
        self._chunks = 0
        self._audio_track_offset = 0
        self._audio_packets = 0
        self._done = False
        try:
            # The resources are made whole or not at all: a signal meanwhile is held back until they exist
            # (a SpooledTemporaryFile cut short in its __init__ fails in its __del__), then abort() undoes them.
            with deferred_signals():
                if isinstance(dest, (str, os.PathLike)):
                    self._output = AtomicOutput(dest)
                    self._f = open(self._output.path, "wb")
                else:
                    self._f = dest
                self._index = tempfile.SpooledTemporaryFile(max_size=1 << 20)
            self._start = self._f.tell() if self._f.seekable() else 0
            self._write(head)
        except BaseException:
            self.abort()
            raise

    # -- low level --------------------------------------------------------------------------
    def _write(self, b: bytes) -> None:
        self._f.write(b)
        self._pos += len(b)

    def _record(self, rtype: int, payload: bytes) -> tuple[int, int]:
        if len(payload) > spec.MAX_RECORD_PAYLOAD:
            raise LimitExceeded(f"record payload of {len(payload)} bytes exceeds {spec.MAX_RECORD_PAYLOAD}")
        offset = self._pos
        head = spec.RECORD_HEAD.pack(rtype, len(payload))
        crc = zlib.crc32(payload, zlib.crc32(head))
        self._write(head)
        self._write(payload)
        self._write(spec.CRC.pack(crc))
        return offset, self._pos - offset

    def _check_open(self):
        if self._done:
            raise ValueError("CdtWriter is closed")

    # -- public -----------------------------------------------------------------------------
    @property
    def num_chunks(self) -> int:
        return self.header.num_chunks

    @property
    def chunks_written(self) -> int:
        return self._chunks

    def write_chunk(self, symbols) -> int:
        """Entropy-code and write the next chunk; returns the record's size in bytes."""
        self._check_open()
        i = self._chunks
        if i >= self.header.num_chunks:
            raise ValueError(f"all {self.header.num_chunks} chunks already written")
        a = np.asarray(symbols)
        expect = self.header.chunk_shape(i)
        if a.shape != expect:
            raise ValueError(f"chunk {i}: shape {a.shape}, expected {expect}")
        payload = spec.CHUNK_PREFIX.pack(i, expect[1]) + self._coder.encode(i, a)
        offset, length = self._record(spec.RecordType.CHUNK, payload)
        self._index.write(spec.INDEX_ENTRY.pack(offset, length))
        self._chunks += 1
        return length

    def restate_frame_counts(self, header: Header) -> None:
        """Replace the header by `header`, which may differ only in its frame counts (num_frames, coded_frames,
        latent_frames); it is written over the first one at close, so the output must be seekable.

        This lets a writer start before the length of its input is known: open with counts that bound it
        (the header's byte size does not depend on them), restate the true counts once the input has ended.
        """
        self._check_open()
        new = header.with_defaults()
        counts = ("num_frames", "coded_frames", "latent_frames")
        if replace(new, **{k: 0 for k in counts}) != replace(self.header, **{k: 0 for k in counts}):
            raise ValueError("a restated header may differ only in its frame counts")
        if not self._f.seekable():
            raise ValueError("restating the header needs a seekable output")
        encode_header(new)  # validates
        self.header = new
        self._restated = True

    def write_frame_times(self, ticks) -> None:
        """The times of the next frame boundaries, in the header's time base, in order: the start of frame 1, 2,
        ... (frame 0 starts at 0), and last the end of the last frame; None for a time not known. Only times off
        the frame-rate grid are stored (FRAME_TIMES records, frame_times.py), so a constant-rate video writes
        none and stays version x.0; the first record makes the file x.1, which rewrites the header at close
        (the output must then be seekable)."""
        self._check_open()
        for tick in ticks:
            for payload in self._times.add(tick):
                self._frame_times_record(payload)

    def _frame_times_record(self, payload: bytes) -> None:
        if format_version(self.header, frame_times=True) != self._written_version and not self._f.seekable():
            raise ValueError("frame times off the frame-rate grid need a seekable output (the header's version "
                             "is rewritten at close)")
        self._record(spec.RecordType.FRAME_TIMES, payload)

    def set_audio_track(self, track: AudioTrack) -> None:
        self._check_open()
        if self._audio_track_offset:
            raise ValueError("audio track already set")
        self._audio_track_offset, _ = self._record(spec.RecordType.AUDIO_TRACK, encode_audio_track(track))

    def write_audio_packet(self, packet: AudioPacket) -> None:
        self._check_open()
        if not self._audio_track_offset:
            raise ValueError("set_audio_track() must come before audio packets")
        self._record(spec.RecordType.AUDIO_PACKET, encode_audio_packet(packet))
        self._audio_packets += 1

    def close(self) -> None:
        """Write index and trailer, then (for a path) fsync and rename onto the final name."""
        if self._done:
            return
        try:
            if self._chunks != self.header.num_chunks:
                raise ValueError(f"only {self._chunks} of {self.header.num_chunks} chunks written")
            if self._times.next - 1 > self.header.num_frames:
                raise ValueError(f"frame times for {self._times.next - 1} boundaries, but {self.header.num_frames} "
                                 f"frames have only {self.header.num_frames + 1}")
            for payload in self._times.flush():
                self._frame_times_record(payload)
            frame_times = self._times.records > 0
            n = self._chunks
            payload_len = spec.INDEX_HEAD.size + n * spec.INDEX_ENTRY.size
            index_offset = self._pos
            head = spec.RECORD_HEAD.pack(spec.RecordType.INDEX, payload_len)
            ihead = spec.INDEX_HEAD.pack(n, self._audio_track_offset, self._audio_packets)
            crc = zlib.crc32(ihead, zlib.crc32(head))
            self._write(head)
            self._write(ihead)
            self._index.seek(0)
            while True:
                block = self._index.read(_BLOCK)
                if not block:
                    break
                crc = zlib.crc32(block, crc)
                self._write(block)
            self._write(spec.CRC.pack(crc))
            index_len = self._pos - index_offset
            t12 = spec.TRAILER.pack(index_offset, index_len, 0, spec.END_MAGIC)[:12]
            self._write(spec.TRAILER.pack(index_offset, index_len, zlib.crc32(t12), spec.END_MAGIC))
            if self._restated or format_version(self.header, frame_times) != self._written_version:
                # same size as the header written first (fixed-width counts; only the version may change)
                self._f.seek(self._start)
                self._f.write(encode_header(self.header, frame_times=frame_times))
                self._f.seek(self._start + self._pos)
            self._f.flush()
            if self._output is not None:
                self._f.close()
                self._output.commit()
            self._done = True
            self._index.close()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stop writing; for a path, remove the temporary (nothing appears at the final name)."""
        self._done = True
        if self._index is not None:
            try:
                self._index.close()
            except Exception:
                pass
        if self._output is not None:
            try:
                if self._f is not None:
                    self._f.close()
            finally:
                self._output.discard()



# ------------------------------------------------------------------------------------------------
# sizes without writing (rate control sizes a file at many quantizer steps; tests check them against
# the writer)
# ------------------------------------------------------------------------------------------------
def chunk_record_bytes(payload_bytes: int) -> int:
    """File bytes of a chunk record whose coder payload (chunk_coder(...).payload) has `payload_bytes`."""
    return spec.RECORD_OVERHEAD + spec.CHUNK_PREFIX.size + payload_bytes


def audio_record_bytes(track: AudioTrack | None, packets=()) -> int:
    """File bytes of the audio records CdtWriter writes for `track` and `packets` (0 without a track)."""
    if track is None:
        return 0
    return (spec.RECORD_OVERHEAD + len(encode_audio_track(track))
            + sum(spec.RECORD_OVERHEAD + len(encode_audio_packet(p)) for p in packets))


def frame_times_record_bytes(header: Header, ticks) -> int:
    """File bytes of the FRAME_TIMES records CdtWriter writes for `ticks` (as write_frame_times takes them)."""
    times = TimesWriter(header)
    payloads = [p for tick in ticks for p in times.add(tick)] + times.flush()
    return sum(spec.RECORD_OVERHEAD + len(p) for p in payloads)


def file_bytes(header: Header, chunk_records: int, other_records: int = 0) -> int:
    """The size of the file CdtWriter writes for `header` (its final frame counts), with chunk records of
    `chunk_records` bytes in all (chunk_record_bytes) and the other records (audio, frame times) of
    `other_records` bytes."""
    h = header.with_defaults()
    index = spec.RECORD_OVERHEAD + spec.INDEX_HEAD.size + h.num_chunks * spec.INDEX_ENTRY.size
    return len(encode_header(h)) + chunk_records + other_records + index + spec.TRAILER.size


# ------------------------------------------------------------------------------------------------
# reader
# ------------------------------------------------------------------------------------------------
@dataclass
class FileStats:
    """Where the bytes of a .cdt file go."""

    file_bytes: int
    header_bytes: int
    index_bytes: int  # index record + trailer
    chunk_payload_bytes: list[int] = field(default_factory=list)  # entropy-coded bytes per chunk
    chunk_framing_bytes: int = 0  # record head/CRC and chunk prefix of all chunk records
    audio_bytes: int = 0  # audio track and packet records, framing included
    frame_times_bytes: int = 0  # FRAME_TIMES records, framing included
    other_bytes: int = 0  # optional records this reader skipped

    @property
    def payload_bytes(self) -> int:
        return sum(self.chunk_payload_bytes)

    @property
    def overhead_bytes(self) -> int:
        """Header + index + chunk framing: everything that is not symbols or audio."""
        return self.header_bytes + self.index_bytes + self.chunk_framing_bytes

    def summary(self) -> str:
        f = max(1, self.file_bytes)
        return (f"{self.file_bytes} bytes: header {self.header_bytes} ({100 * self.header_bytes / f:.2f}%), "
                f"index {self.index_bytes} ({100 * self.index_bytes / f:.2f}%), "
                f"chunk framing {self.chunk_framing_bytes}, chunk payloads {self.payload_bytes} "
                f"in {len(self.chunk_payload_bytes)} chunks, audio {self.audio_bytes}"
                + (f", frame times {self.frame_times_bytes}" if self.frame_times_bytes else ""))


class CdtReader:
    """Read a .cdt file: header and index are validated on open, chunks decoded on demand.

    `src` is a path or a seekable binary file object positioned at the start of the .cdt data.
    With salvage=True a file whose trailer or index is missing or damaged (e.g. truncated) is
    still opened: its records are scanned from the start and the readable leading chunks are
    served (num_chunks may then be smaller than header.num_chunks).
    A file coded with the prior needs `prior` (PriorWeights or the path of its file) to decode chunks;
    header, index, stats and audio are read without it. Its chunk i depends on the chunks before it back to
    the last context reset (chunk_coding.py): read_chunk(i) decodes those first, and a damaged chunk makes the
    ones after it unreadable up to the next reset.
    """

    def __init__(self, src, *, salvage: bool = False, prior=None):
        self._prior = prior
        self._coder = None
        self._own = isinstance(src, (str, os.PathLike))
        if not self._own:
            try:
                seekable = src.seekable()
            except Exception:
                seekable = False
            if not seekable:
                raise ValueError("CdtReader needs a path or a seekable binary file")
        self._f: BinaryIO = open(src, "rb") if self._own else src
        try:
            self._open(salvage)
        except BitstreamError:
            self.close()
            raise
        except Exception as e:
            self.close()
            if isinstance(e, (OSError, MemoryError)):
                raise
            raise CorruptRecord(f"file: unreadable ({type(e).__name__}: {e})") from None

    def _open(self, salvage: bool) -> None:
        f = self._f
        self._base = f.tell()
        f.seek(0, os.SEEK_END)
        self._size = f.tell() - self._base
        f.seek(self._base)
        self.header, self._header_len, self.version = read_versioned_header(f, self._size)
        self._has_frame_times: bool | None = None
        self._salvaged: list[tuple[int, int]] | None = None
        self._n_audio = 0
        self._audio_track_offset = 0
        try:
            self._read_index()
        except BitstreamError:
            if not salvage:
                raise
            self._salvage()
        self.audio_track: AudioTrack | None = None
        if self._audio_track_offset:
            rtype, payload = self._read_record(self._audio_track_offset, "audio track")
            if rtype != spec.RecordType.AUDIO_TRACK:
                raise CorruptRecord("index: audio track offset does not point at an audio track record")
            self.audio_track = decode_audio_track(payload)
        self._stats: FileStats | None = None

    # -- low level --------------------------------------------------------------------------
    def _seek(self, offset: int) -> None:
        self._f.seek(self._base + offset)

    def _read_record(self, offset: int, what: str, expect_len: int | None = None,
                     limit: int | None = None) -> tuple[int, bytes]:
        """Read and CRC-check the record at offset; it must end by `limit` (default: index)."""
        limit = self._body_end if limit is None else limit
        if offset + spec.RECORD_OVERHEAD > limit:
            raise Truncated(f"{what}: record head at {offset} runs past the end of the body")
        self._seek(offset)
        head = read_exact(self._f, spec.RECORD_HEAD.size, what)
        rtype, length = spec.RECORD_HEAD.unpack(head)
        if offset + spec.RECORD_OVERHEAD + length > limit:
            raise Truncated(f"{what}: record of {length} bytes runs past the end of the body")
        if expect_len is not None and length + spec.RECORD_OVERHEAD != expect_len:
            raise CorruptRecord(f"{what}: record length {length + spec.RECORD_OVERHEAD} disagrees with the index ({expect_len})")
        payload = read_exact(self._f, length, what)
        (crc,) = spec.CRC.unpack(read_exact(self._f, spec.CRC.size, what))
        if zlib.crc32(payload, zlib.crc32(head)) != crc:
            raise ChecksumMismatch(f"{what}: checksum mismatch")
        return rtype, payload

    def _read_index(self) -> None:
        size, f = self._size, self._f
        if size < self._header_len + spec.TRAILER.size:
            raise Truncated("file truncated: no room for the index trailer")
        self._seek(size - spec.TRAILER.size)
        raw = read_exact(f, spec.TRAILER.size, "trailer")
        index_offset, index_len, tcrc, end = spec.TRAILER.unpack(raw)
        if end != spec.END_MAGIC:
            raise Truncated("file truncated or damaged: no index trailer at the end")
        if zlib.crc32(raw[:12]) != tcrc:
            raise ChecksumMismatch("trailer: checksum mismatch")
        n = self.header.num_chunks
        payload_len = spec.INDEX_HEAD.size + n * spec.INDEX_ENTRY.size
        if index_offset < self._header_len or index_offset + index_len != size - spec.TRAILER.size:
            raise CorruptRecord(f"trailer: index at {index_offset}+{index_len} does not end where the trailer starts")
        if index_len != payload_len + spec.RECORD_OVERHEAD:
            raise CorruptRecord(f"index: {index_len} bytes, but {n} chunks need {payload_len + spec.RECORD_OVERHEAD}")
        self._body_end = index_offset
        self._index_offset = index_offset
        self._index_len = index_len
        self._seek(index_offset)
        head = read_exact(f, spec.RECORD_HEAD.size, "index")
        rtype, length = spec.RECORD_HEAD.unpack(head)
        if rtype != spec.RecordType.INDEX or length != payload_len:
            raise CorruptRecord("index: trailer does not point at an index record")
        ihead = read_exact(f, spec.INDEX_HEAD.size, "index")
        crc = zlib.crc32(ihead, zlib.crc32(head))
        count, audio_off, n_audio = spec.INDEX_HEAD.unpack(ihead)
        if count != n:
            raise CorruptRecord(f"index: lists {count} chunks, header implies {n}")
        # stream the entries: CRC and ordering checks in O(1) memory
        # (a bad entry is reported only once the checksum is known to match)
        prev_end = self._header_len
        remaining = n * spec.INDEX_ENTRY.size
        i = 0
        problem: str | None = None
        while remaining:
            block = read_exact(f, min(remaining, (_BLOCK // spec.INDEX_ENTRY.size) * spec.INDEX_ENTRY.size), "index")
            remaining -= len(block)
            crc = zlib.crc32(block, crc)
            for off, ln in spec.INDEX_ENTRY.iter_unpack(block):
                if problem is None and (off < prev_end or ln < spec.RECORD_OVERHEAD + spec.CHUNK_PREFIX.size
                                        or off + ln > index_offset):
                    problem = f"index: entry for chunk {i} ({off}+{ln}) is out of place"
                prev_end = off + ln
                i += 1
        (stored,) = spec.CRC.unpack(read_exact(f, spec.CRC.size, "index"))
        if stored != crc:
            raise ChecksumMismatch("index: checksum mismatch")
        if problem:
            raise CorruptRecord(problem)
        if audio_off and not (self._header_len <= audio_off and audio_off + spec.RECORD_OVERHEAD <= index_offset):
            raise CorruptRecord(f"index: audio track offset {audio_off} outside the body")
        if n_audio and not audio_off:
            raise CorruptRecord("index: audio packets without an audio track")
        self._audio_track_offset = audio_off
        self._n_audio = n_audio

    def _scan(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """(offset, type, payload length) of each record in [start, end), heads only."""
        pos = start
        while pos < end:
            if pos + spec.RECORD_OVERHEAD > end:
                raise Truncated(f"record at {pos}: file ends inside the record head")
            self._seek(pos)
            rtype, length = spec.RECORD_HEAD.unpack(read_exact(self._f, spec.RECORD_HEAD.size, f"record at {pos}"))
            if pos + spec.RECORD_OVERHEAD + length > end:
                raise Truncated(f"record at {pos}: {length}-byte payload runs past the end of the body")
            yield pos, rtype, length
            pos += spec.RECORD_OVERHEAD + length

    def _salvage(self) -> None:
        """Rebuild the chunk list by scanning records; keep the leading run of good chunks."""
        self._body_end = self._size
        self._index_offset = self._size
        self._index_len = 0
        chunks: list[tuple[int, int]] = []
        try:
            for off, rtype, length in self._scan(self._header_len, self._size):
                if rtype == spec.RecordType.INDEX:
                    self._body_end = off
                    break
                if rtype == spec.RecordType.AUDIO_TRACK and not self._audio_track_offset:
                    self._audio_track_offset = off
                elif rtype == spec.RecordType.AUDIO_PACKET:
                    self._n_audio += 1
                elif rtype == spec.RecordType.CHUNK and len(chunks) < self.header.num_chunks:
                    chunks.append((off, length + spec.RECORD_OVERHEAD))
        except BitstreamError:
            pass
        self._salvaged = chunks
        self._n_audio = -1  # unknown: do not check the count

    def _entry(self, i: int) -> tuple[int, int]:
        if self._salvaged is not None:
            return self._salvaged[i]
        self._seek(self._index_offset + spec.RECORD_HEAD.size + spec.INDEX_HEAD.size + i * spec.INDEX_ENTRY.size)
        return spec.INDEX_ENTRY.unpack(read_exact(self._f, spec.INDEX_ENTRY.size, "index"))

    # -- public -----------------------------------------------------------------------------
    @property
    def num_chunks(self) -> int:
        return len(self._salvaged) if self._salvaged is not None else self.header.num_chunks

    @property
    def salvaged(self) -> bool:
        """True when the index was unusable and chunks were found by scanning."""
        return self._salvaged is not None

    def chunk_payload(self, i: int) -> bytes:
        """The CRC-checked entropy-coded bytes of chunk i (without the chunk prefix)."""
        if not 0 <= i < self.num_chunks:
            raise IndexError(f"chunk {i} out of range 0..{self.num_chunks - 1}")
        off, ln = self._entry(i)
        what = f"chunk {i}"
        rtype, payload = self._read_record(off, what, expect_len=ln)
        if rtype != spec.RecordType.CHUNK:
            raise CorruptRecord(f"{what}: index points at a record of type {rtype}")
        if len(payload) < spec.CHUNK_PREFIX.size:
            raise CorruptRecord(f"{what}: record too short")
        idx, t = spec.CHUNK_PREFIX.unpack_from(payload, 0)
        if idx != i:
            raise CorruptRecord(f"{what}: record says it is chunk {idx}")
        if t != self.header.chunk_frames(i):
            raise CorruptRecord(f"{what}: holds {t} latent frames, header implies {self.header.chunk_frames(i)}")
        return payload[spec.CHUNK_PREFIX.size:]

    def use_prior(self, prior) -> None:
        """Give the prior weights (PriorWeights or a path) a prior-coded file is decoded with (after opening:
        which prior is needed is known from the header)."""
        self._prior, self._coder = prior, None

    def read_chunk(self, i: int) -> np.ndarray:
        """Symbols of chunk i, int32 of shape (C, t, h, w)."""
        if self._coder is None:  # on first use: a prior file's header is readable without its prior
            self._coder = chunk_coder(self.header, self._prior)
        return self._coder.decode(i, self.chunk_payload)

    def chunks(self) -> Iterator[np.ndarray]:
        """All chunks in order, one at a time."""
        for i in range(self.num_chunks):
            yield self.read_chunk(i)

    # -- frame times (minor 1) -------------------------------------------------------------------------------
    def _holds_frame_times(self, rtype: int) -> bool:
        return rtype == spec.RecordType.FRAME_TIMES and self.version[1] >= spec.MEDIA_FACTS_MINOR

    @property
    def has_frame_times(self) -> bool:
        """Whether the file records frame times off the frame-rate grid (a scan of record heads, once)."""
        if self._has_frame_times is None:
            self._has_frame_times = any(self._holds_frame_times(rtype)
                                        for _, rtype, _ in self._scan(self._header_len, self._body_end))
        return self._has_frame_times

    def frame_time_records(self) -> Iterator[tuple[int, list[int]]]:
        """The FRAME_TIMES records as (first boundary, times), CRC-checked and checked against each other
        (frame_times.checked_records); a record's length is checked against its limit before it is read."""
        def records():
            count = 0
            for off, rtype, length in self._scan(self._header_len, self._body_end):
                if self._holds_frame_times(rtype):
                    what = f"frame times record {count}"
                    check_record_length(length, what)
                    _, payload = self._read_record(off, what)
                    count += 1
                    yield decode_record(payload, what, self.header.num_frames)
        return checked_records(self.header, records())

    def frame_times(self) -> Iterator[int]:
        """t_0 .. t_N: when each of the N frames starts, then when the last one ends, in the header's time base
        (t_0 = 0); from the records where the file has them, from the frame rate elsewhere. Lazy, one record
        in memory at a time."""
        return boundary_times(self.header, self.frame_time_records())

    def audio_packets(self) -> Iterator[AudioPacket]:
        """The audio packets in file order (CRC-checked)."""
        if not self._audio_track_offset:
            return
        count = 0
        for off, rtype, length in self._scan(self._header_len, self._body_end):
            if rtype == spec.RecordType.AUDIO_PACKET:
                what = f"audio packet {count}"
                _, payload = self._read_record(off, what)
                count += 1
                yield decode_audio_packet(payload, what)
            elif rtype not in (spec.RecordType.CHUNK, spec.RecordType.AUDIO_TRACK) and rtype < spec.RecordType.OPTIONAL_MIN:
                raise UnsupportedFeature(f"record at {off}: unknown required record type {rtype}")
        if self._n_audio >= 0 and count != self._n_audio:
            raise CorruptRecord(f"index: lists {self._n_audio} audio packets, found {count}")

    @property
    def stats(self) -> FileStats:
        if self._stats is None:
            st = FileStats(self._size, self._header_len,
                           self._index_len + (spec.TRAILER.size if self._salvaged is None else 0))
            framing = spec.RECORD_OVERHEAD + spec.CHUNK_PREFIX.size
            for i in range(self.num_chunks):
                _, ln = self._entry(i)
                st.chunk_payload_bytes.append(ln - framing)
                st.chunk_framing_bytes += framing
            for off, rtype, length in self._scan(self._header_len, self._body_end):
                if rtype in (spec.RecordType.AUDIO_TRACK, spec.RecordType.AUDIO_PACKET):
                    st.audio_bytes += length + spec.RECORD_OVERHEAD
                elif self._holds_frame_times(rtype):
                    st.frame_times_bytes += length + spec.RECORD_OVERHEAD
                elif rtype != spec.RecordType.CHUNK:
                    st.other_bytes += length + spec.RECORD_OVERHEAD
            self._stats = st
        return self._stats

    def verify(self) -> None:
        """Decode everything once; raises the first BitstreamError found."""
        for _ in self.chunks():
            pass
        for _ in self.audio_packets():
            pass
        for _ in self.frame_time_records():
            pass

    def close(self) -> None:
        if self._own and self._f is not None:
            self._f.close()
        self._f = None if self._own else self._f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
