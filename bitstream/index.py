"""The chunk index and the trailer at the end of a .cdt file, written (IndexWriter) and read (read_index).

    index     an INDEX record: INDEX_HEAD (chunk count, audio track offset, audio packet count), then
              INDEX_ENTRY (offset, length) of every chunk record, in chunk order; its CRC32 covers all of it
    trailer   index offset, index length, CRC32 of those, END_MAGIC

Both sides are O(1) in memory in the number of chunks: the writer spools its entries to a temporary file beyond
1 MiB, the reader streams them once to check their CRC and their order, then reads single entries on demand.
"""

from __future__ import annotations

import tempfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable

from . import spec
from .errors import ChecksumMismatch, CorruptRecord, Truncated
from .header import read_exact

BLOCK = 1 << 16  # bytes streamed at a time


def index_record_bytes(num_chunks: int) -> int:
    """File bytes of the INDEX record of `num_chunks` chunks (framing included; the trailer not)."""
    return spec.RECORD_OVERHEAD + spec.INDEX_HEAD.size + num_chunks * spec.INDEX_ENTRY.size


class IndexWriter:
    """The entries of the chunk records as they are written, then the INDEX record and the trailer."""

    def __init__(self):
        self._entries = tempfile.SpooledTemporaryFile(max_size=1 << 20)
        self.count = 0

    def add(self, offset: int, length: int) -> None:
        self._entries.write(spec.INDEX_ENTRY.pack(offset, length))
        self.count += 1

    def finish(self, write: Callable[[bytes], None], index_offset: int, audio_track_offset: int,
               audio_packets: int) -> None:
        """Write the INDEX record (at `index_offset` in the file) and the trailer through `write`."""
        payload_len = spec.INDEX_HEAD.size + self.count * spec.INDEX_ENTRY.size
        head = spec.RECORD_HEAD.pack(spec.RecordType.INDEX, payload_len)
        ihead = spec.INDEX_HEAD.pack(self.count, audio_track_offset, audio_packets)
        crc = zlib.crc32(ihead, zlib.crc32(head))
        write(head)
        write(ihead)
        self._entries.seek(0)
        while True:
            block = self._entries.read(BLOCK)
            if not block:
                break
            crc = zlib.crc32(block, crc)
            write(block)
        write(spec.CRC.pack(crc))
        index_len = index_record_bytes(self.count)
        t12 = spec.TRAILER.pack(index_offset, index_len, 0, spec.END_MAGIC)[:12]
        write(spec.TRAILER.pack(index_offset, index_len, zlib.crc32(t12), spec.END_MAGIC))

    def close(self) -> None:
        self._entries.close()


@dataclass(frozen=True)
class ChunkIndex:
    """Where a file's index is, and what its head says besides the chunk count."""

    offset: int  # of the INDEX record: the body ends here
    length: int  # of the INDEX record, framing included
    audio_track_offset: int  # 0: no audio track
    audio_packets: int


def read_index(f: BinaryIO, base: int, size: int, header_len: int, num_chunks: int) -> ChunkIndex:
    """Check the trailer and the whole index of the .cdt at `base` in `f` (`size` bytes, header `header_len`,
    `num_chunks` chunks as its header implies), streaming the entries: CRC and ordering checks in O(1) memory."""
    if size < header_len + spec.TRAILER.size:
        raise Truncated("file truncated: no room for the index trailer")
    f.seek(base + size - spec.TRAILER.size)
    raw = read_exact(f, spec.TRAILER.size, "trailer")
    index_offset, index_len, tcrc, end = spec.TRAILER.unpack(raw)
    if end != spec.END_MAGIC:
        raise Truncated("file truncated or damaged: no index trailer at the end")
    if zlib.crc32(raw[:12]) != tcrc:
        raise ChecksumMismatch("trailer: checksum mismatch")
    n = num_chunks
    payload_len = spec.INDEX_HEAD.size + n * spec.INDEX_ENTRY.size
    if index_offset < header_len or index_offset + index_len != size - spec.TRAILER.size:
        raise CorruptRecord(f"trailer: index at {index_offset}+{index_len} does not end where the trailer starts")
    if index_len != index_record_bytes(n):
        raise CorruptRecord(f"index: {index_len} bytes, but {n} chunks need {index_record_bytes(n)}")
    f.seek(base + index_offset)
    head = read_exact(f, spec.RECORD_HEAD.size, "index")
    rtype, length = spec.RECORD_HEAD.unpack(head)
    if rtype != spec.RecordType.INDEX or length != payload_len:
        raise CorruptRecord("index: trailer does not point at an index record")
    ihead = read_exact(f, spec.INDEX_HEAD.size, "index")
    crc = zlib.crc32(ihead, zlib.crc32(head))
    count, audio_off, n_audio = spec.INDEX_HEAD.unpack(ihead)
    if count != n:
        raise CorruptRecord(f"index: lists {count} chunks, header implies {n}")
    # a bad entry is reported only once the checksum is known to match
    prev_end = header_len
    remaining = n * spec.INDEX_ENTRY.size
    i = 0
    problem: str | None = None
    while remaining:
        block = read_exact(f, min(remaining, (BLOCK // spec.INDEX_ENTRY.size) * spec.INDEX_ENTRY.size), "index")
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
    if audio_off and not (header_len <= audio_off and audio_off + spec.RECORD_OVERHEAD <= index_offset):
        raise CorruptRecord(f"index: audio track offset {audio_off} outside the body")
    if n_audio and not audio_off:
        raise CorruptRecord("index: audio packets without an audio track")
    return ChunkIndex(index_offset, index_len, audio_off, n_audio)


def index_entry(f: BinaryIO, base: int, index_offset: int, i: int) -> tuple[int, int]:
    """(offset, length) of chunk i's record, from the (checked) index at `index_offset`."""
    f.seek(base + index_offset + spec.RECORD_HEAD.size + spec.INDEX_HEAD.size + i * spec.INDEX_ENTRY.size)
    return spec.INDEX_ENTRY.unpack(read_exact(f, spec.INDEX_ENTRY.size, "index"))
