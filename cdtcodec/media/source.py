"""Reading an input: frames (one at a time or in batches) and its untouched audio packets, for a window.

:func:`open_video` opens anything PyAV/FFmpeg can demux and decode (plus still images, read as one-frame
videos) and returns a :class:`VideoReader`. Frames come out one at a time as ``np.uint8`` RGB arrays of
shape ``(H, W, 3)``, decoded in display order and never buffered beyond what the decoder itself needs, so
arbitrarily long inputs use bounded memory; :meth:`VideoReader.timed_batches` adds when each frame starts, in the
stream's time base (variable frame rates kept). ``start_s`` / ``max_frames`` select a window; a pass seeks to
the keyframe before ``start_s`` (seek_before, the one seek both passes use) and decodes forward. The first
audio stream can be read back as its untouched compressed packets, limited to the window and re-timed so
the window starts at 0. Every failure is a VideoError with a one-line message naming the file.
"""

from __future__ import annotations

import math
import os
from contextlib import closing
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from bitstream.audio import AudioPacket
from cdtcodec.media.errors import VideoError, _err
from cdtcodec.media.probe import VideoInfo, _decode_frames, _open_input, _probe


def seek_before(container, stream, seconds: Fraction, time_base: Fraction) -> bool:
    """Seek `stream` to the keyframe at or before `seconds` (stream time); False when it cannot seek.

    The one seek of a pass: the caller checks the first packet or frame it gets and starts again from the
    beginning (raising _Overshoot) when the index put it after the target.
    """
    try:
        container.seek(int(math.floor(seconds / time_base)), stream=stream, backward=True, any_frame=False)
        return True
    except (av.FFmpegError, OSError, ValueError):
        return False


class _Overshoot(Exception):
    """A seek landed after the requested start; decode from the beginning instead."""


class VideoReader:
    """Streaming access to one input; create with :func:`open_video`.

    Each call to :meth:`frames`, :meth:`batches` or :meth:`audio_packets` is an independent pass
    over the file with its own demuxer, so they may be used in any order (audio before, after or
    interleaved with video).  With a start time, an audio pass first finds where the window starts
    (:meth:`window_start`, a short pass of its own) rather than reading it off a video pass.  Close the
    reader (or use it as a context manager) to release any pass still open.
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
        self._passes: list = []
        self._closed = False
        #: number of frames yielded by the latest :meth:`frames` pass
        self.frames_read = 0
        #: when the last frame of the latest pass ends, in ticks from its first frame (None: not known)
        self.end_tick: int | None = None
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
            if seek and not seek_before(container, vs, probe.origin + start - tolerance, tb):
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
        for rgb, _ in self._timed_frames():
            yield rgb

    def _timed_frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        """Frames with their start in the stream's time base, counted from the first frame of the window; None
        where the source gives no time, or one not after the frame before (a damaged stream: the writer puts
        such a frame on the frame-rate grid). At the end, `end_tick` says when the last frame ends."""
        count = 0
        self.frames_read = 0
        self.end_tick = None
        limit = self.max_frames
        origin = last = None  # pts of the first frame; the last time given
        for frame, t in self._selected():
            if limit is not None and count >= limit:
                break
            if count == 0:
                origin = frame.pts
            tick = None if origin is None or frame.pts is None else int(frame.pts) - int(origin)
            if tick is not None and last is not None and tick <= last:
                tick = None
            duration = int(frame.duration or 0)
            last = tick if tick is not None else last
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
            self.end_tick = tick + duration if tick is not None and duration > 0 else None
            yield rgb, tick
        if count == 0:
            dur = f" (the video lasts {self.info.duration_s:.3f} s)" if self.info.duration_s else ""
            raise VideoError(f"{self.path}: no frames at or after start {self.start_s:g} s{dur}")

    def batches(self, sizes: Iterable[int]) -> Iterator[np.ndarray]:
        """Stacked frames ``(t, H, W, 3)``, t taken from ``sizes`` in turn; the last may be shorter."""
        return self._track(self._untimed(self._batches(sizes)))

    @staticmethod
    def _untimed(timed) -> Iterator[np.ndarray]:
        with closing(timed):
            for batch, _ in timed:
                yield batch

    def timed_batches(self, sizes: Iterable[int]) -> Iterator[tuple[np.ndarray, list[int | None]]]:
        """:meth:`batches` with each frame's start: ticks of ``info.time_base`` from the window's first frame
        (0 for it), None where the source gives no usable time. After the pass, ``end_tick`` is when the last
        frame ends (None when the source does not say)."""
        return self._track(self._batches(sizes))

    def _batches(self, sizes: Iterable[int]) -> Iterator[tuple[np.ndarray, list[int | None]]]:
        frames = self._timed_frames()
        try:
            h, w = self.info.height, self.info.width
            for n in sizes:
                n = int(n)
                if n < 1:
                    raise VideoError(f"{self.path}: batch size must be >= 1, got {n}")
                buf = np.empty((n, h, w, 3), dtype=np.uint8)
                starts: list[int | None] = []
                k = 0
                for frame, tick in frames:
                    buf[k] = frame
                    starts.append(tick)
                    k += 1
                    if k == n:
                        break
                if k == 0:
                    return
                yield (buf if k == n else buf[:k]), starts
                if k < n:
                    return
        finally:
            frames.close()

    # ---- audio

    def window_start(self) -> Fraction:
        """Absolute presentation time (s) of the first selected frame, where the audio window starts.

        Without a start time it is the probe's first frame; with one, a short pass of its own finds it (the one
        seek, then decoding up to the first selected frame). Nothing is remembered from other passes, so the
        answer, and the audio packets, do not depend on what was read before.
        """
        if self._start <= 0:
            return self._probe.first_time
        gen = self._selected()
        try:
            for _, t in gen:
                return t + self._probe.origin
        finally:
            gen.close()
        raise VideoError(f"{self.path}: no frames at or after start {self.start_s:g} s")

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
        t0 = self.window_start()
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
                if seek_to is not None and not seek_before(container, stream, seek_to, atb):
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



def read_png_frames(folder: str | os.PathLike) -> np.ndarray:
    """The frames a PngSink wrote, uint8 (T, H, W, 3), in order; VideoError when there are none."""
    from PIL import Image

    files = sorted(Path(folder).glob("frame_*.png"))
    if not files:
        raise VideoError(f"{folder}: no frame PNGs (the decoder wrote no frames)")
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
