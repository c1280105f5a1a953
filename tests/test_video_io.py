"""Video input/output: metadata, round trips, selection, audio passthrough, errors, atomic output.

All clips are generated here with PyAV directly (independently of the code under test).
"""

from __future__ import annotations

import os
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from bitstream.audio import AudioPacket, AudioTrack
from cdtcodec.media import (
    MAX_SIDE,
    VideoError,
    VideoInfo,
    VideoReader,
    is_image_path,
    open_sink,
    open_video,
)

NTSC = Fraction(30000, 1001)
LEVEL_STEP = 4  # frame i of the "level" clips is a flat grey of level 16 + 4 * i


def level_frame(i: int, h: int, w: int) -> np.ndarray:
    return np.full((h, w, 3), 16 + LEVEL_STEP * i, np.uint8)


def level_index(frame: np.ndarray) -> int:
    return int(round((float(frame.mean()) - 16) / LEVEL_STEP))


def smooth_frame(i: int, h: int, w: int) -> np.ndarray:
    """Detailed luma, slowly varying colour (survives 4:2:0 chroma subsampling)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    luma = 110 + 60 * np.sin(x / 3.0 + i / 2.0) * np.cos(y / 4.0 - i / 3.0)
    tint = np.stack([30 * np.sin(x / w * 3 + i / 5), 20 * np.cos(y / h * 3), -25 * np.sin((x + y) / (w + h) * 3)], -1)
    return np.clip(luma[..., None] + tint, 0, 255).astype(np.uint8)


def noise_frame(i: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def make_clip(path: Path, frames, fps, codec="libx264", pix_fmt="yuv420p", gop=None,
              audio_seconds: float = 0.0, audio_codec="aac", video=True) -> Path:
    """Encode frames (list of RGB arrays) with PyAV; optionally add a 440 Hz stereo sine track."""
    out = av.open(str(path), "w")
    vs = None
    if video:
        h, w = frames[0].shape[:2]
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        if codec == "libx264":
            vs.options = {"crf": "4", "preset": "ultrafast", **({"g": str(gop), "keyint_min": str(gop)} if gop else {})}
        vs.codec_context.time_base = Fraction(1) / Fraction(fps)
    a = None
    if audio_seconds:
        a = out.add_stream(audio_codec, rate=48000)
        a.layout = "stereo"
    if vs is not None:
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            f.pts = i
            for p in vs.encode(f):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
    if a is not None:
        sr, n = 48000, int(48000 * audio_seconds)
        t = np.arange(n) / sr
        wave = (0.25 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for k in range(0, n, 1024):
            chunk = wave[k : k + 1024]
            af = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
            af.sample_rate, af.pts = sr, k
            for p in a.encode(af):
                out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    out.close()
    return path


def demux_audio(path) -> list[tuple[bytes, int]]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        s = c.streams.audio[0]
        return [(bytes(p), p.pts) for p in c.demux(s) if p.size]


def one_line(exc: BaseException, must_name: str | None = None) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg, msg
    if must_name is not None:
        assert must_name in msg, msg
    return msg


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    c = {}
    # 60 frames at 30000/1001 with a keyframe every 10 frames and 2 s of AAC audio.
    c["ntsc_av"] = make_clip(d / "ntsc_av.mp4", [level_frame(i, 48, 64) for i in range(60)], NTSC,
                             gop=10, audio_seconds=2.0)
    # 12 frames at 24 fps in Matroska (container has no frame count).
    c["mkv24"] = make_clip(d / "mkv24.mkv", [smooth_frame(i, 48, 64) for i in range(12)], 24)
    # odd size in a lossless-ish y4m
    c["odd_y4m"] = make_clip(d / "odd.y4m", [level_frame(i, 39, 51) for i in range(8)], 24,
                             codec="rawvideo", pix_fmt="yuv444p")
    c["audio_only"] = make_clip(d / "audio_only.m4a", None, None, audio_seconds=0.3, video=False)
    return c


# ---------------------------------------------------------------------------------- metadata


def test_metadata_mp4_with_audio(clips):
    with open_video(clips["ntsc_av"]) as r:
        info = r.info
        assert isinstance(r, VideoReader) and isinstance(info, VideoInfo)
        assert (info.width, info.height) == (64, 48)
        assert info.fps == NTSC and isinstance(info.fps, Fraction)
        assert isinstance(info.time_base, Fraction) and info.time_base > 0
        assert info.num_frames == 60
        assert info.duration_s == pytest.approx(60 / float(NTSC), abs=0.05)
        assert info.pix_fmt == "yuv420p"
        assert not info.is_image
        assert info.codec_name == "h264"
        a = info.audio
        assert isinstance(a, AudioTrack)
        assert (a.codec_name, a.sample_rate, a.channels, a.layout) == ("aac", 48000, 2, "stereo")
        assert a.extradata and a.time_base_den > 0
        frames = list(r.frames())
    assert len(frames) == 60 == r.frames_read
    assert all(f.dtype == np.uint8 and f.shape == (48, 64, 3) for f in frames)
    assert [level_index(f) for f in frames] == list(range(60))  # display order


def test_metadata_mkv_counts_frames(clips):
    with open_video(clips["mkv24"]) as r:
        assert r.info.fps == Fraction(24)
        assert r.info.num_frames is None  # Matroska does not store it ...
        assert r.info.audio is None
        assert sum(1 for _ in r.frames()) == 12  # ... so frames are counted as decoded


def test_frames_are_streamed(clips):
    """Iterating a clip keeps only a couple of frames alive at any time."""
    frame_bytes = 64 * 48 * 3
    with open_video(clips["ntsc_av"]) as r:
        gen = r.frames()
        tracemalloc.start()
        try:
            n = 0
            for _ in gen:
                n += 1
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert n == 60
    assert peak < 12 * frame_bytes, peak


# ---------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fps", [NTSC, Fraction(24)])
@pytest.mark.parametrize("size", [(48, 64), (39, 51)])
def test_roundtrip_mp4_keeps_size_rate_and_quality(tmp_path, fps, size):
    h, w = size
    src = [smooth_frame(i, h, w) for i in range(8)]
    out = tmp_path / "out.mp4"
    with open_sink(out, w, h, fps=fps) as wr:  # defaults: libx264, crf 12, medium
        for f in src:
            wr.write(f)
    assert wr.pix_fmt == ("yuv444p" if w % 2 or h % 2 else "yuv420p")
    with open_video(out) as r:
        assert (r.info.width, r.info.height) == (w, h)
        assert r.info.fps == fps
        assert r.info.color_space == "bt709" and r.info.color_range == "tv"
        got = list(r.frames())
    assert len(got) == len(src)
    assert all(g.shape == (h, w, 3) for g in got)
    assert min(psnr(a, b) for a, b in zip(src, got)) > 40
    with av.open(str(out)) as c:  # frame i at pts i/fps exactly
        vs = c.streams.video[0]
        times = sorted(Fraction(p.pts) * vs.time_base for p in c.demux(vs) if p.pts is not None)
    assert times == [Fraction(i) / fps for i in range(8)]


@pytest.mark.parametrize("codec,ext", [("libx265", "mkv"), ("libsvtav1", "mkv")])
def test_other_encoders_odd_size(tmp_path, codec, ext):
    h, w = 39, 51
    src = [smooth_frame(i, h, w) for i in range(4)]
    out = tmp_path / f"out.{ext}"
    with open_sink(out, w, h, fps=NTSC, codec=codec, preset="ultrafast" if codec == "libx265" else "12") as wr:
        for f in src:
            wr.write(f)
    with open_video(out) as r:
        assert (r.info.width, r.info.height, r.info.fps) == (w, h, NTSC)
        got = list(r.frames())
    assert len(got) == 4 and got[0].shape == (h, w, 3)
    assert min(psnr(a, b) for a, b in zip(src, got)) > 35


@pytest.mark.parametrize("size", [(48, 64), (39, 51)])
def test_roundtrip_y4m_near_exact(tmp_path, size):
    h, w = size
    src = [noise_frame(i, h, w) for i in range(5)]
    out = tmp_path / "out.y4m"
    with open_sink(out, w, h, fps=NTSC) as wr:
        for f in src:
            wr.write(f)
    with open_video(out) as r:
        assert (r.info.width, r.info.height, r.info.fps) == (w, h, NTSC)
        got = list(r.frames())
    assert len(got) == 5
    for a, b in zip(src, got):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


@pytest.mark.parametrize("trailing_slash", [True, False])
def test_roundtrip_png_folder_exact(tmp_path, trailing_slash):
    h, w = 39, 51
    src = [noise_frame(i, h, w) for i in range(3)]
    target = tmp_path / "frames"
    with open_sink(str(target) + ("/" if trailing_slash else ""), w, h, fps=24) as wr:
        for f in src:
            wr.write(f)
    names = sorted(os.listdir(target))
    assert names == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    for a, name in zip(src, names):
        assert np.array_equal(a, np.asarray(Image.open(target / name).convert("RGB")))
    assert sorted(os.listdir(tmp_path)) == ["frames"]  # no temporary left behind
    # writing again replaces a previous frame folder
    with open_sink(target, w, h, fps=24) as wr:
        wr.write(src[0])
    assert sorted(os.listdir(target)) == ["frame_000000.png"]


def test_odd_size_y4m_source_exact_size(clips):
    with open_video(clips["odd_y4m"]) as r:
        assert (r.info.width, r.info.height, r.info.fps, r.info.pix_fmt) == (51, 39, Fraction(24), "yuv444p")
        frames = list(r.frames())
    assert [f.shape for f in frames] == [(39, 51, 3)] * 8
    assert [level_index(f) for f in frames] == list(range(8))


# ---------------------------------------------------------------------------------- selection


def test_start_and_max_frames_select_exact_frames(clips):
    # frame 30 is at 1.001 s; a start of 1.0 s selects it (frame 29, at 0.968 s, is before)
    with open_video(clips["ntsc_av"], start_s=1.0, max_frames=7) as r:
        got = [level_index(f) for f in r.frames()]
    assert got == list(range(30, 37))
    with open_video(clips["ntsc_av"], start_s=0.5) as r:  # 0.5 s -> frame 15 (0.5005 s)
        got = [level_index(f) for f in r.frames()]
    assert got == list(range(15, 60))
    with open_video(clips["ntsc_av"], max_frames=5) as r:
        assert [level_index(f) for f in r.frames()] == [0, 1, 2, 3, 4]
        assert r.expected_frames == 5
    with open_video(clips["odd_y4m"], start_s=0.25, max_frames=100) as r:  # 24 fps: frame 6
        assert [level_index(f) for f in r.frames()] == [6, 7]


def test_start_seeks_instead_of_decoding_everything(clips, monkeypatch):
    import cdtcodec.media.source as vio

    decoded = []
    original = vio._decode_frames

    def counting(container, stream, path):
        for frame in original(container, stream, path):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(vio, "_decode_frames", counting)
    with open_video(clips["ntsc_av"], start_s=1.5, max_frames=3) as r:
        decoded.clear()
        assert [level_index(f) for f in r.frames()] == [45, 46, 47]
    # keyframes every 10 frames: decoding starts at frame 40, not at frame 0
    assert 3 <= len(decoded) <= 12, len(decoded)


def test_batches_follow_requested_sizes(clips):
    def sizes():
        yield 1
        while True:
            yield 4

    with open_video(clips["ntsc_av"], start_s=1.0, max_frames=10) as r:
        batches = list(r.batches(sizes()))
    assert [b.shape for b in batches] == [(1, 48, 64, 3), (4, 48, 64, 3), (4, 48, 64, 3), (1, 48, 64, 3)]
    assert [level_index(f) for b in batches for f in b] == list(range(30, 40))


def test_start_past_end_is_an_error(clips):
    with open_video(clips["ntsc_av"], start_s=5.0) as r:
        with pytest.raises(VideoError) as e:
            list(r.frames())
    one_line(e.value, "ntsc_av.mp4")


# ---------------------------------------------------------------------------------- audio


def test_audio_passthrough_identical_packets(clips, tmp_path):
    src = clips["ntsc_av"]
    with open_video(src) as r:
        track = r.info.audio
        pkts = list(r.audio_packets())
        frames = list(r.frames())
    source = demux_audio(src)
    assert [p.data for p in pkts] == [d for d, _ in source] and len(pkts) > 50
    assert all(isinstance(p, AudioPacket) for p in pkts)

    for ext in ("mp4", "mkv", "mov"):
        out = tmp_path / f"with_audio.{ext}"
        with open_sink(out, 64, 48, fps=NTSC, audio=track, preset="ultrafast") as wr:
            for f in frames:
                wr.write(f)
            for p in pkts:
                assert wr.write_audio_packet(p) is True
        assert wr.audio_skipped_reason is None
        assert [d for d, _ in demux_audio(out)] == [p.data for p in pkts], ext
        with open_video(out) as r2:
            a2 = r2.info.audio
            assert (a2.codec_name, a2.sample_rate, a2.channels, a2.extradata) == (
                "aac", 48000, 2, track.extradata)
            assert r2.info.fps == NTSC
        with av.open(str(out)) as c:  # the remuxed track decodes to ~2 s of sound
            samples = sum(fr.samples for fr in c.decode(audio=0))
        assert abs(samples - 96000) <= 2048


def test_opus_passthrough_and_rejection(tmp_path):
    src = make_clip(tmp_path / "opus.mkv", [level_frame(i, 48, 64) for i in range(6)], 24,
                    audio_seconds=0.3, audio_codec="libopus")
    with open_video(src) as r:
        track = r.info.audio
        pkts = list(r.audio_packets())
        frames = list(r.frames())
    assert track.codec_name == "opus" and track.extradata.startswith(b"OpusHead")
    for ext, carried in (("mkv", True), ("mp4", True), ("mov", False)):
        out = tmp_path / f"out.{ext}"
        with open_sink(out, 64, 48, fps=24, audio=track, preset="ultrafast") as wr:
            for f in frames:
                wr.write(f)
            for p in pkts:
                wr.write_audio_packet(p)
        got = [d for d, _ in demux_audio(out)]
        if carried:
            assert wr.audio_skipped_reason is None and got == [p.data for p in pkts], ext
        else:  # the QuickTime muxer refuses Opus: video still written, audio reported as dropped
            assert "opus" in wr.audio_skipped_reason and got == []
        with open_video(out) as r2:
            assert sum(1 for _ in r2.frames()) == 6


def test_audio_window_follows_selection(clips):
    src = clips["ntsc_av"]
    with av.open(str(src)) as c:
        tb = c.streams.audio[0].time_base
    assert tb == Fraction(1, 48000)
    with open_video(src, start_s=1.0, max_frames=15) as r:
        pkts = list(r.audio_packets())  # before any frame was read
        list(r.frames())
        again = list(r.audio_packets())  # after
    assert [p.data for p in again] == [p.data for p in pkts]
    t0 = Fraction(30) / NTSC  # first selected frame
    t1 = t0 + Fraction(15) / NTSC
    source = {d: pts for d, pts in demux_audio(src)}
    shift = round(t0 / tb)
    for p in pkts:
        assert p.pts == source[p.data] - shift and p.dts == p.pts and p.duration == 1024
    # window: first packet straddles 0, last one starts before the end of the last frame
    assert -1024 < pkts[0].pts <= 0
    assert (pkts[-1].pts) * tb < t1 - t0 <= (pkts[-1].pts + 1024) * tb
    assert len(pkts) == len({p.pts for p in pkts}) >= int((t1 - t0) * 48000 / 1024)


def test_audio_skipped_with_reason(clips, tmp_path):
    with open_video(clips["ntsc_av"], max_frames=3) as r:
        track = r.info.audio
        frames = list(r.frames())
        pkts = list(r.audio_packets())
    for name, kwargs in [("a.y4m", {}), ("frames", {}), ("a.webm", {"codec": "libvpx-vp9", "preset": "ultrafast"})]:
        out = tmp_path / name
        with open_sink(out, 64, 48, fps=NTSC, audio=track, **kwargs) as wr:
            for f in frames:
                wr.write(f)
            assert all(wr.write_audio_packet(p) is False for p in pkts)
        reason = wr.audio_skipped_reason
        assert isinstance(reason, str) and reason and "\n" not in reason
        if out.is_file():
            assert demux_audio(out) == []
            with open_video(out) as r2:
                assert sum(1 for _ in r2.frames()) == 3
    assert "webm" in reason


# ---------------------------------------------------------------------------------- still images


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_still_image_is_one_frame(tmp_path, ext):
    img = smooth_frame(0, 39, 51)
    path = tmp_path / f"still 50%.{ext}"  # '%' must not be taken as a sequence pattern
    Image.fromarray(img).save(path, quality=98)
    assert is_image_path(path)
    with open_video(path) as r:
        assert r.info.is_image and r.info.num_frames == 1 and r.info.audio is None
        assert (r.info.width, r.info.height) == (51, 39)
        frames = list(r.frames())
        assert list(r.audio_packets()) == []
    assert len(frames) == 1
    if ext == "png":
        assert np.array_equal(frames[0], img)
    else:
        assert psnr(frames[0], img) > 30


# ---------------------------------------------------------------------------------- errors


def test_read_errors_are_one_line_video_errors(clips, tmp_path):
    missing = tmp_path / "missing.mp4"
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video\n" * 100)
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    huge = tmp_path / "huge.y4m"
    huge.write_bytes(b"YUV4MPEG2 W9000 H2 F25:1 Ip A1:1 C444\nFRAME\n" + bytes(9000 * 2 * 3))
    no_frames = tmp_path / "no_frames.y4m"
    no_frames.write_bytes(b"YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C444\n")  # a valid header, no frame
    no_streams = tmp_path / "no_streams.mp4"
    with av.open(str(no_streams), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height = 64, 48
        c.start_encoding()
    cases = {
        missing: "no such file",
        tmp_path: "directory",
        garbage: "",
        empty: "",
        clips["audio_only"]: "no video stream",
        huge: "9000x2",
        no_frames: "zero frames",
        no_streams: "no video stream",
    }
    for path, words in cases.items():
        with pytest.raises(VideoError) as e:
            open_video(path)
        msg = one_line(e.value, str(path))
        assert words in msg
        assert type(e.value) is VideoError
    for bad in ({"start_s": -1}, {"max_frames": 0}):
        with pytest.raises(VideoError):
            open_video(clips["mkv24"], **bad)


def test_write_errors_are_one_line_video_errors(tmp_path):
    frame = np.zeros((48, 64, 3), np.uint8)
    cases = [
        (tmp_path / "out.xyz", (64, 48), "extension"),
        (tmp_path / "no_dir" / "out.mp4", (64, 48), "does not exist"),
        (tmp_path / "out.mp4", (0, 48), "0x48"),
        (tmp_path / "out.mp4", (MAX_SIDE + 2, 48), str(MAX_SIDE + 2)),
    ]
    if os.geteuid() == 0:
        cases.append((Path("/proc/cdtcodec-video-io-test.mp4"), (64, 48), ""))  # root can't be denied via chmod
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        cases.append((ro / "out.mp4", (64, 48), "not writable"))
    for path, (w, h), words in cases:
        with pytest.raises(VideoError) as e:
            open_sink(path, w, h, fps=24)
        assert words in one_line(e.value, str(path))
    with pytest.raises(VideoError) as e:
        open_sink(tmp_path / "x.mp4", 64, 48, codec="no-such-encoder")
    one_line(e.value)
    with open_sink(tmp_path / "shape.mp4", 64, 48, fps=24) as wr:
        with pytest.raises(VideoError) as e:
            wr.write(frame[:, :50])
        one_line(e.value, "shape.mp4")
        wr.write(frame)
    with pytest.raises(VideoError) as e:  # nothing written: no output either
        with open_sink(tmp_path / "empty.mp4", 64, 48, fps=24):
            pass
    one_line(e.value, "empty.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shape.mp4"]


# ---------------------------------------------------------------------------------- atomic output


@pytest.mark.parametrize("name", ["out.mp4", "out.mkv", "out.y4m", "frames/"])
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_no_partial_output_on_exception(tmp_path, name, exc):
    frame = np.zeros((48, 64, 3), np.uint8)
    final = tmp_path / name.rstrip("/")
    with pytest.raises(exc):
        with open_sink(tmp_path / name, 64, 48, fps=24, preset="ultrafast") as wr:
            wr.write(frame)
            wr.write(frame)
            assert len(os.listdir(tmp_path)) == 1  # the temporary, in the same directory
            assert not final.exists()
            raise exc()
    assert os.listdir(tmp_path) == []


def test_failed_rewrite_keeps_previous_file(tmp_path):
    frame = np.zeros((48, 64, 3), np.uint8)
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"previous result")
    with pytest.raises(ValueError):
        with open_sink(out, 64, 48, fps=24, preset="ultrafast") as wr:
            wr.write(frame)
            raise ValueError("boom")
    assert out.read_bytes() == b"previous result"
    assert os.listdir(tmp_path) == ["keep.mp4"]
    with open_sink(out, 64, 48, fps=24, preset="ultrafast") as wr:
        wr.write(frame)
    with open_video(out) as r:
        assert sum(1 for _ in r.frames()) == 1
    assert os.listdir(tmp_path) == ["keep.mp4"]
