"""Issue 14: no lost source, nothing partial left on any signal, bounded work and memory, plain console text.

The command-line cases run through the installed console script (test_cli.script, with this checkout first on
the path); the toy model and clips are those of test_cli, made again here at module scope.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from test_cli import make_clip, script
from cdtcodec.config import CDTConfig
from cdtcodec.model import CDT
from cdtcodec.overwrite import Overwrite, OutputRefused, confirm_output, refuse_inputs
from cdtcodec.weights import save_model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="module")
def toy(work) -> Path:
    torch.manual_seed(0)
    path = work / "toy.safetensors"
    save_model(CDT(CDTConfig(context_dim=8, unet_dim=4)), path, name="toy")
    return path


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
