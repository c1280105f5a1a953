"""Encode / decode speed of each preset against what this machine can attain, measured in the same run.

For each preset, size and length: FLOPs per frame (torch's flop counter, 2 per multiply-add), frames/s of the
streaming encoder (chunks 1, 4, 4, ...) and decoder (one latent frame per pass unless --decode-chunk), the
achieved GFLOP/s, and the fraction of the attainable fp32 throughput (the best of a large sgemm and a large
conv3d timed here, now). Random weights: speed does not depend on their values.

    python benchmarks/speed.py [--presets cdt-tiny cdt-small] [--sizes 256 480x640] [--frames 17 65]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from cdtcodec.config import PRESETS
from cdtcodec.model import CDT
from cdtcodec.stream import StreamDecoder, StreamEncoder, latent_frame_count


def _best_of(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def attainable_gflops() -> dict[str, float]:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    gemm = 2 * 2048**3 / _best_of(lambda: a @ b) / 1e9
    conv = torch.nn.Conv3d(128, 128, 3, padding=1).eval()
    x = torch.randn(1, 128, 4, 64, 64)
    with torch.no_grad():
        conv_flops = 2 * 128 * 128 * 27 * 4 * 64 * 64
        conv_rate = conv_flops / _best_of(lambda: conv(x)) / 1e9
    return {"sgemm_2048": gemm, "conv3d_128": conv_rate}


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


def _onednn_conv_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    return conv_flop_count(x_shape, w_shape, out_shape)


def flops_of(fn) -> int:
    # The CPU path calls oneDNN's convolution directly, which torch's counter does not know by default.
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.mkldnn_convolution: _onednn_conv_flops})
    with counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["cdt-tiny", "cdt-small"])
    ap.add_argument("--sizes", nargs="+", default=["256", "480x640"])
    ap.add_argument("--frames", nargs="+", type=int, default=[17, 65])
    ap.add_argument("--decode-chunk", type=int, default=1, help="latent frames per decoder pass")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    peak = attainable_gflops()
    best = max(peak.values())
    print(f"threads {torch.get_num_threads()}; attainable fp32: sgemm 2048 {peak['sgemm_2048']:.0f} GFLOP/s, "
          f"conv3d 128->128 {peak['conv3d_128']:.0f} GFLOP/s")
    header = (f"{'preset':10} {'size':>8} {'frames':>6} {'enc GF/frame':>12} {'dec GF/frame':>12} {'enc fps':>8} "
              f"{'dec fps':>8} {'enc GF/s':>8} {'dec GF/s':>8} {'enc %':>6} {'dec %':>6}")
    print(header)
    torch.manual_seed(0)
    for preset in args.presets:
        model = CDT(PRESETS[preset]).eval()
        for size in args.sizes:
            h, w = _size(size)
            for frames in args.frames:
                video = torch.rand(1, 3, frames, h, w) * 2 - 1
                latent = torch.randn(1, 16, latent_frame_count(frames), h // 8, w // 8)
                with torch.no_grad():
                    enc_flops = flops_of(lambda: run_encode(model, video))
                    dec_flops = flops_of(lambda: run_decode(model, latent, args.decode_chunk))
                    start = time.perf_counter()
                    run_encode(model, video)
                    enc_s = time.perf_counter() - start
                    start = time.perf_counter()
                    run_decode(model, latent, args.decode_chunk)
                    dec_s = time.perf_counter() - start
                enc_rate, dec_rate = enc_flops / enc_s / 1e9, dec_flops / dec_s / 1e9
                print(f"{preset:10} {f'{h}x{w}':>8} {frames:6d} {enc_flops / frames / 1e9:12.2f} "
                      f"{dec_flops / frames / 1e9:12.2f} {frames / enc_s:8.2f} {frames / dec_s:8.2f} "
                      f"{enc_rate:8.1f} {dec_rate:8.1f} {100 * enc_rate / best:5.0f}% {100 * dec_rate / best:5.0f}%",
                      flush=True)


if __name__ == "__main__":
    main()
