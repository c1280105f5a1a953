"""Issue 16: encoding a corpus. Many inputs into one folder, --jobs worker processes, failures kept to their
clip, reruns that skip what is complete, the summary, and latent shards read back and decoded.

The command-line runs go through the installed console script (test_cli.script); the toy model and clips of
at most 40x32 pixels and 6 frames keep each encode to a fraction of a second. Ray has its own file
(test_corpus_ray.py).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tarfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli import REAL_CLIP, SCRIPT, make_clip, read_pngs, script_env
from test_reliability import _finish, _spawn, _until
from typer.testing import CliRunner

from bitstream import CdtReader
from cdtcodec import codec
from cdtcodec.cli import app
from cdtcodec.corpus import ShardError, discover, read_entry, read_shards
from cdtcodec.corpus.summary import read_summary
from cdtcodec.limits import MemoryLimitExceeded, check_memory
from cdtcodec.rate.quantize import DEFAULT_QUALITY, dequantize, step_for_quality

pytestmark = pytest.mark.usefixtures("one_thread")  # toy models: one thread (conftest)

#: the corpus: relative path -> (width, height, frames); a/x and b/x share a name in different folders
CLIPS = {"a/x.mp4": (32, 24, 5), "b/x.mp4": (40, 24, 3), "b/y.mkv": (24, 24, 2), "c.mp4": (32, 32, 6)}
GOOD = ["a/x", "b/x", "b/y", "c"]
UNTIL_S = 600  # how long a run may take to get where a test interrupts it (a few seconds, on a machine at rest)


def make_corpus(folder: Path) -> Path:
    """The four clips of CLIPS and bad.mp4, a real mp4 cut in half (its index is lost: corrupt)."""
    for rel, (w, h, n) in CLIPS.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        make_clip(folder / rel, w, h, n, fps=Fraction(25))
    whole = folder.parent / "whole.mp4"  # outside the corpus
    make_clip(whole, 32, 24, 4)
    (folder / "bad.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return folder


def script(*args) -> subprocess.CompletedProcess:
    """test_cli.script with room for a busy machine: a corpus is several encodes and worker start-ups."""
    if not SCRIPT.exists():
        pytest.skip(f"console script not installed at {SCRIPT}")
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, env=script_env(), input=b"",
                          timeout=UNTIL_S)


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".part" in p.name]


def invoke(args: list, code: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="module")
def corpus(work) -> Path:
    return make_corpus(work / "clips")


@pytest.fixture(scope="module")
def jobs2(work, corpus, toy):
    """The corpus encoded by the console script with --jobs 2 (one thread each): (output folder, the run)."""
    out = work / "jobs2"
    run = script("encode", corpus, "-o", f"{out}/", "--model", toy, "--jobs", "2", "--threads", "2")
    return out, run


# ---------------------------------------------------------------------------------------------------------
# listing a corpus

def test_discover_mirrors_folders_and_keeps_names_apart(tmp_path):
    root = tmp_path / "in"
    for rel in ("a/x.mp4", "b/x.mp4", "b/x.mkv", "b/clip.v2.mov", "b/.hidden.mp4", ".cache/z.mp4", "notes.txt",
                "out/old.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    (tmp_path / "list.txt").write_text("# a manifest\n\nin/a/x.mp4\nin/b/clip.v2.mov\n  \n")
    clips = discover([str(root), f"@{tmp_path / 'list.txt'}", str(root / "a" / "x.mp4")], exclude=root / "out")
    by_rel = {c.relative: c for c in clips}
    assert sorted(by_rel) == ["a/x.mp4", "b/clip.v2.mov", "b/x.mkv", "b/x.mp4"]  # once each, videos only
    assert [by_rel[r].name for r in ("a/x.mp4", "b/x.mp4", "b/x.mkv", "b/clip.v2.mov")] == \
        ["a/x", "b/x.mp4", "b/x.mkv", "b/clip.v2"]
    assert [by_rel[r].key for r in ("a/x.mp4", "b/x.mp4", "b/x.mkv", "b/clip.v2.mov")] == \
        ["a/x", "b/x_mp4", "b/x_mkv", "b/clip_v2"]  # no dots: WebDataset splits names at the first one
    assert [c.index for c in clips] == list(range(4)) and all(os.path.isabs(c.source) for c in clips)
    # files from two folders mirror them below their common folder
    two = discover([str(root / "a" / "x.mp4"), str(root / "b" / "x.mp4")])
    assert [c.name for c in two] == ["a/x", "b/x"]
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "notes.txt").write_text("no video here")
    with pytest.raises(Exception, match="no video files"):
        discover([str(tmp_path / "texts")])
    with pytest.raises(Exception, match="no such manifest"):
        discover([f"@{tmp_path / 'nope.txt'}"])


def test_corpus_arguments_are_checked_first(work, corpus, toy):
    clip = corpus / "a" / "x.mp4"
    for args, fragment in (([clip, clip, "-o", work / "x.cdt"], "end the output with /"),
                           ([corpus, "-o", work / "x.cdt"], "is a directory"),
                           ([clip, "-", "-o", f"{work}/never/"], "standard input"),
                           ([clip, "-o", work / "x.cdt", "--latents"], "end the output with /"),
                           ([clip, clip, "-o", f"{work / 'missing' / 'deep'}/"], "does not exist"),
                           ([corpus, "-o", f"{work}/never/", "--latents", "--latent-dtype", "int8"], "--latent-dtype"),
                           # rate control is for one file: a corpus refuses it, .cdt files or latents alike
                           ([clip, clip, "-o", f"{work}/never/", "--target-kbps", "100"],
                            "--target-kbps: rate control encodes one file; a corpus (several inputs)"),
                           ([corpus, "-o", f"{work}/never/", "--latents", "--target-bpp", "0.1"], "--target-bpp:"),
                           ([clip, clip, "-o", f"{work}/never/", "-q", "3", "--target-kbps", "100"],
                            "--target-kbps:")):
        result = invoke(["encode", *args, "--model", toy], code=1)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert not (work / "never").exists() and not (work / "x.cdt").exists()


def test_a_missing_ray_is_one_line(work, corpus, toy, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    result = invoke(["encode", corpus, "-o", f"{work}/noray/", "--model", toy, "--ray", "local"], code=1)
    assert error_lines(result.stderr) == [
        "error: --ray needs Ray, which is not installed: pip install 'cdtcodec[ray]' (or -r requirements-ray.txt)"]


def test_each_job_gets_its_share_of_the_memory_limit():
    check_memory(600, "x", explicit=1000, share=1)
    with pytest.raises(MemoryLimitExceeded, match="1/2 share"):
        check_memory(600, "x", explicit=1000, share=2)


def test_a_clip_over_the_memory_limit_fails_naming_the_option(tmp_path, corpus, toy):
    clip = corpus / "a" / "x.mp4"
    out = tmp_path / "out"
    result = invoke(["encode", clip, "-o", f"{out}/", "--model", toy, "--threads", "1", "--max-memory", "1M"],
                    code=1)
    [line] = read_summary(str(out / "summary.jsonl"))
    assert line["status"] == "failed" and "raise it with --max-memory SIZE or CDTCODEC_MAX_MEMORY=SIZE" in \
        line["error"], line
    assert line["error"] in result.stderr and not list(out.rglob("*.cdt"))


# ---------------------------------------------------------------------------------------------------------
# --jobs 2, one corrupt clip

def test_jobs_2_encodes_the_good_clips_and_names_the_bad_one(jobs2, corpus, toy, work):
    out, run = jobs2
    err = run.stderr.decode()
    assert run.returncode == 1, err
    assert "Traceback" not in err
    bad = str(corpus / "bad.mp4")
    failed = [line for line in err.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and failed[0].startswith(f"failed: {bad}: "), err
    assert error_lines(err) == [f"error: 1 of 5 inputs failed ({bad}); see {out / 'summary.jsonl'}"]
    frames = sum(n for _, _, n in CLIPS.values())
    assert any("5/5 files, 1 failed" in line and f"{frames}/{frames} frames" in line for line in err.splitlines()), err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.cdt")) == [f"{n}.cdt" for n in GOOD]
    assert not temporaries(out)
    for name, (rel, (w, h, n)) in zip(GOOD, CLIPS.items()):
        frames = out / f"{name}_frames"
        report = codec.decode(out / f"{name}.cdt", f"{frames}/", model=str(toy))
        assert report.frames == n and read_pngs(frames).shape == (n, h, w, 3)
    lines = read_summary(str(out / "summary.jsonl"))
    assert [(Path(d["input"]).relative_to(corpus).as_posix(), d["status"]) for d in lines] == [
        ("a/x.mp4", "encoded"), ("b/x.mp4", "encoded"), ("b/y.mkv", "encoded"), ("bad.mp4", "failed"),
        ("c.mp4", "encoded")]
    for d in lines:
        assert {"input", "output", "frames", "bytes", "bpp", "seconds", "status", "error"} <= set(d)
        if d["status"] == "encoded":
            assert d["bytes"] == os.path.getsize(d["output"]) and d["error"] == "" and d["seconds"] > 0
            assert d["bpp"] == pytest.approx(8 * d["bytes"] / (d["frames"] * d["width"] * d["height"]))
        else:
            assert d["frames"] == 0 and d["error"] and d["output"] == str(out / "bad.cdt")
    # a worker's output is the very file one encode of that clip makes (one thread each, the same numbers)
    single = work / "single_bx.cdt"
    invoke(["encode", corpus / "b" / "x.mp4", "-o", single, "--model", toy, "--threads", "1"])
    assert single.read_bytes() == (out / "b" / "x.cdt").read_bytes()


def test_rerun_skips_complete_outputs_and_redoes_damaged_ones(jobs2, toy, corpus, work):
    out, _ = jobs2
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.cdt")}
    damaged = out / "b" / "y.cdt"
    damaged.write_bytes(damaged.read_bytes()[:-5])  # a partial file: its trailer is gone
    result = invoke(["encode", corpus, "-o", f"{out}/", "--model", toy, "--threads", "1", "--json"], code=1)
    assert f"note: {damaged} is incomplete or damaged" in result.stderr
    report = json.loads(result.stdout)
    assert (report["encoded"], report["skipped"], report["failed"]) == (1, 3, 1)
    assert report["model_loads"] == 1
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.cdt")}
    assert {p for p in after if after[p] == before[p]} == set(before) - {damaged}
    with CdtReader(damaged) as r:
        assert r.header.num_frames == CLIPS["b/y.mkv"][2]
    statuses = {Path(d["output"]).name: d["status"] for d in read_summary(str(out / "summary.jsonl"))}
    assert statuses == {"x.cdt": "skipped", "y.cdt": "encoded", "bad.cdt": "failed", "c.cdt": "skipped"}


def test_outputs_made_otherwise_follow_the_overwrite_policy(tmp_path, corpus, toy):
    clip = corpus / "c.mp4"
    out = tmp_path / "out"
    invoke(["encode", clip, "-o", f"{out}/", "--model", toy, "--threads", "1"])
    made = out / "c.cdt"
    inode = made.stat().st_ino
    result = invoke(["encode", clip, "-o", f"{out}/", "--model", toy, "--threads", "1", "-q", "2"], code=1)
    assert (f"failed: {clip}: {made} exists (quantizer step {step_for_quality(DEFAULT_QUALITY):g}, not "
            f"{step_for_quality(2):g}); pass -y to encode it again") in result.stderr
    result = invoke(["encode", clip, "-o", f"{out}/", "--model", toy, "--threads", "1", "-q", "2", "-n"], code=1)
    assert "not overwritten (-n)" in result.stderr and made.stat().st_ino == inode
    invoke(["encode", clip, "-o", f"{out}/", "--model", toy, "--threads", "1", "-q", "2", "-y"])
    with CdtReader(made) as r:
        assert r.header.quant_step == (pytest.approx(step_for_quality(2)),)
    # the same command again finds it complete; -y encodes it again all the same
    result = invoke(["encode", clip, "-o", f"{out}/", "--model", toy, "--threads", "1", "-q", "2", "--json"])
    assert json.loads(result.stdout)["skipped"] == 1 and made.stat().st_ino != inode
    inode = made.stat().st_ino
    invoke(["encode", clip, "-o", f"{out}/", "--model", toy, "--threads", "1", "-q", "2", "-y"])
    assert made.stat().st_ino != inode


def test_ctrl_c_in_process_keeps_what_is_finished(tmp_path, corpus, toy, monkeypatch):
    """KeyboardInterrupt in the middle of the third clip (one job, in this process): the first two stay,
    nothing partial is left, the summary says so, and the same command finishes the rest."""
    calls = {"n": 0}
    original = codec.StreamEncoder.push

    def push(self, frames):
        calls["n"] += 1
        if calls["n"] == 3:  # each clip of the corpus is pushed more than once (1 frame, then 4 at a time)
            raise KeyboardInterrupt
        return original(self, frames)

    monkeypatch.setattr(codec.StreamEncoder, "push", push)
    out = tmp_path / "out"
    result = invoke(["encode", corpus / "a", corpus / "c.mp4", "-o", f"{out}/", "--model", toy, "--threads", "1"],
                    code=130)
    assert error_lines(result.stderr)[0].startswith("error: interrupted by SIGINT; 1 clip(s) encoded in this run")
    assert [p.name for p in out.rglob("*.cdt")] == ["x.cdt"] and not temporaries(out)
    assert [d["status"] for d in read_summary(str(out / "summary.jsonl"))] == ["encoded", "interrupted"]
    monkeypatch.undo()
    result = invoke(["encode", corpus / "a", corpus / "c.mp4", "-o", f"{out}/", "--model", toy, "--threads", "1",
                     "--json"])
    assert json.loads(result.stdout)["encoded"] == 1 and json.loads(result.stdout)["skipped"] == 1


# ---------------------------------------------------------------------------------------------------------
# signals and dying workers, through the console script

@pytest.fixture()
def with_big(tmp_path, corpus) -> Path:
    """The four good clips and, last in order, the bundled 33 x 256x256 clip: an encode that takes a while."""
    folder = tmp_path / "clips"
    for rel in CLIPS:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes((corpus / rel).read_bytes())
    (folder / "z_big.mp4").write_bytes(REAL_CLIP.read_bytes())
    return folder


def _small_done(out: Path) -> bool:
    return all((out / f"{name}.cdt").exists() for name in GOOD)


def test_sigterm_with_jobs_2_resumes_without_redoing(tmp_path, with_big, toy):
    out = tmp_path / "out"
    args = ["encode", with_big, "-o", f"{out}/", "--model", toy, "--jobs", "2", "--threads", "2"]
    proc = _spawn(args, tmp_path)
    _until(lambda: _small_done(out), proc, UNTIL_S)
    assert not (out / "z_big.cdt").exists(), "the big clip ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)  # to the caller alone: it stops its workers
    stdout, stderr = _finish(proc, UNTIL_S)
    err = stderr.decode()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and error_lines(err)[-1].startswith("error: interrupted by SIGTERM"), err
    assert len(error_lines(err)) == 1, err  # not followed by "no output was written"
    assert not (out / "z_big.cdt").exists() and not temporaries(out)
    statuses = {Path(d["input"]).relative_to(with_big).as_posix(): d["status"]
                for d in read_summary(str(out / "summary.jsonl"))}
    assert statuses == {**{rel: "encoded" for rel in CLIPS}, "z_big.mp4": "interrupted"}
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.cdt")}
    assert len(before) == 4
    again = script(*args, "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["encoded"], report["skipped"], report["failed"]) == (1, 4, 0)
    assert all((p.stat().st_ino, p.stat().st_mtime_ns) == before[p] for p in before)
    with CdtReader(out / "z_big.cdt") as r:
        assert r.header.num_frames == 33


def _worker_reading(parent: int, name: str) -> int | None:
    """The pid of a process below `parent` that has the file `name` open (the worker encoding it)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            chain, pid = [], int(entry.name)
            while pid > 1 and len(chain) < 4:
                pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                chain.append(pid)
            if parent in chain and any(os.readlink(fd).endswith(name) for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def test_a_worker_killed_outright_fails_its_clip_alone(tmp_path, with_big, toy):
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to find the worker process")
    (with_big / "zz_after.mp4").write_bytes((with_big / "c.mp4").read_bytes())  # queued behind the big one
    out = tmp_path / "out"
    proc = _spawn(["encode", with_big, "-o", f"{out}/", "--model", toy, "--jobs", "2", "--threads", "2"], tmp_path)
    found = []

    def busy_with_big() -> bool:
        time.sleep(0.05)  # a walk over /proc is not free
        found[:] = [pid for pid in [_worker_reading(proc.pid, "z_big.mp4")] if pid]
        return bool(found)

    _until(busy_with_big, proc, UNTIL_S)
    os.kill(found[0], signal.SIGKILL)  # the test's own grandchild, found by the file it reads
    stdout, stderr = _finish(proc, UNTIL_S)
    err = stderr.decode()
    assert proc.returncode == 1, err
    assert f"failed: {with_big / 'z_big.mp4'}: the worker process died (killed by SIGKILL)" in err
    assert sorted(p.name for p in out.rglob("*.cdt")) == ["c.cdt", "x.cdt", "x.cdt", "y.cdt", "zz_after.cdt"]
    assert not temporaries(out)


# ---------------------------------------------------------------------------------------------------------
# latent shards

# The latents are compared bit for bit with codec.encode_latents, which runs in fp32 unless told otherwise; the
# command line's default (auto) is bf16 on a CPU with fast bf16.
FP32 = ("--precision", "fp32")


@pytest.fixture(scope="module")
def shards(work, corpus, toy):
    out = work / "shards"
    run = script("encode", corpus, "-o", f"{out}/", "--model", toy, "--latents", "--shard-size", "2",
                 "--threads", "1", *FP32)
    return out, run


def _posterior_mean(path: Path, toy: Path) -> torch.Tensor:
    pieces = []
    codec.encode_latents(path, pieces.append, model=str(toy))
    return torch.cat(pieces, dim=1).permute(1, 0, 2, 3)  # (T', L, h, w), as a shard holds it


def test_latent_shards_read_back_equal_a_single_encode(shards, corpus, toy, work):
    out, run = shards
    assert run.returncode == 1 and "failed: " + str(corpus / "bad.mp4") in run.stderr.decode(), run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar",
                                                     "summary.jsonl"]  # 5 clips, 2 a shard; no staging left
    with tarfile.open(out / "shard-000000.tar") as tf:  # WebDataset layout: a key's members side by side
        assert tf.getnames() == ["a/x.json", "a/x.latents.npy", "b/x.json", "b/x.latents.npy"]
        assert all(m.mtime == 0 and m.uid == 0 for m in tf.getmembers())
    samples = list(read_shards(out))
    assert [s.key for s in samples] == GOOD
    for (key, latents, meta), (rel, (w, h, n)) in zip(samples, CLIPS.items()):
        assert latents.dtype == torch.float16
        assert (meta["source"], meta["frames"], meta["width"], meta["height"], meta["fps"]) == \
            (str(corpus / rel), n, w, h, "25")
        assert meta["model"] == "toy" and len(meta["weights_sha256"]) == 64
        mean = _posterior_mean(corpus / rel, toy)
        assert torch.equal(latents, mean.to(torch.float16)), key
    # the same clip encoded alone, through the command line, gives the same latents
    alone = work / "shard_alone"
    one = script("encode", corpus / "c.mp4", "-o", f"{alone}/", "--model", toy, "--latents", "--threads", "1", *FP32)
    assert one.returncode == 0, one.stderr
    assert torch.equal(read_entry(str(alone / "shard-000000.tar")).latents, samples[3].latents)
    # and a .cdt of it holds those latents quantized
    cdt = work / "c_for_latents.cdt"
    codec.encode(corpus / "c.mp4", cdt, model=str(toy))
    with CdtReader(cdt) as r:
        symbols = np.concatenate(list(r.chunks()), axis=1)  # (L, T', h, w)
        step = r.header.quant_step[0]
    coded = dequantize(symbols, step).permute(1, 0, 2, 3)
    assert (coded - samples[3].latents.float()).abs().max() <= step / 2 + 1e-2


def test_bfloat16_latents_and_decoding_a_shard_entry(tmp_path, corpus, toy):
    clip = corpus / "a" / "x.mp4"
    out = tmp_path / "bf16"
    run = script("encode", clip, corpus / "c.mp4", "-o", f"{out}/", "--model", toy, "--latents",
                 "--latent-dtype", "bfloat16", "--threads", "1", *FP32)
    assert run.returncode == 0, run.stderr
    key, latents, meta = read_entry(str(out / "shard-000000.tar"), "a/x")
    assert latents.dtype == torch.bfloat16 and meta["stored_as"].startswith("uint16")
    assert torch.equal(latents, _posterior_mean(clip, toy).to(torch.bfloat16))
    frames = tmp_path / "frames"
    dec = script("decode", f"{out / 'shard-000000.tar'}#a/x", "-o", f"{frames}/", "--model", toy, "--threads", "1")
    assert dec.returncode == 0, dec.stderr
    assert read_pngs(frames).shape == (5, 24, 32, 3)
    assert "decode: 5 frames 32x24 @ 25 fps" in dec.stderr.decode()
    # a shard of two clips needs a key; a missing key is one line
    for spec, fragment in ((out / "shard-000000.tar", "holds 2 clips; name one"),
                           (f"{out / 'shard-000000.tar'}#nope", "no clip with the key 'nope'")):
        bad = invoke(["decode", spec, "-o", tmp_path / "never.mp4", "--model", toy, "--threads", "1"], code=1)
        lines = [line for line in bad.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert not (tmp_path / "never.mp4").exists()


def test_latent_rerun_keeps_shards_and_rewrites_a_damaged_one(shards, corpus, toy):
    out, _ = shards
    inodes = {p.name: p.stat().st_ino for p in out.glob("shard-*.tar")}
    first = out / "shard-000000.tar"
    raw = bytearray(first.read_bytes())
    with tarfile.open(first) as tf:
        member = tf.getmember("b/x.latents.npy")
    raw[member.offset_data + member.size - 3] ^= 0xFF  # a flipped bit in b/x's latents
    first.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match="b/x: latents fail their CRC"):
        list(read_shards(first))
    result = invoke(["encode", corpus, "-o", f"{out}/", "--model", toy, "--latents", "--shard-size", "2",
                     "--threads", "1", "--json", *FP32], code=1)
    report = json.loads(result.stdout)
    assert (report["encoded"], report["skipped"], report["failed"]) == (1, 3, 1)  # b/x again; bad.mp4 again
    after = {p.name: p.stat().st_ino for p in out.glob("shard-*.tar")}
    assert after["shard-000002.tar"] == inodes["shard-000002.tar"]  # complete: untouched
    assert after["shard-000000.tar"] != inodes["shard-000000.tar"]  # damaged: written again
    assert [s.key for s in read_shards(out)] == GOOD
    assert torch.equal(read_entry(str(first), "b/x").latents,
                       _posterior_mean(corpus / "b" / "x.mp4", toy).to(torch.float16))
    assert not (out / ".cdtcodec-staging").exists()


def test_a_crafted_shard_entry_is_one_line(tmp_path, toy):
    meta = {"latent_frames": 2, "latent_channels": 16, "latent_height": 3, "latent_width": 4, "dtype": "float16",
            "latents_crc32": 0, "latents_bytes": 10}
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as tf:
        for name, data in (("k.json", json.dumps(meta).encode()), ("k.latents.npy", b"\x93NUMPY garbage")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with pytest.raises(ShardError, match="k: latents"):
        read_entry(str(shard), "k")
    run = invoke(["decode", f"{shard}#k", "-o", tmp_path / "never.mp4", "--model", toy], code=1)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "#k" in lines[0], lines
    assert not (tmp_path / "never.mp4").exists()
