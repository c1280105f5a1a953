"""Encode / decode speed of each preset against what this machine can attain, measured in the same run.

For each preset, size and length: FLOPs per frame (torch's flop counter, 2 per multiply-add), frames/s of the
streaming encoder (chunks 1, 4, 4, ...) and decoder (one latent frame per pass unless --decode-chunk), the
achieved GFLOP/s, and the fraction of the attainable throughput (the best of a large sgemm and a large conv3d
timed here, now, in the same precision). Each precision (fp32, bf16: CDT.set_precision) is timed in turn in the
same rounds, and the last columns give bf16's speed-up. Random weights: speed does not depend on their values.

    python benchmarks/speed.py [--presets cdt-tiny cdt-small] [--sizes 256 480x640] [--frames 17 65]
                               [--precisions fp32 bf16] [--threads 2]

A preset name may also be tiny-wN: the cdt-tiny topology at width N (to weigh widths against speed).
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from cdtcodec.allocator import keep_freed_memory
from cdtcodec.config import PRESETS, CDTConfig
from cdtcodec.model import CDT
from cdtcodec.precision import describe_cpu, dtype_of
from cdtcodec.stream import StreamDecoder, StreamEncoder
from cdtcodec.timeline import CODEC_TIMELINE


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _timed(fn, clock=time.perf_counter) -> float:
    _sync()
    start = clock()
    fn()
    _sync()
    return clock() - start


def _best_of(fn, repeats: int = 5, clock=time.perf_counter) -> float:
    fn()  # warm-up
    return min(_timed(fn, clock) for _ in range(repeats))


def attainable_gflops(device: str = "cpu", dtype: torch.dtype = torch.float32,
                      clock=time.perf_counter, repeats: int = 5) -> dict[str, float]:
    """The better-known ceilings, timed now (the best of `repeats` after a warm-up): a square matrix product
    (2048 on the CPU, 8192 on a GPU) and a channels-last 128->128 3x3x3 conv3d, in `dtype`. `clock`:
    time.process_time gives the rates per CPU second."""
    n = 2048 if device == "cpu" else 8192
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    gemm = 2 * n**3 / _best_of(lambda: a @ b, repeats, clock) / 1e9
    # Channels-last, the layout the model runs in (oneDNN is fastest with it).
    conv = torch.nn.Conv3d(128, 128, 3, padding=1).eval().to(device, dtype, memory_format=torch.channels_last_3d)
    frames, side = (4, 64) if device == "cpu" else (16, 128)
    x = torch.randn(1, 128, frames, side, side, device=device, dtype=dtype).contiguous(
        memory_format=torch.channels_last_3d)
    with torch.no_grad():
        conv_flops = 2 * 128 * 128 * 27 * frames * side * side
        conv_rate = conv_flops / _best_of(lambda: conv(x), repeats, clock) / 1e9
    return {"matmul": gemm, "conv3d_128": conv_rate}


def _config(name: str) -> CDTConfig:
    if name.startswith("tiny-w"):
        width = int(name[len("tiny-w"):])
        return replace(PRESETS["cdt-tiny"], context_dim=width, unet_dim=width)
    return PRESETS[name]


def _size(text: str) -> tuple[int, int]:
    if "x" in text:
        h, w = text.split("x")
        return int(h), int(w)
    return int(text), int(text)


def run_encode(model: CDT, video: torch.Tensor) -> None:
    enc = StreamEncoder(model)
    enc.push(video[:, :, :1])
    for i in range(1, video.shape[2], 4):
        enc.push(video[:, :, i : i + 4])
    enc.finish()


def run_decode(model: CDT, latent: torch.Tensor, chunk: int) -> None:
    StreamDecoder(model, seed=0, chunk_latents=chunk).push(latent)


def flops_of(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def stream_flops(run, first: torch.Tensor, first_and_one_chunk: torch.Tensor, chunks: int) -> int:
    """FLOPs of a stream of the first chunk and `chunks` steady chunks, from two short counted runs.

    Counted on the meta device: no arithmetic is done, and the model takes its plain route there, so the
    count is the architecture's own work, not the extra zero channels the CPU route computes for speed.
    Exact: every steady chunk has the same shapes, so it costs the same.
    """
    head = flops_of(lambda: run(first.to("meta")))
    return head + chunks * (flops_of(lambda: run(first_and_one_chunk.to("meta"))) - head)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["cdt-tiny", "cdt-small"])
    ap.add_argument("--sizes", nargs="+", default=["256", "480x640"])
    ap.add_argument("--frames", nargs="+", type=int, default=[17, 65], help="1 + 4k frames")
    ap.add_argument("--decode-chunk", type=int, default=1, help="latent frames per decoder pass")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per row and precision; the best counts")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                    help="the networks' arithmetic, each timed in turn in the same rounds (CDT.set_precision)")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's allocator as it is (the command line keeps freed memory)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = not args.default_malloc and keep_freed_memory()

    print(f"{device.type}: {describe_cpu() if device.type == 'cpu' else torch.cuda.get_device_name(device)}; "
          f"torch {torch.__version__}; threads {torch.get_num_threads()}; freed memory kept: {kept}")
    best = {}
    for p in args.precisions:
        peak = attainable_gflops(device.type, dtype_of(p))
        best[p] = max(peak.values())
        print(f"attainable {p}: sgemm {peak['matmul']:.0f} GFLOP/s, conv3d 128->128 {peak['conv3d_128']:.0f} GFLOP/s")
    cols = "".join(f" {f'enc fps {p}':>13} {f'dec fps {p}':>13} {f'enc % {p}':>10} {f'dec % {p}':>10}"
                   for p in args.precisions)
    ratio = len(args.precisions) == 2
    print(f"{'preset':10} {'size':>8} {'frames':>6} {'enc GF/frame':>12} {'dec GF/frame':>12}{cols}"
          + (f" {'enc x':>6} {'dec x':>6}" if ratio else ""))
    torch.manual_seed(0)
    for preset in args.presets:
        base = CDT(_config(preset)).eval()
        models = {p: copy.deepcopy(base).set_precision(dtype_of(p)).to(device) for p in args.precisions}
        shadow = CDT(_config(preset)).eval().to("meta")  # for counting FLOPs
        for size in args.sizes:
            h, w = _size(size)
            for frames in args.frames:
                if (frames - 1) % 4:
                    raise SystemExit(f"--frames takes 1 + 4k frames, not {frames}")
                video = torch.rand(1, 3, frames, h, w) * 2 - 1
                latent = torch.randn(1, 16, CODEC_TIMELINE.latent_frames(frames), h // 8, w // 8)
                steady = (frames - 1) // 4
                with torch.no_grad():
                    enc_flops = stream_flops(lambda v: run_encode(shadow, v), video[:, :, :1], video[:, :, :5], steady)
                    dec_flops = stream_flops(lambda z: run_decode(shadow, z, 1), latent[:, :, :1], latent[:, :, :2],
                                             steady)
                video, latent = video.to(device), latent.to(device)
                enc_s, dec_s = {p: math.inf for p in models}, {p: math.inf for p in models}
                with torch.no_grad():
                    for model in models.values():  # warm-up: oneDNN builds its kernels on first use
                        run_encode(model, video[:, :, :5])
                        run_decode(model, latent[:, :, :2], args.decode_chunk)
                    for _ in range(args.repeats):  # in turn, so that both precisions see the same contention
                        for p, model in models.items():
                            enc_s[p] = min(enc_s[p], _timed(lambda: run_encode(model, video)))
                            dec_s[p] = min(dec_s[p], _timed(lambda: run_decode(model, latent, args.decode_chunk)))
                row = (f"{preset:10} {f'{h}x{w}':>8} {frames:6d} {enc_flops / frames / 1e9:12.2f} "
                       f"{dec_flops / frames / 1e9:12.2f}")
                for p in models:
                    enc_rate, dec_rate = enc_flops / enc_s[p] / 1e9, dec_flops / dec_s[p] / 1e9
                    row += (f" {frames / enc_s[p]:13.2f} {frames / dec_s[p]:13.2f} {100 * enc_rate / best[p]:9.0f}%"
                            f" {100 * dec_rate / best[p]:9.0f}%")
                if ratio:
                    first, second = models
                    row += f" {enc_s[first] / enc_s[second]:6.2f} {dec_s[first] / dec_s[second]:6.2f}"
                print(row, flush=True)


if __name__ == "__main__":
    main()
