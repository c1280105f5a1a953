"""Writing RGB frames (and passthrough audio): one Sink interface, three kinds, picked by :func:`open_sink`.

* ``.mp4`` / ``.m4v`` / ``.mov`` / ``.mkv`` / ``.webm`` (ContainerSink): encoded with ``codec`` (default: one
  the container holds, as ffmpeg picks: libx264 for mp4 / mov / mkv, libvpx-vp9 for WebM), CRF 12, preset
  medium, yuv420p. RGB is converted with the source's matrix and range when they are
  known and swscale has the matrix (bt709, smpte170m, bt470bg, fcc, smpte240m, bt2020nc), else with BT.709,
  limited range, and the stream is tagged with what was used; primaries and transfer are tagged as the source
  had them. The display matrix (rotation) and sample aspect ratio go to the container. **Odd sizes**:
  H.264/HEVC cannot code an odd width or height in 4:2:0 (x264 even refuses odd SPS crops in 4:2:0), so for
  those encoders an odd size switches the pixel format to yuv444p, which keeps the exact size with no padding
  or cropping flags. AV1 (libsvtav1, libaom) and VP9 code odd sizes natively in 4:2:0 and keep yuv420p.
* ``.y4m`` (Y4mSink): raw yuv4mpegpipe, yuv444p (no chroma subsampling, any size), limited range with the
  BT.601 matrix, which is what y4m readers assume since the format cannot tag a matrix. The round trip
  RGB -> y4m -> RGB is off by at most 2 levels per channel.
* a directory (an existing directory, a path ending in a separator, or a path without extension; PngSink):
  numbered PNGs ``frame_000000.png``, ``frame_000001.png``, ... (exact).

Frame ``i`` gets pts ``i`` in the time base ``1/fps`` so the output frame rate is exactly the rational
``fps`` (e.g. 30000/1001); given a ``time_base``, an encoded output takes each frame's pts and duration from
the caller instead (variable frame rate), and every packet carries its frame's duration, so the last frame
ends where it should (mp4's edit list and Matroska's durations both read it). Output goes to a temporary
beside the final name (bitstream.atomic) and is renamed over it only when everything succeeded; any exception
(KeyboardInterrupt included) removes it.

Audio packets are remuxed untouched when the output container can hold the codec (e.g. AAC in mp4/mov/mkv,
Opus in mkv/mp4, Vorbis in mkv/webm); otherwise they are dropped and ``audio_skipped_reason`` says why.

Why over 400 lines: the three sinks share one base class and the encoder set-up they differ in; the
classes are small, the module holds the interface and all its kinds in one place.
"""

from __future__ import annotations

import io
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np

from bitstream.atomic import AtomicOutput, CloseOrAbort, special_file
from bitstream.audio import AudioPacket, AudioTrack
from cdtcodec.media.audio import AudioInterleaver
from cdtcodec.media.errors import VideoError, _describe, _err
from cdtcodec.media.formats import (
    _ASPECT_FROM_STREAM,
    _ASPECT_IN_BITSTREAM,
    _AVCOL_RANGE_JPEG,
    _AVCOL_RANGE_MPEG,
    _AVCOL_SPC_BT709,
    _AVCOL_SPC_SMPTE170M,
    _COLOR_PRIMARIES_VALUES,
    _COLOR_SPACE_VALUES,
    _COLOR_TRC_VALUES,
    _CONTAINER_FORMATS,
    _DEFAULT_CODECS,
    _ODD_SIZE_SUBSAMPLED_OK,
    _SVT_PRESETS,
    _SWS_MATRICES,
    _VPX_CPU_USED,
    MAX_SIDE,
    output_kind,
)

AUDIO_LEAD = Fraction(1, 2)  # audio is muxed up to this far past the video written so far
MIN_FPS, MAX_FPS = Fraction(1, 3600), Fraction(1000)  # one frame an hour .. a high-speed camera
_AV_INT_MAX = (1 << 31) - 1


def _as_fraction(value, what: str) -> Fraction:
    try:
        if isinstance(value, Fraction):
            return value
        if isinstance(value, float):
            return Fraction(value).limit_denominator(100000)
        return Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError) as e:
        raise VideoError(f"invalid {what} {value!r}: {e}") from None


class Sink(CloseOrAbort):
    """Frames in, one output at the end. Use as a context manager: leaving the block normally finalises the
    output under its name, leaving it with an exception removes everything written."""

    kind = ""
    #: whether the output holds each frame's own time (else frame i is at i / fps), and the display matrix and
    #: sample aspect ratio
    keeps_frame_times = keeps_display = False

    def __init__(self, path, width: int, height: int, fps, audio: AudioTrack | None, time_base=None):
        self.path = os.fspath(path)
        if isinstance(width, bool) or isinstance(height, bool) or int(width) != width or int(height) != height:
            raise VideoError(f"{self.path}: invalid frame size {width!r}x{height!r}")
        self.width, self.height = int(width), int(height)
        if not (0 < self.width <= MAX_SIDE and 0 < self.height <= MAX_SIDE):
            raise VideoError(
                f"{self.path}: unsupported frame size {self.width}x{self.height} (each side must be 1..{MAX_SIDE})"
            )
        self.fps = _as_fraction(fps, "frame rate")
        if not (MIN_FPS <= self.fps <= MAX_FPS) or max(self.fps.numerator, self.fps.denominator) > _AV_INT_MAX:
            # FFmpeg keeps rates and time bases as 32-bit signed rationals; beyond them it overflows
            raise VideoError(f"{self.path}: frame rate {self.fps} cannot be written (a video file holds "
                             f"{MIN_FPS}..{MAX_FPS} fps, numerator and denominator below 2^31)")
        #: frames carry the caller's pts and durations in this time base (else frame i is at i / fps)
        self._timed = time_base is not None and self.keeps_frame_times
        self.time_base = _as_fraction(time_base, "time base") if self._timed else Fraction(1) / self.fps
        if not 0 < self.time_base or max(self.time_base.numerator, self.time_base.denominator) > _AV_INT_MAX:
            raise VideoError(f"{self.path}: time base {self.time_base} cannot be written (a video file holds "
                             "positive ones with numerator and denominator below 2^31)")
        self._video_end = Fraction(0)  # seconds of video written so far
        self._last_pts: int | None = None
        #: the facts given that this output could not write as they were, one phrase each (formats.py says why)
        self.facts_lost: list[str] = []
        self.audio = audio
        self.audio_skipped_reason: str | None = None
        self.frames_written = 0
        self.audio_packets_written = 0
        self.pix_fmt = ""
        self._output: AtomicOutput | None = None
        self._done = False
        self._final = os.path.abspath(self.path.rstrip("/" + os.sep) or ".")
        parent = os.path.dirname(self._final)
        if special_file(self._final):
            return  # written into as it is (bitstream.atomic): its folder is not written
        if not os.path.isdir(parent):
            raise VideoError(f"{self.path}: output directory {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise VideoError(f"{self.path}: output directory {parent} is not writable")

    def _create(self, suffix: str = "", directory: bool = False) -> str:
        try:
            self._output = AtomicOutput(self._final, suffix=suffix, directory=directory)
        except OSError as e:
            raise _err(self.path, f"cannot create output {'directory' if directory else 'file'}", e) from None
        return self._output.path

    # ---- the interface

    def write(self, frame: np.ndarray, pts: int | None = None, duration: int | None = None) -> None:
        """Append one RGB frame, ``np.uint8`` of shape (height, width, 3). With a ``time_base`` (and an output
        that keeps frame times) ``pts`` and ``duration`` say when it starts and how long it lasts, in its ticks,
        pts increasing; otherwise the frame is at index / fps and they are ignored."""
        if self._done:
            raise VideoError(f"{self.path}: writer is already closed")
        arr = np.asarray(frame)
        if arr.dtype != np.uint8 or arr.shape != (self.height, self.width, 3):
            raise VideoError(
                f"{self.path}: frame {self.frames_written} must be uint8 of shape "
                f"({self.height}, {self.width}, 3), got {arr.dtype} {arr.shape}"
            )
        if not self._timed:
            pts, duration = self.frames_written, 1
        elif pts is None or duration is None:
            raise VideoError(f"{self.path}: frame {self.frames_written} needs a pts and a duration "
                             f"(time base {self.time_base})")
        elif not (0 <= pts < (1 << 62) and 0 < duration < (1 << 62)) or (
                self._last_pts is not None and pts <= self._last_pts):
            raise VideoError(f"{self.path}: frame {self.frames_written} at {pts} ticks for {duration} cannot be "
                             "written (times must increase and fit 62 bits)")
        self._write(np.ascontiguousarray(arr), self.frames_written, int(pts), int(duration))
        self._last_pts = int(pts)
        self.frames_written += 1
        self._video_end = (pts + duration) * self.time_base
        self._mux_audio(self._video_end + AUDIO_LEAD)

    def write_audio_packet(self, packet: AudioPacket) -> bool:
        """Queue one passthrough audio packet; False when audio is being skipped (see audio_skipped_reason)."""
        if self._done:
            raise VideoError(f"{self.path}: writer is already closed")
        if self._audio is None:
            if self.audio_skipped_reason is None:
                self.audio_skipped_reason = "no audio track was declared when the writer was created"
            return False
        self._audio.add(packet)
        self._mux_audio(self._video_end + AUDIO_LEAD)
        return True

    def follow_audio(self, packets: Iterable[AudioPacket]) -> None:
        """Take the audio from `packets`, pulled only as far as the video written so far (nothing when the
        audio is being skipped)."""
        if self._audio is not None:
            self._audio.follow(packets)

    def close(self) -> None:
        """Finish the output and move it to its final name (idempotent)."""
        if self._done:
            return
        try:
            if self.frames_written == 0:
                raise VideoError(f"{self.path}: no frames were written")
            self._finish()
            try:
                self._output.commit()
            except OSError as e:
                raise _err(self.path, "cannot move the finished output into place", e) from None
            self._done = True
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop everything written so far (idempotent); the final name is left untouched."""
        self._done = True
        self._release()
        if self._output is not None:
            self._output.discard()


    # ---- what a kind provides

    _audio: AudioInterleaver | None = None

    def _write(self, frame: np.ndarray, index: int, pts: int, duration: int) -> None:
        raise NotImplementedError

    def _mux_audio(self, until: Fraction | None) -> None:
        pass

    def _finish(self) -> None:
        pass

    def _release(self) -> None:
        pass


class PngSink(Sink):
    kind = "png_dir"

    def __init__(self, path, width: int, height: int, fps=Fraction(24, 1), audio: AudioTrack | None = None):
        super().__init__(path, width, height, fps, audio)
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
        self._dir = self._create(directory=True)

    def _write(self, frame: np.ndarray, index: int, pts: int, duration: int) -> None:
        from PIL import Image

        name = os.path.join(self._dir, f"frame_{index:06d}.png")
        try:
            Image.fromarray(frame, "RGB").save(name, compress_level=3)
        except OSError as e:
            raise _err(self.path, f"cannot write {os.path.basename(name)}", e) from None


class _AudioRejected(Exception):
    """The muxer refused the audio stream when writing its header."""


class ContainerSink(Sink):
    """Frames encoded with a video encoder into a container (see the module docstring)."""

    kind = "container"
    keeps_frame_times = keeps_display = True
    #: the conversion when the source's matrix is unknown or swscale has none for it: BT.709, limited range
    matrix, colorspace = "ITU709", _AVCOL_SPC_BT709
    keeps_colour = True  # RGB converted with the source's matrix and range (Y4mSink: never)

    def __init__(self, path, width: int, height: int, fps=Fraction(24, 1), codec: str | None = None,
                 crf: int | None = 12, preset: str | None = "medium", audio: AudioTrack | None = None, *,
                 pix_fmt: str | None = None, color_range: str = "", color_space: str = "",
                 color_primaries: str = "", color_trc: str = "", codec_options: dict | None = None,
                 time_base=None, display_matrix=None, sample_aspect=None):
        super().__init__(path, width, height, fps, audio, time_base)
        fmt = _CONTAINER_FORMATS.get(Path(self._final).suffix.lower())
        self.codec = codec = codec or _DEFAULT_CODECS.get(fmt, "libx264")
        self._container = None
        self._stream = None
        self._durations: dict[int, int] = {}  # pts -> duration of the frames inside the encoder
        self.range_name, self.range_value = "MPEG", _AVCOL_RANGE_MPEG
        if self.keeps_colour:
            if color_range == "pc":
                self.range_name, self.range_value = "JPEG", _AVCOL_RANGE_JPEG
            if color_space in _SWS_MATRICES:
                self.matrix, self.colorspace = _SWS_MATRICES[color_space], _COLOR_SPACE_VALUES[color_space]
            elif color_space:
                self.facts_lost.append(f"the colour matrix {color_space} (swscale converts RGB to no such YUV; "
                                       "written as bt709)")
        self.display_matrix = tuple(display_matrix) if display_matrix is not None and self.keeps_display else None
        self.sample_aspect = (_as_fraction(sample_aspect, "sample aspect ratio")
                              if sample_aspect is not None and self.keeps_display else None)
        if self.sample_aspect is not None and fmt in _ASPECT_FROM_STREAM and codec not in _ASPECT_IN_BITSTREAM:
            self.facts_lost.append(f"the sample aspect ratio {self.sample_aspect.numerator}:"
                                   f"{self.sample_aspect.denominator} ({fmt} takes it from the stream, which PyAV "
                                   f"18.1 cannot set, and {codec} does not carry it)")
        if os.path.isdir(self._final):
            raise VideoError(f"{self.path}: is an existing directory")
        suffix = Path(self._final).suffix
        self._tmp = self._create(suffix)
        try:
            fmt, codec, options, pix_fmt = self._settings(suffix.lower(), crf, preset, pix_fmt, codec_options)
            container_options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
            settings = (fmt, codec, options, container_options, pix_fmt, color_primaries, color_trc)
            try:
                self._build(*settings, with_audio=True)
            except _AudioRejected as e:
                # Some muxers only refuse a codec when writing the header: drop the audio, keep going.
                self.audio_skipped_reason = f"the {fmt} container rejected {self.audio.codec_name} audio: {e}"
                self._build(*settings, with_audio=False)
        except BaseException:
            self.abort()
            raise

    # ---- setup

    def _format_and_codec(self, suffix: str) -> tuple[str, str]:
        return _CONTAINER_FORMATS[suffix], self.codec

    def _encoder_options(self, codec: str, crf, preset) -> dict[str, str]:
        options: dict[str, str] = {}
        if crf is not None:
            options["crf"] = str(crf)
        if codec in ("libx264", "libx265") and preset:
            options["preset"] = str(preset)
        elif codec == "libsvtav1" and preset:
            options["preset"] = str(_SVT_PRESETS.get(str(preset), preset))
            os.environ.setdefault("SVT_LOG", "1")  # errors only; its info banner goes to stderr
        elif codec in ("libvpx-vp9", "libvpx") and preset:
            options["cpu-used"] = str(_VPX_CPU_USED.get(str(preset), preset))
            options.setdefault("b", "0")  # constant-quality mode with crf
            options["row-mt"] = "1"
        if codec == "libx265":
            options["x265-params"] = "log-level=error"
        return options

    def _settings(self, suffix, crf, preset, pix_fmt, codec_options):
        path = self.path
        fmt, codec = self._format_and_codec(suffix)
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
        options = self._encoder_options(codec, crf, preset)
        if codec_options:
            options.update({str(k): str(v) for k, v in codec_options.items()})
        return fmt, codec, options, pix_fmt

    def _build(self, fmt, codec, options, container_options, pix_fmt, color_primaries, color_trc,
               with_audio: bool) -> None:
        path = self.path
        self._release()
        try:
            self._container = av.open(self._tmp, mode="w", format=fmt, container_options=container_options)
        except av.FFmpegError as e:
            raise _err(path, "cannot create output", e) from None
        try:
            tb = self.time_base
            stream = self._container.add_stream(codec, rate=self.fps, options=dict(options))
            stream.width = self.width
            stream.height = self.height
            stream.pix_fmt = pix_fmt
            stream.time_base = tb
            cc = stream.codec_context
            cc.time_base = tb
            if pix_fmt.startswith(("yuv", "nv")):
                cc.color_range = self.range_value
                cc.colorspace = self.colorspace
            if color_primaries in _COLOR_PRIMARIES_VALUES and self.keeps_colour:
                cc.color_primaries = _COLOR_PRIMARIES_VALUES[color_primaries]
            if color_trc in _COLOR_TRC_VALUES and self.keeps_colour:
                cc.color_trc = _COLOR_TRC_VALUES[color_trc]
            if self.display_matrix is not None:
                stream.set_display_matrix(list(self.display_matrix))  # written as the container's coded side data
            if self.sample_aspect is not None:
                cc.sample_aspect_ratio = self.sample_aspect
            self._stream = stream
        except ValueError as e:
            raise _err(path, f"the {fmt} container cannot hold {codec}", e) from None
        except av.FFmpegError as e:
            raise _err(path, f"cannot set up encoder {codec}", e) from None
        if with_audio and self.audio is not None:
            self._add_audio(fmt)
        try:
            self._container.start_encoding()
        except av.FFmpegError as e:
            if self._audio is not None:
                raise _AudioRejected(_describe(e)) from None
            raise _err(path, f"cannot start encoder {codec} ({pix_fmt}, {self.width}x{self.height})", e) from None

    def _add_audio(self, fmt: str) -> None:
        track = self.audio
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
        tb = (Fraction(track.time_base_num, track.time_base_den) if track.time_base_den
              else Fraction(1, track.sample_rate or 1))
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
        self._audio = AudioInterleaver(tb)

    # ---- writing

    def _write(self, frame: np.ndarray, index: int, pts: int, duration: int) -> None:
        try:
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if self.pix_fmt != "rgb24":
                vf = vf.reformat(format=self.pix_fmt, dst_colorspace=self.matrix, dst_color_range=self.range_name)
            vf.pts = pts
            vf.time_base = self.time_base
            self._durations[pts] = duration
            self._mux_video(self._stream.encode(vf))
        except (av.FFmpegError, OSError, ValueError) as e:
            raise _err(self.path, f"encoding frame {index} failed", e) from None

    def _mux_video(self, packets) -> None:
        # The encoders here leave packet durations at 0 (they do not pass frame durations on); each packet gets
        # its own frame's, found by its pts, so the muxer knows where the last frame ends.
        for pkt in packets:
            pkt.duration = self._durations.pop(pkt.pts, 0)
            self._container.mux(pkt)

    def _mux_audio(self, until: Fraction | None) -> None:
        if self._audio is None:
            return
        for p in self._audio.due(until):
            try:
                packet = av.Packet(p.data)
                packet.pts = p.pts
                packet.dts = p.dts
                packet.duration = p.duration
                packet.time_base = self._audio.time_base
                packet.stream = self._audio_stream
                packet.is_keyframe = True
                self._container.mux(packet)
            except av.FFmpegError as e:
                raise _err(self.path, f"muxing audio packet {self.audio_packets_written} failed", e) from None
            self.audio_packets_written += 1

    def _finish(self) -> None:
        try:
            self._mux_video(self._stream.encode(None))
            self._mux_audio(None)
            self._container.close()
        except (av.FFmpegError, OSError, ValueError) as e:
            raise _err(self.path, "finishing the output failed", e) from None
        self._container = None

    def _release(self) -> None:
        container, self._container = self._container, None
        self._audio, self._audio_stream = None, None
        if container is not None:
            try:
                container.close()
            except Exception:
                pass


class Y4mSink(ContainerSink):
    """Raw yuv4mpegpipe: yuv444p, BT.601 limited range (what y4m readers assume), never audio, one frame every
    1 / fps (the format has no timestamps), no display matrix."""

    kind = "y4m"
    keeps_frame_times = keeps_display = keeps_colour = False
    matrix, colorspace = "ITU601", _AVCOL_SPC_SMPTE170M

    def _format_and_codec(self, suffix: str) -> tuple[str, str]:
        return "yuv4mpegpipe", "rawvideo"

    def _settings(self, suffix, crf, preset, pix_fmt, codec_options):
        return super()._settings(suffix, crf, preset, pix_fmt or "yuv444p", codec_options)

    def _encoder_options(self, codec: str, crf, preset) -> dict[str, str]:
        return {}

    def _add_audio(self, fmt: str) -> None:
        self.audio_skipped_reason = "the y4m format cannot hold audio"


_SINKS = {"png_dir": PngSink, "container": ContainerSink, "y4m": Y4mSink}


def open_sink(path, width: int, height: int, fps=Fraction(24, 1), codec: str | None = None, crf: int | None = 12,
              preset: str | None = "medium", audio: AudioTrack | None = None, **options) -> Sink:
    """The sink for an output path (its kind from output_kind); raises VideoError on any problem.

    `options` (pix_fmt, color_range, color_space, color_primaries, color_trc, codec_options, time_base,
    display_matrix, sample_aspect) go to encoded outputs only; those an output cannot hold (`keeps_frame_times`,
    `keeps_display`) are dropped.
    """
    kind = output_kind(path)
    if kind == "png_dir":
        return PngSink(path, width, height, fps, audio)
    return _SINKS[kind](path, width, height, fps, codec, crf, preset, audio, **options)
