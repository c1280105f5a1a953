"""CDT's streaming decoder (and encoder) in production CPU runtimes and in int8, against the PyTorch path.

Exports the first-chunk and steady-state graphs (cdtcodec.export: the streaming caches are explicit inputs and
outputs), streams each clip through ONNX Runtime and OpenVINO in fp32, quantizes the decoder's step graph to
int8 (static QDQ, per-channel weights, activation ranges calibrated on training-split clips) and runs that too.
Every decoder decodes the same latents (the PyTorch encoder's posterior mean of real validation clips), so the
quality columns isolate the decoder: PSNR (RGB, peak 1) and LPIPS-alex against the original frames, and the
largest difference from the PyTorch decode.

    python benchmarks/runtimes.py [--threads 2] [--clips 3] [--size 256] [--frames 17] [--runtimes ort openvino]

Needs `pip install onnx onnxruntime openvino` (runtimes not installed are skipped) and the data set
(scripts/build_dataset.py). Frames/s count every frame of every clip, first chunk included, after a warm-up.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cdtcodec.allocator import keep_freed_memory
from cdtcodec.export import (
    Infer,
    RuntimeDecoder,
    RuntimeEncoder,
    export_decoder,
    export_encoder,
    openvino_infer,
    ort_infer,
    quantize_int8,
)
from cdtcodec.lpips import LPIPS
from cdtcodec.metrics import psnr
from cdtcodec.stream import StreamDecoder, StreamEncoder
from cdtcodec.train.data import validation_clips
from cdtcodec.weights import load_model

RUNTIMES = {"ort": ("onnxruntime", ort_infer, "ONNX Runtime"), "openvino": ("openvino", openvino_infer, "OpenVINO")}


@dataclass
class Row:
    runtime: str
    precision: str
    decode_s: float = 0.0
    encode_s: float | None = None
    max_diff: float = 0.0  # decoded video vs the PyTorch decode
    encode_diff: float | None = None  # moments vs the PyTorch encoder
    psnr: list[float] = field(default_factory=list)
    lpips: list[float] = field(default_factory=list)


def _timed(fn, repeats: int = 1):
    """(result, fastest wall time of `repeats` runs)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def encode_torch(model, video: torch.Tensor) -> torch.Tensor:
    enc = StreamEncoder(model)
    return torch.cat(enc.push(video) + enc.finish(), dim=2)


def decode_torch(model, latent: torch.Tensor) -> torch.Tensor:
    return torch.cat(StreamDecoder(model, seed=0).push(latent), dim=2)


def decode_runtime(first: Infer, step: Infer, latent: torch.Tensor, record: list | None = None) -> torch.Tensor:
    return torch.cat(RuntimeDecoder(first, step, seed=0, record=record).push(latent), dim=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="cdt-tiny")
    ap.add_argument("--data", default="data")
    ap.add_argument("--clips", type=int, default=3, help="validation clips to measure on")
    ap.add_argument("--calibration-clips", type=int, default=2, help="training-split clips for the int8 ranges")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every runtime (default: all)")
    ap.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=list(RUNTIMES))
    ap.add_argument("--repeats", type=int, default=1, help="time each clip this many times, keep the fastest")
    ap.add_argument("--no-encoder", action="store_true", help="skip the encoder graphs")
    ap.add_argument("--work", help="keep the ONNX files here (default: a temporary folder)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the command line runs
    runtimes = [r for r in args.runtimes if importlib.util.find_spec(RUNTIMES[r][0])]
    for r in sorted(set(args.runtimes) - set(runtimes)):
        print(f"skipping {RUNTIMES[r][2]}: {RUNTIMES[r][0]} is not installed")
    if not runtimes:
        raise SystemExit("no runtime to measure")

    model, name, digest = load_model(args.weights)
    lpips = LPIPS.from_file()
    clips = [c.unsqueeze(0) for c in validation_clips(args.data, frames=args.frames, size=args.size,
                                                      count=args.clips)]
    calibration = [c.unsqueeze(0) for c in validation_clips(args.data, frames=args.frames, size=args.size,
                                                            count=args.calibration_clips, split="train")]
    frames = sum(c.shape[2] for c in clips)
    print(f"{name} ({digest[:12]}), {len(clips)} validation clips of {args.frames}x{args.size}x{args.size}, "
          f"{args.threads} threads, torch {torch.__version__}")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        (dec, enc), export_s = _timed(lambda: (
            export_decoder(model, args.size, args.size, work),
            None if args.no_encoder else export_encoder(model, args.size, args.size, work)))
        print(f"exported in {export_s:.1f} s: {len(dec.layout.tensors)} decoder cache tensors"
              + ("" if enc is None else f", {len(enc.layout.tensors)} encoder cache tensors"))

        # Reference: the PyTorch path, which also supplies the latents every decoder decodes.
        torch_row = Row("PyTorch", "fp32", encode_s=0.0)
        decode_torch(model, encode_torch(model, clips[0][:, :, :5])[:, : model.cfg.latent_dim])  # warm-up
        latents, torch_videos, torch_moments = [], [], []
        for clip in clips:
            moments, seconds = _timed(lambda: encode_torch(model, clip), args.repeats)
            torch_row.encode_s += seconds
            latent = moments[:, : model.cfg.latent_dim]
            video, seconds = _timed(lambda: decode_torch(model, latent), args.repeats)
            torch_row.decode_s += seconds
            latents.append(latent)
            torch_videos.append(video)
            torch_moments.append(moments)
        rows = [torch_row]

        # int8 step graph, calibrated on the feeds a real stream gives it (recorded through the fp32 graph).
        fp32_infer = RUNTIMES[runtimes[0]][1]
        feeds: list = []
        for clip in calibration:
            latent = encode_torch(model, clip)[:, : model.cfg.latent_dim]
            decode_runtime(fp32_infer(dec.first, args.threads), fp32_infer(dec.step, args.threads), latent, feeds)
        int8_step, quant_s = _timed(lambda: quantize_int8(dec.step, work / "decoder_step_int8.onnx", feeds))
        print(f"int8 decoder step quantized in {quant_s:.1f} s from {len(feeds)} chunks of "
              f"{len(calibration)} training clips")

        for runtime in runtimes:
            _, make, label = RUNTIMES[runtime]
            for precision, step_path in (("fp32", dec.step), ("int8", int8_step)):
                row = Row(label, precision)
                first, step = make(dec.first, args.threads), make(step_path, args.threads)
                decode_runtime(first, step, latents[0][:, :, :2])  # warm-up: both graphs once
                videos = []
                for latent, expected in zip(latents, torch_videos):
                    video, seconds = _timed(lambda: decode_runtime(first, step, latent), args.repeats)
                    row.decode_s += seconds
                    row.max_diff = max(row.max_diff, (video - expected).abs().max().item())
                    videos.append(video)
                if enc is not None and precision == "fp32":
                    encoder = RuntimeEncoder(make(enc.first, args.threads), make(enc.step, args.threads))
                    encoder.encode(clips[0][:, :, :5])  # warm-up
                    row.encode_s, row.encode_diff = 0.0, 0.0
                    for clip, expected in zip(clips, torch_moments):
                        moments, seconds = _timed(lambda: encoder.encode(clip), args.repeats)
                        row.encode_s += seconds
                        row.encode_diff = max(row.encode_diff, (moments - expected).abs().max().item())
                rows.append(row)
                row.psnr, row.lpips = quality(lpips, clips, videos)
        torch_row.psnr, torch_row.lpips = quality(lpips, clips, torch_videos)
        if args.no_encoder:
            torch_row.encode_s = None

    print_table(rows, frames, args)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "weights": args.weights, "sha256": digest, "clips": len(clips), "frames": args.frames,
            "size": args.size, "threads": args.threads, "export_s": export_s, "quantize_s": quant_s,
            "rows": [vars(r) for r in rows]}, indent=2))


def quality(lpips: LPIPS, clips: list[torch.Tensor], videos: list[torch.Tensor]) -> tuple[list[float], list[float]]:
    """Per-clip PSNR and mean per-frame LPIPS of decoded videos (clamped, as the codec writes them)."""
    psnrs, dists = [], []
    with torch.no_grad():
        for clip, video in zip(clips, videos):
            video = video.clamp(-1, 1)
            psnrs.append(psnr(video, clip))
            dists.append(lpips.video(video, clip, chunk=8).item())
    return psnrs, dists


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


FP32_TOLERANCE = 1e-4  # an fp32 runtime differs from PyTorch by rounding only (~1e-6 seen)


def print_table(rows: list[Row], frames: int, args) -> None:
    base = rows[0]
    print(f"\n{frames} frames ({args.clips} clips of {args.frames}) at {args.size}x{args.size}, {args.threads} "
          "threads. Speed-up: against the PyTorch row. PSNR/LPIPS: decoded frames against the originals, all rows "
          "decoding the same PyTorch-encoded latents. int8: the decoder's step graph (every chunk after the "
          "first); the first chunk runs in fp32.\n")
    print("| runtime | precision | decode frames/s | speed-up | max abs diff vs torch | PSNR dB | LPIPS "
          "| encode frames/s | speed-up | encoder max abs diff |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        enc = (f"{frames / r.encode_s:.2f} | {base.encode_s / r.encode_s:.2f}x | "
               + ("–" if r.encode_diff is None else f"{r.encode_diff:.1e}")) if r.encode_s else "– | – | –"
        diff = "–" if r is base else f"{r.max_diff:.1e}"
        print(f"| {r.runtime} | {r.precision} | {frames / r.decode_s:.2f} | {base.decode_s / r.decode_s:.2f}x | "
              f"{diff} | {_mean(r.psnr):.2f} | {_mean(r.lpips):.4f} | {enc} |")
    for r in rows[1:]:
        worst = max(r.max_diff, r.encode_diff or 0.0)
        if r.precision == "fp32" and worst > FP32_TOLERANCE:
            print(f"WARNING: {r.runtime} fp32 differs from PyTorch by {worst:.1e} (> {FP32_TOLERANCE:.0e})")


if __name__ == "__main__":
    main()
