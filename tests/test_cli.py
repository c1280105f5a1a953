"""End-to-end tests of the command line: typer's CliRunner for most, the installed console script for a few.

Everything runs on a toy model (a few hundred thousand parameters) and clips of at most 51x39 pixels and
6 frames, so the whole file stays well under a minute on two busy cores. One .cdt of a 6-frame 50x38 clip at
30000/1001 fps with AAC audio is encoded once per module and shared.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from bitstream import CdtReader
from cdtcodec import codec as codec_module
from cdtcodec.cli import app
from cdtcodec.config import CDTConfig
from cdtcodec.media import open_video
from cdtcodec.model import CDT
from cdtcodec.timeline import Timeline
from cdtcodec.weights import save_model

FPS = Fraction(30000, 1001)
SCRIPT = Path(sys.executable).with_name("cdtcodec")
REPO = Path(__file__).resolve().parent.parent
REAL_CLIP = REPO / "cdtcodec" / "assets" / "sample.mp4"


# ---------------------------------------------------------------------------------------------------------
# helpers

def pattern(width: int, height: int, index: int) -> np.ndarray:
    """A smooth moving test picture (uint8 RGB), different in every frame."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([(x * 5 + index * 20) % 256, (y * 6 + index * 9) % 256, (x + y + 64) % 256], axis=-1)
    return img.astype(np.uint8)


def mux_tone(container, stream, samples: int) -> None:
    """`samples` of a 440 Hz mono tone at 44.1 kHz through `stream` (AAC) into `container`, flushed."""
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)[None]
    for start in range(0, samples, 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start : start + 1024]), format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts = 44100, start
        for p in stream.encode(frame):
            container.mux(p)
    for p in stream.encode():
        container.mux(p)


def make_clip(path: Path, width: int, height: int, frames: int, fps: Fraction = FPS, audio: bool = False) -> Path:
    """An H.264 .mp4 (yuv444p for odd sizes), optionally with a mono AAC track as long as the video."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "10"})
        v.width, v.height = width, height
        v.pix_fmt = "yuv444p" if width % 2 or height % 2 else "yuv420p"
        a = c.add_stream("aac", rate=44100, layout="mono") if audio else None
        for i in range(frames):
            for p in v.encode(av.VideoFrame.from_ndarray(pattern(width, height, i), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            mux_tone(c, a, int(44100 * frames / float(fps)))
    return path


def read_video(path: Path) -> tuple[np.ndarray, object]:
    with open_video(path) as r:
        return np.stack(list(r.frames())), r.info


def read_pngs(folder: Path) -> np.ndarray:
    names = sorted(folder.glob("frame_*.png"))
    assert names, f"no frames in {folder}"
    return np.stack([np.asarray(Image.open(n).convert("RGB")) for n in names])


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def y4m_frame_count(data: bytes) -> int:
    assert data.startswith(b"YUV4MPEG2 ")
    return data.count(b"FRAME\n")


def invoke(args: list, input: bytes | None = None, code: int = 0):
    """Run the app in-process; check the exit code and that no exception escaped (no traceback)."""
    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def fails(args: list, *fragments: str, code: int = 1, input: bytes | None = None) -> str:
    """The command fails with exactly one 'error: ...' line on stderr holding every fragment."""
    result = invoke(args, input=input, code=code)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.stdout_bytes == b""
    return lines[0]


# ---------------------------------------------------------------------------------------------------------
# fixtures


pytestmark = pytest.mark.usefixtures("one_thread")  # toy models: one thread (conftest)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def other_toy(work) -> Path:
    """Same name and shapes as `toy`, other values: a different sha256."""
    torch.manual_seed(1)
    path = work / "other.safetensors"
    save_model(CDT(CDTConfig(context_dim=8, unet_dim=4)), path, name="toy")
    return path


@pytest.fixture(scope="module")
def clip(work) -> Path:
    return make_clip(work / "clip.mp4", 50, 38, 6, audio=True)


@pytest.fixture(scope="module")
def encoded(work, clip, toy):
    """The shared clip encoded once with default options; yields (path, stderr of the encode)."""
    out = work / "clip.cdt"
    result = invoke(["encode", clip, "-o", out, "--model", toy])
    return out, result.stderr


@pytest.fixture(scope="module")
def reference(work, encoded, toy) -> np.ndarray:
    """The full decode of the shared file as exact PNG frames."""
    folder = work / "ref_frames"
    result = invoke(["decode", encoded[0], "-o", f"{folder}/", "--model", toy, "--json"])
    report = json.loads(result.stdout)
    assert report["frames"] == 6 and report["audio"].startswith("dropped")  # PNG folders hold no audio
    return read_pngs(folder)


# ---------------------------------------------------------------------------------------------------------
# round trips

def test_encode_summary_line_and_header(encoded, toy):
    path, stderr = encoded
    summary = [line for line in stderr.splitlines() if line.startswith("encode: ")]
    assert len(summary) == 1
    line = summary[0]
    for part in ("6 frames", "50x38", "30000/1001 fps", f"{path.stat().st_size:,} bytes", "bpp", "kbps",
                 "audio carried"):
        assert part in line, (part, line)
    with CdtReader(path) as r:
        h = r.header
        assert (h.width, h.height, h.num_frames, h.coded_frames) == (50, 38, 6, 9)
        assert (h.coded_width, h.coded_height) == (56, 40)
        assert Fraction(h.fps_num, h.fps_den) == FPS
        assert h.model_id == "toy"
        assert h.weights_hash == hashlib.sha256(toy.read_bytes()).digest()
        assert r.audio_track is not None and r.audio_track.codec_name == "aac"


def test_info_json_adds_up(encoded, toy):
    path = encoded[0]
    data = json.loads(invoke(["info", path, "--json"]).stdout)
    assert data["file_bytes"] == path.stat().st_size
    parts = ("header_bytes", "index_bytes", "payload_bytes", "framing_bytes", "audio_bytes", "frame_times_bytes",
             "other_bytes")
    assert sum(data[k] for k in parts) == data["file_bytes"]
    assert data["payload_bytes"] == sum(c["bytes"] for c in data["chunks"])
    assert data["audio_bytes"] > 0
    assert [(c["first_frame"], c["frames"]) for c in data["chunks"]] == [(0, 1), (1, 4), (5, 1)]
    assert data["header"]["num_frames"] == data["frames"] == 6
    assert data["header"]["weights_hash"] == hashlib.sha256(toy.read_bytes()).hexdigest()
    assert data["bpp"] == pytest.approx(8 * data["file_bytes"] / (6 * 50 * 38))
    assert data["kbps"] == pytest.approx(8 * data["file_bytes"] / (6 / float(FPS)) / 1000)


def test_info_table_and_stdin(encoded):
    path = encoded[0]
    table = invoke(["info", path]).stdout
    assert "model_id" in table and "toy" in table and "chunk" in table and "1..4" in table
    assert "verified" not in table
    assert "verified: 3 chunks and " in invoke(["info", path, "--verify"]).stdout
    verified = json.loads(invoke(["info", path, "--verify", "--json"]).stdout)["verified"]
    assert verified["chunks"] == 3 and verified["audio_packets"] > 0
    piped = json.loads(invoke(["info", "-", "--json"], input=path.read_bytes()).stdout)
    assert piped == json.loads(invoke(["info", path, "--json"]).stdout)


def test_decode_y4m_stdout_is_deterministic(work, encoded, toy, reference):
    """y4m file and y4m on stdout: identical bytes (two decodes), 6 frames, within 2 levels of the PNGs."""
    out = work / "full.y4m"
    report = json.loads(invoke(["decode", encoded[0], "-o", out, "--model", toy, "--json"]).stdout)
    assert report["frames"] == 6 and report["width"] == 50 and report["height"] == 38
    assert report["fps"] == "30000/1001"
    assert report["audio"] == "dropped (the y4m format cannot hold audio)"
    piped = invoke(["decode", "-", "-o", "-", "--model", toy, "--quiet"], input=encoded[0].read_bytes())
    assert piped.stdout_bytes == out.read_bytes()
    assert y4m_frame_count(piped.stdout_bytes) == 6
    frames, info = read_video(out)
    assert frames.shape == (6, 38, 50, 3) and info.fps == FPS
    assert np.abs(frames.astype(int) - reference.astype(int)).max() <= 2


def test_decode_mp4_carries_audio(work, clip, encoded, toy):
    out = work / "full.mp4"
    report = json.loads(invoke(["decode", encoded[0], "-o", out, "--model", toy, "--json"]).stdout)
    assert report["audio"] == "carried" and report["frames"] == 6
    frames, info = read_video(out)
    assert frames.shape == (6, 38, 50, 3)
    assert info.fps == FPS
    assert info.audio is not None and info.audio.codec_name == "aac"
    source = audio_packets(clip)
    assert len(source) > 3 and audio_packets(out) == source  # remuxed untouched


def test_frame_range_matches_full_decode(work, encoded, toy, reference):
    middle = work / "middle"
    report = json.loads(invoke(["decode", encoded[0], "-o", f"{middle}/", "--frames", "1:5", "--model", toy,
                                "--json"]).stdout)
    assert report["frames"] == 4 and report["audio"] == "dropped (frame range)"
    np.testing.assert_array_equal(read_pngs(middle), reference[1:5])
    first = work / "first"
    invoke(["decode", encoded[0], "-o", f"{first}/", "--frames", ":1", "--model", toy, "--quiet"])
    np.testing.assert_array_equal(read_pngs(first), reference[:1])


def test_stdin_stdout_encode_gives_the_same_file(work, clip, encoded, toy):
    result = invoke(["encode", "-", "-o", "-", "--model", toy, "--quiet"], input=clip.read_bytes())
    assert result.stdout_bytes == encoded[0].read_bytes()
    assert result.stderr.strip() == ""  # --quiet


@pytest.mark.parametrize("width,height,frames,options",
                         [(51, 39, 2, ["--sampling-steps", "2", "--entropy", "zstd"]), (24, 16, 1, [])])
def test_odd_sizes_and_short_clips(work, toy, width, height, frames, options):
    src = make_clip(work / f"c{width}x{height}x{frames}.mp4", width, height, frames)
    cdt = work / f"c{width}x{height}x{frames}.cdt"
    enc = json.loads(invoke(["encode", src, "-o", cdt, "--model", toy, "--json", *options]).stdout)
    assert (enc["frames"], enc["width"], enc["height"], enc["audio"]) == (frames, width, height, "none")
    assert enc["bytes"] == cdt.stat().st_size
    if options:
        with CdtReader(cdt) as r:
            assert (r.header.sampling_steps, r.header.entropy_coder) == (2, "zstd")
    out = work / f"c{width}x{height}x{frames}.mp4.out.mkv"
    dec = json.loads(invoke(["decode", cdt, "-o", out, "--model", toy, "--json"]).stdout)
    assert dec["frames"] == frames
    decoded, info = read_video(out)
    assert decoded.shape == (frames, height, width, 3)
    assert info.fps == FPS


def test_still_png_is_one_frame(work, toy):
    image = work / "still.png"
    Image.fromarray(pattern(21, 13, 0)).save(image)
    cdt = work / "still.cdt"
    enc = json.loads(invoke(["encode", image, "-o", cdt, "--model", toy, "--json"]).stdout)
    assert (enc["frames"], enc["width"], enc["height"]) == (1, 21, 13)
    folder = work / "still_out"
    invoke(["decode", cdt, "-o", f"{folder}/", "--model", toy, "--quiet"])
    assert read_pngs(folder).shape == (1, 13, 21, 3)


def test_real_clip_window(work, toy):
    """The bundled Big Buck Bunny clip, one frame from 0.5 s: size and rate come through to the header."""
    cdt = work / "real.cdt"
    enc = json.loads(invoke(["encode", REAL_CLIP, "-o", cdt, "--model", toy, "--start", "0.5", "--max-frames", "1",
                             "--entropy", "zstd", "--quality", "2", "--seed", "7", "--json"]).stdout)
    assert (enc["frames"], enc["width"], enc["height"], enc["fps"]) == (1, 256, 256, "24")
    h = json.loads(invoke(["info", cdt, "--json"]).stdout)["header"]
    assert (h["num_frames"], h["entropy_coder"], h["seed"], h["fps_num"], h["fps_den"]) == (1, "zstd", 7, 24, 1)
    assert h["quant_step"] == [codec_module.step_for_quality(2)]
    folder = work / "real_frames"
    invoke(["decode", cdt, "-o", f"{folder}/", "--model", toy, "--quiet"])
    assert read_pngs(folder).shape == (1, 256, 256, 3)


def test_no_audio_and_time_window(work, clip, toy):
    cdt = work / "window.cdt"
    enc = json.loads(invoke(["encode", clip, "-o", cdt, "--model", toy, "--no-audio", "--start", "0.1",
                             "--max-frames", "2", "--json"]).stdout)
    assert (enc["frames"], enc["audio"]) == (2, "dropped (--no-audio)")
    data = json.loads(invoke(["info", cdt, "--json"]).stdout)
    assert data["header"]["audio"] is None and data["audio_bytes"] == 0 and data["frames"] == 2


def test_bad_options(work, clip, toy):
    out = work / "never.cdt"
    fails(["encode", clip, "-o", out, "--model", toy, "--qstep", "0"], "--qstep")
    fails(["encode", clip, "-o", out, "--model", toy, "--qstep", "nan"], "--qstep")
    fails(["encode", clip, "-o", out, "--model", toy, "--entropy", "lzma"], "--entropy", "range")
    fails(["encode", clip, "-o", out, "--model", toy, "--start", "60"], "no frames", "60")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------
# bad inputs: one line, non-zero exit, no output file

def test_missing_and_unreadable_inputs(work, toy):
    out = work / "never.cdt"
    fails(["encode", work / "missing.mp4", "-o", out, "--model", toy], "missing.mp4", "no such file")
    text = work / "notes.mp4"
    text.write_text("not a video at all\n")
    fails(["encode", text, "-o", out, "--model", toy], "notes.mp4", "not a video")
    fails(["encode", work, "-o", out, "--model", toy], "is a directory")
    fails(["convert", text, "-o", work / "never.safetensors"], "notes.mp4",
          "not a weights file (neither safetensors nor a PyTorch checkpoint)")
    assert not out.exists() and not (work / "never.safetensors").exists()


def test_zero_frames_and_absurd_size(work, toy):
    empty = work / "empty.y4m"
    empty.write_bytes(b"YUV4MPEG2 W16 H16 F25:1 Ip A1:1 C420jpeg\n")
    out = work / "never.cdt"
    fails(["encode", empty, "-o", out, "--model", toy], "empty.y4m", "zero frames")
    wide = work / "wide.png"
    Image.fromarray(np.zeros((1, 9000, 3), np.uint8)).save(wide)
    fails(["encode", wide, "-o", out, "--model", toy], "9000x1", "8192")
    assert not out.exists()


def test_bad_cdt_files(work, clip, encoded, toy):
    data = encoded[0].read_bytes()
    with CdtReader(encoded[0]) as r:
        offset, length = r._entry(1)  # chunk 1: decoding gets past chunk 0 (frame 0) before failing
    corrupt = bytearray(data)
    corrupt[offset + length // 2] ^= 0x20
    cases = {
        "corrupt.cdt": (bytes(corrupt), "chunk 1: checksum mismatch"),
        "truncated.cdt": (data[: len(data) * 2 // 3], "truncated"),
        "empty.cdt": (b"", "empty file"),
        "video.cdt": (clip.read_bytes(), "not a .cdt file"),
    }
    for name, (content, message) in cases.items():
        (work / name).write_bytes(content)
    before = set(os.listdir(work))
    for name, (content, message) in cases.items():
        out = work / f"{name}.mp4"
        fails(["decode", work / name, "-o", out, "--model", toy, "--quiet"], name, message)
        assert not out.exists()
    fails(["decode", "-", "-o", work / "stdin.mp4", "--model", toy], "<stdin>", "truncated",
          input=data[: len(data) // 2])
    fails(["info", work / "truncated.cdt"], "truncated.cdt", "truncated")
    invoke(["info", work / "corrupt.cdt"])  # header, index and trailer are intact: plain info reads them
    fails(["info", work / "corrupt.cdt", "--verify"], "corrupt.cdt", "chunk 1: checksum mismatch")
    fails(["info", work / "missing.cdt"], "missing.cdt", "no such file")
    assert set(os.listdir(work)) == before  # no output, no temporary


def test_weights_must_match_the_file(work, clip, encoded, toy, other_toy):
    expected = hashlib.sha256(toy.read_bytes()).hexdigest()
    out = work / "never.mp4"
    line = fails(["decode", encoded[0], "-o", out, "--model", other_toy], expected, "other.safetensors",
                 hashlib.sha256(other_toy.read_bytes()).hexdigest(), "--model")
    assert "'toy'" in line
    # without --model the header's name is looked up among the shipped weights, where there is no 'toy'
    fails(["decode", encoded[0], "-o", out], "'toy'", expected, "--model PATH")
    fails(["decode", encoded[0], "-o", out, "--model", work / "nope.safetensors"], "nope.safetensors")
    fails(["encode", clip, "-o", work / "never.cdt", "--model", work / "nope.safetensors"], "no such")
    assert not out.exists() and not (work / "never.cdt").exists()


def test_unwritable_outputs(work, clip, encoded, toy):
    blocker = work / "a_file"
    blocker.write_text("x")
    fails(["encode", clip, "-o", work / "no_dir" / "x.cdt", "--model", toy], "does not exist")
    fails(["encode", clip, "-o", blocker / "x.cdt", "--model", toy], "is not a directory")
    fails(["encode", clip, "-o", work, "--model", toy], "is a directory")
    fails(["decode", encoded[0], "-o", work / "no_dir" / "x.mp4", "--model", toy], "does not exist")
    fails(["decode", encoded[0], "-o", work / "x.avi", "--model", toy], "unknown output extension")
    fails(["decode", encoded[0], "-o", work / "x.mp4", "--model", toy, "--frames", "4:2"], "--frames")
    fails(["decode", encoded[0], "-o", work / "x.mp4", "--model", toy, "--frames", "7:"], "only 6 frames")
    assert not (work / "no_dir").exists() and not (work / "x.mp4").exists()
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root writes anywhere
        locked = work / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            fails(["encode", clip, "-o", locked / "x.cdt", "--model", toy], "not writable")
            assert os.listdir(locked) == []
        finally:
            locked.chmod(0o700)


def test_ctrl_c_leaves_nothing(tmp_path, clip, encoded, toy, monkeypatch):
    """KeyboardInterrupt (what Ctrl-C raises) in the middle of an encode and of a decode."""
    original_push = codec_module.StreamEncoder.push
    calls = {"n": 0}

    def interrupted_push(self, frames):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original_push(self, frames)

    monkeypatch.setattr(codec_module.StreamEncoder, "push", interrupted_push)
    fails(["encode", clip, "-o", tmp_path / "x.cdt", "--model", toy], "interrupted", code=130)
    assert calls["n"] == 2 and os.listdir(tmp_path) == []
    monkeypatch.undo()

    original = Timeline.to_frames
    seen = {"n": 0}

    def interrupted_frames(*args):
        seen["n"] += 1
        if seen["n"] == 2:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(Timeline, "to_frames", staticmethod(interrupted_frames))
    for target in (tmp_path / "x.mp4", f"{tmp_path / 'frames'}/"):
        seen["n"] = 0
        fails(["decode", encoded[0], "-o", target, "--model", toy], "interrupted", code=130)
        assert seen["n"] == 2 and os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------
# the installed console script

def script_env(**extra: str) -> dict[str, str]:
    """The environment for the console script: the checkout under test first on the path, so the script of
    the environment the tests run in imports this code (an editable install may point at another checkout)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "CDT_TEST_THREADS": "2", "OMP_NUM_THREADS": "2", "PYTHONPATH": path, **extra}


def script(*args, cwd: Path | None = None, input: bytes | None = None, **env: str) -> subprocess.CompletedProcess:
    if not SCRIPT.exists():
        pytest.skip(f"console script not installed at {SCRIPT}")
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, cwd=cwd, env=script_env(**env),
                          input=input if input is not None else b"", timeout=120)


def test_console_script_round_trip(work, toy):
    src = make_clip(work / "s.mp4", 51, 39, 2, fps=Fraction(25))
    cdt = work / "s.cdt"
    enc = script("encode", src, "-o", cdt, "--model", toy, "--json", "--threads", "1")
    assert enc.returncode == 0, enc.stderr
    assert json.loads(enc.stdout)["frames"] == 2
    out = work / "s_frames"
    dec = script("decode", cdt, "-o", f"{out}/", "--model", toy, "--threads", "1")
    assert dec.returncode == 0, dec.stderr
    summary = [line for line in dec.stderr.decode().splitlines() if line.startswith("decode: ")]
    assert len(summary) == 1 and "2 frames 51x39 @ 25 fps" in summary[0]
    assert read_pngs(out).shape == (2, 39, 51, 3)


def test_console_script_errors(work, encoded, toy):
    corrupt = bytearray(encoded[0].read_bytes())
    with CdtReader(encoded[0]) as r:
        offset, length = r._entry(2)
    corrupt[offset + length // 2] ^= 0xFF
    bad = work / "script_corrupt.cdt"
    bad.write_bytes(bytes(corrupt))
    for args in (["decode", bad, "-o", work / "script.mp4", "--model", toy, "--threads", "1"],
                 ["encode", work / "missing.mkv", "-o", work / "script.cdt"]):
        run = script(*args)
        err = run.stderr.decode()
        lines = [line for line in err.splitlines() if line.strip()]
        assert run.returncode == 1, err
        assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
        assert run.stdout == b""
    assert not (work / "script.mp4").exists() and not (work / "script.cdt").exists()


def test_console_script_sigint(tmp_path, toy):
    """A real Ctrl-C (SIGINT) while the bundled clip is being encoded: exit 130, one line, nothing left."""
    if not SCRIPT.exists():
        pytest.skip(f"console script not installed at {SCRIPT}")
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([str(SCRIPT), "encode", str(REAL_CLIP), "-o", str(out / "x.cdt"), "--model", str(toy),
                             "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=script_env())
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and not os.listdir(out) and time.monotonic() < deadline:
            time.sleep(0.01)  # the temporary appears once the model is loaded and frames are counted
        assert proc.poll() is None, "the encode ended before it could be interrupted"
        assert os.listdir(out), "no temporary output appeared"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = stderr.decode()
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130, err
    assert "Traceback" not in err and lines and lines[-1].startswith("error: interrupted"), err
    assert os.listdir(out) == [] and stdout == b""


def test_python_dash_m_help():
    run = subprocess.run([sys.executable, "-m", "cdtcodec", "--help"], capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    text = run.stdout.decode()
    for command in ("encode", "decode", "info"):
        assert command in text


def test_encode_decodes_its_input_once(tmp_path, toy, monkeypatch):
    """One pass over the input: the probe looks at the first frame, the encode pass decodes each frame once
    (the header's frame count is restated at close instead of being counted in a first pass)."""
    import cdtcodec.media.probe as probe
    import cdtcodec.media.source as source

    clip = make_clip(tmp_path / "seven.mp4", 32, 24, 7)
    decoded = []
    original = probe._decode_frames

    def counting(*args):
        for frame in original(*args):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(probe, "_decode_frames", counting)
    monkeypatch.setattr(source, "_decode_frames", counting)
    out = tmp_path / "seven.cdt"
    invoke(["encode", clip, "-o", out, "--model", toy])
    assert len(decoded) == 1 + 7
    with CdtReader(out) as r:
        assert (r.header.num_frames, r.header.coded_frames, r.header.latent_frames) == (7, 9, 3)


def test_library_errors_name_parameters_the_cli_names_options(work, clip, toy):
    """codec and bench speak of their parameters (step, frames, codecs); only the command line says --qstep."""
    from cdtcodec import bench, codec
    from cdtcodec.errors import ParamError

    calls = [lambda: codec.encode(clip, work / "never.cdt", model=str(toy), step=0.0),
             lambda: codec.encode(clip, work / "never.cdt", model=str(toy), entropy="lzma"),
             lambda: codec.encode(clip, work / "never.cdt", model=str(toy), seed=-1),
             lambda: codec.parse_frame_range("4:2", 6),
             lambda: bench.make_config([str(clip)], codecs="cdt,vp8"),
             lambda: bench.make_config([str(clip)], crfs=["x264=99"]),
             lambda: bench.make_config([])]
    for call in calls:
        with pytest.raises(ParamError) as ei:
            call()
        assert "--" not in str(ei.value) and ei.value.param in str(ei.value)
        assert ei.value.worded("--opt") == str(ei.value).replace(ei.value.param, "--opt", 1)
    fails(["encode", clip, "-o", work / "never.cdt", "--model", toy, "--seed", "1", "--qstep", "-1"],
          "--qstep must be")
    fails(["bench", clip, "--codecs", "vp8", "--model", toy], "--codecs: unknown codec 'vp8'")


def test_encode_opens_its_input_once_per_pass(work, clip, toy, monkeypatch):
    """The probe, the video pass and the audio pass each open the input once; with a start time the audio pass
    finds the window's first frame with a short pass of its own (no state kept from the video pass)."""
    import cdtcodec.media.probe as probe
    import cdtcodec.media.source as source

    opened = []
    original = probe._open_input

    def counting(path):
        opened.append(path)
        return original(path)

    monkeypatch.setattr(probe, "_open_input", counting)
    monkeypatch.setattr(source, "_open_input", counting)
    enc = json.loads(invoke(["encode", clip, "-o", work / "opens.cdt", "--model", toy, "--json"]).stdout)
    assert enc["audio"] == "carried" and len(opened) == 3
    opened.clear()
    enc = json.loads(invoke(["encode", clip, "-o", work / "opens-window.cdt", "--model", toy, "--start", "0.1",
                             "--json"]).stdout)
    assert enc["audio"] == "carried" and len(opened) == 4


def test_the_main_job_needs_nothing_that_only_the_extras_install():
    """`make demo` installs requirements.txt alone; click (typer carries its own copy), Ray, pandas and the ONNX
    runtimes come only with `make test`'s extras, so the command line and the demo's modules must not need them."""
    code = ("import sys\n"
            "for m in ('click', 'ray', 'pandas', 'pyarrow', 'onnx', 'onnxruntime', 'openvino'): sys.modules[m] = None\n"
            "import cdtcodec.codec, cdtcodec.demo, cdtcodec.stream, cdtcodec.bench\n"
            "sys.argv = ['cdtcodec', 'encode', '--help']\n"
            "from cdtcodec.cli import main\n"
            "main()\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "--qstep" in run.stdout, run.stderr[-2000:]
