"""The demo: its numbers are the benchmark's for the same clip and setting, and it runs from a plain install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from cdtcodec import bench
from cdtcodec.config import CDTConfig
from cdtcodec.demo import run_demo
from cdtcodec.media import open_sink
from cdtcodec.model import CDT
from cdtcodec.weights import save_model

REPO = Path(__file__).resolve().parent.parent


def _square_clip(path: Path, frames: int = 5, size: int = 32) -> None:
    y, x = np.mgrid[0:size, 0:size]
    with open_sink(path, size, size, fps=Fraction(24)) as out:
        for t in range(frames):
            out.write(np.stack([(x * 6 + t * 9) % 256, (y * 5 + t * 4) % 256, (x + y) * 3 % 256], -1).astype(np.uint8))


def test_demo_metrics_equal_bench(tmp_path):
    """Same clip (already at the bench's size, so its preparation is the identity), same model and quality."""
    clip = tmp_path / "square.mp4"
    _square_clip(clip)
    torch.manual_seed(0)
    toy = tmp_path / "toy.safetensors"
    save_model(CDT(CDTConfig(context_dim=8, unet_dim=4)), toy, "toy")
    demo = run_demo(clip, tmp_path / "recon.mp4", model=str(toy), quality=3,
                    console=Console(file=open(os.devnull, "w")))
    cfg = bench.make_config([str(clip)], codecs="cdt", qualities="3", size=32, frames=5, out=tmp_path / "bench",
                            model=str(toy))
    (run,) = bench.run(cfg, console=Console(file=open(os.devnull, "w"))).runs
    assert run.ok, run.error
    m = run.quality
    assert (demo["psnr_rgb_db"], demo["psnr_y_db"], demo["ssim"], demo["lpips_alex"]) == \
        (m.psnr_rgb, m.psnr_y, m.ssim, m.lpips)
    # The .cdt headers differ only in the source's colour tags and time base (mp4 vs the bench's FFV1 copy).
    assert abs(demo["bytes"] - run.bytes) < 64


def test_plain_install_runs_the_demo_from_elsewhere(tmp_path):
    """`pip install .` (not -e) into a fresh venv, then `cdtcodec demo` from an unrelated directory: the shipped
    weights (weights/, installed as the package cdtcodec_weights) and the sample clip must come with it. The venv
    borrows this environment's installed dependencies (a .pth line), so nothing is downloaded and torch is never
    reinstalled."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in ("cdtcodec", "bitstream", "weights"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                              "--no-index", str(src)], capture_output=True, text=True, env=env, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    shutil.rmtree(src)  # nothing may be read from the source tree any more
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    threads = os.environ.get("CDT_TEST_THREADS", "2")
    run = subprocess.run([str(venv / "bin" / "cdtcodec"), "demo", "--threads", threads], cwd=elsewhere,
                         capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr
    assert (elsewhere / "recon.mp4").stat().st_size > 0
    where = subprocess.run([str(python), "-c", "import cdtcodec.weights as w; print(w.__file__); print(w.WEIGHTS_DIR)"],
                           cwd=elsewhere, capture_output=True, text=True, env=env).stdout.split()
    assert where[0].startswith(site), where
    assert where[1] == str(Path(site) / "cdtcodec_weights"), where
