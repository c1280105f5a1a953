"""Bits per latent symbol on the validation clips: the version-1 `range` coder vs the conditional prior.

Same symbols for every coder (the same quantized latents, so the same distortion), each latent frame
coded as one chunk, as `cdtcodec encode` writes them. Sizes are real payload bytes (the chunk record
framing is the same for every coder and left out). Prints, per quality level:

    range      version-1 per-channel model (its parameters included)
    temporal   prior conditioned on the previous decoded latent frame only (one pass)
    +spatial   prior with the checkerboard (anchors: temporal; non-anchors: + decoded anchors)

and the prior's encode / decode time per latent frame against the neural decoder's.

    PYTHONPATH=. nice -n 19 python benchmarks/prior_bits.py --cache ~/prior-cache/cdt-tiny-33x256.npz \\
        --prior temporal=cdtcodec/assets/weights/cdt-tiny.prior-temporal.safetensors --prior +spatial=cdtcodec/assets/weights/cdt-tiny.prior.safetensors
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bitstream.entropy import RangeCoder
from bitstream.prior import PriorCoder, load_prior
from cdtcodec.quantize import QUALITY_STEPS


def range_bits(symbols: np.ndarray) -> int:
    """Real payload bits of one clip (C, T, h, w), one chunk per latent frame."""
    coder = RangeCoder()
    return sum(8 * len(coder.encode(symbols[:, t:t + 1])) for t in range(symbols.shape[1]))


def prior_bits(coder: PriorCoder, symbols: np.ndarray, step: float, check: bool):
    """(payload bits, anchor model bits, non-anchor model bits, encode s, decode s) for one clip."""
    total = anchors = non_anchors = 0.0
    enc_s = dec_s = 0.0
    context: list[np.ndarray] = []
    for t in range(symbols.shape[1]):
        chunk = symbols[:, t:t + 1]
        t0 = time.perf_counter()
        payload, stats = coder._encode(chunk, step, context)
        enc_s += time.perf_counter() - t0
        total += 8 * len(payload)
        anchors += stats.anchors.bits
        non_anchors += stats.non_anchors.bits
        if check:
            t0 = time.perf_counter()
            out = coder.decode(payload, chunk.shape, step, context)
            dec_s += time.perf_counter() - t0
            if not np.array_equal(out, chunk):
                raise SystemExit(f"prior round trip failed at step {step}, frame {t}")
        context = (context + [chunk[:, 0]])[-coder.arch.prev_frames:]
    return total, anchors, non_anchors, enc_s, dec_s


def neural_decode_seconds(latents: np.ndarray, threads: int) -> float:
    """Seconds per latent frame of the CDT decoder (StreamDecoder, one latent frame per pass)."""
    import torch

    from cdtcodec.stream import StreamDecoder
    from cdtcodec.weights import load_model

    torch.set_num_threads(threads)
    net, _, _ = load_model("cdt-tiny")
    dec = StreamDecoder(net, seed=0)
    z = torch.from_numpy(latents[None])
    dec.push(z[:, :, :1])  # warm-up frame (also the cheaper intra frame)
    t0 = time.perf_counter()
    dec.push(z[:, :, 1:])
    return (time.perf_counter() - t0) / (z.shape[2] - 1)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", required=True, help="latent cache written by cdtcodec.prior_train.cache_latents")
    p.add_argument("--prior", action="append", default=[], metavar="LABEL=PATH",
                   help="a prior weights file to measure (repeatable); the last one is the headline")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--frames", type=int, default=None, help="latent frames per clip (default: all)")
    p.add_argument("--no-check", action="store_true", help="skip decoding (round trip and decode time)")
    p.add_argument("--neural", action="store_true", help="also time the neural decoder")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    with np.load(Path(args.cache).expanduser()) as f:
        val = f["val"][: args.clips]
    if args.frames:
        val = val[:, :, : args.frames]
    priors = []
    for item in args.prior:
        label, _, path = item.partition("=")
        w = load_prior(path)
        priors.append((label, PriorCoder(w), w.sha256[:12]))
    n_clip = val[0].size
    print(f"{val.shape[0]} validation clips, {val.shape[2]} latent frames of {val.shape[1]}x{val.shape[3]}x{val.shape[4]}"
          f" (256x256, {1 + 4 * (val.shape[2] - 1)} video frames) each; bits per latent symbol, real payload bytes")
    for label, coder, sha in priors:
        print(f"  {label}: {coder.arch} sha256 {sha}...")
    head = f"{'q':>2} {'step':>6} {'range':>7}" + "".join(f" {label:>9} {'saves':>6}" for label, _, _ in priors)
    if priors:
        head += f"  {'anchor':>7} {'non-anc':>7}"
    print(head)
    savings = {label: [] for label, _, _ in priors}
    timing = {label: [0.0, 0.0, 0] for label, _, _ in priors}
    for q, step in QUALITY_STEPS.items():
        symbols = [np.round(z / step).astype(np.int64) for z in val]
        base = sum(range_bits(s) for s in symbols) / (n_clip * len(symbols))
        row = f"{q:>2} {step:>6.4f} {base:>7.4f}"
        split = ""
        for label, coder, _ in priors:
            tot = anc = non = 0.0
            for s in symbols:
                b, a, n, e, d = prior_bits(coder, s, step, not args.no_check)
                tot, anc, non = tot + b, anc + a, non + n
                timing[label][0] += e
                timing[label][1] += d
                timing[label][2] += s.shape[1]
            bps = tot / (n_clip * len(symbols))
            savings[label].append(1 - bps / base)
            row += f" {bps:>9.4f} {100 * (1 - bps / base):>5.1f}%"
            half = n_clip * len(symbols) / 2
            split = f"  {anc / half:>7.4f} {non / half:>7.4f}" if coder.arch.checkerboard else ""
        print(row + split, flush=True)
    if priors:
        print("mean saving over the 8 levels: " + ", ".join(f"{label} {100 * np.mean(v):.1f}%" for label, v in savings.items()))
        for label, (e, d, n) in timing.items():
            print(f"{label}: encode {1000 * e / n:.1f} ms, decode {1000 * d / n:.1f} ms per latent frame (16x32x32)")
    if args.neural:
        s = neural_decode_seconds(val[0], args.threads)
        print(f"neural decoder (cdt-tiny, {args.threads} thread(s)): {1000 * s:.0f} ms per latent frame (4 video frames)")
        for label, (e, d, n) in timing.items():
            if d:
                print(f"  {label}: prior decode = {100 * (d / n) / (s + d / n):.1f}% of the whole decode time")


if __name__ == "__main__":
    main()
