"""The audio track carried through a .cdt file untouched: the source stream's codec parameters and its packets,
and their record payloads (AUDIO_TRACK, AUDIO_PACKET: docs/bitstream.md)."""

from __future__ import annotations

from dataclasses import dataclass

from . import spec
from .errors import CorruptRecord, LimitExceeded


@dataclass(frozen=True)
class AudioTrack:
    """Codec parameters needed to remux the source audio packets into an output container."""

    codec_name: str  # FFmpeg codec name, e.g. "aac", "opus", "mp3"
    sample_rate: int  # Hz
    channels: int
    layout: str  # FFmpeg channel layout name, e.g. "stereo"; "" when unknown
    time_base_num: int  # packet timestamps are in units of time_base_num / time_base_den seconds
    time_base_den: int
    bit_rate: int  # bits/s as reported by the source; 0 when unknown
    extradata: bytes  # codec private data (e.g. AAC AudioSpecificConfig); b"" when none


@dataclass(frozen=True)
class AudioPacket:
    """One compressed audio packet, timestamps in the track's time base."""

    data: bytes
    pts: int | None
    dts: int | None
    duration: int


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
