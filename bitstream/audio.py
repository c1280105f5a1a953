"""The audio track carried through a .cdt file untouched: the source stream's codec parameters and its packets."""

from __future__ import annotations

from dataclasses import dataclass


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
