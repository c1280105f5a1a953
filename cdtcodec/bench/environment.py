"""The machine, the library versions, the commit, and the weights cdt runs with."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import numpy as np

from cdtcodec.bench.config import TOY_CONFIG, BadBenchArgument, BenchConfig

REPO = Path(__file__).resolve().parent.parent.parent

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _git() -> dict:
    def run(*args):
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = run("rev-parse", "HEAD")
    dirty = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit or None, "dirty": bool(dirty) if commit else None}


def environment(device: str) -> dict:
    import av
    import bjontegaard
    import matplotlib
    import PIL
    import scipy
    import torch

    from cdtcodec import __version__

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    machine = {"cpu": _cpu_model(), "logical_cpus": os.cpu_count(), "usable_cpus": cores,
               "memory_gb": _mem_total_gb(), "platform": platform.platform(), "hostname": platform.node(),
               "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
               "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name(0)
    versions = {"cdtcodec": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "numpy": np.__version__, "av": av.__version__, "ffmpeg": av.ffmpeg_version_info,
                "libav": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
                "bjontegaard": bjontegaard.__version__, "scipy": scipy.__version__,
                "matplotlib": matplotlib.__version__, "pillow": PIL.__version__}
    return {"machine": machine, "versions": versions, "git": _git()}


def resolve_model(cfg: BenchConfig, work: Path, notes: list[str]) -> dict:
    """The weights file cdt runs with; --quick without shipped weights uses a seeded, untrained toy model."""
    from cdtcodec.config import PRESETS as MODEL_PRESETS
    from cdtcodec.weights import WEIGHTS_DIR, file_sha256, shipped_weights

    spec = cfg.model
    path = Path(spec)
    toy = False
    if not path.is_file():
        shipped = WEIGHTS_DIR / f"{spec}.safetensors"
        if shipped_weights(spec) is not None:
            path = shipped
        elif cfg.quick and spec in MODEL_PRESETS:
            import torch

            from cdtcodec.config import CDTConfig
            from cdtcodec.model import CDT
            from cdtcodec.weights import save_model

            torch.manual_seed(0)
            path = work / "toy-untrained.safetensors"
            save_model(CDT(CDTConfig(**TOY_CONFIG)), path, "toy-untrained")
            toy = True
            notes.append(f"cdt ran with an UNTRAINED toy model ({TOY_CONFIG}, seed 0): no weights for {spec} at "
                         f"{shipped}. A smoke test of the pipeline; its numbers say nothing about the codec.")
        else:
            raise BadBenchArgument("model", ")", before=f"{spec}: no such weights file, and no shipped weights at "
                                                          f"{shipped} (pass a weights file as ")
    from safetensors import safe_open

    name = path.stem
    try:
        with safe_open(str(path), framework="pt") as f:
            name = (f.metadata() or {}).get("name", name)
    except Exception:
        pass
    return {"spec": spec, "file": str(path), "name": name, "sha256": file_sha256(path), "untrained_toy": toy}
