"""The prior through the codec and the CLI: the default coder, its fallback, finding and checking the prior
beside the weights, frame ranges, and bit-exact symbols across torch / numpy / BLAS thread settings."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bitstream import CdtReader, fuzz
from bitstream.prior import save_prior
from cdtcodec import codec
from cdtcodec.cli import app
from cdtcodec.config import CDTConfig
from cdtcodec.model import CDT
from cdtcodec.rate.coder_choice import prior_path
from cdtcodec.weights import WEIGHTS_DIR, save_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_PRIOR = WEIGHTS_DIR / "cdt-tiny.prior.safetensors"
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not SHIPPED_PRIOR.is_file(), reason="no shipped prior")]




@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prior_codec")


def _clip(path: Path, width=48, height=40, frames=9) -> Path:
    import av

    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=24, options={"preset": "ultrafast", "crf": "10"})
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        y, x = np.mgrid[0:height, 0:width]
        for i in range(frames):
            img = np.stack([(x * 5 + i * 7) % 256, (y * 6 + i * 3) % 256, (x + y + 64) % 256], -1).astype(np.uint8)
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def clip(work) -> Path:
    return _clip(work / "clip.mp4")


@pytest.fixture(scope="module")
def models(work) -> tuple[Path, Path]:
    """The same toy weights twice: with the shipped prior beside them, and without a prior."""
    torch.manual_seed(0)
    with_prior = work / "with" / "toy.safetensors"
    with_prior.parent.mkdir()
    save_model(CDT(CDTConfig(context_dim=8, unet_dim=4)), with_prior, name="toy")
    shutil.copy(SHIPPED_PRIOR, prior_path(with_prior))
    bare = work / "bare" / "toy.safetensors"
    bare.parent.mkdir()
    shutil.copy(with_prior, bare)
    return with_prior, bare


def _symbols(path: Path, prior=None) -> list[np.ndarray]:
    with CdtReader(path, prior=prior) as r:
        return list(r.chunks())


def _pngs(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(n)) for n in sorted(folder.glob("frame_*.png"))])


def test_default_is_the_prior_and_decodes_like_range(work, clip, models):
    with_prior, _ = models
    auto = codec.encode(clip, work / "auto.cdt", model=str(with_prior))
    rng = codec.encode(clip, work / "range.cdt", model=str(with_prior), entropy="range")
    assert (auto.entropy, auto.note, rng.entropy) == ("prior", "", "range")
    assert (work / "auto.cdt").read_bytes()[8:12] == b"\x02\x00\x00\x00"
    assert (work / "range.cdt").read_bytes()[8:12] == b"\x01\x00\x00\x00"
    with CdtReader(work / "auto.cdt") as r:
        assert r.header.full_entropy_params()["prior_sha256"] == hashlib.sha256(SHIPPED_PRIOR.read_bytes()).hexdigest()
    for a, b in zip(_symbols(work / "auto.cdt", prior_path(with_prior)), _symbols(work / "range.cdt"), strict=True):
        np.testing.assert_array_equal(a, b)
    codec.decode(work / "auto.cdt", f"{work}/auto_frames/", model=str(with_prior))
    codec.decode(work / "range.cdt", f"{work}/range_frames/", model=str(with_prior))
    full = _pngs(work / "auto_frames")
    np.testing.assert_array_equal(full, _pngs(work / "range_frames"))
    part = codec.decode(work / "auto.cdt", f"{work}/part/", frames="5:8", model=str(with_prior))
    assert part.frames == 3
    np.testing.assert_array_equal(_pngs(work / "part"), full[5:8])


def test_without_a_prior_the_default_falls_back_to_range_with_a_note(work, clip, models):
    _, bare = models
    result = CliRunner().invoke(app, ["encode", str(clip), "-o", str(work / "bare.cdt"), "--model", str(bare),
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["entropy"] == "range" and "has no prior weights (toy.prior.safetensors)" in report["note"]
    assert (work / "bare.cdt").read_bytes()[8:10] == b"\x01\x00"
    result = CliRunner().invoke(app, ["encode", str(clip), "-o", str(work / "x.cdt"), "--model", str(bare),
                                      "--entropy", "prior"])
    assert result.exit_code == 1 and "--entropy prior: the model toy.safetensors has no prior weights" in result.stderr
    assert not (work / "x.cdt").exists()
    with pytest.raises(codec.CodecError, match="outside the prior's range"):
        codec.encode(clip, work / "y.cdt", model=str(models[0]), step=1e-5, entropy="prior")
    assert codec.encode(clip, work / "z.cdt", model=str(models[0]), step=1e5).entropy == "range"


def test_decode_needs_the_same_prior_beside_the_weights(work, clip, models):
    with_prior, bare = models
    codec.encode(clip, work / "p.cdt", model=str(with_prior), max_frames=1)
    result = CliRunner().invoke(app, ["decode", str(work / "p.cdt"), "-o", str(work / "p.y4m"), "--model", str(bare)])
    assert result.exit_code == 1 and "there is no toy.prior.safetensors beside" in result.stderr
    other = work / "other" / "toy.safetensors"
    other.parent.mkdir()
    shutil.copy(with_prior, other)
    save_prior(fuzz.sample_prior(), prior_path(other))
    result = CliRunner().invoke(app, ["decode", str(work / "p.cdt"), "-o", str(work / "p.y4m"), "--model", str(other)])
    assert result.exit_code == 1 and "was coded with the prior sha256" in result.stderr
    assert not (work / "p.y4m").exists()
    result = CliRunner().invoke(app, ["info", str(work / "p.cdt"), "--verify", "--json", "--model", str(with_prior)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verified"]["chunks"] == 1


_CHILD = r"""
import hashlib, sys
import numpy as np, torch
torch.set_num_threads(int(sys.argv[2]))
from bitstream import CdtReader
from cdtcodec import codec
from cdtcodec.rate.coder_choice import prior_path
mode, threads, model, clip, out = sys.argv[1:6]
def digest(path, prior=None):
    h = hashlib.sha256()
    with CdtReader(path, prior=prior) as r:
        for c in r.chunks():
            h.update(np.ascontiguousarray(c, dtype=np.int32).tobytes())
    return h.hexdigest()
if mode == "encode":  # the same latents coded twice: with the prior and with range (no prior involved)
    codec.encode(clip, out + ".cdt", model=model, entropy="prior")
    codec.encode(clip, out + ".range.cdt", model=model, entropy="range")
    print(digest(out + ".range.cdt"))
else:
    print(digest(out + ".cdt", prior_path(model)))
"""


def _child(mode: str, threads: int, model: Path, clip: Path, out: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    res = subprocess.run([sys.executable, "-c", _CHILD, mode, str(threads), str(model), str(clip), str(out)],
                         env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_symbols_identical_across_thread_settings(work, models):
    """Encoded with 1 thread, decoded with 2 and 3 (and 3 -> 1, 2): the prior's symbols equal the range file's,
    which are the quantized latents themselves."""
    with_prior, _ = models
    clip = _clip(work / "threads.mp4", width=64, height=48, frames=5)
    for enc, decs in ((1, (2, 3)), (3, (1, 2))):
        out = work / f"threads_{enc}"
        want = _child("encode", enc, with_prior, clip, out)
        for dec in decs:
            assert _child("decode", dec, with_prior, clip, out) == want, (enc, dec)
