"""Issue 14: no lost source, nothing partial left on any signal, bounded work and memory, plain console text.

The command-line cases run through the installed console script (test_cli.script, with this checkout first on
the path); the toy model and clips are those of test_cli, made again here at module scope.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import REAL_CLIP, make_clip, pattern, script

from bitstream import CdtReader, CdtWriter, fuzz, spec
from cdtcodec.config import get_config
from cdtcodec.limits import MemoryLimitExceeded, check_memory, decode_bytes, encode_bytes, parse_size
from cdtcodec.media import read_png_frames
from cdtcodec.overwrite import OutputRefused, Overwrite, confirm_output, refuse_inputs
from cdtcodec.rate.coder_choice import prior_path
from cdtcodec.rate.quantize import quantize
from cdtcodec.weights import shipped_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # toy models: one thread (conftest)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="module")
def clip(work) -> Path:
    return make_clip(work / "clip.mp4", 32, 24, 2, fps=Fraction(25))


@pytest.fixture(scope="module")
def encoded(work, clip, toy) -> Path:
    out = work / "clip.cdt"
    run = script("encode", clip, "-o", out, "--model", toy, "--threads", "1")
    assert run.returncode == 0, run.stderr
    return out


def one_error_line(run, *fragments: str, code: int = 1) -> str:
    err = run.stderr.decode()
    lines = [line for line in err.splitlines() if line.strip()]
    assert run.returncode == code, err
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------------------------------------
# 1. overwrite policy

def test_same_file_is_found_by_inode(tmp_path):
    source = tmp_path / "s.mp4"
    source.write_bytes(b"video")
    (tmp_path / "link.mp4").symlink_to(source)
    os.link(source, tmp_path / "hard.mp4")
    for spelling in (source, tmp_path / "link.mp4", tmp_path / "hard.mp4", tmp_path / "." / "s.mp4"):
        with pytest.raises(OutputRefused, match="is the input"):
            refuse_inputs(spelling, [source])
    with pytest.raises(OutputRefused, match="holds the input"):
        refuse_inputs(f"{tmp_path}/", [source], folder=True)  # a PNG folder is replaced whole
    refuse_inputs(f"{tmp_path}/", [source])  # not a folder output: the writer refuses a folder itself
    refuse_inputs(tmp_path / "new.cdt", [source])
    refuse_inputs("-", ["-"])


def test_existing_output_needs_yes(tmp_path):
    out = tmp_path / "o.cdt"
    confirm_output(out, Overwrite.ASK, interactive=False)  # nothing there yet
    out.write_bytes(b"old")
    confirm_output(out, Overwrite.ALWAYS)
    with pytest.raises(OutputRefused, match="-n"):
        confirm_output(out, Overwrite.NEVER, ask=lambda q: pytest.fail("-n must not ask"))
    with pytest.raises(OutputRefused, match="pass -y"):
        confirm_output(out, Overwrite.ASK, interactive=False)
    questions = []
    confirm_output(out, Overwrite.ASK, interactive=True, ask=lambda q: questions.append(q) or True)
    assert questions and "o.cdt" in questions[0] and "[y/N]" in questions[0]
    with pytest.raises(OutputRefused, match="not overwritten"):
        confirm_output(out, Overwrite.ASK, interactive=True, ask=lambda q: False)
    with pytest.raises(OutputRefused, match="is the input"):
        confirm_output(out, Overwrite.ALWAYS, [out])  # -y never allows writing onto an input
    (tmp_path / "empty").mkdir()
    confirm_output(f"{tmp_path / 'empty'}/", Overwrite.NEVER, folder=True)  # an empty folder holds nothing to lose


def test_console_script_never_writes_onto_its_input(work, clip, encoded, toy):
    before = clip.read_bytes()
    (work / "clip_link.mp4").symlink_to(clip)
    for target in (clip, work / "clip_link.mp4"):
        one_error_line(script("encode", clip, "-o", target, "--model", toy, "-y"), "is the input")
    assert clip.read_bytes() == before
    cdt = encoded.read_bytes()
    one_error_line(script("decode", encoded, "-o", encoded, "--model", toy, "-y"), "is the input")
    assert encoded.read_bytes() == cdt
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []  # no temporaries


def test_console_script_overwrite_flags(work, clip, encoded, toy):
    out = work / "existing.cdt"
    out.write_bytes(b"keep me")
    one_error_line(script("encode", clip, "-o", out, "--model", toy), "already exists", "-y")  # no terminal
    one_error_line(script("encode", clip, "-o", out, "--model", toy, "-n"), "already exists")
    one_error_line(script("encode", clip, "-o", out, "--model", toy, "-y", "-n"), "contradict")
    assert out.read_bytes() == b"keep me"
    run = script("encode", clip, "-o", out, "--model", toy, "-y", "--quiet", "--threads", "1")
    assert run.returncode == 0, run.stderr
    assert out.read_bytes() == encoded.read_bytes()
    frames = work / "frames"
    assert script("decode", encoded, "-o", f"{frames}/", "--model", toy, "--quiet").returncode == 0
    one_error_line(script("decode", encoded, "-o", f"{frames}/", "--model", toy), "already exists")
    assert script("decode", encoded, "-o", f"{frames}/", "--model", toy, "-y", "--quiet").returncode == 0
    weights = work / "converted.safetensors"
    weights.write_bytes(b"x")
    one_error_line(script("convert", toy, "-o", weights), "already exists")
    one_error_line(script("convert", toy, "-o", toy, "-y"), "is the input")


# ---------------------------------------------------------------------------------------------------------
# 2. signals: nothing left behind, exit 128 + signal, one line

def _catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for `signum` (Linux: the SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(mask >> (signum - 1) & 1)


def _spawn(args, tmp: Path, **popen):
    from test_cli import SCRIPT, script_env

    if not SCRIPT.exists():
        pytest.skip(f"console script not installed at {SCRIPT}")
    return subprocess.Popen([str(SCRIPT), *map(str, args)], stdout=popen.pop("stdout", subprocess.PIPE),
                            stderr=subprocess.PIPE, env=script_env(TMPDIR=str(tmp)), **popen)


def _finish(proc, timeout: float = 60):
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:  # only ever the child this test started, by its own handle
            proc.kill()
            proc.wait()


def _until(condition, proc, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while proc.poll() is None and not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the command ended before it could be interrupted"
    assert condition(), "the command never got that far"


@pytest.fixture(scope="module")
def long_cdt(work, toy) -> Path:
    """The bundled clip (33 frames of 256x256) at 4 sampling steps: a decode that lasts a few seconds."""
    out = work / "long.cdt"
    run = script("encode", REAL_CLIP, "-o", out, "--model", toy, "--sampling-steps", "4", "--threads", "1")
    assert run.returncode == 0, run.stderr
    return out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_during_encode_leaves_nothing(tmp_path, toy, signum):
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir(), tmp.mkdir()
    proc = _spawn(["encode", REAL_CLIP, "-o", out / "x.cdt", "--model", toy, "--threads", "1"], tmp)
    _until(lambda: os.listdir(out), proc)  # the temporary appears once the model is loaded
    proc.send_signal(signum)
    stdout, stderr = _finish(proc)
    line = one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr),
                          "interrupted by", signal.Signals(signum).name, code=128 + signum)
    assert os.listdir(out) == [] and os.listdir(tmp) == [] and stdout == b"", line


def test_sigterm_during_png_decode_from_stdin_leaves_nothing(tmp_path, long_cdt, toy):
    """Input on stdin (copied to a /tmp/cdtcodec-* folder) and a half-written PNG folder: both go."""
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir(), tmp.mkdir()
    with open(long_cdt, "rb") as stdin:
        proc = _spawn(["decode", "-", "-o", f"{out / 'frames'}/", "--model", toy, "--threads", "1"], tmp,
                      stdin=stdin)
        _until(lambda: any(os.listdir(out / d) for d in os.listdir(out)), proc)  # frames are being written
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = _finish(proc)
    one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), "SIGTERM", code=143)
    assert os.listdir(out) == [] and os.listdir(tmp) == []


def test_ctrl_c_while_starting_is_one_line(tmp_path, toy, clip):
    """SIGINT as soon as the command line has its handlers, i.e. while torch and the model still load."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to see when the handlers are installed")
    proc = _spawn(["encode", clip, "-o", tmp_path / "x.cdt", "--model", toy], tmp_path)
    _until(lambda: _catches(proc.pid, signal.SIGTERM), proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = _finish(proc)
    one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), "SIGINT", code=130)
    assert os.listdir(tmp_path) == []


def test_closed_stdout_pipe_exits_141(tmp_path, encoded, toy):
    proc = _spawn(["decode", encoded, "-o", "-", "--model", toy, "--threads", "1", "--quiet"], tmp_path)
    proc.stdout.close()  # the reader went away (`| head -c 0`)
    _, stderr = _finish(proc)
    one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, b"", stderr), "broken pipe", code=141)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------
# 3. work and memory bounded before anything is allocated

def crafted_cdt(path: Path, **header) -> Path:
    """A small valid .cdt for the shipped cdt-tiny weights (zero symbols), with header fields overridden."""
    weights = shipped_weights("cdt-tiny")
    h = fuzz.sample_header("range", model_id="cdt-tiny", weights_hash=hashlib.sha256(weights.read_bytes()).digest(),
                           extensions={}, **header)
    with CdtWriter(path, h) as writer:
        for i in range(h.num_chunks):
            writer.write_chunk(np.zeros(h.chunk_shape(i), np.int32))
    return path


def test_billions_of_sampling_steps_are_refused_at_the_header(tmp_path):
    small = crafted_cdt(tmp_path / "ok.cdt").read_bytes()
    hostile = tmp_path / "steps.cdt"
    hostile.write_bytes(fuzz.with_field(small, spec.Tag.SAMPLING, spec.SAMPLING.pack(7, 4_000_000_000)))
    one_error_line(script("decode", hostile, "-o", tmp_path / "x.mp4"), "sampling_steps", "1000")
    # the same cap, at the option
    usage = script("encode", REAL_CLIP, "-o", tmp_path / "x.cdt", "--sampling-steps", "1001")
    assert usage.returncode == 2 and b"1000" in usage.stderr, usage.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_a_huge_frame_is_refused_before_it_is_allocated(tmp_path):
    big = crafted_cdt(tmp_path / "big.cdt", width=8192, height=8192, coded_width=8192, coded_height=8192,
                      latent_width=1024, latent_height=1024, quant_step=(0.5,))
    assert big.stat().st_size < 4096
    started = time.monotonic()
    line = one_error_line(script("decode", big, "-o", tmp_path / "x.mp4"), "8192x8192", "GiB of memory",
                          "--max-memory", "CDTCODEC_MAX_MEMORY")
    assert time.monotonic() - started < 60, line  # start-up and the model load, no decode
    assert os.listdir(tmp_path) == ["big.cdt"]


def test_memory_limit_can_be_lowered_and_raised(tmp_path, clip, encoded, toy):
    one_error_line(script("decode", encoded, "-o", tmp_path / "x.y4m", "--model", toy, CDTCODEC_MAX_MEMORY="100M"),
                   "decoding 32x24", "0.1 GiB", "CDTCODEC_MAX_MEMORY")
    one_error_line(script("encode", clip, "-o", tmp_path / "x.cdt", "--model", toy, "--max-memory", "100M"),
                   "encoding 32x24", "--max-memory")
    one_error_line(script("encode", clip, "-o", tmp_path / "x.cdt", "--model", toy, "--max-memory", "lots"),
                   "invalid memory size")
    run = script("decode", encoded, "-o", tmp_path / "x.y4m", "--model", toy, "--max-memory", "64G", "--quiet",
                 CDTCODEC_MAX_MEMORY="100M")  # the option wins over the environment
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(tmp_path)) == ["x.y4m"]


def test_memory_estimates_grow_with_size_steps_and_width():
    tiny, small = get_config("cdt-tiny"), get_config("cdt-small")
    assert decode_bytes(tiny, 512, 512, 1) > decode_bytes(tiny, 256, 256, 1)
    assert decode_bytes(tiny, 256, 256, 3) > decode_bytes(tiny, 256, 256, 1)
    assert decode_bytes(small, 256, 256, 1) > decode_bytes(tiny, 256, 256, 1)
    # measured peaks (limits.py): 1,433 MB decode at 512x512, 1 step; 759 MB encode at 512x512
    assert 1433e6 < decode_bytes(tiny, 512, 512, 1) < 2 * 1433e6
    assert 759e6 < encode_bytes(tiny, 512, 512) < 2 * 759e6
    assert parse_size("16G") == 16 << 30 and parse_size("800M") == 800 << 20 and parse_size("1.5k") == 1536
    with pytest.raises(MemoryLimitExceeded, match="raise it"):
        check_memory(2 << 30, "x", explicit=1 << 30)


def test_extreme_header_rates_give_a_clear_error(tmp_path):
    u32 = (1 << 32) - 1
    for name, fields in (("slow", dict(fps_num=1, fps_den=u32)), ("fast", dict(fps_num=u32, fps_den=1))):
        cdt = crafted_cdt(tmp_path / f"{name}.cdt", **fields)
        one_error_line(script("decode", cdt, "-o", tmp_path / f"{name}.mp4"), "frame rate", "cannot be written")
        assert not (tmp_path / f"{name}.mp4").exists()


# ---------------------------------------------------------------------------------------------------------
# 4. user text is never markup or emoji

def test_file_names_are_printed_as_they_are(work, clip, toy):
    odd = work / "clip:fire:[bold]x.mp4"
    odd.write_bytes(clip.read_bytes())
    out = work / "out:fire:[red].cdt"
    run = script("encode", odd, "-o", out, "--model", toy, "--threads", "1")
    summary = [line for line in run.stderr.decode().splitlines() if line.startswith("encode: ")]
    assert run.returncode == 0 and len(summary) == 1, run.stderr
    assert str(out) in summary[0] and "\N{FIRE}" not in run.stderr.decode()
    line = one_error_line(script("decode", work / "gone:fire:[bold].cdt", "-o", work / "x.mp4"), "no such file")
    assert "gone:fire:[bold].cdt" in line and "\N{FIRE}" not in line
    line = one_error_line(script("decode", out, "-o", work / "x.mp4", "--model", toy, "--frames", "3:-1"), "3:-1")
    assert "\N{THUMBS DOWN SIGN}" not in line


# ---------------------------------------------------------------------------------------------------------
# 5. the smaller items

def test_tiny_steps_are_refused(work, clip, toy):
    one_error_line(script("encode", clip, "-o", work / "tiny.cdt", "--model", toy, "--qstep", "1e-30"), "--qstep")
    assert not (work / "tiny.cdt").exists()
    with pytest.raises(ValueError, match="32 bits"):
        quantize(torch.full((1, 1, 1, 1), 5.0), 1e-9)


def _coded(path: Path, frames, codec: str, pix_fmt: str, fps: int = 25, options: dict | None = None) -> Path:
    import av

    with av.open(str(path), "w", container_options=options or {}) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format=pix_fmt)):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_alpha_and_deep_samples_are_reduced_with_one_warning(work, toy):
    rgba = work / "alpha.png"
    Image.fromarray(np.full((16, 24, 4), 128, np.uint8), "RGBA").save(rgba)
    deep = _coded(work / "deep.mkv", [pattern(32, 24, i) for i in range(2)], "ffv1", "yuv420p10le")
    for source, fragment in ((rgba, "alpha channel"), (deep, "10-bit samples")):
        run = script("encode", source, "-o", work / f"{source.stem}.cdt", "--model", toy, "--threads", "1")
        warnings = [line for line in run.stderr.decode().splitlines() if line.startswith("warning: ")]
        assert run.returncode == 0 and len(warnings) == 1 and fragment in warnings[0], run.stderr


def test_truncated_mp4_with_the_index_in_front_warns(work, toy):
    whole = _coded(work / "front.mp4", [pattern(32, 24, i) for i in range(33)], "libx264", "yuv420p",
                   options={"movflags": "+faststart"})
    cut = work / "front_cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    run = script("encode", cut, "-o", work / "cut.cdt", "--model", toy, "--threads", "1")
    warnings = [line for line in run.stderr.decode().splitlines() if line.startswith("warning: ")]
    assert run.returncode == 0 and len(warnings) == 1, run.stderr
    assert "declares 33 frames" in warnings[0]
    quiet = script("encode", whole, "-o", work / "whole.cdt", "--model", toy, "--threads", "1")
    assert quiet.returncode == 0 and b"warning" not in quiet.stderr, quiet.stderr


def test_device_and_threads_are_checked(work, clip, toy):
    one_error_line(script("encode", clip, "-o", work / "d.cdt", "--model", toy, "--device", "tpu"), "unknown device")
    for threads in ("-5", "1000"):
        run = script("encode", clip, "-o", work / "d.cdt", "--model", toy, "--threads", threads)
        assert run.returncode == 2 and b"--threads" in run.stderr, run.stderr
    assert not (work / "d.cdt").exists()


# ---------------------------------------------------------------------------------------------------------
# 6. what determinism means (README): same symbols everywhere; same frames for a given thread count;
#    within one level across thread counts

def test_decode_across_thread_counts(work):
    """The shipped cdt-tiny on 5 frames of the bundled clip, decoded with 1, 2, 3 and again 1 thread."""
    cdt = work / "real5.cdt"
    run = script("encode", REAL_CLIP, "-o", cdt, "--max-frames", "5", "--threads", "1", "--quiet")
    assert run.returncode == 0, run.stderr
    frames = {}
    for label, threads in (("1", 1), ("2", 2), ("3", 3), ("1 again", 1)):
        folder = work / f"threads_{label.replace(' ', '_')}"
        run = script("decode", cdt, "-o", f"{folder}/", "--threads", threads, "--quiet")
        assert run.returncode == 0, run.stderr
        frames[label] = read_png_frames(folder).astype(np.int16)
    np.testing.assert_array_equal(frames["1"], frames["1 again"])  # bit-exact for a given thread count
    for label in ("2", "3"):
        assert np.abs(frames[label] - frames["1"]).max() <= 1, label  # within one level otherwise
    symbols = {}
    for threads in (1, 3):  # the entropy decoder is integer arithmetic: thread settings cannot touch it
        torch.set_num_threads(threads)
        with CdtReader(cdt, prior=prior_path(shipped_weights("cdt-tiny"))) as reader:  # format 2: the prior
            symbols[threads] = [reader.read_chunk(i) for i in range(reader.num_chunks)]
    torch.set_num_threads(1)
    assert all(np.array_equal(a, b) for a, b in zip(symbols[1], symbols[3]))


# ---------------------------------------------------------------------------------------------------------
# 7. residuals: a signal while a writer is being built; library messages name parameters, not flags

def test_a_signal_inside_a_finalizer_is_raised_after_it(monkeypatch):
    """SIGTERM while the garbage collector ran an object's __del__ used to be swallowed there ('Exception ignored
    in ... __del__', a traceback on stderr) and the process went on as if it had not come (CI, a corpus run)."""
    import sys

    from cdtcodec.interrupts import Interrupted, signals_caught

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    finalized = []

    class SignalledInFinalizer:
        def __del__(self):
            signal.raise_signal(signal.SIGTERM)  # the handler runs on the next line, inside the finalizer
            finalized.append(True)

    with pytest.raises(Interrupted) as caught:
        with signals_caught():
            SignalledInFinalizer()  # dropped at once: __del__ runs here
            time.sleep(5)  # where the signal comes back
    assert caught.value.signum == signal.SIGTERM and finalized == [] and unraisable == []
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL  # the re-raise left nothing installed


def test_a_signal_while_the_writer_is_built_leaves_nothing(tmp_path, monkeypatch):
    """SIGTERM inside SpooledTemporaryFile's constructor (CdtWriter's index spool) used to escape it half-built
    ('Exception ignored in ... __del__') and leave the .part file; now it is held back until the writer is whole,
    then raised where the writer undoes itself."""
    import gc
    import sys
    import tempfile

    from cdtcodec.interrupts import Interrupted, signals_caught

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    built = []

    class SignalledSpool(tempfile.SpooledTemporaryFile):
        def __init__(self, *args, **kwargs):
            signal.raise_signal(signal.SIGTERM)  # arrives in the middle of the constructor
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", SignalledSpool)
    with pytest.raises(Interrupted) as caught:
        with signals_caught():
            CdtWriter(tmp_path / "x.cdt", fuzz.sample_header("range"))
    gc.collect()
    assert caught.value.signum == signal.SIGTERM
    assert built and built[0].closed  # the spool was finished, then closed by the writer's abort
    assert os.listdir(tmp_path) == [] and unraisable == []


def test_library_errors_name_parameters_and_the_cli_names_options(tmp_path, clip, toy):
    from cdtcodec.cli import OPTIONS
    from cdtcodec.rate.coder_choice import BadEntropy, plan_encode

    with pytest.raises(MemoryLimitExceeded) as caught:
        check_memory(2 << 30, "decoding x", explicit=1 << 30)
    assert caught.value.param == "max_memory" and "--" not in str(caught.value)
    assert "raise it with max_memory or CDTCODEC_MAX_MEMORY=SIZE" in str(caught.value)
    assert "raise it with --max-memory SIZE or" in caught.value.worded(OPTIONS["max_memory"])
    for entropy, fragment in (("lzma", "entropy must be one of"), ("prior", "entropy prior: the model")):
        with pytest.raises(BadEntropy) as caught:
            plan_encode(entropy, toy, (0.5,), 16)
        assert caught.value.param == "entropy" and str(caught.value).startswith(fragment), str(caught.value)
    # the command line words the same errors with its options
    one_error_line(script("encode", clip, "-o", tmp_path / "x.cdt", "--model", toy, "--entropy", "prior"),
                   "--entropy prior: the model toy.safetensors has no prior weights")
    one_error_line(script("encode", clip, "-o", tmp_path / "x.cdt", "--model", toy, "--max-memory", "100M"),
                   "(asked for); raise it with --max-memory SIZE or CDTCODEC_MAX_MEMORY=SIZE")
    assert os.listdir(tmp_path) == []
