"""The .cdt reader: header, trailer and the whole index checked on open (streamed: O(1) memory in the number of
chunks), chunks read and decoded on demand, audio packets and frame times in file order; FileStats says where
the bytes go. The layout is writer.py's docstring; the index and trailer are index.py's.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import numpy as np

from . import spec
from .audio import AudioPacket, AudioTrack, decode_audio_packet, decode_audio_track
from .chunk_coding import chunk_coder
from .errors import BitstreamError, ChecksumMismatch, CorruptRecord, Truncated, UnsupportedFeature
from .frame_times import boundary_times, check_record_length, checked_records, decode_record
from .header import read_exact, read_versioned_header
from .index import index_entry, read_index


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
            raise CorruptRecord(f"{what}: record length {length + spec.RECORD_OVERHEAD} disagrees with the index "
                                f"({expect_len})")
        payload = read_exact(self._f, length, what)
        (crc,) = spec.CRC.unpack(read_exact(self._f, spec.CRC.size, what))
        if zlib.crc32(payload, zlib.crc32(head)) != crc:
            raise ChecksumMismatch(f"{what}: checksum mismatch")
        return rtype, payload

    def _read_index(self) -> None:
        index = read_index(self._f, self._base, self._size, self._header_len, self.header.num_chunks)
        self._body_end = self._index_offset = index.offset
        self._index_len = index.length
        self._audio_track_offset = index.audio_track_offset
        self._n_audio = index.audio_packets

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
        return index_entry(self._f, self._base, self._index_offset, i)

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
            elif (rtype not in (spec.RecordType.CHUNK, spec.RecordType.AUDIO_TRACK)
                  and rtype < spec.RecordType.OPTIONAL_MIN):
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
