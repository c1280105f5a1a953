"""Bits per latent symbol on the validation clips: the version-1 `range` coder vs the conditional prior.

Same symbols for every coder (the same quantized latents, so the same distortion), each latent frame coded as
one chunk, as `cdtcodec encode` writes them. Sizes are real payload bytes (the chunk record framing is the same
for every coder and left out). Prints, per quality level, bits per symbol of

    range      the version-1 per-channel model (its parameters included)
    and each --prior given, in the order given, e.g. the parts of the shipped prior one by one:
    temporal   conditioned on the previous decoded latent frame only (one pass, one channel group)
    +spatial   + the checkerboard (anchors: temporal; non-anchors: + the decoded anchors)
    +channels  + 4 channel groups, each conditioned on the groups before it (the shipped prior)

then each part's share of the saving (what each prior saves over the one before it, over the last one's
saving against range), and the prior's time per latent frame against the CDT encoder's and decoder's
(--neural): its share of the whole encode and of the whole decode.

    PYTHONPATH=. nice -n 19 python benchmarks/prior_bits.py --cache CACHE.npz --neural \\
        --prior temporal=T.safetensors --prior +spatial=S.safetensors \\
        --prior +channels=weights/cdt-tiny.prior.safetensors
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitstream.entropy import RangeCoder  # noqa: E402
from bitstream.prior import PriorCoder, load_prior  # noqa: E402
from cdtcodec.rate.quantize import QUALITY_STEPS  # noqa: E402


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


def neural_seconds(latents: np.ndarray, threads: int) -> tuple[float, float]:
    """Seconds per latent frame of the CDT encoder and decoder (cdt-tiny, streaming, one latent frame per pass),
    at the latents' size; the first latent frame (the cheaper intra frame) is a warm-up and not counted."""
    import torch

    from cdtcodec.stream import StreamDecoder, StreamEncoder
    from cdtcodec.weights import load_model

    torch.set_num_threads(threads)
    net, _, _ = load_model("cdt-tiny")
    z = torch.from_numpy(latents[None])
    frames = 1 + 4 * (z.shape[2] - 1)
    video = torch.rand(1, 3, frames, 8 * z.shape[3], 8 * z.shape[4]) * 2 - 1
    with torch.no_grad():
        enc = StreamEncoder(net)
        enc.push(video[:, :, :1])
        t0 = time.perf_counter()
        enc.push(video[:, :, 1:])
        enc.finish()
        encode = (time.perf_counter() - t0) / (z.shape[2] - 1)
        dec = StreamDecoder(net, seed=0)
        dec.push(z[:, :, :1])
        t0 = time.perf_counter()
        dec.push(z[:, :, 1:])
        decode = (time.perf_counter() - t0) / (z.shape[2] - 1)
    return encode, decode


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", required=True, help="latent cache written by cdtcodec.rate.prior_train.cache_latents")
    p.add_argument("--prior", action="append", default=[], metavar="LABEL=PATH",
                   help="a prior weights file to measure (repeatable); each part's share compares it with the one "
                        "before it")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--frames", type=int, default=None, help="latent frames per clip (default: all)")
    p.add_argument("--qualities", default=None, help="comma-separated levels (default: all)")
    p.add_argument("--no-check", action="store_true", help="skip decoding (round trip and decode time)")
    p.add_argument("--neural", action="store_true", help="also time the CDT encoder and decoder")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    with np.load(Path(args.cache).expanduser()) as f:
        val = f["val"][: args.clips]
    if args.frames:
        val = val[:, :, : args.frames]
    levels = [int(q) for q in args.qualities.split(",")] if args.qualities else list(QUALITY_STEPS)
    priors = []
    for item in args.prior:
        label, _, path = item.partition("=")
        w = load_prior(path)
        priors.append((label, PriorCoder(w), w.sha256[:12]))
    n_clip = val[0].size
    size = f"{8 * val.shape[3]}x{8 * val.shape[4]}"
    print(f"{val.shape[0]} validation clips, {val.shape[2]} latent frames of {val.shape[1]}x{val.shape[3]}x"
          f"{val.shape[4]} ({size}, {1 + 4 * (val.shape[2] - 1)} video frames) each; bits per latent symbol, "
          "real payload bytes")
    for label, coder, sha in priors:
        print(f"  {label}: {coder.arch} sha256 {sha}...")
    head = f"{'q':>2} {'step':>7} {'range':>7}" + "".join(f" {label:>10} {'saves':>6}" for label, _, _ in priors)
    if priors and priors[-1][1].arch.checkerboard:
        head += f"  {'anchor':>7} {'non-anc':>7}"
    print(head)
    bits = {label: [] for label, _, _ in priors}
    base_bits = []
    timing = {label: [0.0, 0.0, 0] for label, _, _ in priors}
    for q in levels:
        step = QUALITY_STEPS[q]
        symbols = [np.round(z / step).astype(np.int64) for z in val]
        base = sum(range_bits(s) for s in symbols) / (n_clip * len(symbols))
        base_bits.append(base)
        row = f"{q:>2} {step:>7.4f} {base:>7.4f}"
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
            bits[label].append(bps)
            row += f" {bps:>10.4f} {100 * (1 - bps / base):>5.1f}%"
            half = n_clip * len(symbols) / 2
            split = f"  {anc / half:>7.4f} {non / half:>7.4f}" if coder.arch.checkerboard else ""
        print(row + split, flush=True)
    if not priors:
        return
    base_bits = np.array(base_bits)
    print("mean saving over the levels: " + ", ".join(
        f"{label} {100 * np.mean(1 - np.array(v) / base_bits):.1f}%" for label, v in bits.items()))
    total_saving = np.sum(base_bits - np.array(bits[priors[-1][0]]))
    if len(priors) > 1 and total_saving > 0:
        before = base_bits
        shares = []
        for label, _, _ in priors:
            now = np.array(bits[label])
            shares.append(f"{label} {100 * np.sum(before - now) / total_saving:.1f}%")
            before = now
        print(f"share of the saving ({priors[-1][0]} against range, bits summed over the levels): " + ", ".join(shares))
    for label, (e, d, n) in timing.items():
        print(f"{label}: encode {1000 * e / n:.1f} ms" + (f", decode {1000 * d / n:.1f} ms" if d else "")
              + f" per latent frame ({val.shape[1]}x{val.shape[3]}x{val.shape[4]})")
    if args.neural:
        enc_s, dec_s = neural_seconds(val[0], args.threads)
        print(f"CDT encoder {1000 * enc_s:.0f} ms, decoder {1000 * dec_s:.0f} ms per latent frame (cdt-tiny, "
              f"{args.threads} thread(s), {size})")
        for label, (e, d, n) in timing.items():
            line = f"  {label}: prior = {100 * (e / n) / (enc_s + e / n):.1f}% of the whole encode time"
            if d:
                line += f", {100 * (d / n) / (dec_s + d / n):.1f}% of the whole decode time"
            print(line)


if __name__ == "__main__":
    main()
