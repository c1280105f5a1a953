"""Reconstruction quality of a weights file on the validation split, for the model card.

Encodes each validation clip to the posterior mean (no quantization, or with --quality Q rounded at that
quality's step, as the codec quantizes) and decodes it in one DDIM step with the streaming decoder, as the codec
does; reports PSNR (RGB, [0,1] peak 1), SSIM and LPIPS-alex per clip, per kind of footage (the clips are shared
evenly between the kinds of the validation split) and overall. With --quality and the weights' prior beside them
(<stem>.prior.safetensors), also the rate the prior estimates for those symbols (bits per pixel; the coder's
files add their header and the range coder's few bytes).

    python scripts/evaluate_weights.py weights/cdt-tiny.safetensors [--data data] [--size 256] [--frames 17]
        [--count 16] [--quality Q] [--precision fp32] [--decode-precisions fp32 bf16]

--decode-precisions fp32 bf16 decodes the same latents both ways: what bf16 costs in quality.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from bitstream.prior import load_prior
from cdtcodec.lpips import LPIPS
from cdtcodec.metrics import psnr, ssim
from cdtcodec.precision import dtype_of
from cdtcodec.rate.coder_choice import prior_path
from cdtcodec.rate.prior_twin import from_integer, rate_bits
from cdtcodec.rate.quantize import QUALITY_STEPS, roundtrip, scale_for
from cdtcodec.stream import StreamDecoder, StreamEncoder
from cdtcodec.train.data import validation_set
from cdtcodec.weights import load_model, weights_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights")
    ap.add_argument("--data", default="data")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--count", type=int, default=16)
    ap.add_argument("--quality", type=int, choices=sorted(QUALITY_STEPS),
                    help="quantize the latents at this quality's step first (default: unquantized)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="the encoder's arithmetic")
    ap.add_argument("--decode-precisions", nargs="+", choices=["fp32", "bf16"],
                    help="decode the same latents at each of these (default: --precision); with two, a table of "
                         "the second's difference from the first, per kind")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    model, name, digest = load_model(args.weights, precision=args.precision)
    scale = scale_for(weights_path(args.weights), digest, model.cfg.latent_dim)[0]
    decoders = {p: copy.deepcopy(model).set_precision(dtype_of(p))
                for p in dict.fromkeys(args.decode_precisions or [args.precision])}
    lpips = LPIPS.from_file()
    has_prior = args.quality is not None and prior_path(args.weights).is_file()
    prior = from_integer(load_prior(prior_path(args.weights))).eval() if has_prior else None
    clips = validation_set(args.data, frames=args.frames, size=args.size, count=args.count)
    rows = {p: [] for p in decoders}
    start = time.time()
    for i, clip in enumerate(clips):
        video = clip.video.unsqueeze(0)
        enc = StreamEncoder(model)
        moments = torch.cat(enc.push(video) + enc.finish(), dim=2)
        latent = moments[:, : model.cfg.latent_dim]
        bits = None
        if args.quality is not None:
            step = scale.steps(args.quality)  # the weights' quality scale: one step, or one per channel
            if prior is not None:
                with torch.no_grad():
                    per_sample = step[0] if len(step) == 1 else torch.tensor([step])  # (1, C)
                    bits = rate_bits(prior, latent, per_sample, mode="ste").item()
            latent = roundtrip(latent[0], step).unsqueeze(0)
        for p, decoder in decoders.items():
            out = torch.cat(StreamDecoder(decoder, seed=0).push(latent), dim=2).clamp(-1, 1)
            def frames(v):
                return v[0].transpose(0, 1)  # (T, 3, H, W)
            with torch.no_grad():
                row = {"clip": i, "kind": clip.kind, "file": Path(clip.path).name, "start": clip.start,
                       "psnr": psnr(out, video),
                       "ssim": ssim(frames(out).double() / 2 + 0.5, frames(video).double() / 2 + 0.5).mean().item(),
                       "lpips": lpips(frames(out), frames(video)).mean().item()}
            if bits is not None:
                row["bpp"] = bits / video[0, 0].numel()
            rows[p].append(row)
            rate = f"  {row['bpp']:.4f} bpp" if bits is not None else ""
            print(f"clip {i} ({clip.kind}, {row['file']} @{clip.start}), {p} decode: PSNR {row['psnr']:.2f} dB  "
                  f"SSIM {row['ssim']:.4f}  LPIPS {row['lpips']:.4f}{rate}", flush=True)
    keys = ("psnr", "ssim", "lpips") + (("bpp",) if prior is not None else ())
    def average(rs):
        return {k: sum(r[k] for r in rs) / len(rs) for k in keys}
    at = "unquantized" if args.quality is None else f"at quality {args.quality}"
    results = {}
    for p, rs in rows.items():
        mean = average(rs)
        per_kind = {kind: average([r for r in rs if r["kind"] == kind]) for kind in sorted({r["kind"] for r in rs})}
        results[p] = {"clips": rs, "per_kind": per_kind, "mean": mean}
        print(f"| kind ({p} decode) | clips | PSNR dB | SSIM | LPIPS |\n| --- | ---: | ---: | ---: | ---: |")
        for kind, m in [*per_kind.items(), ("all", mean)]:
            n = len(rs) if kind == "all" else sum(r["kind"] == kind for r in rs)
            print(f"| {kind} | {n} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['lpips']:.4f} |")
        print(f"{name} ({digest[:12]}) on {len(rs)} validation clips of {args.frames}x{args.size}x{args.size}, {at}, "
              f"{args.precision} encode, {p} decode: PSNR {mean['psnr']:.2f} dB, SSIM {mean['ssim']:.4f}, LPIPS "
              f"{mean['lpips']:.4f}" + (f", {mean['bpp']:.4f} bpp (the prior's estimate)" if prior is not None else ""))
    if len(results) == 2:
        (a, ra), (b, rb) = results.items()
        print(f"| kind | PSNR {a} | PSNR {b} | {b} - {a} dB | LPIPS {a} | LPIPS {b} | {b} - {a} |\n"
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for kind in [*ra["per_kind"], "all"]:
            x = ra["mean"] if kind == "all" else ra["per_kind"][kind]
            y = rb["mean"] if kind == "all" else rb["per_kind"][kind]
            print(f"| {kind} | {x['psnr']:.3f} | {y['psnr']:.3f} | {y['psnr'] - x['psnr']:+.3f} | {x['lpips']:.4f} | "
                  f"{y['lpips']:.4f} | {y['lpips'] - x['lpips']:+.4f} |")
    print(f"({time.time() - start:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"weights": args.weights, "sha256": digest, "size": args.size, "frames": args.frames,
                       "quality": args.quality, "encode_precision": args.precision, "decodes": results}, f, indent=2)


if __name__ == "__main__":
    main()
