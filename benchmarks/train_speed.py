"""Throughput of one training step, by phase, against what this machine attains in the same run.

A step of `cdtcodec train` is: draw a batch (video decode, crop, resize), the objective's forward (encoder,
context, denoiser, LPIPS on the predicted frames), backward, gradient clipping + AdamW + the EMA update.
This times each phase (best of --repeats after a warm-up), counts the FLOPs of forward and backward with
torch's counter (2 per multiply-add), and reports forward + backward GFLOP/s as a share of the attainable
fp32 rate (the better of a 2048 sgemm and a channels-last 128->128 conv3d, timed here, now).

    python benchmarks/train_speed.py [--batch 2] [--frames 9] [--crop 96] [--data data] [--profile]

--profile adds the operators that take the most time in forward + backward (torch.profiler, self CPU time).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from cdtcodec.allocator import keep_freed_memory
from cdtcodec.config import get_config
from cdtcodec.lpips import LPIPS
from cdtcodec.model import CDT
from cdtcodec.train.losses import LossWeights, Objective
from speed import attainable_gflops  # benchmarks/speed.py, beside this file


def _best(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, oneDNN primitive caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cdt-tiny")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--lpips-weight", type=float, default=LossWeights.lpips)
    ap.add_argument("--data", default="data", help="for the data-loading phase (skipped when absent)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as `cdtcodec train` runs

    peak = attainable_gflops()
    torch.manual_seed(0)
    model = CDT(get_config(args.preset)).train()
    lpips = LPIPS.from_file() if args.lpips_weight > 0 else None
    objective = Objective(model, LossWeights(lpips=args.lpips_weight), lpips)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    ema = [p.detach().clone() for p in model.parameters()]
    video = torch.rand(args.batch, 3, args.frames, args.crop, args.crop) * 2 - 1
    generator = torch.Generator().manual_seed(0)

    def forward():
        return objective(video, generator)["loss"]

    def forward_backward():
        optimizer.zero_grad(set_to_none=True)
        forward().backward()

    def update():
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1e-3)

    # Counted on a meta-device copy: no arithmetic, and the plain route, whose ops the counter knows (it does
    # not count torch.mkldnn_convolution's forward, only its backward).
    meta = copy.deepcopy(objective).to("meta")
    with FlopCounterMode(display=False) as counter:
        loss = meta(video.to("meta"), torch.Generator().manual_seed(0))["loss"]
    fwd_flops = counter.get_total_flops()
    with counter:
        loss.backward()
    total = fwd_flops + counter.get_total_flops()
    del meta, loss

    with torch.no_grad():
        t_fwd_nograd = _best(forward, args.repeats)
    t_fb = _best(forward_backward, args.repeats)
    t_update = _best(update, args.repeats)
    t_data = None
    if (Path(args.data) / "train").is_dir():
        import numpy as np

        from cdtcodec.train.data import ClipDataset

        clips = ClipDataset(args.data, frames=args.frames, size=args.crop, seed=0, min_scale=0.5)
        rng = np.random.default_rng(0)
        t_data = _best(lambda: [clips.sample(rng) for _ in range(args.batch)], args.repeats)

    best = max(peak.values())
    rate = total / t_fb / 1e9
    print(f"{args.preset}, batch {args.batch} x {args.frames} x {args.crop} x {args.crop}, "
          f"{torch.get_num_threads()} threads, LPIPS weight {args.lpips_weight}")
    print(f"attainable: sgemm {peak['matmul']:.0f}, conv3d {peak['conv3d_128']:.0f} GFLOP/s")
    print("| phase | seconds | GFLOP | GFLOP/s | share of attainable |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| forward (no grad) | {t_fwd_nograd:.3f} | {fwd_flops / 1e9:.1f} | {fwd_flops / t_fwd_nograd / 1e9:.0f} "
          f"| {fwd_flops / t_fwd_nograd / 1e9 / best:.0%} |")
    print(f"| forward + backward | {t_fb:.3f} | {total / 1e9:.1f} | {rate:.0f} | **{rate / best:.0%}** |")
    print(f"| clip + AdamW + EMA | {t_update:.3f} | - | - | - |")
    if t_data is not None:
        print(f"| data: {args.batch} clips (one worker; overlaps the step) | {t_data:.3f} | - | - | - |")
    step = t_fb + t_update
    print(f"step (forward + backward + update): {step:.3f} s, {1 / step:.2f} steps/s")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            forward_backward()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
