"""Option names with one meaning in every command, and the old spellings kept as deprecated aliases.

Each old spelling (cdtcodec.cli.options.RENAMED) still works, does what its new name does, and says so in one
`note:` line on stderr; `--help` shows only the new names. The toy model keeps the one real encode short.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from test_cli import make_clip, script
from typer.testing import CliRunner

from cdtcodec.cli import app
from cdtcodec.cli.options import RENAMED, rename

pytestmark = pytest.mark.usefixtures("one_thread")  # toy models: one thread (conftest)

#: The renamed options' new names, and the commands that have each (with that one meaning).
NEW_NAMES = {"--qstep": {"encode"}, "--sampling-steps": {"encode"}, "--steps": {"train"},
             "--frames": {"decode"}, "--max-frames": {"encode", "bench"}, "--clip-frames": {"train"},
             "--preset": {"decode"}, "--model-preset": {"convert"},
             "--output": {"encode", "decode", "convert", "train", "demo", "bench"}}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("option_names")


def invoke(args: list, code: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert "Traceback" not in result.output
    return result


def notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("note: ")]


def mentions(text: str, name: str) -> bool:
    """Whether `text` names the option `name` itself (not --output for --out, not --steps for --step)."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def help_text(command: str) -> str:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    assert result.exit_code == 0, result.output
    return result.stdout


def commands() -> dict:
    return typer.main.get_command(app).commands


# ---------------------------------------------------------------------------------------------------------
# the rewrite

def test_rename_rewrites_old_spellings_and_leaves_values_alone():
    said: list[str] = []
    renamed = {"--step": "--qstep", "--frames": "--max-frames"}
    valued = {"--qstep", "--max-frames", "-o", "--output", "-q"}
    args = ["in.mp4", "--step", "0.5", "--frames=3", "-o", "--step", "--step=1", "-q", "--frames",
            "-yo", "--frames", "--", "--frames"]
    assert rename(args, renamed, valued, said.append) == [
        "in.mp4", "--qstep", "0.5", "--max-frames=3", "-o", "--step", "--qstep=1", "-q", "--frames",
        "-yo", "--frames", "--", "--frames"]
    # one line per old spelling, however often it is used
    assert said == ["--step is deprecated; use --qstep", "--frames is deprecated; use --max-frames"]
    assert rename(["-q5", "--frames", "2"], renamed, valued, said.append) == ["-q5", "--max-frames", "2"]


def test_every_old_spelling_names_an_option_of_its_command():
    found = commands()
    for command, renamed in RENAMED.items():
        opts = {name for p in found[command].params for name in getattr(p, "opts", ())}
        for old, new in renamed.items():
            assert new in opts and old not in opts, (command, old, new)


# ---------------------------------------------------------------------------------------------------------
# --help

@pytest.mark.parametrize("command", ["encode", "decode", "info", "convert", "train", "demo", "bench"])
def test_help_shows_the_new_names_only(command):
    text = help_text(command)
    for old, new in RENAMED.get(command, {}).items():
        assert mentions(text, new), (command, new)
        assert not mentions(text, old), (command, old)
    for new, where in NEW_NAMES.items():
        if command in where:
            assert mentions(text, new), (command, new)


def test_each_new_name_has_one_meaning():
    """Which commands declare each renamed option: only those of NEW_NAMES, and -o is always --output."""
    found = commands()
    for new, where in NEW_NAMES.items():
        having = {name for name, c in found.items() if any(new in getattr(p, "opts", ()) for p in c.params)}
        assert having == where, (new, having)
    for name, c in found.items():
        for p in c.params:
            opts = set(getattr(p, "opts", ()))
            assert ("-o" in opts) == ("--output" in opts), (name, p.opts)
            assert "--out" not in opts and "--step" not in opts, (name, p.opts)
    sampling = next(p for p in found["encode"].params if "--sampling-steps" in p.opts)
    training = next(p for p in found["train"].params if "--steps" in p.opts)
    assert "DDIM" in sampling.help and "Training steps" in training.help


# ---------------------------------------------------------------------------------------------------------
# the old spellings behave as the new ones

def test_encode_old_spellings_write_the_same_file(work, toy):
    clip = make_clip(work / "clip.mp4", 24, 16, 6)
    new = invoke(["encode", clip, "-o", work / "new.cdt", "--model", toy, "--quiet",
                  "--qstep", "0.7", "--sampling-steps", "2", "--max-frames", "3"])
    assert new.stderr == ""
    old = invoke(["encode", clip, "-o", work / "old.cdt", "--model", toy, "--quiet",
                  "--step", "0.7", "--steps=2", "--frames", "3"])
    assert old.stderr.splitlines() == ["note: --step is deprecated; use --qstep",
                                       "note: --steps is deprecated; use --sampling-steps",
                                       "note: --frames is deprecated; use --max-frames"]
    assert (work / "old.cdt").read_bytes() == (work / "new.cdt").read_bytes()
    from bitstream import CdtReader

    with CdtReader(work / "old.cdt") as r:
        assert (r.header.num_frames, r.header.sampling_steps) == (3, 2)
    # errors name the new spelling, whichever was typed
    for spelling in ("--step", "--qstep"):
        result = invoke(["encode", clip, "-o", work / "never.cdt", "--model", toy, spelling, "0.5",
                         "--target-kbps", "60"], code=1)
        assert result.stderr.splitlines()[-1].startswith("error: --qstep and --target-kbps cannot be combined")
        assert len(notes(result.stderr)) == (spelling == "--step")
    assert not (work / "never.cdt").exists()


def test_train_old_spellings_give_the_same_run(work, monkeypatch):
    import cdtcodec.train.run as run

    configs = []
    monkeypatch.setattr(run, "run_training", lambda cfg, **kwargs: configs.append(cfg))
    common = ["train", "--data", work / "data", "--steps", "3", "--crop", "32"]
    assert invoke([*common, "-o", work / "run", "--clip-frames", "5"]).stderr == ""
    assert invoke([*common, "--output", work / "run", "--clip-frames", "5"]).stderr == ""
    old = invoke([*common, "--out", work / "run", "--frames", "5"])
    assert old.stderr.splitlines() == ["note: --out is deprecated; use --output",
                                       "note: --frames is deprecated; use --clip-frames"]
    assert configs[0] == configs[1] == configs[2]
    assert (configs[0].out, configs[0].frames, configs[0].steps) == (str(work / "run"), 5, 3)
    bad = invoke(["train", "--frames", "8"], code=1)
    assert bad.stderr.splitlines() == ["note: --frames is deprecated; use --clip-frames",
                                       "error: --clip-frames must be 1 + 4k (e.g. 9, 17)"]


def test_bench_old_spellings_give_the_same_config(work, toy, monkeypatch):
    import cdtcodec.bench as bench

    configs = []

    def fake_run(cfg, console):
        configs.append(cfg)
        return type("Results", (), {"failed": 0})()

    monkeypatch.setattr(bench, "run", fake_run)
    monkeypatch.setattr(bench, "console_lines", lambda results, out: [])
    common = ["bench", "--quick", "--model", toy]
    assert invoke([*common, "-o", work / "results", "--max-frames", "4"]).stderr == ""
    old = invoke([*common, "--out", work / "results", "--frames", "4"])
    assert old.stderr.splitlines() == ["note: --out is deprecated; use --output",
                                       "note: --frames is deprecated; use --max-frames"]
    assert configs[0] == configs[1] and (configs[0].out, configs[0].frames) == (work / "results", 4)
    # the bench's `frames` parameter is the command's --max-frames (decode's --frames is a range)
    for spelling in ("--frames", "--max-frames"):
        result = invoke([*common, "-o", work / "results", spelling, "0"], code=1)
        assert result.stderr.splitlines()[-1] == "error: --max-frames must be >= 1"


def test_convert_old_spelling_passes_the_same_topology(work, monkeypatch):
    import cdtcodec.weights as weights

    presets = []

    def fake_convert(path, preset=None):
        presets.append(preset)
        raise ValueError("stopped before loading")

    monkeypatch.setattr(weights, "convert_official", fake_convert)
    new = invoke(["convert", work / "official.ckpt", "-o", work / "w.safetensors", "--model-preset", "cdt-small"],
                 code=1)
    old = invoke(["convert", work / "official.ckpt", "-o", work / "w.safetensors", "--preset", "cdt-small"], code=1)
    assert new.stderr.splitlines() == ["error: stopped before loading"]
    assert old.stderr.splitlines() == ["note: --preset is deprecated; use --model-preset",
                                       "error: stopped before loading"]
    assert presets == ["cdt-small", "cdt-small"]


def test_console_script_prints_the_note_on_stderr(tmp_path):
    run = script("train", "--data", tmp_path / "none", "--frames", "8")
    assert run.returncode == 1 and run.stdout == b""
    assert run.stderr.decode().splitlines() == ["note: --frames is deprecated; use --clip-frames",
                                                "error: --clip-frames must be 1 + 4k (e.g. 9, 17)"]
