"""The streaming .cdt writer, and the sizes of what it writes without writing it.

File = header, body records, index record, trailer (docs/bitstream.md):

    header    (header.py)
    records   RECORD_HEAD(type, length) payload CRC32(type+length+payload), in any order:
              one CHUNK per latent-time chunk (in chunk order), at most one AUDIO_TRACK,
              AUDIO_PACKETs after it, FRAME_TIMES (minor 1, frame_times.py) in boundary order,
              other optional record types (>= 0x80) anywhere
    index     an INDEX record listing every chunk record; trailer (index.py)

The writer keeps O(1) memory in the number of chunks (index.py spools the index entries) and writes to a
temporary beside the final name first (atomic.py), then renames. reader.py reads what it writes; the record
payloads are audio.py's, frame_times.py's and chunk_coding.py's, the index and trailer index.py's, so the writer
and the reader share one definition of each part of the layout.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import replace
from typing import BinaryIO

import numpy as np

from . import spec
from .atomic import AtomicOutput, CloseOrAbort, deferred_signals
from .audio import AudioPacket, AudioTrack, encode_audio_packet, encode_audio_track
from .chunk_coding import chunk_coder
from .errors import LimitExceeded
from .frame_times import TimesWriter
from .header import Header, encode_header, format_version
from .index import IndexWriter, index_record_bytes


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
        self._index: IndexWriter | None = None
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
                self._index = IndexWriter()
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
        self._index.add(offset, length)
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
            self._index.finish(self._write, self._pos, self._audio_track_offset, self._audio_packets)
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
    return len(encode_header(h)) + chunk_records + other_records + index_record_bytes(h.num_chunks) + spec.TRAILER.size
