"""Probing an input once: its streams, size, exact frame rate, colour tags, display facts and audio track.

Also the two low-level steps every pass over an input shares: opening it and decoding one stream's frames.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import av

from bitstream.audio import AudioTrack
from cdtcodec.media.errors import VideoError, _err
from cdtcodec.media.formats import (
    _COLOR_PRIMARIES_NAMES,
    _COLOR_RANGE_NAMES,
    _COLOR_SPACE_NAMES,
    _COLOR_TRC_NAMES,
    MAX_SIDE,
    _color_name,
    is_image_path,
)


def _clean_rate(rate: Fraction) -> Fraction:
    """Snap a rate computed from rounded timestamps to a nearby simple rational (e.g. 30000/1001)."""
    simple = rate.limit_denominator(1001)
    if simple > 0 and abs(simple - rate) <= rate * Fraction(1, 100000):
        return simple
    return rate


def _pick_fps(stream) -> Fraction | None:
    cands = []
    for name in ("average_rate", "guessed_rate", "base_rate"):
        try:
            r = getattr(stream, name)
        except Exception:
            r = None
        if r is not None and r.numerator > 0 and r.denominator > 0:
            cands.append(Fraction(r.numerator, r.denominator))
    if not cands:
        return None
    avg = cands[0]
    # A constant-rate stream has average == guessed (up to timestamp rounding); then the guessed
    # rate (FFmpeg's r_frame_rate) is the exact one.  For variable rate streams keep the average.
    for other in cands[1:]:
        if abs(other - avg) <= avg / 100:
            return _clean_rate(other)
    return _clean_rate(avg)




def _first_video_stream(container):
    attached = int(av.stream.Disposition.attached_pic)
    for s in container.streams.video:
        if not (int(s.disposition) & attached):
            return s
    return None



@dataclass(frozen=True)
class VideoInfo:
    """What :func:`open_video` found out about an input (about the whole file, not the window)."""

    path: str
    width: int
    height: int
    fps: Fraction  # exact frame rate; 1 for a still image
    time_base: Fraction  # the video stream's time base
    num_frames: int | None  # from the container when it says; None when unknown
    duration_s: float | None
    pix_fmt: str  # decoder pixel format, e.g. "yuv420p"; "" when unknown
    color_range: str  # "tv" / "pc"; "" when unknown
    color_space: str  # matrix, e.g. "bt709"; "" when unknown
    color_primaries: str
    color_trc: str
    audio: AudioTrack | None  # the first audio stream, remuxable; None when none
    is_image: bool
    codec_name: str = ""  # video codec, e.g. "h264"
    container_format: str = ""  # FFmpeg demuxer name
    #: how a player shows the frames: the display matrix (FFmpeg's 9 ints, a b u c d v x y w) when the stream has
    #: one (a phone's `rotate` flag), the sample aspect ratio when it is known and not square
    display_matrix: tuple[int, ...] | None = None
    sample_aspect: Fraction | None = None


def _open_input(path: str):
    options = {"pattern_type": "none"} if is_image_path(path) else None
    try:
        return av.open(path, mode="r", options=options, metadata_errors="ignore")
    except av.FFmpegError as e:
        raise _err(path, "not a video or image PyAV can read", e) from None
    except (OSError, ValueError, UnicodeError) as e:
        raise _err(path, "cannot open", e) from None


def _audio_track(stream) -> AudioTrack | None:
    cc = stream.codec_context
    if cc is None:
        return None
    try:
        codec_name = cc.codec.canonical_name or cc.name
    except Exception:
        codec_name = cc.name
    try:
        layout = cc.layout.name or ""
        channels = int(cc.channels or len(cc.layout.channels))
    except Exception:
        layout, channels = "", int(getattr(cc, "channels", 0) or 0)
    tb = stream.time_base or Fraction(1, cc.sample_rate or 1)
    return AudioTrack(
        codec_name=str(codec_name),
        sample_rate=int(cc.sample_rate or 0),
        channels=channels,
        layout=str(layout),
        time_base_num=int(tb.numerator),
        time_base_den=int(tb.denominator),
        bit_rate=int(cc.bit_rate or 0),
        extradata=bytes(cc.extradata or b""),
    )


def _display_matrix(frame) -> tuple[int, ...] | None:
    """The display matrix FFmpeg attaches to decoded frames (from the container's tkhd matrix, Matroska's
    projection, or the bitstream), as its 9 int32 in host order; None when there is none."""
    try:
        for side in frame.side_data:
            if side.type == av.sidedata.sidedata.Type.DISPLAYMATRIX and len(bytes(side)) == 36:
                return struct.unpack("=9i", bytes(side))
    except (AttributeError, ValueError, av.FFmpegError):
        pass
    return None


def _sample_aspect(stream) -> Fraction | None:
    try:
        sar = stream.sample_aspect_ratio  # FFmpeg's guess: the container's, else the codec's
    except (AttributeError, ValueError, ZeroDivisionError, av.FFmpegError):
        return None
    if not sar or sar.numerator <= 0 or sar.denominator <= 0 or sar == 1:
        return None
    return Fraction(sar.numerator, sar.denominator)


def _decode_frames(container, stream, path: str) -> Iterator:
    """Decoded frames of one stream, skipping packets the decoder rejects as corrupt."""
    bad = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = stream.decode(packet)
            except av.InvalidDataError:
                bad += 1
                if bad > 100:
                    raise
                continue
            yield from frames
    except av.FFmpegError as e:
        raise _err(path, "decoding failed", e) from None
    except (OSError, ValueError, MemoryError) as e:
        raise _err(path, "decoding failed", e) from None


@dataclass
class _Probe:
    info: VideoInfo
    video_index: int
    audio_index: int | None
    origin: Fraction  # seconds; time 0 of the video (stream start)
    first_time: Fraction  # seconds; presentation time of the first decoded frame


def _probe(path: str) -> _Probe:
    if not os.path.exists(path):
        raise VideoError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VideoError(f"{path}: is a directory, not a video file")
    if not os.access(path, os.R_OK):
        raise VideoError(f"{path}: permission denied")
    container = _open_input(path)
    try:
        vs = _first_video_stream(container)
        if vs is None:
            raise VideoError(f"{path}: no video stream")
        if vs.codec_context is None:
            raise VideoError(f"{path}: no decoder for its video codec")
        vs.thread_type = "AUTO"
        frame = None
        for frame in _decode_frames(container, vs, path):
            break
        if frame is None:
            raise VideoError(f"{path}: video stream has zero frames")
        width, height = int(frame.width), int(frame.height)
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise VideoError(
                f"{path}: unsupported frame size {width}x{height} (each side must be 1..{MAX_SIDE})"
            )
        cc = vs.codec_context
        fmt = container.format.name or ""
        is_image = is_image_path(path) or fmt == "image2" or (
            fmt.endswith("_pipe") and fmt != "yuv4mpegpipe"
        )
        tb = Fraction(vs.time_base) if vs.time_base else None
        if is_image:
            fps = Fraction(1)
            num_frames = 1
            duration_s = 1.0
        else:
            fps = _pick_fps(vs) or Fraction(25)
            num_frames = int(vs.frames) if vs.frames and vs.frames > 0 else None
            duration_s = None
            if vs.duration is not None and tb is not None and vs.duration > 0:
                duration_s = float(vs.duration * tb)
            elif container.duration is not None and container.duration > 0:
                duration_s = container.duration / av.time_base
        if tb is None:
            tb = 1 / fps
        origin = Fraction(vs.start_time) * tb if vs.start_time is not None else Fraction(0)
        first_time = Fraction(frame.pts) * tb if frame.pts is not None else origin

        def pick(table, frame_attr, ctx_attr):
            name = _color_name(table, getattr(frame, frame_attr, None))
            return name or _color_name(table, getattr(cc, ctx_attr, None))

        audio, audio_index = None, None
        if container.streams.audio:
            a = container.streams.audio[0]
            try:
                audio = _audio_track(a)
            except Exception:
                audio = None
            if audio is not None:
                audio_index = a.index

        info = VideoInfo(
            path=path,
            width=width,
            height=height,
            fps=fps,
            time_base=tb,
            num_frames=num_frames,
            duration_s=duration_s,
            pix_fmt=(cc.pix_fmt or frame.format.name or "") if cc is not None else frame.format.name,
            color_range=pick(_COLOR_RANGE_NAMES, "color_range", "color_range"),
            color_space=pick(_COLOR_SPACE_NAMES, "colorspace", "colorspace"),
            color_primaries=pick(_COLOR_PRIMARIES_NAMES, "color_primaries", "color_primaries"),
            color_trc=pick(_COLOR_TRC_NAMES, "color_trc", "color_trc"),
            audio=audio,
            is_image=is_image,
            codec_name=str(vs.codec_context.codec.canonical_name or cc.name or ""),
            container_format=fmt,
            display_matrix=_display_matrix(frame),
            sample_aspect=_sample_aspect(vs),
        )
        return _Probe(info, vs.index, audio_index, origin, first_time)
    except VideoError:
        raise
    except av.FFmpegError as e:
        raise _err(path, "cannot read video", e) from None
    except Exception as e:  # anything unexpected from the bindings, still one clean line
        raise _err(path, "cannot read video", e) from None
    finally:
        container.close()

