"""Issue 16 on Ray: test_corpus's corpus (four clips and a corrupt one) encoded with `--ray local` (a local Ray
of this machine's cores, two actors of one thread each) gives the files `--jobs 2` gives, byte for byte.

Ray is an optional extra; `make test` installs it (requirements-ray.txt), so CI runs this. A Ray start-up
takes several seconds, so the file holds one Ray run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import read_pngs
from test_corpus import CLIPS, GOOD, error_lines, make_corpus, script, temporaries

from cdtcodec import codec
from cdtcodec.corpus.summary import read_summary

pytest.importorskip("ray", reason="Ray is not installed: pip install -r requirements-ray.txt (make test does)")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus_ray")


def test_ray_local_writes_what_local_jobs_write(work, toy):
    corpus = make_corpus(work / "clips")
    local, on_ray = work / "local", work / "ray"
    run = script("encode", corpus, "-o", f"{local}/", "--model", toy, "--jobs", "2", "--threads", "2")
    assert run.returncode == 1, run.stderr
    run = script("encode", corpus, "-o", f"{on_ray}/", "--model", toy, "--ray", "local", "--jobs", "2",
                 "--threads", "1", "--json")
    err = run.stderr.decode()
    assert run.returncode == 1 and "Traceback" not in err, err
    bad = str(corpus / "bad.mp4")
    assert error_lines(err) == [f"error: 1 of 5 inputs failed ({bad}); see {on_ray / 'summary.jsonl'}"], err
    assert [line for line in err.splitlines() if line.startswith("failed: ")][0].startswith(f"failed: {bad}: ")
    report = json.loads(run.stdout)
    assert (report["encoded"], report["failed"], report["skipped"]) == (4, 1, 0)
    assert 1 <= report["model_loads"] <= 2  # once per actor that got a clip, never once per clip
    for name, (w, h, n) in zip(GOOD, CLIPS.values()):
        mine, theirs = on_ray / f"{name}.cdt", local / f"{name}.cdt"
        assert mine.stat().st_size == theirs.stat().st_size and mine.read_bytes() == theirs.read_bytes(), name
        frames = work / f"ray_{name.replace('/', '_')}"
        assert codec.decode(mine, f"{frames}/", model=str(toy)).frames == n
        assert read_pngs(frames).shape == (n, h, w, 3)
    assert not temporaries(on_ray)
    ours = [(Path(d["output"]).relative_to(on_ray), d["status"], d["frames"], d["bytes"])
            for d in read_summary(str(on_ray / "summary.jsonl"))]
    theirs = [(Path(d["output"]).relative_to(local), d["status"], d["frames"], d["bytes"])
              for d in read_summary(str(local / "summary.jsonl"))]
    assert ours == theirs
