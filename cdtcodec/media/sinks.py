"""Writing RGB frames (and passthrough audio): one Sink interface, three kinds, picked by :func:`open_sink`.

* ``.mp4`` / ``.m4v`` / ``.mov`` / ``.mkv`` / ``.webm`` (ContainerSink): encoded with ``codec`` (default
  libx264, CRF 12, preset medium, yuv420p). RGB is converted with the BT.709 matrix, limited range, and the
  stream is tagged accordingly. **Odd sizes**: H.264/HEVC cannot code an odd width or height in 4:2:0 (x264
  even refuses odd SPS crops in 4:2:0), so for those encoders an odd size switches the pixel format to
  yuv444p, which keeps the exact size with no padding or cropping flags. AV1 (libsvtav1, libaom) and VP9
  code odd sizes natively in 4:2:0 and keep yuv420p.
* ``.y4m`` (Y4mSink): raw yuv4mpegpipe, yuv444p (no chroma subsampling, any size), limited range with the
  BT.601 matrix, which is what y4m readers assume since the format cannot tag a matrix. The round trip
  RGB -> y4m -> RGB is off by at most 2 levels per channel.
* a directory (an existing directory, a path ending in a separator, or a path without extension; PngSink):
  numbered PNGs ``frame_000000.png``, ``frame_000001.png``, ... (exact).

Frame ``i`` gets pts ``i`` in the time base ``1/fps`` so the output frame rate is exactly the rational
``fps`` (e.g. 30000/1001). Output goes to a temporary beside the final name (bitstream.atomic) and is
renamed over it only when everything succeeded; any exception (KeyboardInterrupt included) removes it.

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

from bitstream.atomic import AtomicOutput
from bitstream.audio import AudioPacket, AudioTrack
from cdtcodec.media.audio import AudioInterleaver
from cdtcodec.media.errors import VideoError, _describe, _err
from cdtcodec.media.formats import (MAX_SIDE, _AVCOL_RANGE_MPEG, _AVCOL_SPC_BT709, _AVCOL_SPC_SMPTE170M,
                                    _COLOR_PRIMARIES_VALUES, _COLOR_TRC_VALUES, _CONTAINER_FORMATS,
                                    _ODD_SIZE_SUBSAMPLED_OK, _SVT_PRESETS, _VPX_CPU_USED, output_kind)

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


class Sink:
    """Frames in, one output at the end. Use as a context manager: leaving the block normally finalises the
    output under its name, leaving it with an exception removes everything written."""

    kind = ""

    def __init__(self, path, width: int, height: int, fps, audio: AudioTrack | None):
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
        self.audio = audio
        self.audio_skipped_reason: str | None = None
        self.frames_written = 0
        self.audio_packets_written = 0
        self.pix_fmt = ""
        self._output: AtomicOutput | None = None
        self._done = False
        self._final = os.path.abspath(self.path.rstrip("/" + os.sep) or ".")
        parent = os.path.dirname(self._final)
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
        self._write(np.ascontiguousarray(arr), self.frames_written)
        self.frames_written += 1
        self._mux_audio(Fraction(self.frames_written) / self.fps + AUDIO_LEAD)

    def write_audio_packet(self, packet: AudioPacket) -> bool:
        """Queue one passthrough audio packet; False when audio is being skipped (see audio_skipped_reason)."""
        if self._done:
            raise VideoError(f"{self.path}: writer is already closed")
        if self._audio is None:
            if self.audio_skipped_reason is None:
                self.audio_skipped_reason = "no audio track was declared when the writer was created"
            return False
        self._audio.add(packet)
        self._mux_audio(Fraction(self.frames_written) / self.fps + AUDIO_LEAD)
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

    def __enter__(self) -> "Sink":
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

    # ---- what a kind provides

    _audio: AudioInterleaver | None = None

    def _write(self, frame: np.ndarray, index: int) -> None:
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

    def _write(self, frame: np.ndarray, index: int) -> None:
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
    matrix, colorspace = "ITU709", _AVCOL_SPC_BT709

    def __init__(self, path, width: int, height: int, fps=Fraction(24, 1), codec: str = "libx264",
                 crf: int | None = 12, preset: str | None = "medium", audio: AudioTrack | None = None, *,
                 pix_fmt: str | None = None, color_primaries: str = "", color_trc: str = "",
                 codec_options: dict | None = None):
        super().__init__(path, width, height, fps, audio)
        self.codec = codec
        self._container = None
        self._stream = None
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
                cc.colorspace = self.colorspace
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
        self._audio = AudioInterleaver(tb)

    # ---- writing

    def _write(self, frame: np.ndarray, index: int) -> None:
        try:
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if self.pix_fmt != "rgb24":
                vf = vf.reformat(format=self.pix_fmt, dst_colorspace=self.matrix, dst_color_range="MPEG")
            vf.pts = index
            vf.time_base = self._frame_tb
            for pkt in self._stream.encode(vf):
                self._container.mux(pkt)
        except (av.FFmpegError, OSError, ValueError) as e:
            raise _err(self.path, f"encoding frame {index} failed", e) from None

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
            for pkt in self._stream.encode(None):
                self._container.mux(pkt)
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
    """Raw yuv4mpegpipe: yuv444p, BT.601 limited range (what y4m readers assume), never audio."""

    kind = "y4m"
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


def open_sink(path, width: int, height: int, fps=Fraction(24, 1), codec: str = "libx264", crf: int | None = 12,
              preset: str | None = "medium", audio: AudioTrack | None = None, **options) -> Sink:
    """The sink for an output path (its kind from output_kind); raises VideoError on any problem.

    `options` (pix_fmt, color_primaries, color_trc, codec_options) go to encoded outputs only.
    """
    kind = output_kind(path)
    if kind == "png_dir":
        return PngSink(path, width, height, fps, audio)
    return _SINKS[kind](path, width, height, fps, codec, crf, preset, audio, **options)
