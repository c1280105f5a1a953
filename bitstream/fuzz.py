"""Mutation fuzzing of the .cdt reader (used by tests/test_bitstream_fuzz.py and
scripts/bitstream_fuzz.py).

Every mutant must either decode completely or raise a BitstreamError: no other exception, no
hang, no absurd allocation. Besides blind mutations (bit flips, insertions, deletions,
truncations, caught mostly by the CRCs) there are "deep" mutants whose checksums are recomputed
after the damage, so the header parser, index checks and both entropy decoders see hostile
content directly.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import random
import struct
import time
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

from . import spec
from .errors import BitstreamError
from .reader import CdtReader


@dataclass
class Layout:
    header_len: int  # preamble + fields + crc
    records: list[tuple[int, int, int]]  # (offset, type, payload length), index record included
    trailer: int  # offset of the trailer


def layout(data: bytes) -> Layout:
    """Where the structures of a *valid* file are (for targeted mutation)."""
    flen = spec.PREAMBLE.unpack_from(data, 0)[3]
    hl = spec.PREAMBLE.size + flen + spec.CRC.size
    trailer = len(data) - spec.TRAILER.size
    recs = []
    pos = hl
    while pos < trailer:
        rtype, length = spec.RECORD_HEAD.unpack_from(data, pos)
        recs.append((pos, rtype, length))
        pos += spec.RECORD_OVERHEAD + length
    return Layout(hl, recs, trailer)


def fix_checksums(buf: bytearray, lay: Layout) -> None:
    """Recompute header, record and trailer CRCs in place (structure positions from `lay`)."""
    hl = lay.header_len
    if hl <= len(buf):
        struct.pack_into("<I", buf, hl - 4, zlib.crc32(bytes(buf[:hl - 4])))
    for off, _, length in lay.records:
        end = off + spec.RECORD_HEAD.size + length
        if end + 4 <= len(buf):
            struct.pack_into("<I", buf, end, zlib.crc32(bytes(buf[off:end])))
    if lay.trailer + spec.TRAILER.size <= len(buf):
        struct.pack_into("<I", buf, lay.trailer + 12, zlib.crc32(bytes(buf[lay.trailer:lay.trailer + 12])))


def boundary_truncations(data: bytes) -> Iterator[tuple[str, bytes]]:
    """The file cut at every structure boundary and one byte either side of it."""
    lay = layout(data)
    cuts = {0, spec.PREAMBLE.size, lay.header_len - 4, lay.header_len, lay.trailer, len(data) - 4}
    for off, _, length in lay.records:
        cuts.update({off, off + spec.RECORD_HEAD.size, off + spec.RECORD_HEAD.size + length,
                     off + spec.RECORD_OVERHEAD + length})
    for c in sorted(cuts):
        for d in (c - 1, c, c + 1):
            if 0 <= d < len(data):
                yield f"truncate@{d}", data[:d]


def _interesting_byte(rng: random.Random) -> int:
    return rng.choice([0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE, rng.randrange(256)])


def mutate(data: bytes, rng: random.Random, lay: Layout | None = None) -> tuple[str, bytes]:
    """One random mutant of a valid file."""
    lay = lay or layout(data)
    b = bytearray(data)
    kind = rng.randrange(9)
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            p = rng.randrange(len(b))
            b[p] ^= 1 << rng.randrange(8)
        return "bitflip", bytes(b)
    if kind == 1:
        p = rng.randrange(len(b) + 1)
        b[p:p] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        return "insert", bytes(b)
    if kind == 2:
        p = rng.randrange(len(b))
        del b[p:p + rng.randint(1, 32)]
        return "delete", bytes(b)
    if kind == 3:
        return "truncate", bytes(b[:rng.randrange(len(b))])
    # deep mutants: damage inside a structure, then make every checksum match again
    if kind == 4:  # header fields
        lo, hi = spec.PREAMBLE.size, lay.header_len - 4
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(lo, hi)] = _interesting_byte(rng)
        name = "deep-header"
    elif kind in (5, 6):  # a chunk / audio payload
        off, _, length = rng.choice(lay.records[:-1] or lay.records)
        start = off + spec.RECORD_HEAD.size
        if length:
            for _ in range(rng.randint(1, 6)):
                if kind == 5:
                    b[start + rng.randrange(length)] ^= 1 << rng.randrange(8)
                else:
                    b[start + rng.randrange(length)] = _interesting_byte(rng)
        name = "deep-payload"
    elif kind == 7:  # a record length field
        off, _, length = rng.choice(lay.records)
        new = rng.choice([0, 1, length - 1, length + 1, length * 2, 0xFFFFFFFF, rng.randrange(1 << 32)])
        struct.pack_into("<I", b, off + 1, max(0, min(new, 0xFFFFFFFF)))
        name = "deep-length"
    else:  # index entries / trailer
        off, _, length = lay.records[-1]
        region = list(range(off + spec.RECORD_HEAD.size, off + spec.RECORD_HEAD.size + length))
        region += list(range(lay.trailer, lay.trailer + 12))
        for _ in range(rng.randint(1, 3)):
            b[rng.choice(region)] = _interesting_byte(rng)
        name = "deep-index"
    fix_checksums(b, lay)
    return name, bytes(b)


def exercise(data: bytes, salvage: bool = False, prior=None) -> str:
    """Read everything a decoder would read. Returns "ok" or the BitstreamError class name;
    any other exception propagates (that is a bug). Prior-coded files are read with `prior`
    (default: sample_prior(), the weights sample_file codes with)."""
    try:
        with CdtReader(io.BytesIO(data), salvage=salvage, prior=prior or sample_prior()) as r:
            r.header
            r.audio_track
            for _ in r.chunks():
                pass
            for _ in r.audio_packets():
                pass
            for _ in r.frame_time_records():  # every record, checked in closed form between them
                pass
            for _ in itertools.islice(r.frame_times(), 10_000):  # what a decoder reads, a frame at a time
                pass
            r.stats
        return "ok"
    except BitstreamError as e:
        msg = str(e)
        if "\n" in msg or not msg:
            raise AssertionError(f"error message not one line: {msg!r}") from None
        return type(e).__name__


def run(seed_files: list[bytes], iterations: int, seed: int = 0, time_limit: float = 2.0,
        boundaries: bool = True, log=None) -> dict[str, int]:
    """Fuzz; returns outcome counts. Raises AssertionError on a crash or a slow case."""
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    cases: list[tuple[str, bytes]] = []
    if boundaries:
        for data in seed_files:
            cases.extend(boundary_truncations(data))
    lays = [layout(d) for d in seed_files]

    def gen():
        yield from cases
        for _ in range(iterations):
            k = rng.randrange(len(seed_files))
            yield mutate(seed_files[k], rng, lays[k])

    for n, (name, data) in enumerate(gen()):
        for salvage in (False, True) if name.startswith("truncate") else (False,):
            t = time.perf_counter()
            try:
                outcome = exercise(data, salvage=salvage)
            except AssertionError:
                raise
            except BaseException as e:
                if isinstance(e, KeyboardInterrupt):
                    raise
                raise AssertionError(
                    f"case {n} ({name}, salvage={salvage}): uncaught {type(e).__name__}: {e}") from e
            dt = time.perf_counter() - t
            if dt > time_limit:
                raise AssertionError(f"case {n} ({name}): took {dt:.2f}s")
            key = f"{name.split('@')[0]}:{outcome}"
            counts[key] = counts.get(key, 0) + 1
        if log and n and n % 1000 == 0:
            log(f"{n} cases, {counts}")
    return counts


# ------------------------------------------------------------------------------------------------
# small valid files to start from
# ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def sample_prior():
    """Small integer prior weights (16 channels, hidden 8, 2 channel groups) from a fixed seed."""
    import math

    import numpy as np

    from .prior import PriorArch, PriorWeights

    arch = PriorArch(channels=16, hidden=8, channel_groups=2)
    rng = np.random.default_rng(5)
    tensors = {}
    for name, (k, cin, cout) in arch.layers().items():
        lim = 4096 // math.isqrt(k * k * cin)
        tensors[f"{name}.weight"] = rng.integers(-lim, lim + 1, size=(k * k * cin, cout))
        tensors[f"{name}.bias"] = rng.integers(-(1 << 14), 1 << 14, size=cout)
    tensors["trunk1.condition"] = rng.integers(-512, 513, size=(arch.conditions, arch.hidden))
    return PriorWeights(arch, tensors, sha256=hashlib.sha256(b"bitstream.fuzz.sample_prior v1").hexdigest())


def sample_header(coder: str = "range", **overrides):
    from .header import Header

    if coder == "prior":
        overrides = {"quant_step": (0.5,),
                     "entropy_params": {"prior_sha256": sample_prior().sha256, "reset_interval": 2}, **overrides}
    fields = dict(
        model_id="cdt-tiny", weights_hash=bytes(range(32)), width=50, height=38,
        coded_width=56, coded_height=40, num_frames=6, coded_frames=9,
        fps_num=24, fps_den=1, time_base_num=1, time_base_den=12288,
        pix_fmt="yuv420p", color_range="tv", color_space="bt709", color_primaries="bt709",
        color_trc="bt709", latent_channels=16, latent_height=5, latent_width=7, latent_frames=3,
        chunk_latent_frames=1, quant_step=(0.5,) * 16, entropy_coder=coder, seed=7,
        sampling_steps=1, extensions={"encoder": b"cdtcodec"},
    )
    fields.update(overrides)
    return Header(**fields)


#: what sample_file(media_facts=True) adds: a display turned 90 degrees clockwise with 4:3 samples, and frame
#: times off the 24 fps grid (ticks of 1/12288 s: 512 a frame) for frames 2 and 4 .. 5 and the end
MEDIA_FACTS = dict(display_matrix=(0, -(1 << 16), 0, 1 << 16, 0, 0, 0, 0, 1 << 30), sample_aspect_num=4,
                   sample_aspect_den=3)
MEDIA_FACTS_TIMES = (512, 1536, 2048, 2900, 3300, 3700)


def sample_file(coder: str = "range", seed: int = 0, audio: bool = True, media_facts: bool = False,
                **overrides) -> bytes:
    """A small valid .cdt (Laplacian symbols with a few escapes, optional audio) as bytes; with `media_facts`
    a version x.1 file with a DISPLAY field and FRAME_TIMES records (MEDIA_FACTS, MEDIA_FACTS_TIMES)."""
    import numpy as np

    from .audio import AudioPacket, AudioTrack
    from .writer import CdtWriter

    h = sample_header(coder, **({**MEDIA_FACTS, **overrides} if media_facts else overrides))
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    w = CdtWriter(buf, h, prior=sample_prior() if coder == "prior" else None)
    if audio:
        w.set_audio_track(AudioTrack("aac", 48000, 2, "stereo", 1, 48000, 128000, b"\x11\x90"))
    for i in range(h.num_chunks):
        c = np.round(rng.laplace(0, 3, size=h.chunk_shape(i))).astype(np.int64)
        c.flat[rng.integers(c.size)] = int(rng.integers(-(2 ** 31), 2 ** 31))
        w.write_chunk(c)
        if audio:
            w.write_audio_packet(AudioPacket(bytes(rng.integers(0, 256, 5 + i, dtype=np.uint8)),
                                             1024 * i, None if i % 2 else 1024 * i, 1024))
        if media_facts and i == 1:
            w.write_frame_times(MEDIA_FACTS_TIMES[:h.num_frames])
    w.close()
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------
# crafted headers: every checksum right, every field in its own range, the values extreme
# ------------------------------------------------------------------------------------------------
def with_field(data: bytes, tag: int, value: bytes) -> bytes:
    """`data` (a valid file) with header field `tag` holding `value` (same length) and the header CRC fixed."""
    lay = layout(data)
    b = bytearray(data)
    pos = spec.PREAMBLE.size
    while pos < lay.header_len - spec.CRC.size:
        t, _, length = spec.FIELD_HEAD.unpack_from(b, pos)
        pos += spec.FIELD_HEAD.size
        if t == tag:
            if len(value) != length:
                raise ValueError(f"field {t} holds {length} bytes, not {len(value)}")
            b[pos:pos + length] = value
            fix_checksums(b, lay)
            return bytes(b)
        pos += length
    raise ValueError(f"no header field {tag}")


def crafted_cases(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Headers a hostile writer could make with valid checksums: billions of sampling steps, the largest
    sizes and frame counts, extreme rationals. A reader must answer each quickly, allocating little."""
    h = CdtReader(io.BytesIO(data)).header
    u32 = (1 << 32) - 1
    for steps in (spec.MAX_SAMPLING_STEPS, spec.MAX_SAMPLING_STEPS + 1, u32):
        yield f"crafted-steps-{steps}", with_field(data, spec.Tag.SAMPLING, spec.SAMPLING.pack(h.seed, steps))
    for side in (8192, spec.MAX_DIM):
        lat = side // h.spatial_downsample
        geometry = spec.GEOMETRY.pack(side, side, side, side, h.num_frames, h.coded_frames)
        latent = spec.LATENT.pack(h.latent_channels, h.latent_frames, lat, lat, h.chunk_latent_frames,
                                  h.spatial_downsample, h.temporal_downsample)
        yield f"crafted-size-{side}", with_field(with_field(data, spec.Tag.GEOMETRY, geometry), spec.Tag.LATENT, latent)
    latent_frames = (spec.MAX_FRAMES - 1) // h.temporal_downsample + 1
    coded = 1 + (latent_frames - 1) * h.temporal_downsample
    geometry = spec.GEOMETRY.pack(h.width, h.height, h.coded_width, h.coded_height, coded, coded)
    latent = spec.LATENT.pack(h.latent_channels, latent_frames, h.latent_height, h.latent_width,
                              h.chunk_latent_frames, h.spatial_downsample, h.temporal_downsample)
    yield "crafted-frames-max", with_field(with_field(data, spec.Tag.GEOMETRY, geometry), spec.Tag.LATENT, latent)
    for name, timing in (("fps-1/max", (1, u32, 1, u32)), ("fps-max/1", (u32, 1, u32, 1)),
                         ("timebase-max/1", (h.fps_num, h.fps_den, u32, 1)), ("fps-max/max", (u32, u32, u32, u32))):
        yield f"crafted-{name}", with_field(data, spec.Tag.TIMING, spec.TIMING.pack(*timing))
    yield from _crafted_media_facts(data, h)


def _frame_times_records(data: bytes) -> list[tuple[int, int]]:
    return [(off, length) for off, rtype, length in layout(data).records if rtype == spec.RecordType.FRAME_TIMES]


def _crafted_media_facts(data: bytes, h) -> Iterator[tuple[str, bytes]]:
    """For a file with a DISPLAY field and FRAME_TIMES records (sample_file(media_facts=True)): records claiming
    2^32 - 1 times or a 4 GiB payload, one really holding 65,536 times, times beyond the video or running back,
    a singular display matrix, a zero aspect ratio."""
    records = _frame_times_records(data)
    if not records or h.display_matrix == spec.IDENTITY_MATRIX:
        return
    lay = layout(data)
    off, length = records[0]
    u32 = (1 << 32) - 1
    for name, at, value in (("frame-times-count-max", 4, u32), ("frame-times-first-max", 0, u32),
                            ("frame-times-first-0", 0, 0)):
        b = bytearray(data)
        struct.pack_into("<I", b, off + spec.RECORD_HEAD.size + at, value)
        fix_checksums(b, lay)
        yield f"crafted-{name}", bytes(b)
    b = bytearray(data)
    struct.pack_into("<I", b, off + 1, u32)  # the record's length: 4 GiB
    fix_checksums(b, lay)
    yield "crafted-frame-times-length-max", bytes(b)
    b = bytearray(data)
    # the record's first time -1: before the boundary ahead of the record's first one (t_{first-1} >= 0)
    struct.pack_into("<q", b, off + spec.RECORD_HEAD.size + spec.FRAME_TIMES_HEAD.size, -1)
    fix_checksums(b, lay)
    yield "crafted-frame-times-backwards", bytes(b)
    many = spec.FRAME_TIMES_HEAD.pack(1, 1 << 16) + b"".join(spec.FRAME_TIME.pack(i) for i in range(1, (1 << 16) + 1))
    yield "crafted-frame-times-65536", with_record_before_index(data, spec.RecordType.FRAME_TIMES, many)
    for name, matrix, aspect in (("display-singular", (0,) * 8 + (1 << 30,), (1, 1)),
                                 ("display-aspect-0", spec.IDENTITY_MATRIX, (0, 1))):
        yield f"crafted-{name}", with_field(data, spec.Tag.DISPLAY, spec.DISPLAY.pack(*matrix, *aspect))


def with_record_before_index(data: bytes, rtype: int, payload: bytes) -> bytes:
    """`data` (a valid file) with one more record just before its index, the index's place moved to match."""
    lay = layout(data)
    index_at = lay.records[-1][0]
    head = spec.RECORD_HEAD.pack(rtype, len(payload))
    rec = head + payload + spec.CRC.pack(zlib.crc32(payload, zlib.crc32(head)))
    b = bytearray(data[:index_at] + rec + data[index_at:])
    t = len(b) - spec.TRAILER.size
    _, index_len, _, _ = spec.TRAILER.unpack_from(b, t)
    t12 = spec.TRAILER.pack(index_at + len(rec), index_len, 0, spec.END_MAGIC)[:12]
    spec.TRAILER.pack_into(b, t, index_at + len(rec), index_len, zlib.crc32(t12), spec.END_MAGIC)
    return bytes(b)
