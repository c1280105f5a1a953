"""Video input/output for cdtcodec.

Reading
    :func:`open_video` opens anything PyAV/FFmpeg can demux and decode (plus still images, read
    as one-frame videos) and returns a :class:`VideoReader`.  Frames come out one at a time as
    ``np.uint8`` RGB arrays of shape ``(H, W, 3)``, decoded in display order and never buffered
    beyond what the decoder itself needs, so arbitrarily long inputs use bounded memory.
    ``start_s`` / ``max_frames`` select a window; the reader seeks to the keyframe before
    ``start_s`` and decodes forward from there.  The first audio stream can be read back as its
    untouched compressed packets (:meth:`VideoReader.audio_packets`), limited to the selected
    window and re-timed so the window starts at 0.

Writing
    :class:`VideoWriter` picks the output kind from the path:

    * ``.mp4`` / ``.m4v`` / ``.mov`` / ``.mkv`` / ``.webm``: encoded with ``codec`` (default libx264,
      CRF 12, preset medium, yuv420p).  RGB is converted with the BT.709 matrix, limited range, and
      the stream is tagged accordingly.  **Odd sizes**: H.264/HEVC cannot code an odd width or
      height in 4:2:0 (x264 even refuses odd SPS crops in 4:2:0), so for those encoders an odd
      size switches the pixel format to yuv444p, which keeps the exact size with no padding or
      cropping flags.  AV1 (libsvtav1, libaom) and VP9 code odd sizes natively in 4:2:0 and keep
      yuv420p.
    * ``.y4m``: raw yuv4mpegpipe, yuv444p (no chroma subsampling, any size), limited range with the
      BT.601 matrix, which is what y4m readers assume since the format cannot tag a matrix.  The
      round trip RGB -> y4m -> RGB is off by at most 2 levels per channel.
    * a directory (an existing directory, a path ending in a separator, or a path without
      extension): numbered PNGs ``frame_000000.png``, ``frame_000001.png``, ... (exact).

    Frame ``i`` gets pts ``i`` in the time base ``1/fps`` so the output frame rate is exactly the
    rational ``fps`` (e.g. 30000/1001).  Output goes to a temporary name in the destination
    directory and is renamed over the final name only when everything succeeded; any exception
    (KeyboardInterrupt included) removes the temporary instead.

    Audio packets (:class:`bitstream.audio.AudioPacket`) are remuxed untouched when the output
    container can hold the codec (e.g. AAC in mp4/mov/mkv, Opus in mkv/mp4, Vorbis in mkv/webm);
    otherwise (y4m, PNG folder, incompatible container, codec unknown to this FFmpeg build) they
    are dropped and :attr:`VideoWriter.audio_skipped_reason` says why.

Every failure of the public functions is a :class:`VideoError` with a one-line message naming
the file; raw PyAV/FFmpeg exceptions never escape.
"""

from __future__ import annotations

import io
import math
import os
import secrets
import shutil
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from bitstream.audio import AudioPacket, AudioTrack

__all__ = [
    "VideoError",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "open_video",
    "is_image_path",
    "output_kind",
    "MAX_SIDE",
]

#: Largest accepted width or height, in pixels.
MAX_SIDE = 8192

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})

# Output extension -> FFmpeg muxer name.
_CONTAINER_FORMATS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
}
_Y4M_EXTENSIONS = frozenset({".y4m"})

# Encoders that can code an odd width/height in subsampled (4:2:0 / 4:2:2) pixel formats.
_ODD_SIZE_SUBSAMPLED_OK = frozenset(
    {"libsvtav1", "libaom-av1", "librav1e", "libdav1d", "libvpx-vp9", "libvpx", "ffv1"}
)

# x264-style preset names -> SVT-AV1 preset numbers / libvpx cpu-used values.
_SVT_PRESETS = {
    "placebo": 2, "veryslow": 3, "slower": 4, "slow": 5, "medium": 6,
    "fast": 8, "faster": 9, "veryfast": 10, "superfast": 11, "ultrafast": 12,
}
_VPX_CPU_USED = {
    "placebo": 0, "veryslow": 0, "slower": 1, "slow": 1, "medium": 2,
    "fast": 3, "faster": 4, "veryfast": 5, "superfast": 6, "ultrafast": 8,
}

# FFmpeg colour enum values -> FFmpeg's names (av_color_*_name); unspecified/reserved -> "".
_COLOR_RANGE_NAMES = {1: "tv", 2: "pc"}
_COLOR_SPACE_NAMES = {
    0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco",
    9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc",
    13: "chroma-derived-c", 14: "ictcp", 15: "ipt-c2", 16: "ycgco-re", 17: "ycgco-ro",
}
_COLOR_PRIMARIES_NAMES = {
    1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
    9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213",
}
_COLOR_TRC_NAMES = {
    1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
    9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1",
    14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67",
}
_COLOR_PRIMARIES_VALUES = {v: k for k, v in _COLOR_PRIMARIES_NAMES.items()}
_COLOR_TRC_VALUES = {v: k for k, v in _COLOR_TRC_NAMES.items()}

_AVCOL_RANGE_MPEG = 1
_AVCOL_SPC_BT709 = 1
_AVCOL_SPC_SMPTE170M = 6


class VideoError(Exception):
    """A video could not be read or written; the message is one line and names the file."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


# --------------------------------------------------------------------------------------------
# helpers


def _describe(exc: BaseException) -> str:
    """One short line describing a PyAV/OS exception, without the path it may repeat."""
    if isinstance(exc, av.FFmpegError):
        text = exc.strerror or ""
        log = getattr(exc, "log", None)
        if log and len(log) >= 3 and log[2]:
            text = f"{text} ({str(log[2]).strip()})" if text else str(log[2]).strip()
        return text or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _err(path, what: str, exc: BaseException | None = None) -> VideoError:
    msg = f"{path}: {what}"
    if exc is not None:
        msg += f": {_describe(exc)}"
    return VideoError(msg)


def is_image_path(path) -> bool:
    """True when the path names a still image (by extension): read as a one-frame video."""
    return Path(str(path)).suffix.lower() in IMAGE_EXTENSIONS


def output_kind(path) -> str:
    """``"container"``, ``"y4m"`` or ``"png_dir"`` for an output path; VideoError if unknown."""
    s = os.fspath(path)
    if s.endswith(("/", os.sep)) or os.path.isdir(s):
        return "png_dir"
    suffix = Path(s).suffix.lower()
    if suffix in _CONTAINER_FORMATS:
        return "container"
    if suffix in _Y4M_EXTENSIONS:
        return "y4m"
    if suffix == "":
        return "png_dir"
    known = ", ".join(sorted(set(_CONTAINER_FORMATS) | _Y4M_EXTENSIONS))
    raise VideoError(
        f"{s}: unknown output extension {suffix!r} (use {known}, or a directory for PNG frames)"
    )


def _as_fraction(value, what: str) -> Fraction:
    try:
        if isinstance(value, Fraction):
            f = value
        elif isinstance(value, float):
            f = Fraction(value).limit_denominator(100000)
        else:
            f = Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError) as e:
        raise VideoError(f"invalid {what} {value!r}: {e}") from None
    return f


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


def _color_name(table: dict, value) -> str:
    try:
        return table.get(int(value), "")
    except (TypeError, ValueError):
        return ""


def _first_video_stream(container):
    attached = int(av.stream.Disposition.attached_pic)
    for s in container.streams.video:
        if not (int(s.disposition) & attached):
            return s
    return None


# --------------------------------------------------------------------------------------------
# reading


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


class _Overshoot(Exception):
    """A seek landed after the requested start; decode from the beginning instead."""


class VideoReader:
    """Streaming access to one input; create with :func:`open_video`.

    Each call to :meth:`frames`, :meth:`batches` or :meth:`audio_packets` is an independent pass
    over the file with its own demuxer, so they may be used in any order (audio before, after or
    interleaved with video).  Close the reader (or use it as a context manager) to release any pass
    still open.
    """

    def __init__(self, path, start_s: float = 0.0, max_frames: int | None = None):
        self.path = os.fspath(path)
        try:
            start = float(start_s or 0.0)
        except (TypeError, ValueError):
            raise VideoError(f"{self.path}: invalid start time {start_s!r}") from None
        if not math.isfinite(start) or start < 0:
            raise VideoError(f"{self.path}: start time must be >= 0 seconds, got {start_s!r}")
        if max_frames is not None:
            if isinstance(max_frames, bool) or int(max_frames) != max_frames or max_frames < 1:
                raise VideoError(f"{self.path}: frame count must be a positive integer, got {max_frames!r}")
            max_frames = int(max_frames)
        self.start_s = start
        self.max_frames = max_frames
        self._probe = _probe(self.path)
        self.info: VideoInfo = self._probe.info
        self._start = Fraction(start).limit_denominator(10**9)
        self._window_t0: Fraction | None = None  # absolute time of the first selected frame
        self._passes: list = []
        self._closed = False
        #: number of frames yielded by the latest :meth:`frames` pass
        self.frames_read = 0
        if self.info.is_image and start > 0:
            raise VideoError(f"{self.path}: a still image has no frame at start {start:g} s")

    # ---- context management

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        self._closed = True
        passes, self._passes = self._passes, []
        for gen in passes:
            try:
                gen.close()
            except Exception:
                pass

    def _track(self, gen):
        if self._closed:
            raise VideoError(f"{self.path}: reader is closed")
        self._passes = [g for g in self._passes if g.gi_frame is not None]
        self._passes.append(gen)
        return gen

    # ---- properties

    @property
    def expected_frames(self) -> int | None:
        """Best estimate of how many frames :meth:`frames` will yield (None when unknown)."""
        info = self.info
        total = info.num_frames
        if total is None and info.duration_s:
            total = int(round(info.duration_s * info.fps))
        if total is not None:
            total = max(0, total - int(round(self.start_s * info.fps)))
        if self.max_frames is None:
            return total
        return self.max_frames if total is None else min(total, self.max_frames)

    # ---- video

    def frames(self) -> Iterator[np.ndarray]:
        """RGB ``np.uint8`` arrays of shape (H, W, 3), display order, at most ``max_frames``."""
        return self._track(self._frames())

    def _selected(self) -> Iterator:
        """Decoded av frames inside the window (before conversion to RGB)."""
        start = self._start
        if start <= 0:
            yield from self._linear(None)
            return
        try:
            yield from self._linear(start, seek=True)
        except _Overshoot:
            yield from self._linear(start, seek=False)

    def _linear(self, start: Fraction | None, seek: bool = False) -> Iterator:
        path, probe, info = self.path, self._probe, self.info
        container = _open_input(path)
        try:
            vs = container.streams[probe.video_index]
            vs.thread_type = "AUTO"
            tb = info.time_base
            tolerance = 1 / (2 * info.fps)  # timestamps may be rounded to the container's clock
            if seek:
                target = probe.origin + start - tolerance
                try:
                    container.seek(int(math.floor(target / tb)), stream=vs, backward=True, any_frame=False)
                except (av.FFmpegError, OSError, ValueError):
                    seek = False  # not seekable: plain linear decode below is still correct
                    container.close()
                    container = _open_input(path)
                    vs = container.streams[probe.video_index]
                    vs.thread_type = "AUTO"
            index = 0
            for frame in _decode_frames(container, vs, path):
                if frame.pts is not None:
                    t = Fraction(frame.pts) * tb - probe.origin
                elif seek:
                    raise _Overshoot()
                else:
                    t = Fraction(index, 1) / info.fps
                index += 1
                if seek and index == 1 and t - 1 / info.fps > start - tolerance:
                    # A backward seek lands on a keyframe at or before the start.  A first frame
                    # more than one frame interval past the start means the index was wrong and
                    # frames were skipped: decode from the beginning instead.
                    raise _Overshoot()
                if start is not None and t <= start - tolerance:
                    continue
                yield frame, t
        finally:
            container.close()

    def _frames(self) -> Iterator[np.ndarray]:
        count = 0
        self.frames_read = 0
        limit = self.max_frames
        for frame, t in self._selected():
            if limit is not None and count >= limit:
                break
            if count == 0:
                self._window_t0 = t + self._probe.origin
            try:
                rgb = frame.to_ndarray(format="rgb24")
            except (av.FFmpegError, ValueError) as e:
                raise _err(self.path, f"cannot convert frame {count} to RGB", e) from None
            if rgb.shape != (self.info.height, self.info.width, 3):
                raise VideoError(
                    f"{self.path}: frame {count} is {rgb.shape[1]}x{rgb.shape[0]}, "
                    f"but the video started at {self.info.width}x{self.info.height} "
                    "(size changes mid-stream are not supported)"
                )
            count += 1
            self.frames_read = count
            yield rgb
        if count == 0:
            dur = f" (the video lasts {self.info.duration_s:.3f} s)" if self.info.duration_s else ""
            raise VideoError(f"{self.path}: no frames at or after start {self.start_s:g} s{dur}")

    def batches(self, sizes: Iterable[int]) -> Iterator[np.ndarray]:
        """Stacked frames ``(t, H, W, 3)``, t taken from ``sizes`` in turn; the last may be shorter."""
        return self._track(self._batches(sizes))

    def _batches(self, sizes: Iterable[int]) -> Iterator[np.ndarray]:
        frames = self._frames()
        try:
            h, w = self.info.height, self.info.width
            for n in sizes:
                n = int(n)
                if n < 1:
                    raise VideoError(f"{self.path}: batch size must be >= 1, got {n}")
                buf = np.empty((n, h, w, 3), dtype=np.uint8)
                k = 0
                for frame in frames:
                    buf[k] = frame
                    k += 1
                    if k == n:
                        break
                if k == 0:
                    return
                yield buf if k == n else buf[:k]
                if k < n:
                    return
        finally:
            frames.close()

    # ---- audio

    def _window_start(self) -> Fraction:
        """Absolute presentation time (s) of the first selected frame."""
        if self._window_t0 is None:
            if self._start <= 0:
                self._window_t0 = self._probe.first_time
            else:
                gen = self._selected()
                try:
                    for _, t in gen:
                        self._window_t0 = t + self._probe.origin
                        break
                finally:
                    gen.close()
                if self._window_t0 is None:
                    raise VideoError(f"{self.path}: no frames at or after start {self.start_s:g} s")
        return self._window_t0

    def audio_packets(self) -> Iterator[AudioPacket]:
        """The first audio stream's packets, untouched, for the selected window.

        Without ``start_s`` every packet from the beginning is kept (encoder priming included);
        with it, the packets overlapping the window.  Timestamps are shifted so that the first
        selected video frame is at time 0 (a packet straddling the start therefore has a slightly
        negative pts).  With ``max_frames``, packets starting after the last frame's end are dropped.
        """
        return self._track(self._audio_packets())

    def _audio_packets(self) -> Iterator[AudioPacket]:
        track, index = self.info.audio, self._probe.audio_index
        if track is None or index is None:
            return
        t0 = self._window_start()
        t1 = None if self.max_frames is None else t0 + self.max_frames / self.info.fps
        lower = t0 if self._start > 0 else None
        atb = Fraction(track.time_base_num, track.time_base_den)
        shift = round(t0 / atb)
        path = self.path
        seek_to = None if lower is None or lower <= 1 else lower - 1
        while True:
            container = _open_input(path)
            try:
                stream = container.streams[index]
                if seek_to is not None:
                    try:
                        container.seek(int(math.floor(seek_to / atb)), stream=stream, backward=True)
                    except (av.FFmpegError, OSError, ValueError):
                        seek_to = None
                        continue
                first = True
                for pkt in container.demux(stream):
                    if pkt.size == 0:
                        continue
                    ts = pkt.pts if pkt.pts is not None else pkt.dts
                    dur = int(pkt.duration or 0)
                    if ts is not None:
                        t = Fraction(ts) * atb
                        if first and seek_to is not None and t > lower:
                            raise _Overshoot()
                        first = False
                        if t1 is not None and t >= t1:
                            break
                        if lower is not None and (t + dur * atb <= lower if dur else t < lower):
                            continue
                    elif lower is not None:
                        continue
                    yield AudioPacket(
                        data=bytes(pkt),
                        pts=None if pkt.pts is None else int(pkt.pts) - shift,
                        dts=None if pkt.dts is None else int(pkt.dts) - shift,
                        duration=dur,
                    )
                return
            except _Overshoot:
                seek_to = None
                continue
            except av.FFmpegError as e:
                raise _err(path, "reading audio packets failed", e) from None
            finally:
                container.close()


def open_video(path, start_s: float = 0.0, max_frames: int | None = None) -> VideoReader:
    """Open a video (or still image) for streaming reads; raises VideoError on any problem."""
    return VideoReader(path, start_s=start_s, max_frames=max_frames)


# --------------------------------------------------------------------------------------------
# writing


class _AudioRejected(Exception):
    """The muxer refused the audio stream when writing its header."""


def _temp_name(directory: str, name: str, suffix: str) -> str:
    return os.path.join(directory, f".{name}.{secrets.token_hex(4)}.part{suffix}")


class VideoWriter:
    """Write RGB frames (and optionally passthrough audio) to ``path``; see the module docstring.

    Use as a context manager: leaving the block normally finalises the file under its name,
    leaving it with an exception removes everything written.
    """

    def __init__(
        self,
        path,
        width: int,
        height: int,
        fps=Fraction(24, 1),
        codec: str = "libx264",
        crf: int | None = 12,
        preset: str | None = "medium",
        audio: AudioTrack | None = None,
        *,
        pix_fmt: str | None = None,
        color_primaries: str = "",
        color_trc: str = "",
        codec_options: dict | None = None,
    ):
        self.path = os.fspath(path)
        self.kind = output_kind(self.path)
        if isinstance(width, bool) or isinstance(height, bool) or int(width) != width or int(height) != height:
            raise VideoError(f"{self.path}: invalid frame size {width!r}x{height!r}")
        self.width, self.height = int(width), int(height)
        if not (0 < self.width <= MAX_SIDE and 0 < self.height <= MAX_SIDE):
            raise VideoError(
                f"{self.path}: unsupported frame size {self.width}x{self.height} (each side must be 1..{MAX_SIDE})"
            )
        self.fps = _as_fraction(fps, "frame rate")
        if self.fps <= 0 or self.fps > 1000:
            raise VideoError(f"{self.path}: invalid frame rate {fps!r}")
        self.codec = codec
        self.audio = audio
        self.audio_skipped_reason: str | None = None
        self.frames_written = 0
        self.pix_fmt = ""
        self._audio_queue: deque = deque()
        self._audio_stream = None
        self._audio_tb: Fraction | None = None
        self._audio_written = 0
        self._container = None
        self._stream = None
        self._done = False

        final = self.path.rstrip("/" + os.sep) if self.kind == "png_dir" else self.path
        self._final = os.path.abspath(final)
        parent = os.path.dirname(self._final)
        if not os.path.isdir(parent):
            raise VideoError(f"{self.path}: output directory {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise VideoError(f"{self.path}: output directory {parent} is not writable")
        base = os.path.basename(self._final)

        if self.kind == "png_dir":
            if os.path.exists(self._final):
                if not os.path.isdir(self._final):
                    raise VideoError(f"{self.path}: exists and is not a directory")
                foreign = [n for n in os.listdir(self._final) if not (n.startswith("frame_") and n.endswith(".png"))]
                if foreign:
                    raise VideoError(
                        f"{self.path}: directory exists and holds other files than frame PNGs; refusing to replace it"
                    )
            if audio is not None:
                self.audio_skipped_reason = "a PNG frame folder cannot hold audio"
            self._tmp = _temp_name(parent, base, "")
            try:
                os.mkdir(self._tmp)
            except OSError as e:
                raise _err(self.path, "cannot create output directory", e) from None
            return

        if os.path.isdir(self._final):
            raise VideoError(f"{self.path}: is an existing directory")
        suffix = Path(self._final).suffix
        self._tmp = _temp_name(parent, base, suffix)
        try:
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            os.close(fd)
        except OSError as e:
            raise _err(self.path, "cannot create output file", e) from None
        try:
            self._open_container(suffix.lower(), crf, preset, pix_fmt, color_primaries, color_trc, codec_options)
        except BaseException:
            self._cleanup()
            raise

    # ---- setup

    def _open_container(self, suffix, crf, preset, pix_fmt, color_primaries, color_trc, codec_options):
        path = self.path
        if self.kind == "y4m":
            fmt, codec = "yuv4mpegpipe", "rawvideo"
            pix_fmt = pix_fmt or "yuv444p"
            self._matrix, colorspace = "ITU601", _AVCOL_SPC_SMPTE170M
        else:
            fmt, codec = _CONTAINER_FORMATS[suffix], self.codec
            self._matrix, colorspace = "ITU709", _AVCOL_SPC_BT709
        try:
            enc = av.Codec(codec, "w")
        except Exception:
            raise VideoError(f"{path}: unknown video encoder {codec!r}") from None
        if enc.type != "video":
            raise VideoError(f"{path}: {codec!r} is not a video encoder")
        supported = [f.name for f in (enc.video_formats or [])]
        odd = self.width % 2 or self.height % 2
        if pix_fmt is None:
            pix_fmt = "yuv420p"
            if supported and pix_fmt not in supported:
                pix_fmt = next((f for f in ("yuv444p", "yuv422p", "rgb24", "gbrp") if f in supported), supported[0])
            if odd and codec not in _ODD_SIZE_SUBSAMPLED_OK and pix_fmt in ("yuv420p", "yuv422p", "nv12"):
                if not supported or "yuv444p" in supported:
                    pix_fmt = "yuv444p"  # exact odd size without padding (see module docstring)
                else:
                    raise VideoError(
                        f"{path}: encoder {codec} cannot code the odd size {self.width}x{self.height}; "
                        "use libx264, libx265, libsvtav1 or libvpx-vp9"
                    )
        elif supported and pix_fmt not in supported:
            raise VideoError(f"{path}: encoder {codec} does not support pixel format {pix_fmt}")
        self.pix_fmt = pix_fmt

        options: dict[str, str] = {}
        if self.kind == "container":
            if crf is not None:
                options["crf"] = str(crf)
            if codec in ("libx264", "libx265") and preset:
                options["preset"] = str(preset)
            elif codec == "libsvtav1" and preset:
                p = str(preset)
                options["preset"] = str(_SVT_PRESETS.get(p, p))
                os.environ.setdefault("SVT_LOG", "1")  # errors only; its info banner goes to stderr
            elif codec in ("libvpx-vp9", "libvpx") and preset:
                p = str(preset)
                options["cpu-used"] = str(_VPX_CPU_USED.get(p, p))
                options.setdefault("b", "0")  # constant-quality mode with crf
                options["row-mt"] = "1"
            if codec == "libx265":
                options["x265-params"] = "log-level=error"
        if codec_options:
            options.update({str(k): str(v) for k, v in codec_options.items()})

        container_options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        settings = (fmt, codec, options, container_options, pix_fmt, colorspace, color_primaries, color_trc)
        try:
            self._build(*settings, with_audio=True)
        except _AudioRejected as e:
            # Some muxers only refuse a codec when writing the header: drop the audio, keep going.
            self.audio_skipped_reason = f"the {fmt} container rejected {self.audio.codec_name} audio: {e}"
            self._build(*settings, with_audio=False)

    def _build(self, fmt, codec, options, container_options, pix_fmt, colorspace, color_primaries, color_trc,
               with_audio: bool) -> None:
        path = self.path
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container, self._audio_stream = None, None
        try:
            self._container = av.open(self._tmp, mode="w", format=fmt, container_options=container_options)
        except av.FFmpegError as e:
            raise _err(path, "cannot create output", e) from None
        try:
            tb = Fraction(self.fps.denominator, self.fps.numerator)
            stream = self._container.add_stream(codec, rate=self.fps, options=dict(options))
            stream.width = self.width
            stream.height = self.height
            stream.pix_fmt = pix_fmt
            stream.time_base = tb
            cc = stream.codec_context
            cc.time_base = tb
            if pix_fmt.startswith(("yuv", "nv")):
                cc.color_range = _AVCOL_RANGE_MPEG
                cc.colorspace = colorspace
            if color_primaries in _COLOR_PRIMARIES_VALUES:
                cc.color_primaries = _COLOR_PRIMARIES_VALUES[color_primaries]
            if color_trc in _COLOR_TRC_VALUES:
                cc.color_trc = _COLOR_TRC_VALUES[color_trc]
            self._stream = stream
            self._frame_tb = tb
        except ValueError as e:
            raise _err(path, f"the {fmt} container cannot hold {codec}", e) from None
        except av.FFmpegError as e:
            raise _err(path, f"cannot set up encoder {codec}", e) from None
        if with_audio:
            self._add_audio(fmt)
        try:
            self._container.start_encoding()
        except av.FFmpegError as e:
            if self._audio_stream is not None:
                raise _AudioRejected(_describe(e)) from None
            raise _err(path, f"cannot start encoder {codec} ({pix_fmt}, {self.width}x{self.height})", e) from None

    def _add_audio(self, fmt: str) -> None:
        track = self.audio
        if track is None:
            return
        if self.kind == "y4m":
            self.audio_skipped_reason = "the y4m format cannot hold audio"
            return
        name = track.codec_name
        # A stream made by add_stream() would open an encoder; cloning it as a template stream
        # instead gives a codec context that is never opened, so the codec parameters set below
        # (taken verbatim from the source) reach the muxer untouched.
        try:
            av.Codec(name, "w")
        except Exception:
            self.audio_skipped_reason = (
                f"audio codec {name!r} cannot be described for remuxing with this FFmpeg build"
            )
            return
        scratch = av.open(io.BytesIO(), mode="w", format=fmt)
        try:
            try:
                template = scratch.add_stream(name, rate=track.sample_rate or None)
                stream = self._container.add_stream_from_template(template, opaque=True)
            except ValueError:
                self.audio_skipped_reason = f"the {fmt} container cannot hold {name} audio"
                return
            except av.FFmpegError as e:
                self.audio_skipped_reason = f"cannot add {name} audio: {_describe(e)}"
                return
        finally:
            scratch.close()
        tb = Fraction(track.time_base_num, track.time_base_den) if track.time_base_den else Fraction(1, track.sample_rate or 1)
        cc = stream.codec_context
        if track.sample_rate:
            cc.sample_rate = track.sample_rate
        try:
            if track.layout:
                cc.layout = track.layout
            elif track.channels:
                cc.layout = track.channels
        except Exception:
            if track.channels:
                cc.layout = track.channels
        cc.extradata = track.extradata or None
        if track.bit_rate:
            cc.bit_rate = track.bit_rate
        cc.time_base = tb
        stream.time_base = tb
        self._audio_stream = stream
        self._audio_tb = tb

    # ---- context management

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def __del__(self):
        # Never leave a temporary behind when the writer is dropped without close()/abort().
        try:
            if not self._done:
                self.abort()
        except Exception:
            pass

    # ---- writing

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB frame, ``np.uint8`` of shape (height, width, 3)."""
        if self._done:
            raise VideoError(f"{self.path}: writer is already closed")
        arr = np.asarray(frame)
        if arr.dtype != np.uint8 or arr.shape != (self.height, self.width, 3):
            raise VideoError(
                f"{self.path}: frame {self.frames_written} must be uint8 of shape "
                f"({self.height}, {self.width}, 3), got {arr.dtype} {arr.shape}"
            )
        arr = np.ascontiguousarray(arr)
        index = self.frames_written
        if self.kind == "png_dir":
            from PIL import Image

            name = os.path.join(self._tmp, f"frame_{index:06d}.png")
            try:
                Image.fromarray(arr, "RGB").save(name, compress_level=3)
            except OSError as e:
                raise _err(self.path, f"cannot write {os.path.basename(name)}", e) from None
            self.frames_written += 1
            return
        try:
            vf = av.VideoFrame.from_ndarray(arr, format="rgb24")
            if self.pix_fmt != "rgb24":
                vf = vf.reformat(format=self.pix_fmt, dst_colorspace=self._matrix, dst_color_range="MPEG")
            vf.pts = index
            vf.time_base = self._frame_tb
            for pkt in self._stream.encode(vf):
                self._container.mux(pkt)
        except av.FFmpegError as e:
            raise _err(self.path, f"encoding frame {index} failed", e) from None
        except (OSError, ValueError) as e:
            raise _err(self.path, f"encoding frame {index} failed", e) from None
        self.frames_written += 1
        self._pump_audio(Fraction(self.frames_written) / self.fps + Fraction(1, 2))

    def write_audio_packet(self, pkt: AudioPacket) -> bool:
        """Queue one passthrough audio packet; False when audio is being skipped (see reason)."""
        if self._done:
            raise VideoError(f"{self.path}: writer is already closed")
        if self._audio_stream is None:
            if self.audio_skipped_reason is None:
                self.audio_skipped_reason = "no audio track was declared when the writer was created"
            return False
        self._audio_queue.append(pkt)
        self._pump_audio(Fraction(self.frames_written) / self.fps + Fraction(1, 2))
        return True

    def _pump_audio(self, until: Fraction | None) -> None:
        """Mux queued audio up to ``until`` seconds, keeping it interleaved with the video."""
        q, tb = self._audio_queue, self._audio_tb
        while q:
            p = q[0]
            ts = p.dts if p.dts is not None else p.pts
            if until is not None and ts is not None and ts * tb > until:
                return
            q.popleft()
            try:
                packet = av.Packet(p.data)
                packet.pts = p.pts
                packet.dts = p.dts
                packet.duration = p.duration
                packet.time_base = tb
                packet.stream = self._audio_stream
                packet.is_keyframe = True
                self._container.mux(packet)
            except av.FFmpegError as e:
                raise _err(self.path, f"muxing audio packet {self._audio_written} failed", e) from None
            self._audio_written += 1

    # ---- finishing

    def close(self) -> None:
        """Finish the output and move it to its final name (idempotent)."""
        if self._done:
            return
        try:
            if self.frames_written == 0:
                raise VideoError(f"{self.path}: no frames were written")
            if self.kind == "png_dir":
                self._commit_dir()
            else:
                try:
                    for pkt in self._stream.encode(None):
                        self._container.mux(pkt)
                    self._pump_audio(None)
                    self._container.close()
                except av.FFmpegError as e:
                    raise _err(self.path, "finishing the output failed", e) from None
                except (OSError, ValueError) as e:
                    raise _err(self.path, "finishing the output failed", e) from None
                self._container = None
                try:
                    os.replace(self._tmp, self._final)
                except OSError as e:
                    raise _err(self.path, "cannot move the finished output into place", e) from None
            self._done = True
        except BaseException:
            self.abort()
            raise

    def _commit_dir(self) -> None:
        old = None
        try:
            if os.path.isdir(self._final):
                old = _temp_name(os.path.dirname(self._final), os.path.basename(self._final), ".old")
                os.rename(self._final, old)
            os.rename(self._tmp, self._final)
        except OSError as e:
            if old is not None and not os.path.exists(self._final):
                try:
                    os.rename(old, self._final)
                    old = None
                except OSError:
                    pass
            raise _err(self.path, "cannot move the PNG frames into place", e) from None
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Drop everything written so far (idempotent); the final name is left untouched."""
        if self._done:
            return
        self._done = True
        self._cleanup()

    def _cleanup(self) -> None:
        self._done = True
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:
                pass
        tmp = getattr(self, "_tmp", None)
        if tmp and os.path.lexists(tmp):
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                try:
                    os.remove(tmp)
                except OSError:
                    pass

    @property
    def audio_packets_written(self) -> int:
        return self._audio_written
