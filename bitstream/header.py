"""The .cdt file header: what was coded and how, as a frozen dataclass, and its byte form.

Byte form (see docs/bitstream.md):

    preamble   PREAMBLE: magic, major, minor, field-area length L
    fields     L bytes of (FIELD_HEAD tag/flags/length, value) entries
    crc        CRC-32 of preamble + fields

FIELDS is the one table of which attributes each field carries, in which byte order: the writer and the parser
both walk it. Its optional fields (DISPLAY, format minor 1) are written only when their values are not the
defaults, so a header without them is byte for byte what earlier writers made, and its version stays x.0.

Why over 400 lines: the field table, the validation, the writer and the parser must agree field by field; they stay
together.
"""

from __future__ import annotations

import math
import numbers
import zlib
from dataclasses import dataclass, field, fields, replace
from typing import BinaryIO, Iterable, Mapping

from . import coder_params, spec
from .errors import (
    BadMagic,
    BitstreamError,
    ChecksumMismatch,
    InconsistentHeader,
    LimitExceeded,
    Truncated,
    UnsupportedFeature,
    UnsupportedVersion,
)

ENTROPY_CODERS_NAMES = tuple(spec.CODER_IDS)  # ("zstd", "range")
DEFAULT_CODER = "range"  # fewer real bytes than zstd on every input we measured (docs/bitstream.md)
DEFAULT_ZSTD_LEVEL = coder_params.DEFAULT_ZSTD_LEVEL


@dataclass(frozen=True, kw_only=True)
class Header:
    """Everything a decoder needs besides the chunk symbols. Strings are ASCII."""

    model_id: str
    weights_hash: bytes
    width: int
    height: int
    coded_width: int
    coded_height: int
    num_frames: int
    coded_frames: int
    fps_num: int
    fps_den: int
    time_base_num: int
    time_base_den: int
    latent_channels: int
    latent_height: int
    latent_width: int
    latent_frames: int
    quant_step: tuple[float, ...]
    pix_fmt: str = ""
    color_range: str = ""
    color_space: str = ""
    color_primaries: str = ""
    color_trc: str = ""
    chunk_latent_frames: int = 1
    entropy_coder: str = DEFAULT_CODER
    #: coder parameters; missing keys take the coder's defaults (see full_entropy_params)
    entropy_params: Mapping[str, int] = field(default_factory=dict)
    seed: int = 0
    sampling_steps: int = 1
    spatial_downsample: int = 8
    temporal_downsample: int = 4
    #: optional named fields carried verbatim (readers that do not know a key ignore it)
    extensions: Mapping[str, bytes] = field(default_factory=dict)
    #: how a player shows the frames (DISPLAY field, minor 1): the display matrix (FFmpeg's layout: 9 ints, a b u
    #: c d v x y w) and the sample aspect ratio; the defaults (identity, 1:1) mean "as coded" and write no field
    display_matrix: tuple[int, ...] = spec.IDENTITY_MATRIX
    sample_aspect_num: int = 1
    sample_aspect_den: int = 1

    def __post_init__(self):
        # accept numpy integers and None for empty strings from callers; store plain types
        for f in _INT_FIELDS:
            v = getattr(self, f)
            if isinstance(v, numbers.Integral) and not isinstance(v, bool) and type(v) is not int:
                object.__setattr__(self, f, int(v))
        for f in _STR_FIELDS:
            if getattr(self, f) is None:
                object.__setattr__(self, f, "")
        qs = self.quant_step
        if isinstance(qs, (int, float)):
            qs = (qs,)
        object.__setattr__(self, "quant_step", tuple(float(q) for q in qs))
        object.__setattr__(self, "entropy_params", dict(self.entropy_params))
        if not isinstance(self.display_matrix, tuple) or any(type(v) is not int for v in self.display_matrix):
            try:
                object.__setattr__(self, "display_matrix", tuple(int(v) for v in self.display_matrix))
            except (TypeError, ValueError):
                pass  # validate_header names the problem
        object.__setattr__(self, "extensions", dict(self.extensions))
        if isinstance(self.weights_hash, (bytearray, memoryview)):
            object.__setattr__(self, "weights_hash", bytes(self.weights_hash))

    def __hash__(self):
        return hash(tuple(
            tuple(sorted(v.items())) if isinstance(v, dict) else v
            for v in (getattr(self, f.name) for f in fields(self))))

    # ---- derived layout ----------------------------------------------------------------------
    @property
    def num_chunks(self) -> int:
        """The first chunk holds one latent frame, the others chunk_latent_frames each (the
        last one possibly fewer)."""
        rest = self.latent_frames - 1
        return 1 + -(-rest // self.chunk_latent_frames)

    def chunk_frames(self, i: int) -> int:
        """Latent frames in chunk i."""
        if not 0 <= i < self.num_chunks:
            raise IndexError(f"chunk {i} out of range 0..{self.num_chunks - 1}")
        if i == 0:
            return 1
        start = 1 + (i - 1) * self.chunk_latent_frames
        return min(self.chunk_latent_frames, self.latent_frames - start)

    def chunk_shape(self, i: int) -> tuple[int, int, int, int]:
        return (self.latent_channels, self.chunk_frames(i), self.latent_height, self.latent_width)

    def chunk_start_frame(self, i: int) -> int:
        """Index of chunk i's first latent frame."""
        self.chunk_frames(i)
        return 0 if i == 0 else 1 + (i - 1) * self.chunk_latent_frames

    def full_entropy_params(self) -> dict[str, int]:
        """entropy_params with the coder's defaults filled in."""
        return coder_params.defaults(self.entropy_coder, self.entropy_params, len(self.quant_step))

    def with_defaults(self) -> "Header":
        """This header as a reader will return it (entropy params made explicit)."""
        return replace(self, entropy_params=self.full_entropy_params())

    # ---- display (DISPLAY field) -------------------------------------------------------------------------
    @property
    def rotation(self) -> float:
        """Degrees counter-clockwise the frames are turned for display, as FFmpeg's av_display_rotation_get
        reads the display matrix (-90 for a phone video flagged `rotate=90`); 0 for the identity."""
        m = [v / (1 << 16) for v in self.display_matrix]
        sx, sy = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
        return -math.degrees(math.atan2(m[1] / sy, m[0] / sx)) + 0.0 if sx and sy else 0.0

    @property
    def mirrored(self) -> bool:
        """Whether the display matrix flips the picture (negative determinant)."""
        m = self.display_matrix
        return m[0] * m[4] - m[1] * m[3] < 0

# ------------------------------------------------------------------------------------------------
# The field table. FIELDS says, for every required header field in the order the writer puts them, which
# Header attributes its value carries and in which byte order (in the manner of CPython's zipfile structs):
# encode_header and parse_header_fields both walk it, and nothing else maps attributes to bytes.
# ------------------------------------------------------------------------------------------------
class _Cursor:
    """Reading one field's value front to back; every shortfall is an InconsistentHeader naming the field."""

    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise InconsistentHeader(f"header: {self.what} field too short")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, st):
        return st.unpack(self.take(st.size))

    def ascii(self, raw: bytes, name: str) -> str:
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise InconsistentHeader(f"header: {name} is not ASCII") from None

    def string(self, name: str) -> str:
        (n,) = self.unpack(spec.STR_LEN)
        return self.ascii(self.take(n), name)

    def rest(self) -> bytes:
        b = self.data[self.pos:]
        self.pos = len(self.data)
        return b

    def done(self) -> None:
        if self.pos != len(self.data):
            raise InconsistentHeader(f"header: {self.what} field has {len(self.data) - self.pos} trailing bytes")


def _s(text: str) -> bytes:
    b = text.encode("ascii")
    return spec.STR_LEN.pack(len(b)) + b


# Layouts of a field's value: write(values) -> bytes, read(cursor, names) -> values, one per attribute.
class _Packed:
    """A fixed struct of numbers, one attribute per position."""

    def __init__(self, st):
        self.st = st

    def write(self, values) -> bytes:
        return self.st.pack(*values)

    def read(self, c: _Cursor, names) -> tuple:
        return c.unpack(self.st)


class _Ascii:
    """One ASCII string filling the whole value (no length prefix: the field's length is its length)."""

    def write(self, values) -> bytes:
        return values[0].encode("ascii")

    def read(self, c: _Cursor, names) -> tuple:
        return (c.ascii(c.rest(), names[0]),)


class _Bytes:
    """Exactly `size` raw bytes."""

    def __init__(self, size: int, what: str):
        self.size, self.what = size, what

    def write(self, values) -> bytes:
        return values[0]

    def read(self, c: _Cursor, names) -> tuple:
        raw = c.rest()
        if len(raw) != self.size:
            raise InconsistentHeader(f"header: {self.what} is {len(raw)} bytes, expected {self.size}")
        return (raw,)


class _Strings:
    """One str8 per attribute."""

    def write(self, values) -> bytes:
        return b"".join(_s(v) for v in values)

    def read(self, c: _Cursor, names) -> tuple:
        return tuple(c.string(n) for n in names)


class _Steps:
    """A u16 count, then that many f64: one attribute holding the tuple."""

    def write(self, values) -> bytes:
        (steps,) = values
        return spec.QUANT_COUNT.pack(len(steps)) + b"".join(spec.QUANT_STEP.pack(q) for q in steps)

    def read(self, c: _Cursor, names) -> tuple:
        (n,) = c.unpack(spec.QUANT_COUNT)
        return (tuple(c.unpack(spec.QUANT_STEP)[0] for _ in range(n)),)


class _Display:
    """DISPLAY: the display matrix (9 i32) as one attribute, then the sample aspect ratio's two u32."""

    def write(self, values) -> bytes:
        matrix, num, den = values
        return spec.DISPLAY.pack(*matrix, num, den)

    def read(self, c: _Cursor, names) -> tuple:
        v = c.unpack(spec.DISPLAY)
        return tuple(v[:9]), v[9], v[10]


class _Coder:
    """The coder's u8 id, then its parameters as coder_params lays them out: (entropy_coder, entropy_params)."""

    def write(self, values) -> bytes:
        coder, params = values
        return spec.ENTROPY_ID.pack(spec.CODER_IDS[coder]) + coder_params.pack(coder, params)

    def read(self, c: _Cursor, names) -> tuple:
        (cid,) = c.unpack(spec.ENTROPY_ID)
        if cid not in spec.CODER_NAMES:
            raise UnsupportedFeature(f"header: unknown entropy coder id {cid}")
        coder = spec.CODER_NAMES[cid]
        return coder, coder_params.unpack(coder, c.unpack)


@dataclass(frozen=True)
class _Field:
    tag: int
    what: str  # the field's name in error messages
    names: tuple[str, ...]  # the Header attributes its value carries, in byte order
    layout: object
    #: 0: required in every file. Otherwise optional: known from that minor version on, written (without the
    #: required bit) only when its attributes are not their defaults, which a file without it reads as
    since_minor: int = 0

    @property
    def required(self) -> bool:
        return self.since_minor == 0

    def encode(self, h: Header) -> bytes:
        return self.layout.write(tuple(getattr(h, n) for n in self.names))

    def present(self, h: Header) -> bool:
        """Whether `h` writes this field (an optional one only when its values are not the defaults)."""
        return self.required or any(getattr(h, n) != _DEFAULTS[n] for n in self.names)

    def decode(self, value: bytes) -> dict:
        c = _Cursor(value, self.what)
        values = self.layout.read(c, self.names)
        c.done()
        return dict(zip(self.names, values))


FIELDS: tuple[_Field, ...] = (
    _Field(spec.Tag.MODEL_ID, "model_id", ("model_id",), _Ascii()),
    _Field(spec.Tag.WEIGHTS_HASH, "weights hash", ("weights_hash",), _Bytes(32, "weights hash")),
    _Field(spec.Tag.GEOMETRY, "geometry",
           ("width", "height", "coded_width", "coded_height", "num_frames", "coded_frames"), _Packed(spec.GEOMETRY)),
    _Field(spec.Tag.TIMING, "timing", ("fps_num", "fps_den", "time_base_num", "time_base_den"), _Packed(spec.TIMING)),
    _Field(spec.Tag.COLOR, "color", ("pix_fmt", "color_range", "color_space", "color_primaries", "color_trc"),
           _Strings()),
    _Field(spec.Tag.LATENT, "latent", ("latent_channels", "latent_frames", "latent_height", "latent_width",
                                       "chunk_latent_frames", "spatial_downsample", "temporal_downsample"),
           _Packed(spec.LATENT)),
    _Field(spec.Tag.QUANT, "quant", ("quant_step",), _Steps()),
    _Field(spec.Tag.ENTROPY, "entropy", ("entropy_coder", "entropy_params"), _Coder()),
    _Field(spec.Tag.SAMPLING, "sampling", ("seed", "sampling_steps"), _Packed(spec.SAMPLING)),
    _Field(spec.Tag.DISPLAY, "display", ("display_matrix", "sample_aspect_num", "sample_aspect_den"), _Display(),
           since_minor=spec.MEDIA_FACTS_MINOR),
)
_BY_TAG = {f.tag: f for f in FIELDS}
_DEFAULTS = {f.name: f.default for f in fields(Header)}
# The table covers the header: every attribute but the extensions (a repeatable field of their own) once.
assert sorted(n for f in FIELDS for n in f.names) == sorted(f.name for f in fields(Header) if f.name != "extensions")
assert tuple(f.tag for f in FIELDS if f.required) == spec.REQUIRED_TAGS
_INT_FIELDS = tuple(n for f in FIELDS if isinstance(f.layout, (_Packed, _Display)) for n in f.names
                    if n != "display_matrix")
_STR_FIELDS = tuple(n for f in FIELDS if isinstance(f.layout, _Strings) for n in f.names)


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------
def _ascii_ok(s, name: str, allow_empty: bool = True) -> None:
    if not isinstance(s, str):
        raise InconsistentHeader(f"header: {name} must be a string")
    if not allow_empty and not s:
        raise InconsistentHeader(f"header: {name} is empty")
    if len(s) > spec.MAX_STR or not all(32 <= ord(c) < 127 for c in s):
        raise InconsistentHeader(f"header: {name} must be printable ASCII of at most {spec.MAX_STR} chars")


def _int_in(v, name: str, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise InconsistentHeader(f"header: {name} must be an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise InconsistentHeader(f"header: {name}={v} outside {lo}..{hi}")


def validate_header(h: Header) -> None:
    """Raise InconsistentHeader unless every field is in range and the fields agree."""
    _ascii_ok(h.model_id, "model_id", allow_empty=False)
    if not isinstance(h.weights_hash, bytes) or len(h.weights_hash) != 32:
        raise InconsistentHeader("header: weights_hash must be 32 bytes")
    u32 = (1 << 32) - 1
    for name in ("width", "height", "coded_width", "coded_height"):
        _int_in(getattr(h, name), name, 1, spec.MAX_DIM)
    _int_in(h.coded_frames, "coded_frames", 1, spec.MAX_FRAMES)
    _int_in(h.num_frames, "num_frames", 1, h.coded_frames)
    if h.width > h.coded_width or h.height > h.coded_height:
        raise InconsistentHeader(
            f"header: original size {h.width}x{h.height} larger than coded size {h.coded_width}x{h.coded_height}")
    for name in ("fps_num", "fps_den", "time_base_num", "time_base_den"):
        _int_in(getattr(h, name), name, 1, u32)
    for name in _STR_FIELDS:
        _ascii_ok(getattr(h, name), name)
    _int_in(h.spatial_downsample, "spatial_downsample", 1, 1024)
    _int_in(h.temporal_downsample, "temporal_downsample", 1, 1024)
    _int_in(h.latent_channels, "latent_channels", 1, spec.MAX_CHANNELS)
    _int_in(h.latent_height, "latent_height", 1, spec.MAX_DIM)
    _int_in(h.latent_width, "latent_width", 1, spec.MAX_DIM)
    _int_in(h.latent_frames, "latent_frames", 1, spec.MAX_FRAMES)
    _int_in(h.chunk_latent_frames, "chunk_latent_frames", 1, spec.MAX_FRAMES)
    if h.latent_width * h.spatial_downsample != h.coded_width:
        raise InconsistentHeader(
            f"header: latent_width {h.latent_width} x {h.spatial_downsample} != coded_width {h.coded_width}")
    if h.latent_height * h.spatial_downsample != h.coded_height:
        raise InconsistentHeader(
            f"header: latent_height {h.latent_height} x {h.spatial_downsample} != coded_height {h.coded_height}")
    if 1 + (h.latent_frames - 1) * h.temporal_downsample != h.coded_frames:
        raise InconsistentHeader(
            f"header: latent_frames {h.latent_frames} does not give coded_frames {h.coded_frames} "
            f"at temporal_downsample {h.temporal_downsample}")
    biggest_t = max(1, min(h.chunk_latent_frames, h.latent_frames - 1))
    if h.latent_channels * biggest_t * h.latent_height * h.latent_width > spec.MAX_CHUNK_SYMBOLS:
        raise LimitExceeded(f"header: a chunk would hold more than {spec.MAX_CHUNK_SYMBOLS} symbols")
    qs = h.quant_step
    if len(qs) not in (1, h.latent_channels):
        raise InconsistentHeader(
            f"header: quant_step has {len(qs)} entries, expected 1 or latent_channels={h.latent_channels}")
    for q in qs:
        if not (math.isfinite(q) and q > 0):
            raise InconsistentHeader(f"header: quant_step {q!r} is not a positive finite number")
    if h.entropy_coder not in spec.CODER_IDS:
        raise InconsistentHeader(f"header: unknown entropy coder {h.entropy_coder!r}")
    coder_params.validate(h.entropy_coder, h.full_entropy_params(), qs, h.latent_channels)
    if h.entropy_coder == "prior" and h.latent_height * h.latent_width > spec.PRIOR_MAX_LATENT_PIXELS:
        raise LimitExceeded(f"header: the prior coder takes latent frames of at most {spec.PRIOR_MAX_LATENT_PIXELS} "
                            f"positions, this one has {h.latent_height}x{h.latent_width}")
    _int_in(h.seed, "seed", 0, (1 << 64) - 1)
    _int_in(h.sampling_steps, "sampling_steps", 0, spec.MAX_SAMPLING_STEPS)
    _validate_display(h)
    for k, v in h.extensions.items():
        _ascii_ok(k, "extension key", allow_empty=False)
        if not isinstance(v, (bytes, bytearray)):
            raise InconsistentHeader(f"header: extension {k!r} value must be bytes")


def _validate_display(h: Header) -> None:
    m = h.display_matrix
    if not isinstance(m, tuple) or len(m) != 9:
        raise InconsistentHeader("header: display_matrix must be 9 integers")
    for i, v in enumerate(m):
        _int_in(v, f"display_matrix[{i}]", -(1 << 31), (1 << 31) - 1)
    if m[2] or m[5] or m[8] != 1 << 30:
        raise InconsistentHeader("header: display_matrix must have u = v = 0 and w = 2^30 (a 2-D transform)")
    if m[0] * m[4] - m[1] * m[3] == 0:
        raise InconsistentHeader("header: display_matrix is singular (it would show nothing)")
    _int_in(h.sample_aspect_num, "sample_aspect_num", 1, spec.MAX_ASPECT)
    _int_in(h.sample_aspect_den, "sample_aspect_den", 1, spec.MAX_ASPECT)


def format_version(h: Header, frame_times: bool = False) -> tuple[int, int]:
    """(major, minor) of a file with header `h` (and FRAME_TIMES records when `frame_times`): the coder's version,
    its minor raised to the one that defines each optional field present and the frame-times records."""
    major, minor = coder_params.version(h.entropy_coder)
    for f in FIELDS:
        if not f.required and f.present(h):
            minor = max(minor, f.since_minor)
    if frame_times:
        minor = max(minor, spec.MEDIA_FACTS_MINOR)
    return major, minor


# ------------------------------------------------------------------------------------------------
# writing and parsing: both walk FIELDS
# ------------------------------------------------------------------------------------------------
def _field(tag: int, value: bytes, required: bool = True) -> bytes:
    flags = spec.FIELD_FLAG_REQUIRED if required else 0
    return spec.FIELD_HEAD.pack(tag, flags, len(value)) + value


def encode_header(h: Header, extra_fields: Iterable[tuple[int, bool, bytes]] = (), *,
                  frame_times: bool = False) -> bytes:
    """The header's bytes: preamble, fields in tag order (the required ones, the extensions, the optional ones
    whose values are not the defaults), CRC. extra_fields (tag, required, value) are appended verbatim (for
    testing forward compatibility). `frame_times`: the file holds FRAME_TIMES records (see format_version)."""
    validate_header(h)
    h = h.with_defaults()  # the coder's parameters written out in full
    parts = [_field(f.tag, f.encode(h)) for f in FIELDS if f.required]
    for k, v in h.extensions.items():
        parts.append(_field(spec.Tag.EXTENSION, _s(k) + bytes(v), required=False))
    parts += [_field(f.tag, f.encode(h), required=False) for f in FIELDS if not f.required and f.present(h)]
    for tag, required, value in extra_fields:
        parts.append(_field(tag, bytes(value), required))
    body = b"".join(parts)
    if len(body) > spec.MAX_HEADER_BYTES:
        raise LimitExceeded(f"header: {len(body)} bytes exceeds {spec.MAX_HEADER_BYTES}")
    pre = spec.PREAMBLE.pack(spec.MAGIC, *format_version(h, frame_times), len(body))
    return pre + body + spec.CRC.pack(zlib.crc32(pre + body))


def parse_header_fields(body: bytes, minor: int = spec.FORMAT_MINOR) -> Header:
    """Header from the field area (CRC already checked) of a file of minor version `minor`: an optional field
    of a later minor is unknown there (skipped, or refused when flagged required)."""
    seen: dict[int, bytes] = {}
    extensions: dict[str, bytes] = {}
    pos = 0
    while pos < len(body):
        if pos + spec.FIELD_HEAD.size > len(body):
            raise InconsistentHeader(f"header: field head at byte {pos} runs past the header")
        tag, flags, length = spec.FIELD_HEAD.unpack_from(body, pos)
        pos += spec.FIELD_HEAD.size
        if length > len(body) - pos:
            raise InconsistentHeader(f"header: field {tag} length {length} runs past the header")
        value = body[pos:pos + length]
        pos += length
        if tag == spec.Tag.EXTENSION:
            c = _Cursor(value, "extension")
            key = c.string("extension key")
            if key in extensions:
                raise InconsistentHeader(f"header: extension {key!r} appears twice")
            extensions[key] = c.rest()
        elif tag in _BY_TAG and minor >= _BY_TAG[tag].since_minor:
            if tag in seen:
                raise InconsistentHeader(f"header: field {tag} appears twice")
            seen[tag] = value
        elif flags & spec.FIELD_FLAG_REQUIRED:
            raise UnsupportedFeature(f"header: unknown required field {tag} (written by a newer cdtcodec?)")
        # unknown optional field: skipped
    missing = [f.tag for f in FIELDS if f.required and f.tag not in seen]
    if missing:
        raise InconsistentHeader(f"header: missing required field(s) {missing}")
    values: dict = {}
    for f in FIELDS:
        if f.tag in seen:  # an optional field absent: its attributes keep their defaults
            values.update(f.decode(seen[f.tag]))
    h = Header(**values, extensions=extensions)
    validate_header(h)
    return h


def read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    """Read exactly n bytes or raise Truncated naming `what`."""
    b = f.read(n)
    if b is None or len(b) != n:
        raise Truncated(f"{what}: file ends after {0 if b is None else len(b)} of {n} bytes")
    return b


def read_header(f: BinaryIO, file_size: int) -> tuple[Header, int]:
    """Parse the header at the current position (the start of the file); returns it and its
    total length in bytes. Checks magic, version, size limits and the CRC before parsing."""
    h, length, _ = read_versioned_header(f, file_size)
    return h, length


def read_versioned_header(f: BinaryIO, file_size: int) -> tuple[Header, int, tuple[int, int]]:
    """read_header, plus the file's (major, minor) version."""
    head = f.read(spec.PREAMBLE.size)
    if head is None or len(head) < len(spec.MAGIC) or head[:len(spec.MAGIC)] != spec.MAGIC:
        if head and spec.MAGIC.startswith(head):
            raise Truncated(f"header: file ends after {len(head)} bytes")
        raise BadMagic("not a .cdt file (bad magic)")
    if len(head) < spec.PREAMBLE.size:
        raise Truncated(f"header: file ends after {len(head)} bytes")
    _, major, minor, flen = spec.PREAMBLE.unpack(head)
    if major not in spec.READ_MAJORS:
        raise UnsupportedVersion(f"format version {major}.{minor} not supported "
                                 f"(this reader reads {', '.join(f'{m}.x' for m in spec.READ_MAJORS)})")
    if flen > spec.MAX_HEADER_BYTES:
        raise LimitExceeded(f"header: field area of {flen} bytes exceeds {spec.MAX_HEADER_BYTES}")
    if spec.PREAMBLE.size + flen + spec.CRC.size > file_size:
        raise Truncated(f"header: announces {flen} bytes but the file has {file_size}")
    body = read_exact(f, flen, "header")
    (crc,) = spec.CRC.unpack(read_exact(f, spec.CRC.size, "header checksum"))
    if zlib.crc32(head + body) != crc:
        raise ChecksumMismatch("header: checksum mismatch")
    try:
        h = parse_header_fields(body, minor)
    except BitstreamError:
        raise
    except Exception as e:  # last line of defence: never let a parse bug escape untyped
        raise InconsistentHeader(f"header: unparseable ({type(e).__name__}: {e})") from None
    coder_params.check_version(h.entropy_coder, major, minor)
    return h, spec.PREAMBLE.size + flen + spec.CRC.size, (major, minor)
