#!/usr/bin/env python
"""Bits per symbol of the `range` and `zstd` coders against the ideal, per latent-time chunk.

    .venv/bin/python scripts/bench_entropy.py                 # synthetic data
    .venv/bin/python scripts/bench_entropy.py --cdt a.cdt ... # real quantized latents from .cdt files
    .venv/bin/python scripts/bench_entropy.py --npy lat.npy --step 0.5   # float latents (C,T,h,w)

Columns (bits per symbol, every chunk coded on its own like in a .cdt file):
  source    true entropy of the quantized source distribution (synthetic data only)
  empir     per-channel, per-chunk order-0 empirical entropy (a bound no per-channel model
            without side information can beat on average; the model must also pay for fitting)
  model     cross-entropy of the symbols under the range coder's stored model
  range     real range payload (model parameters + range words + escapes)
  gap       range words vs model cross-entropy (the coder's own loss)
  zstd      real zstd payload
  saving    1 - range / zstd
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitstream import CdtReader  # noqa: E402
from bitstream.entropy import RangeCoder, ZstdCoder  # noqa: E402
from cdtcodec.weights import WEIGHTS_DIR  # noqa: E402


def quantized_entropy(dist: str, scale: np.ndarray, step: float) -> float:
    """Mean entropy (bits) of round(X / step) for X ~ dist(0, scale[c]) over channels."""
    out = []
    for s in scale:
        k = np.arange(-20000, 20001, dtype=np.float64)
        edges = (np.concatenate([k - 0.5, [k[-1] + 0.5]])) * step
        if dist == "laplace":
            b = s / math.sqrt(2)
            cdf = np.where(edges < 0, 0.5 * np.exp(edges / b), 1 - 0.5 * np.exp(-edges / b))
        elif dist == "gauss":
            from math import erf
            cdf = 0.5 * (1 + np.vectorize(erf)(edges / (s * math.sqrt(2))))
        else:
            return float("nan")
        p = np.diff(cdf)
        p = p[p > 0]
        out.append(float(-(p * np.log2(p)).sum()))
    return float(np.mean(out))


def synthetic(dist: str, step: float, frames: int, rng) -> tuple[list[np.ndarray], float]:
    std = np.linspace(0.5, 3.0, 16)  # per-channel std of the latents (the codec's range)
    mean = np.linspace(-0.3, 0.3, 16)
    chunks = []
    for _ in range(frames):
        shape = (16, 1, 32, 32)
        if dist == "laplace":
            x = rng.laplace(0, std[:, None, None, None] / math.sqrt(2), shape)
        elif dist == "gauss":
            x = rng.normal(0, std[:, None, None, None], shape)
        else:  # student-t with 3 dof, scaled to the same std: heavy tails, many escapes
            x = rng.standard_t(3, shape) * std[:, None, None, None] / math.sqrt(3)
        chunks.append(np.round((x + mean[:, None, None, None]) / step).astype(np.int64))
    src = quantized_entropy(dist, std, step) if dist in ("laplace", "gauss") else float("nan")
    return chunks, src


def measure_chunks(chunks: list[np.ndarray]) -> dict:
    rc, zc = RangeCoder(), ZstdCoder(level=19)
    tot = dict(n=0, range=0, zstd=0, words=0, model=0.0, empir=0.0, side=0, esc=0, t_enc=0.0, t_dec=0.0)
    for c in chunks:
        t = time.perf_counter()
        m = rc.measure(c)
        tot["t_enc"] += time.perf_counter() - t
        payload = rc.encode(c)
        t = time.perf_counter()
        back = rc.decode(payload, c.shape)
        tot["t_dec"] += time.perf_counter() - t
        assert np.array_equal(back, c), "range round trip failed"
        z = zc.measure(c)
        tot["n"] += m.num_symbols
        tot["range"] += m.total_bytes
        tot["words"] += m.coded_bytes
        tot["model"] += m.model_bits
        tot["empir"] += m.empirical_bits
        tot["side"] += m.side_bytes
        tot["esc"] += m.escape_bytes
        tot["zstd"] += z.total_bytes
    return tot


def row(name: str, tot: dict, src: float = float("nan")) -> str:
    n = tot["n"]
    bps = lambda b: 8.0 * b / n  # noqa: E731
    gap = 8.0 * tot["words"] / tot["model"] - 1 if tot["model"] else float("nan")
    return (f"{name:<26} {src:7.4f} {tot['empir'] / n:7.4f} {tot['model'] / n:7.4f} {bps(tot['range']):7.4f} "
            f"{100 * gap:6.3f}% {bps(tot['zstd']):7.4f} {100 * (1 - tot['range'] / tot['zstd']):6.2f}%  "
            f"side {bps(tot['side']):.4f} esc {bps(tot['esc']):.4f}  "
            f"enc {1e3 * tot['t_enc'] / max(1, n / 16384):.1f} ms/chunk "
            f"dec {1e3 * tot['t_dec'] / max(1, n / 16384):.1f}")


HEAD = (f"{'data':<26} {'source':>7} {'empir':>7} {'model':>7} {'range':>7} {'gap':>7} {'zstd':>7} {'saving':>7}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=61, help="latent frames (chunks) per synthetic case")
    ap.add_argument("--steps", type=float, nargs="*", default=[0.1, 0.25, 0.5, 1.0])
    ap.add_argument("--dists", nargs="*", default=["laplace", "gauss", "student-t"])
    ap.add_argument("--cdt", nargs="*", default=[], help=".cdt files whose chunk symbols to measure")
    ap.add_argument("--npy", nargs="*", default=[], help="float latents (C,T,h,w) .npy, quantized with --step")
    ap.add_argument("--step", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prior", default=str(WEIGHTS_DIR / "cdt-tiny.prior.safetensors"),
                    help="prior weights for --cdt files coded with the prior (format 2)")
    args = ap.parse_args()

    print(HEAD)
    for path in args.cdt:
        with CdtReader(path, prior=args.prior) as r:
            chunks = [c.astype(np.int64) for c in r.chunks()]
        print(row(Path(path).name, measure_chunks(chunks)))
    for path in args.npy:
        lat = np.load(path)
        chunks = [np.round(lat[:, t:t + 1] / args.step).astype(np.int64) for t in range(lat.shape[1])]
        print(row(f"{Path(path).name} step {args.step}", measure_chunks(chunks)))
    if not args.cdt and not args.npy:
        print("(no real latents given: pass --cdt files written by `cdtcodec encode`, or --npy)")
    rng = np.random.default_rng(args.seed)
    for dist in args.dists:
        for step in args.steps:
            chunks, src = synthetic(dist, step, args.frames, rng)
            print(row(f"{dist} step {step}", measure_chunks(chunks), src))


if __name__ == "__main__":
    main()
