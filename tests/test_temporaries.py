"""`cdtcodec clean`: cdtcodec's temporaries listed, those of gone processes removed, a live one's never."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_cli import REPO, script
from typer.testing import CliRunner

from cdtcodec.cli import app
from cdtcodec.temporaries import clean, find


def _dead_pid() -> int:
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no process
    return dead.pid


def _invoke(args, code: int = 0):
    result = CliRunner().invoke(app, ["clean", *map(str, args)])
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """out/ with temporaries of a gone process, of this (live) one and files that only look like them; tmp/
    (the system's temporary folder, for the test) with a gone process's folder and a live one's."""
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir(), tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    dead, me = _dead_pid(), os.getpid()
    stale = {out / f".x.cdt.cdtcodec-{dead}-0123abcd.part": b"x" * 1000,
             out / f".r.mkv.cdtcodec-{dead}-89abcdef.part.mkv": b"",
             out / f".frames.cdtcodec-{dead}-0011aabb.part": None,
             tmp / f"cdtcodec-{dead}-k2_xyz9a": None}
    kept = {out / f".y.cdt.cdtcodec-{me}-0123abcd.part": b"", tmp / f"cdtcodec-{me}-abcdefgh": None}
    others = [out / ".x.cdt.0123abcd.part", out / "x.cdt", out / f"cdtcodec-{dead}-abcdefgh",
              out / f"y.cdtcodec-{dead}-0123abcd.part"]
    for path, data in {**stale, **kept}.items():
        if data is None:
            path.mkdir()
            (path / "frame_000000.png").write_bytes(b"png")
        else:
            path.write_bytes(data)
    for path in others:
        path.write_bytes(b"")
    return out, tmp, stale, kept, others, dead


def test_dry_run_lists_and_removes_nothing(folders):
    out, tmp, stale, kept, others, dead = folders
    result = _invoke(["--dry-run", out, tmp])
    lines = result.stdout.splitlines()
    for path in stale:
        assert any(line.startswith(f"would remove {path} (") and f"process {dead} is gone" in line
                   for line in lines), (path, lines)
    for path in kept:
        assert any(line.startswith(f"kept {path} (") and f"process {os.getpid()} is running" in line
                   for line in lines), (path, lines)
    assert f"would remove {out / f'.x.cdt.cdtcodec-{dead}-0123abcd.part'} (1,000 bytes)" in result.stdout
    assert lines[-1] == f"6 cdtcodec temporaries in {out}, {tmp}: 4 to remove (1,006 bytes), 2 kept (their runs " \
                        "are at work)"
    assert all(p.exists() for p in [*stale, *kept, *others])


def test_clean_removes_only_gone_processes_temporaries(folders, monkeypatch):
    out, tmp, stale, kept, others, dead = folders
    monkeypatch.chdir(out)  # no folders: the current one and the system's temporary folder
    result = _invoke([])
    assert sum(line.startswith("removed ") for line in result.stdout.splitlines()) == len(stale)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in [*kept, *others])
    assert _invoke([]).stdout.splitlines()[-1].startswith("2 cdtcodec temporaries in ")  # the live ones, kept


def test_recursive_looks_in_subfolders_but_not_inside_temporaries(tmp_path):
    dead = _dead_pid()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (deep / f".x.cdt.cdtcodec-{dead}-0123abcd.part").write_bytes(b"")
    frames = tmp_path / f".f.cdtcodec-{dead}-0123abcd.part"
    frames.mkdir()
    (frames / f".inner.cdtcodec-{dead}-0123abcd.part").write_bytes(b"")
    assert [t.path for t in find([tmp_path])] == [str(frames)]
    assert sorted(t.path for t in find([tmp_path], recursive=True)) == sorted(
        [str(frames), str(deep / f".x.cdt.cdtcodec-{dead}-0123abcd.part")])
    said: list[str] = []
    assert clean([tmp_path], recursive=True, say=said.append) == 0
    assert said[-1].startswith(f"2 cdtcodec temporaries in {tmp_path}: 2 removed")
    assert sorted(os.listdir(tmp_path)) == ["a"] and os.listdir(deep) == []


def test_nothing_found_and_a_missing_folder(tmp_path):
    assert _invoke([tmp_path]).stdout == f"no cdtcodec temporaries in {tmp_path}\n"
    for folder, why in ((tmp_path / "nope", "no such folder"), (Path(__file__), "not a folder")):
        result = _invoke([folder], code=1)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines == [f"error: {folder}: {why}"], result.stderr


def test_a_killed_writers_temporary_is_kept_while_it_lives_and_cleaned_after(tmp_path):
    """A real writer: its temporary is listed as a running process's and kept; killed outright (SIGKILL), the
    console script's `cdtcodec clean` removes it."""
    code = ("import sys, time; from bitstream.atomic import AtomicOutput; "
            "out = AtomicOutput(sys.argv[1]); print(out.path, flush=True); time.sleep(120)")
    writer = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "x.cdt")], stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, text=True)
    try:
        path = writer.stdout.readline().strip()
        assert os.path.basename(path).startswith(f".x.cdt.cdtcodec-{writer.pid}-")
        run = script("clean", tmp_path)
        assert run.returncode == 0 and f"kept {path} (0 bytes): process {writer.pid} is running" in run.stdout.decode()
        assert os.path.exists(path)
    finally:
        writer.kill()  # only the child this test started, by its own handle
        writer.wait()
    run = script("clean", tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"removed {path} (0 bytes): process {writer.pid} was gone" in run.stdout.decode()
    assert os.listdir(tmp_path) == []
