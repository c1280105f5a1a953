"""Peak memory of streaming encode and decode does not grow with the number of frames.

Each measurement runs in a fresh process (ru_maxrss is a high-water mark) that streams a synthetic video of
N frames through the encoder (chunks of 1, 4, 4, ...) and decodes N frames from random latents (one latent
frame per denoiser pass), keeping only a running checksum of the output, as the codec does.

    python benchmarks/stream_memory.py [--size 128] [--frames 33 129] [--model cdt-tiny]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from cdtcodec.allocator import keep_freed_memory


def measure(model_spec: str, frames: int, size: int, what: str) -> dict:
    import torch

    from cdtcodec.config import PRESETS
    from cdtcodec.model import CDT
    from cdtcodec.stream import StreamDecoder, StreamEncoder
    from cdtcodec.timeline import CODEC_TIMELINE

    torch.manual_seed(0)
    model = CDT(PRESETS[model_spec]).eval()  # weights do not change memory; random ones keep this self-contained
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.time()
    checksum = 0.0
    if what == "encode":
        enc = StreamEncoder(model)
        for i in range(0, frames, 4):  # frames arrive 4 at a time, as from a video reader
            piece = torch.rand(1, 3, min(4, frames - i), size, size) * 2 - 1
            checksum += sum(m.sum().item() for m in enc.push(piece))
        checksum += sum(m.sum().item() for m in enc.finish())
    else:
        dec = StreamDecoder(model, seed=0)
        g = torch.Generator().manual_seed(0)
        for _ in range(CODEC_TIMELINE.latent_frames(frames)):
            z = torch.randn(1, 16, 1, size // 8, size // 8, generator=g)
            checksum += sum(x.sum().item() for x in dec.push(z))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"what": what, "frames": frames, "size": size, "peak_rss_mb": peak / 1024,
            "model_rss_mb": base / 1024, "seconds": time.time() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="cdt-tiny")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, nargs="+", default=[33, 129])
    ap.add_argument("--default-malloc", action="store_true", help="leave glibc's allocator as it is")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if not args.default_malloc:
            keep_freed_memory()  # as the command line runs
        print(json.dumps(measure(args.model, int(args.child[0]), args.size, args.child[1])))
        return
    rows = []
    for what in ("encode", "decode"):
        for frames in args.frames:
            child = [sys.executable, __file__, "--model", args.model, "--size", str(args.size),
                     "--child", str(frames), what] + ["--default-malloc"] * args.default_malloc
            out = subprocess.run(child, check=True, capture_output=True, text=True)
            rows.append(json.loads(out.stdout))
    print(f"{'pass':8} {'frames':>6} {'size':>5} {'peak RSS MB':>12} {'seconds':>8}")
    for r in rows:
        print(f"{r['what']:8} {r['frames']:6d} {r['size']:5d} {r['peak_rss_mb']:12.1f} {r['seconds']:8.1f}")
    for what in ("encode", "decode"):
        peaks = [r["peak_rss_mb"] for r in rows if r["what"] == what]
        print(f"{what}: peak RSS at {args.frames[-1]} frames is {100 * (peaks[-1] / peaks[0] - 1):+.1f}% of "
              f"that at {args.frames[0]} frames")


if __name__ == "__main__":
    main()
