"""Issue 14 items 5 and 6: frame times (variable frame rate, audio in sync) and the display facts (rotation,
sample aspect ratio, colour range / matrix / primaries / transfer) survive encode and decode.

One source carries them all: an mkv of 17 frames at irregular times over 1.30 s (declared 25 fps) with 1.30 s of
AAC audio, flagged `rotate=90` (display matrix -90 degrees), 4:3 samples, full range BT.709. It is encoded and
decoded to .mkv and .y4m through the installed console script (test_cli.script), to .mp4 in-process; `info` runs
in-process (test_cli.invoke). The toy model is conftest's.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from test_cli import invoke, make_clip, mux_tone, pattern, script

from bitstream import CdtReader, spec
from cdtcodec import codec
from cdtcodec.media import open_sink

pytestmark = pytest.mark.usefixtures("one_thread")  # toy models: one thread (conftest)

#: frame starts in ms: 17 frames, gaps of 40 .. 160 ms; the last lasts Matroska's default 40 ms, to 1.30 s
SOURCE_MS = (0, 40, 80, 200, 240, 280, 330, 400, 480, 560, 600, 700, 800, 900, 1000, 1100, 1260)
END_MS = 1300
W, H = 64, 48


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media_facts")


def make_source(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "10"})
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.time_base = v.codec_context.time_base = Fraction(1, 1000)
        v.set_display_rotation(-90)  # what FFmpeg reads from a phone's rotate=90
        cc = v.codec_context
        cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc = 2, 1, 1, 1  # pc, bt709 x 3
        cc.sample_aspect_ratio = Fraction(4, 3)
        a = c.add_stream("aac", rate=44100, layout="mono")
        for i, ms in enumerate(SOURCE_MS):
            frame = av.VideoFrame.from_ndarray(pattern(W, H, i), format="rgb24").reformat(
                format="yuv420p", dst_colorspace="ITU709", dst_color_range="JPEG")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for p in v.encode(frame):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        mux_tone(c, a, 44100 * END_MS // 1000)
    return path


def timeline(path: Path) -> dict:
    """Frame starts and the video's end, and the audio's start and end, in seconds from the first frame; the
    video's clock tick; the display facts of the video stream."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        frames = list(c.decode(vs))
        tb = vs.time_base
        first = frames[0].pts * tb
        out = {"starts": [float(f.pts * tb - first) for f in frames],
               "end": float((frames[-1].pts + frames[-1].duration) * tb - first), "tick": float(tb),
               "rotation": frames[0].rotation, "sample_aspect": vs.sample_aspect_ratio,
               "tags": (vs.codec_context.color_range, vs.codec_context.colorspace, vs.codec_context.color_primaries,
                        vs.codec_context.color_trc)}
    with av.open(str(path)) as c:
        if c.streams.audio:
            a = c.streams.audio[0]
            packets = [p for p in c.demux(a) if p.size]
            out["audio_start"] = float(packets[0].pts * a.time_base - first)
            out["audio_end"] = float((packets[-1].pts + packets[-1].duration) * a.time_base - first)
    return out


@pytest.fixture(scope="module")
def source(work) -> Path:
    return make_source(work / "phone.mkv")


@pytest.fixture(scope="module")
def encoded(work, source, toy) -> Path:
    out = work / "phone.cdt"
    run = script("encode", source, "-o", out, "--model", toy, "--threads", "1", "--quiet")
    assert run.returncode == 0, run.stderr
    return out


@pytest.fixture(scope="module")
def decoded(work, encoded, toy):
    """The file decoded once per output kind asked for: (path, its `note:` lines). Through the console script,
    except .mp4 (in-process, the same codec.decode: each start of the script costs seconds of torch import)."""
    done: dict[str, tuple[Path, list[str]]] = {}

    def get(ext: str) -> tuple[Path, list[str]]:
        if ext not in done:
            out = work / f"phone_out.{ext}"
            if ext == "mp4":
                report = codec.decode(encoded, out, model=str(toy))
                notes = [f"note: {report.note}"] if report.note else []
            else:
                run = script("decode", encoded, "-o", out, "--model", toy, "--threads", "1")
                assert run.returncode == 0, run.stderr
                notes = [line for line in run.stderr.decode().splitlines() if line.startswith("note: ")]
            done[ext] = out, notes
        return done[ext]

    return get


def test_the_source_is_what_the_test_says(source):
    src = timeline(source)
    assert np.allclose(src["starts"], np.array(SOURCE_MS) / 1000) and src["end"] == pytest.approx(END_MS / 1000)
    assert src["rotation"] == -90 and src["sample_aspect"] == Fraction(4, 3) and src["tags"] == (2, 1, 1, 1)
    assert abs(src["audio_end"] - src["end"]) < 0.05


def test_info_shows_the_media_facts(encoded):
    data = json.loads(invoke(["info", encoded, "--json"]).stdout)
    assert data["version"] == "1.1" and data["display"] == {"rotation": -90.0, "mirrored": False,
                                                             "sample_aspect": "4:3"}
    times = data["frame_times"]
    assert times["end_s"] == pytest.approx(END_MS / 1000) and data["duration_s"] == pytest.approx(END_MS / 1000)
    assert 0 < times["recorded"] <= len(SOURCE_MS) and data["frame_times_bytes"] > 0
    assert data["header"]["color_range"] == "pc" and data["header"]["color_space"] == "bt709"
    table = invoke(["info", encoded]).stdout
    assert "1.1" in table and "-90 degrees counter-clockwise" in table and "recorded off the grid" in table


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_variable_frame_times_and_audio_stay_in_sync(source, decoded, ext):
    """Issue: 17 frames over 1.30 s came back over 0.66 s while the audio kept its 1.30 s."""
    src, (out, _) = timeline(source), decoded(ext)
    got = timeline(out)
    tick = max(src["tick"], got["tick"])
    assert len(got["starts"]) == len(SOURCE_MS)
    assert np.abs(np.array(got["starts"]) - np.array(src["starts"])).max() <= tick + 1e-9, got["starts"]
    assert abs(got["end"] - src["end"]) <= tick + 1e-9, (got["end"], src["end"])
    for key in ("audio_start", "audio_end"):  # the audio is the source's packets: the same times against the video
        assert abs(got[key] - src[key]) <= tick + 1e-9, (key, got[key], src[key])


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_rotation_aspect_and_colour_tags_come_back(decoded, ext):
    out, notes = decoded(ext)
    got = timeline(out)
    assert got["rotation"] == -90 and got["sample_aspect"] == Fraction(4, 3)
    assert got["tags"] == (2, 1, 1, 1)  # full range, BT.709 matrix, primaries and transfer
    assert notes == []  # everything was written


def test_an_output_that_cannot_hold_them_says_so(decoded):
    _, notes = decoded("y4m")
    assert len(notes) == 1 and "no frame times" in notes[0] and "rotation -90 degrees" in notes[0], notes
    assert "sample aspect ratio 4:3" in notes[0] and "decode to .mp4 or .mkv" in notes[0]


def test_a_frame_range_keeps_its_relative_times(work, encoded, toy):
    out = work / "range.mkv"
    codec.decode(encoded, out, frames="3:9", model=str(toy))
    got = timeline(out)
    want = (np.array(SOURCE_MS[3:10]) - SOURCE_MS[3]) / 1000
    assert np.abs(np.array(got["starts"]) - want[:-1]).max() <= got["tick"] and got["end"] == pytest.approx(want[-1])


def test_the_progress_bar_closes_at_the_true_count(work, source, toy):
    """The frame count of a VFR mkv is estimated as duration x declared fps (1.3 s x 25 = 33, not 17); the
    bar must not stop at 17/33 as if the encode had been cut short."""
    calls = []
    codec.encode(source, work / "progress.cdt", model=str(toy),
                 progress=lambda done, total: calls.append((done, total)))
    assert calls[0][1] not in (None, len(SOURCE_MS))  # the estimate really was off
    assert calls[-1] == (len(SOURCE_MS), len(SOURCE_MS))


def test_rate_control_counts_the_frame_times_records(work, source, toy):
    """The sizes the step search sees include the FRAME_TIMES records (and the audio): the trial at the chosen
    step is the file's exact size."""
    from cdtcodec.rate.control import RateTarget

    trials = []
    out = work / "vfr_target.cdt"
    report = codec.encode(source, out, model=str(toy), target=RateTarget("kbps", 150.0), rate_progress=trials.append)
    with CdtReader(out) as r:
        assert r.stats.frame_times_bytes > 0 and r.header.quant_step == (report.step,)
    chosen = [t for t in trials if t.whole and t.step == report.step]
    assert chosen and chosen[-1].bytes == out.stat().st_size


def test_a_constant_rate_untagged_clip_writes_no_media_facts(work, toy):
    """Such a clip is written as before the media facts existed: version x.0, no DISPLAY field, no records."""
    clip = make_clip(work / "plain.mp4", 32, 24, 5, fps=Fraction(25))
    out = work / "plain.cdt"
    codec.encode(clip, out, model=str(toy))
    data = out.read_bytes()
    with CdtReader(out) as r:
        assert r.version[1] == 0 and not r.has_frame_times and r.stats.frame_times_bytes == 0
        assert r.header.display_matrix == spec.IDENTITY_MATRIX and (r.header.sample_aspect_num,
                                                                    r.header.sample_aspect_den) == (1, 1)
        assert spec.FIELD_HEAD.pack(spec.Tag.DISPLAY, 0, spec.DISPLAY.size) not in data[:r.stats.header_bytes]
    decoded = work / "plain_out.mp4"
    codec.decode(out, decoded, model=str(toy))
    got = timeline(decoded)
    assert np.allclose(got["starts"], np.arange(5) / 25) and got["end"] == pytest.approx(5 / 25)
    assert got["rotation"] == 0 and got["tags"][:2] == (1, 1)  # untagged: BT.709 limited range, as before


@pytest.mark.parametrize("color_range, white, black", [("pc", 255, 0), ("tv", 235, 16), ("", 235, 16)])
def test_the_sink_converts_with_the_range_it_tags(tmp_path, color_range, white, black):
    """Full range is a conversion, not only a tag: white and black reach 255 and 0 (235 and 16 in limited range),
    and a colour read back through the tags written is the colour given."""
    solid = [np.full((16, 16, 3), value, np.uint8) for value in ((255, 255, 255), (0, 0, 0), (200, 30, 90))]
    out = tmp_path / "x.mkv"
    with open_sink(out, 16, 16, fps=25, color_range=color_range, color_space="bt709") as sink:
        for frame in solid:
            sink.write(frame)
    with av.open(str(out)) as c:
        frames = list(c.decode(video=0))
    assert [(f.color_range, f.colorspace) for f in frames] == [({"pc": 2}.get(color_range, 1), 1)] * 3
    lumas = [int(bytes(f.planes[0])[0]) for f in frames[:2]]
    assert abs(lumas[0] - white) <= 1 and abs(lumas[1] - black) <= 1, lumas
    back = frames[2].to_ndarray(format="rgb24")[8, 8].astype(int)
    assert np.abs(back - (200, 30, 90)).max() <= 3, back
