"""Issue 29: pipes and devices as ffmpeg treats them, any frame size, manifests that loop, closed streams,
leftovers after SIGKILL, containers' default codecs, two runs writing one output.

The command-line cases run through the installed console script (test_cli.script), with the toy model.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest
from test_cli import REAL_CLIP, SCRIPT, make_clip, read_video, script, script_env
from test_reliability import _finish, _spawn, _until, one_error_line

from bitstream import CdtReader
from bitstream.atomic import AtomicOutput, only_new, remove_stale
from cdtcodec import codec
from cdtcodec.corpus.inputs import InputError, discover
from cdtcodec.rate.coder_choice import prior_path
from cdtcodec.weights import shipped_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # toy models: one thread (conftest)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reliability_3")


@pytest.fixture(scope="module")
def clip(work) -> Path:
    return make_clip(work / "clip.mp4", 32, 24, 2, fps=Fraction(25))


@pytest.fixture(scope="module")
def encoded(work, clip, toy) -> Path:
    out = work / "clip.cdt"
    run = script("encode", clip, "-o", out, "--model", toy, "--threads", "1")
    assert run.returncode == 0, run.stderr
    return out


def _later(work) -> tuple[threading.Thread, list]:
    """Runs work() in a thread; its result lands in the returned list."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    return thread, result


def _release(fifo: Path, thread: threading.Thread) -> None:
    """A reader thread still blocked on `fifo` (the command failed before opening it) is let go."""
    thread.join(timeout=0.5)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout=10)


def _when_said(log: Path, words: str, then, seconds: float = 60):
    """then() once `words` appear in the file `log` (a command's stderr)."""
    def wait():
        deadline = time.monotonic() + seconds
        while words not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.02)
        return then()
    return wait


def _run_logged(args, log: Path, **popen) -> subprocess.CompletedProcess:
    """The console script with stderr into `log` (read while it runs), stdout discarded."""
    if not SCRIPT.exists():
        pytest.skip(f"console script not installed at {SCRIPT}")
    with open(log, "wb") as err:
        run = subprocess.run([str(SCRIPT), *map(str, args)], stdout=subprocess.DEVNULL, stderr=err,
                             env=script_env(), timeout=120, **popen)
    return subprocess.CompletedProcess(run.args, run.returncode, b"", log.read_bytes())


# ---------------------------------------------------------------------------------------------------------
# outputs that are not regular files

def test_a_character_device_output_is_written_into_not_replaced(tmp_path, clip, encoded, toy):
    """/dev/null's twin (same device numbers), so a failure replaces this node, not the machine's /dev/null."""
    nodes = [tmp_path / "null", tmp_path / "null.mp4"]
    try:
        for node in nodes:
            os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    for args in (("encode", clip, "-o", nodes[0]), ("decode", encoded, "-o", nodes[0]),
                 ("decode", encoded, "-o", nodes[1])):
        run = script(*args, "--model", toy, "--threads", "1", "--quiet")  # no -y needed, as in ffmpeg
        assert run.returncode == 0, run.stderr
    for node in nodes:
        st = os.stat(node)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert sorted(os.listdir(tmp_path)) == ["null", "null.mp4"]  # no temporaries beside them


def test_a_fifo_output_gets_the_stream(tmp_path, clip, encoded, toy):
    video, cdt, mp4 = tmp_path / "out.mkv", tmp_path / "out.cdt", tmp_path / "out.mp4"
    for fifo in (video, cdt, mp4):
        os.mkfifo(fifo)
    # the decoded video streams into the FIFO; its reader comes late, and the command says what it waits for
    log = tmp_path / "decode.log"
    reader, got = _later(_when_said(log, "waiting for a reader", video.read_bytes))
    run = _run_logged(["decode", encoded, "-o", video, "--model", toy, "--threads", "1", "--quiet"], log)
    _release(video, reader)
    assert run.returncode == 0, run.stderr
    assert f"note: {video}: waiting for a reader to open this FIFO" in run.stderr.decode()
    (tmp_path / "copy.mkv").write_bytes(got[0])
    frames, info = read_video(tmp_path / "copy.mkv")
    assert frames.shape == (2, 24, 32, 3) and info.codec_name == "h264"
    # a .cdt goes through whole, byte for byte the file's
    reader, got = _later(cdt.read_bytes)
    run = script("encode", clip, "-o", cdt, "--model", toy, "--threads", "1", "--quiet")
    _release(cdt, reader)
    assert run.returncode == 0, run.stderr
    assert got == [encoded.read_bytes()]
    # mp4 seeks back: refused at once, without waiting for a reader that never comes
    one_error_line(script("decode", encoded, "-o", mp4, "--model", toy), "out.mp4", "FIFO", ".mkv or .y4m")
    assert all(stat.S_ISFIFO(os.stat(p).st_mode) for p in (video, cdt, mp4))
    assert sorted(os.listdir(tmp_path)) == ["copy.mkv", "decode.log", "out.cdt", "out.mkv", "out.mp4"]


# ---------------------------------------------------------------------------------------------------------
# inputs that cannot be read twice

def test_a_fifo_input_is_read_once(tmp_path, clip, encoded, toy):
    fifo, log = tmp_path / "in.mp4", tmp_path / "encode.log"
    os.mkfifo(fifo)
    writer, _ = _later(_when_said(log, "waiting for a writer", lambda: fifo.write_bytes(clip.read_bytes())))
    run = _run_logged(["encode", fifo, "-o", tmp_path / "x.cdt", "--model", toy, "--threads", "1"], log)
    writer.join(timeout=10)
    assert run.returncode == 0, run.stderr
    assert f"note: {fifo}: waiting for a writer to open this FIFO" in run.stderr.decode()
    assert (tmp_path / "x.cdt").read_bytes() == encoded.read_bytes()


def _with_fd(args, data: bytes, **env) -> subprocess.CompletedProcess:
    """The console script with ARGS naming /dev/fd/N ('{fd}'), a pipe `data` is written into: bash's <(...)."""
    if not SCRIPT.exists():
        pytest.skip(f"console script not installed at {SCRIPT}")
    read, write = os.pipe()
    try:
        proc = subprocess.Popen([str(SCRIPT), *(str(a).format(fd=read) for a in args)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=script_env(**env), pass_fds=(read,))
    finally:
        os.close(read)
    def feed():
        with open(write, "wb") as f:
            f.write(data)

    feeder, _ = _later(feed)
    stdout, stderr = _finish(proc, 120)
    feeder.join(timeout=10)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_process_substitution_paths(tmp_path, clip, encoded, toy):
    """/dev/fd/N of a pipe, as `<(cat x.cdt)` gives: a .cdt, a video, and `info`, each read once."""
    run = _with_fd(["decode", "/dev/fd/{fd}", "-o", tmp_path / "x.y4m", "--model", toy, "--threads", "1"],
                   encoded.read_bytes())
    assert run.returncode == 0, run.stderr
    assert read_video(tmp_path / "x.y4m")[0].shape == (2, 24, 32, 3)
    run = _with_fd(["encode", "/dev/fd/{fd}", "-o", tmp_path / "x.cdt", "--model", toy, "--threads", "1"],
                   clip.read_bytes())
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "x.cdt").read_bytes() == encoded.read_bytes()
    run = _with_fd(["info", "/dev/fd/{fd}", "--json"], encoded.read_bytes())
    assert run.returncode == 0 and b'"frames": 2' in run.stdout, run.stderr
    one_error_line(_with_fd(["info", "/dev/fd/{fd}"], b""), "/dev/fd/", "empty: nothing was read from it")


# ---------------------------------------------------------------------------------------------------------
# frames of 8x8 and smaller

def test_frames_from_1x1_to_8x8(tmp_path, toy):
    """The prior codes a latent of one position (one 8x8 block) in its first checkerboard pass alone; the
    second pass, empty, failed ('cannot reshape array of size 0')."""
    prior = shipped_weights("cdt-tiny").with_suffix(".prior.safetensors")
    if not prior.is_file():
        pytest.skip("no shipped prior")
    model = tmp_path / "toy.safetensors"
    shutil.copy(toy, model)
    shutil.copy(prior, prior_path(model))
    for n in range(1, 9):
        src = make_clip(tmp_path / f"{n}.mp4", n, n, 2, fps=Fraction(25))
        report = codec.encode(src, tmp_path / f"{n}.cdt", model=model)
        assert report.entropy == "prior"
        codec.decode(tmp_path / f"{n}.cdt", tmp_path / f"{n}.y4m", model=model)
        frames, _ = read_video(tmp_path / f"{n}.y4m")
        assert frames.shape == (2, n, n, 3)
        with CdtReader(tmp_path / f"{n}.cdt") as r:
            assert (r.header.coded_width, r.header.coded_height) == (8, 8)


# ---------------------------------------------------------------------------------------------------------
# manifests

def test_manifests_that_list_each_other_are_refused(tmp_path, clip):
    (tmp_path / "sub").mkdir()
    shutil.copy(clip, tmp_path / "a.mp4")
    (tmp_path / "self.txt").write_text("a.mp4\n@self.txt\n")
    (tmp_path / "one.txt").write_text("a.mp4\n@sub/two.txt\n")
    (tmp_path / "sub" / "two.txt").write_text("@../one.txt\n")
    with pytest.raises(InputError, match=r"cycle: @.*self.txt -> @.*self.txt$"):
        discover([f"@{tmp_path / 'self.txt'}"])
    with pytest.raises(InputError, match=r"cycle: @.*one.txt -> @.*sub/two.txt -> @.*sub/../one.txt$"):
        discover([f"@{tmp_path / 'one.txt'}"])
    # one path listed twice, spelt two ways, and a manifest listed twice: encoded once
    (tmp_path / "list.txt").write_text("a.mp4\n./a.mp4\n@more.txt\n@more.txt\n")
    (tmp_path / "more.txt").write_text("sub/../a.mp4\n")
    assert [c.source for c in discover([f"@{tmp_path / 'list.txt'}", str(tmp_path / "a.mp4")])] == [
        str(tmp_path / "a.mp4")]
    one_error_line(script("encode", "@self.txt", "-o", "out/", cwd=tmp_path), "cycle: @self.txt -> @self.txt")
    assert not list(tmp_path.glob("out/*"))  # nothing encoded


# ---------------------------------------------------------------------------------------------------------
# closed standard streams

def test_closed_stdout_is_one_line_before_any_work(tmp_path, clip, encoded, toy):
    def closed_stdout(*args):
        if not SCRIPT.exists():
            pytest.skip(f"console script not installed at {SCRIPT}")
        return subprocess.run([str(SCRIPT), *map(str, args)], stderr=subprocess.PIPE, timeout=120,
                              env=script_env(TMPDIR=str(tmp_path)), preexec_fn=lambda: os.close(1))

    for args in (("encode", clip, "-o", "-", "--model", toy), ("decode", encoded, "-o", "-", "--model", toy),
                 ("info", encoded, "--json")):
        one_error_line(closed_stdout(*args), "standard output is closed")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------
# temporaries

def test_a_killed_runs_temporaries_go_with_the_next_run(tmp_path, clip, toy):
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir(), tmp.mkdir()
    proc = _spawn(["encode", REAL_CLIP, "-o", out / "x.cdt", "--model", toy, "--threads", "1"], tmp)
    _until(lambda: os.listdir(out), proc)
    [left] = os.listdir(out)
    assert left.startswith(".x.cdt.cdtcodec-") and f"-{proc.pid}-" in left, left
    proc.kill()  # SIGKILL: nothing can clean up
    _finish(proc)
    elsewhere = tmp_path / "elsewhere"  # (a run in `out` would remove what the killed one left there)
    elsewhere.mkdir()
    with open(REAL_CLIP, "rb") as stdin:  # standard input is copied into /tmp/cdtcodec-PID-*
        proc = _spawn(["encode", "-", "-o", elsewhere / "y.cdt", "--model", toy, "--threads", "1"], tmp,
                      stdin=stdin)
        _until(lambda: os.listdir(tmp), proc)
        proc.kill()
        _finish(proc)
    assert os.listdir(out) == [left] and [n.startswith(f"cdtcodec-{proc.pid}-") for n in os.listdir(tmp)] == [True]
    run = script("encode", clip, "-o", out / "x.cdt", "--model", toy, "--threads", "1", TMPDIR=str(tmp))
    assert run.returncode == 0, run.stderr
    assert os.listdir(out) == ["x.cdt"] and os.listdir(tmp) == []


def test_only_the_temporaries_of_dead_processes_are_stale(tmp_path):
    final = tmp_path / "x.cdt"
    with AtomicOutput(final) as live:
        assert remove_stale(final) == 0 and live.exists()  # this process's own
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no process
    (tmp_path / f".x.cdt.cdtcodec-{dead.pid}-0123abcd.part").write_bytes(b"")
    (tmp_path / ".y.cdt.cdtcodec-1-0123abcd.part").write_bytes(b"")  # pid 1 lives: kept, whatever its output
    assert remove_stale(final) == 1
    assert sorted(os.listdir(tmp_path)) == [".y.cdt.cdtcodec-1-0123abcd.part", "x.cdt"]


def test_an_output_name_of_250_bytes(tmp_path, clip, encoded, toy):
    cdt, video = tmp_path / ("c" * 246 + ".cdt"), tmp_path / ("v" * 246 + ".mkv")
    run = script("encode", clip, "-o", cdt, "--model", toy, "--threads", "1", "--quiet")
    assert run.returncode == 0, run.stderr
    assert cdt.read_bytes() == encoded.read_bytes()
    run = script("decode", encoded, "-o", video, "--model", toy, "--threads", "1", "--quiet")
    assert run.returncode == 0, run.stderr
    assert read_video(video)[0].shape == (2, 24, 32, 3)
    assert sorted(os.listdir(tmp_path)) == sorted([cdt.name, video.name])


# ---------------------------------------------------------------------------------------------------------
# containers' default codecs

def test_webm_gets_vp9_by_default(tmp_path, encoded, toy):
    run = script("decode", encoded, "-o", tmp_path / "x.webm", "--model", toy, "--threads", "1", "--quiet")
    assert run.returncode == 0, run.stderr
    frames, info = read_video(tmp_path / "x.webm")
    assert frames.shape == (2, 24, 32, 3) and info.codec_name == "vp9"
    run = script("decode", encoded, "-o", tmp_path / "x.mkv", "--model", toy, "--threads", "1", "--quiet",
                 "--codec", "libvpx-vp9")
    assert run.returncode == 0 and read_video(tmp_path / "x.mkv")[1].codec_name == "vp9", run.stderr


# ---------------------------------------------------------------------------------------------------------
# two runs writing one output

def test_an_output_that_appears_meanwhile_is_not_replaced(tmp_path, toy):
    out = tmp_path / "x.cdt"
    proc = _spawn(["encode", REAL_CLIP, "-o", out, "--model", toy, "--threads", "1"], tmp_path)
    # its output's temporary (TMPDIR is this folder too, so only that name says the checks are done)
    _until(lambda: any(n.startswith(".x.cdt.cdtcodec-") for n in os.listdir(tmp_path)), proc)
    out.write_bytes(b"the other run's")
    stdout, stderr = _finish(proc)
    one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), f"{out}: appeared while",
                   "this run lost", "-y")
    assert out.read_bytes() == b"the other run's" and os.listdir(tmp_path) == ["x.cdt"]


def test_only_new_keeps_what_appeared_and_y_replaces_it(tmp_path):
    final = tmp_path / "x"
    with only_new(final):
        with pytest.raises(FileExistsError, match="appeared while this run was working"):
            with AtomicOutput(final) as tmp:
                tmp.write_bytes(b"mine")
                final.write_bytes(b"theirs")
        assert final.read_bytes() == b"theirs" and os.listdir(tmp_path) == ["x"]
        folder = tmp_path / "frames"
        folder.mkdir()  # an empty folder holds nothing to lose
        with AtomicOutput(folder, directory=True) as tmp:
            (tmp / "frame_000000.png").write_bytes(b"png")
    with AtomicOutput(final) as tmp:  # outside only_new (-y): replaced
        tmp.write_bytes(b"mine")
    assert final.read_bytes() == b"mine" and (tmp_path / "frames" / "frame_000000.png").exists()


# ---------------------------------------------------------------------------------------------------------
# messages that used to mislead

def test_messages_name_what_is_wrong(tmp_path, clip, encoded, toy):
    one_error_line(script("info", "/dev/zero"), "/dev/zero: not a .cdt file")
    one_error_line(script("encode", clip, "-o", tmp_path / "x.cdt", "--model", "/etc/passwd"),
                   "/etc/passwd: not a weights file (neither safetensors nor a PyTorch checkpoint)")
    if Path("/dev/full").exists():  # a disk that is always full
        one_error_line(script("encode", clip, "-o", "/dev/full", "--model", toy, "--quiet"),
                       "/dev/full: No space left")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------
# sockets as outputs

@pytest.fixture
def sock(tmp_path):
    """A listening UNIX socket named like an output (its path kept short: sun_path holds 108 bytes)."""
    import socket
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="s", dir=tmp_path if len(str(tmp_path)) < 80 else None))
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(folder / "o.cdt"))
    except OSError as e:
        server.close()
        pytest.skip(f"cannot make a UNIX socket here: {e}")
    server.listen()
    yield folder / "o.cdt"
    server.close()
    shutil.rmtree(folder, ignore_errors=True)


def test_a_socket_output_is_one_line_before_any_work(sock, clip, encoded, toy):
    """Never replaced, never written into: refused before the model (here a missing one) is even looked at."""
    from bitstream.atomic import write_atomically

    missing = sock.parent / "no-such-model.safetensors"
    for args in (("encode", clip, "-o", sock, "--model", missing), ("encode", clip, "-o", sock, "--model", missing,
                                                                       "-y"),
                 ("decode", encoded, "-o", sock, "--model", missing), ("convert", toy, "-o", sock)):
        one_error_line(script(*args), f"{sock}: is a socket, which cannot be written into as a file")
    for write in (lambda: AtomicOutput(sock), lambda: write_atomically(sock, lambda p: None)):
        with pytest.raises(OSError, match="is a socket") as caught:
            write()
        assert caught.value.filename == str(sock)
    assert stat.S_ISSOCK(os.lstat(sock).st_mode) and os.listdir(sock.parent) == ["o.cdt"]


def test_a_socket_in_a_corpus_output_folder_fails_its_clip(tmp_path, sock, clip, toy):
    out, src = sock.parent, tmp_path / "c.mp4"
    os.rename(sock, out / "c.cdt")  # the name the clip's output takes
    shutil.copy(clip, src)
    result = _invoke(["encode", src, "-o", f"{out}/", "--model", toy, "--threads", "1"], 1)
    assert f"failed: {src}: {out / 'c.cdt'} is a socket" in result.stderr
    assert stat.S_ISSOCK(os.lstat(out / "c.cdt").st_mode)


# ---------------------------------------------------------------------------------------------------------
# stale temporaries beside any output

def _dead_pid() -> int:
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no process (until reused, which would only keep a temporary)
    return dead.pid


def test_every_stale_temporary_in_the_outputs_folder_goes(tmp_path, monkeypatch):
    """Not only the output's own: every cdtcodec temporary there whose process is gone, files and folders; a
    live process's, and whatever is not named as cdtcodec names its temporaries, stay."""
    import tempfile

    dead, me = _dead_pid(), os.getpid()
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir(), tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    stale = [f".y.cdt.cdtcodec-{dead}-0123abcd.part", f".r.png.cdtcodec-{dead}-89abcdef.part.png",
             f".frames.cdtcodec-{dead}-0011aabb.part", f".frames.cdtcodec-{dead}-0011aabb.part.old"]
    kept = [f".w.cdt.cdtcodec-{me}-0123abcd.part", ".v.cdt.cdtcodec-1-0123abcd.part",  # live processes'
            ".q.cdt.0123abcd.part",  # the older kind, with no pid: whose it is cannot be told
            f"q.cdt.cdtcodec-{dead}-0123abcd.part",  # not hidden: not a name cdtcodec makes
            f".q.cdt.cdtcodec-{dead}-0123abcd.partial", f".q.cdt.cdtcodec-{dead}-xyz.part", "notes.txt",
            f"cdtcodec-{dead}-abcd1234"]  # a file, not a temporary folder
    for name in stale + kept:
        if "frames" in name:
            (out / name).mkdir()
            (out / name / "frame_000000.png").write_bytes(b"png")
        else:
            (out / name).write_bytes(b"")
    (tmp / f"cdtcodec-{dead}-abcd_123").mkdir()
    (tmp / f"cdtcodec-{me}-abcd_123").mkdir()
    assert remove_stale(out / "x.cdt") == len(stale)
    assert sorted(os.listdir(out)) == sorted(kept)
    assert os.listdir(tmp) == [f"cdtcodec-{me}-abcd_123"]


def test_a_run_removes_other_outputs_stale_temporaries(tmp_path, clip, toy):
    dead = _dead_pid()
    left = [tmp_path / f".other.cdt.cdtcodec-{dead}-0123abcd.part",
            tmp_path / f".c.mkv.cdtcodec-{dead}-0123abcd.part.mkv"]
    for path in left:
        path.write_bytes(b"half")
    live = tmp_path / ".busy.cdt.cdtcodec-1-0123abcd.part"  # pid 1 lives
    live.write_bytes(b"")
    run = script("encode", clip, "-o", tmp_path / "x.cdt", "--model", toy, "--threads", "1", "--quiet")
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, "x.cdt"])


# ---------------------------------------------------------------------------------------------------------
# two runs writing one output: every command's outputs

def _invoke(args, code: int):
    from typer.testing import CliRunner

    from cdtcodec.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert "Traceback" not in result.output
    return result


def _lost(result, path: Path) -> None:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ") or line.startswith("failed: ")]
    assert any(f"{path}: appeared while this run was working" in line and "this run lost" in line for line in lines), \
        result.stderr


def _meanwhile(module, name: str, monkeypatch, write_first: Path):
    """module.name, wrapped: the other run's file appears at `write_first` as it is called."""
    real = getattr(module, name)

    def racing(*args, **kwargs):
        write_first.write_bytes(b"the other run's")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, racing)


def test_convert_keeps_an_output_that_appeared(tmp_path, monkeypatch):
    from cdtcodec import weights

    checkpoint, out = shipped_weights("cdt-tiny"), tmp_path / "w.safetensors"
    if not checkpoint.is_file():
        pytest.skip("no shipped weights")
    _meanwhile(weights, "save_model", monkeypatch, out)
    _lost(_invoke(["convert", checkpoint, "-o", out], 1), out)
    assert out.read_bytes() == b"the other run's" and os.listdir(tmp_path) == ["w.safetensors"]
    _invoke(["convert", checkpoint, "-o", out, "-y"], 0)  # -y replaces it
    assert out.read_bytes() != b"the other run's" and os.listdir(tmp_path) == ["w.safetensors"]


def test_train_export_keeps_an_output_that_appeared(tmp_path, monkeypatch):
    from bitstream.atomic import write_atomically
    from cdtcodec.train import run as train_run

    export = tmp_path / "w.safetensors"

    def trained(cfg, export, console):  # the end of a run: the export, written as Trainer.export writes it
        export.write_bytes(b"the other run's")
        write_atomically(export, lambda p: Path(p).write_bytes(b"ours"))

    monkeypatch.setattr(train_run, "run_training", trained)
    _lost(_invoke(["train", "-o", tmp_path / "run", "--export", export], 1), export)
    assert export.read_bytes() == b"the other run's" and os.listdir(tmp_path) == ["w.safetensors"]


def test_bench_keeps_results_that_appeared(tmp_path, clip, toy, monkeypatch):
    import cdtcodec.bench as rd
    from cdtcodec.bench import report

    out = tmp_path / "results"

    def ran(cfg, console=None):  # the end of a run: results.json first (report.write_outputs)
        (out / "results.json").write_bytes(b"the other run's")
        report._atomic_text(out / "results.json", "{}")
        raise AssertionError("not reached: the results are another run's")

    out.mkdir()
    monkeypatch.setattr(rd, "run", ran)
    _lost(_invoke(["bench", clip, "--quick", "--model", toy, "-o", out], 1), out / "results.json")
    assert os.listdir(out) == ["results.json"] and (out / "results.json").read_bytes() == b"the other run's"


def test_a_corpus_keeps_outputs_that_appeared(tmp_path, clip, toy, monkeypatch):
    from cdtcodec.corpus import shards

    src = tmp_path / "c.mp4"
    shutil.copy(clip, src)
    out = tmp_path / "out"
    _meanwhile(codec, "encode", monkeypatch, out / "c.cdt")
    result = _invoke(["encode", src, "-o", f"{out}/", "--model", toy, "--threads", "1"], 1)
    _lost(result, out / "c.cdt")
    assert f"failed: {src}: {out / 'c.cdt'}: appeared while" in result.stderr
    assert (out / "c.cdt").read_bytes() == b"the other run's"
    assert sorted(os.listdir(out)) == ["c.cdt", "summary.jsonl"]
    monkeypatch.undo()
    # latent shards: the shard is checked as it is written
    out = tmp_path / "latents"
    _meanwhile(shards, "write_shard", monkeypatch, out / "shard-000000.tar")
    result = _invoke(["encode", src, "-o", f"{out}/", "--model", toy, "--threads", "1", "--latents"], 1)
    _lost(result, out / "shard-000000.tar")
    assert (out / "shard-000000.tar").read_bytes() == b"the other run's"
    assert not [p for p in out.rglob("*") if ".part" in p.name]


# ---------------------------------------------------------------------------------------------------------
# standard input: closed, or slow to send anything

def test_closed_stdin_is_one_line_before_any_work(tmp_path, encoded, toy):
    if not SCRIPT.exists():
        pytest.skip(f"console script not installed at {SCRIPT}")
    for args in (("encode", "-", "-o", tmp_path / "x.cdt", "--model", toy), ("info", "-")):
        run = subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, timeout=120,
                             env=script_env(TMPDIR=str(tmp_path)), preexec_fn=lambda: os.close(0))
        one_error_line(run, "standard input is closed: nothing to read from")
    assert os.listdir(tmp_path) == []


def test_a_silent_stdin_is_said_then_read(tmp_path, encoded):
    """Standard input that sends nothing yet (a terminal, a slow pipe): a note says what the command waits
    for, and what comes later is read as usual."""
    if not SCRIPT.exists():
        pytest.skip(f"console script not installed at {SCRIPT}")
    log = tmp_path / "info.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([str(SCRIPT), "info", "-", "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err, env=script_env())
        try:
            deadline = time.monotonic() + 60
            while "waiting for data" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.02)
            stdout, _ = proc.communicate(encoded.read_bytes(), timeout=60)
        finally:
            if proc.poll() is None:  # only the child this test started
                proc.kill()
                proc.wait()
    assert proc.returncode == 0 and b'"frames": 2' in stdout, log.read_text()
    assert log.read_text().splitlines() == ["note: <stdin>: waiting for data to read (none has arrived yet)"]
