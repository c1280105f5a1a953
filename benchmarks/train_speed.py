"""Throughput of one training step, by phase, against the conv throughput this machine attains in the same run.

A step of `cdtcodec train` is: draw a batch (video decode, crop, resize; in a DataLoader worker, beside the
step), the objective's forward (encoder, context, denoiser, LPIPS on the predicted frames), backward, and
gradient clipping + AdamW + the EMA update. This times each phase of real steps (the best of --repeats after a
warm-up step), LPIPS's forward + backward on its own, and the attainable rate: a channels-last 3x3x3 conv3d,
128 -> 128 channels (the ceiling benchmarks/speed.py measures for inference), and the model's own heaviest
convolution shape through the model's route, forward alone. Ceiling and step are timed in alternation, round
after round, so both see the same contention; the best of each is kept. Each of --precisions (default fp32 and
bf16, the objective under bfloat16 autocast as `cdtcodec train --precision bf16` runs it) is timed in turn in the
same rounds against its own ceiling (the conv3d in that dtype), side by side with bf16's speed-up.

FLOPs are counted on a meta-device copy of the objective with torch's counter (2 per multiply-add): every
convolution, matrix product and attention of forward and backward, LPIPS included (a convolution's backward is
2x its forward: the data and the weight gradients). Elementwise work (norms, activations, the optimizer) counts
nothing, so the achieved rate says how close the step comes to spending its time in the arithmetic.

    python benchmarks/train_speed.py [--batch 2] [--frames 9] [--crop 96] [--data DIR] [--threads 1] [--cpu-time]
                                     [--by-conv] [--precisions fp32 bf16]

--data: a data set as `cdtcodec train` reads it; without one, a small synthetic set of H.264 clips is written to a
temporary folder for the data-loading phase. --by-conv adds each conv shape of the step timed alone by the model's
route: forward, data gradient, weight gradient (where the time of the convolutions goes). --profile adds the
operators that take the most time in forward + backward (torch.profiler, self CPU time). --cpu-time times
everything in CPU seconds of this process instead of wall seconds: on a machine that other work keeps busy, with
--threads 1, that is close to what the step costs alone, where wall time mostly measures the other work (with more
threads it also counts threads spinning while they wait for each other).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from speed import attainable_gflops  # benchmarks/speed.py, beside this file
from torch.utils.flop_counter import FlopCounterMode

from cdtcodec.allocator import keep_freed_memory
from cdtcodec.config import get_config
from cdtcodec.lpips import LPIPS
from cdtcodec.model import CDT
from cdtcodec.model.layers import CausalConv3d, _OneDNNConv3d, conv3d
from cdtcodec.precision import describe_cpu, dtype_of
from cdtcodec.train.data import ClipDataset
from cdtcodec.train.losses import LossWeights, Objective


def _timed(fn, clock) -> float:
    start = clock()
    fn()
    return clock() - start


def _synthetic_data(root: Path, size: int) -> Path:
    """Two 48-frame H.264 clips at 320 x 240 (x264's default rate control): textures that move, so decoding
    costs about what camera footage of that size costs."""
    import av

    (root / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    h, w = max(240, size), max(320, size)
    for clip in range(2):
        texture = rng.integers(0, 256, (h + 64, w + 64, 3), dtype=np.uint8)
        with av.open(str(root / "train" / f"synthetic_{clip}.mp4"), mode="w") as out:
            stream = out.add_stream("libx264", rate=24)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.codec_context.time_base = Fraction(1, 24)
            for i in range(48):
                image = np.ascontiguousarray(texture[i : i + h, i : i + w])
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = i
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
    return root


def _conv_shapes(objective: Objective, video: torch.Tensor, generator: torch.Generator):
    """{(padded input shape, weight shape, stride): (forward FLOPs, calls, input needs a gradient)} of the model's
    convolutions with a kernel larger than 1x1x1 (those are matrix products), in one forward, most FLOPs first."""
    shapes: dict = {}

    def hook(module, inputs, output):
        cout, cin, kt, kh, kw = module.weight.shape
        x = inputs[0]
        padded = (x.shape[0], cin, x.shape[2] + module.time_context, x.shape[3] + 2 * module.space_pad[0],
                  x.shape[4] + 2 * module.space_pad[1])
        key = (padded, tuple(module.weight.shape), tuple(module.stride))
        flops, calls, needs_grad = shapes.get(key, (0, 0, False))
        shapes[key] = (flops + 2 * output.numel() // output.shape[1] * cout * cin * kt * kh * kw, calls + 1,
                       needs_grad or x.requires_grad)

    hooks = [m.register_forward_hook(hook) for m in objective.model.modules()
             if isinstance(m, CausalConv3d) and m.kernel_size != (1, 1, 1)]
    objective(video, generator)  # on the meta device: shapes only
    for h in hooks:
        h.remove()
    return dict(sorted(shapes.items(), key=lambda item: -item[1][0]))


def _conv_table(shapes: dict, clock, rows: int = 12) -> None:
    """Each conv shape of the step timed alone by the model's route: forward, the data gradient and the weight
    (+ bias) gradient, each as _OneDNNConv3d.backward computes it (best of 2 after a warm-up); the `rows` with
    the most FLOPs shown, the rest summed."""
    unit = "CPU s" if clock is time.process_time else "s"
    print("| conv (in -> out, kernel, padded input) | calls | forward GFLOP/s | data grad GFLOP/s "
          f"| weight grad GFLOP/s | {unit} in the step |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    total = rest = 0.0
    for row, ((padded, weight_shape, stride), (flops, calls, needs_grad)) in enumerate(shapes.items()):
        x = torch.randn(padded).contiguous(memory_format=torch.channels_last_3d)
        w = torch.randn(weight_shape).contiguous(memory_format=torch.channels_last_3d)
        b = torch.randn(weight_shape[0])
        g = torch.randn_like(conv3d(x, w, b, stride)).contiguous(memory_format=torch.channels_last_3d)
        per = flops / calls

        def best(fn):
            fn()
            return min(_timed(fn, clock) for _ in range(2))

        def forward():
            with torch.no_grad():
                conv3d(x, w, b, stride)

        def grad(of_x: bool):
            inputs = (x.requires_grad_(of_x), w.requires_grad_(not of_x), b.requires_grad_(not of_x))
            return lambda: _OneDNNConv3d.apply(*inputs, stride).backward(g)

        t_fwd = best(forward)
        t_data = best(grad(True)) - t_fwd if needs_grad else 0.0
        t_weight = best(grad(False)) - t_fwd
        spent = calls * (t_fwd + t_data + t_weight)
        total += spent
        if row >= rows:
            rest += spent
            continue
        data = f"{per / t_data / 1e9:.0f}" if needs_grad else "not needed"
        print(f"| {weight_shape[1]} -> {weight_shape[0]}, {'x'.join(map(str, weight_shape[2:]))}, "
              f"{'x'.join(map(str, padded))} | {calls} | {per / t_fwd / 1e9:.0f} | {data} | "
              f"{per / t_weight / 1e9:.0f} | {spent:.3f} |")
    if len(shapes) > rows:
        print(f"| {len(shapes) - rows} other shapes | | | | | {rest:.3f} |")
    print(f"these convolutions in all: {total:.3f} {unit}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cdt-tiny")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--lpips-weight", type=float, default=LossWeights.lpips)
    ap.add_argument("--data", default=None, help="data set for the data-loading phase (default: a synthetic one)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of ceiling + step, after a warm-up")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--by-conv", action="store_true", help="each conv shape alone: forward, data and weight gradients")
    ap.add_argument("--cpu-time", action="store_true", help="CPU seconds of this process instead of wall seconds")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                    help="each timed in turn in the same rounds; bf16: the objective under bfloat16 autocast, as "
                         "cdtcodec train --precision bf16 runs it")
    args = ap.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as `cdtcodec train` runs

    torch.manual_seed(0)
    model = CDT(get_config(args.preset)).train()
    lpips = LPIPS.from_file() if args.lpips_weight > 0 else None
    objective = Objective(model, LossWeights(lpips=args.lpips_weight), lpips)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, fused=True)  # as cdtcodec train
    ema = [p.detach().clone() for p in model.parameters()]
    generator = torch.Generator().manual_seed(0)

    temp = None
    if args.data is None:
        temp = tempfile.TemporaryDirectory()
        data = _synthetic_data(Path(temp.name), args.crop)
    else:
        data = Path(args.data)
        if not (data / "train").is_dir():
            ap.error(f"--data: {data / 'train'} not found (python scripts/build_dataset.py builds it)")
    clips = ClipDataset(data, frames=args.frames, size=args.crop, seed=0, min_scale=0.5)
    rng = np.random.default_rng(0)

    def draw():
        return torch.stack([clips.sample(rng) for _ in range(args.batch)])

    def update():
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1e-3)

    video = draw()
    # Counted on a meta-device copy: no arithmetic, and the plain route, whose ops the counter knows (it does
    # not count torch.mkldnn_convolution's forward, only its backward).
    meta = copy.deepcopy(objective).to("meta")
    with FlopCounterMode(display=False) as counter:
        loss = meta(video.to("meta"), torch.Generator().manual_seed(0))["loss"]
    fwd_flops = counter.get_total_flops()
    lpips_flops = sum(counter.get_flop_counts().get("Objective.lpips", {}).values())
    with counter:
        loss.backward()
    bwd_flops = counter.get_total_flops()
    lpips_flops += sum(counter.get_flop_counts().get("Objective.lpips", {}).values())
    del loss
    shapes = _conv_shapes(meta, video.to("meta"), torch.Generator())
    del meta
    (padded, weight_shape, stride), (heaviest, _, _) = next(iter(shapes.items()))
    heaviest_share = heaviest / sum(flops for flops, _, _ in shapes.values())

    # The attainable rates: the 128-channel conv3d, and the model's heaviest conv shape by the model's route.
    x_model = torch.randn(padded).contiguous(memory_format=torch.channels_last_3d)
    w_model = torch.randn(weight_shape).contiguous(memory_format=torch.channels_last_3d)
    b_model = torch.randn(weight_shape[0])
    with torch.no_grad():
        out_numel = conv3d(x_model, w_model, b_model, stride).numel()
    model_conv_flops = 2 * out_numel * int(np.prod(weight_shape[1:]))

    def model_conv():
        with torch.no_grad():
            conv3d(x_model, w_model, b_model, stride)

    # LPIPS as the objective calls it: the predicted frames (a stand-in in the channels-last layout the denoiser
    # returns, needing a gradient) against the source frames.
    predicted = video.contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    def frames(v):
        return v.transpose(1, 2).flatten(0, 1)  # as losses.Objective

    def lpips_step():
        lpips(frames(predicted), frames(video)).mean().backward()

    precisions = list(dict.fromkeys(args.precisions))
    phases = ("data", "forward", "backward", "update", "lpips")
    rates = ("ceiling", "model conv", "sgemm")
    times = {p: {k: [] for k in phases + rates} for p in precisions}
    for round_ in range(args.repeats + 1):  # round 0 warms up: allocator, oneDNN primitive caches
        for p in precisions:  # in turn, so that every precision sees the same contention
            bf16 = p == "bf16"
            def autocast():
                return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
            peak = attainable_gflops(clock=clock, repeats=1, dtype=dtype_of(p))
            with autocast():
                t_model_conv = min(_timed(model_conv, clock) for _ in range(3))
            t_data = _timed(lambda: draw(), clock)
            optimizer.zero_grad(set_to_none=True)
            start = clock()
            with autocast():
                loss = objective(video, generator)["loss"]
            t_forward = clock() - start
            t_backward = _timed(loss.backward, clock)
            del loss
            t_update = _timed(update, clock)
            with autocast():
                t_lpips = _timed(lpips_step, clock) if lpips is not None else 0.0
            if round_:
                for key, value in (("data", t_data), ("forward", t_forward), ("backward", t_backward),
                                   ("update", t_update), ("lpips", t_lpips), ("ceiling", peak["conv3d_128"]),
                                   ("model conv", model_conv_flops / t_model_conv / 1e9), ("sgemm", peak["matmul"])):
                    times[p][key].append(value)
    best = {p: {k: (max(v) if k in rates else min(v)) for k, v in times[p].items()} for p in precisions}
    ceiling = {p: max(best[p]["ceiling"], best[p]["model conv"]) for p in precisions}

    unit = "CPU s" if args.cpu_time else "s"
    step = {p: sum(best[p][k] for k in ("data", "forward", "backward", "update")) for p in precisions}
    print(f"{args.preset}, batch {args.batch} x {args.frames} x {args.crop} x {args.crop}, "
          f"{torch.get_num_threads()} thread(s), LPIPS weight {args.lpips_weight}, best of {args.repeats} rounds, "
          + ("CPU seconds of this process" if args.cpu_time else "wall seconds")
          + (f", data {args.data}" if args.data else ", synthetic data (2 clips of 320 x 240 H.264)"))
    print(f"CPU: {describe_cpu()}; torch {torch.__version__}; bf16: the objective under bfloat16 autocast "
          "(fp32 master weights and optimizer)")
    for p in precisions:
        print(f"attainable {p}, timed between the steps: conv3d 128 -> 128 at 4 x 64 x 64 {best[p]['ceiling']:.1f} "
              f"GFLOP/s; the model's heaviest conv ({weight_shape[1]} -> {weight_shape[0]}, kernel "
              f"{'x'.join(map(str, weight_shape[2:]))}, input {'x'.join(map(str, padded))}, {heaviest_share:.0%} of "
              f"the FLOPs of its convs with a kernel over 1x1x1) {best[p]['model conv']:.1f} GFLOP/s; sgemm 2048 "
              f"{best[p]['sgemm']:.1f} GFLOP/s")
    print("| phase | GFLOP | " + " | ".join(f"{p} {unit} | {p} GFLOP/s | {p} share of attainable conv "
                                            f"({ceiling[p]:.0f})" for p in precisions)
          + (" | bf16 speed-up |" if len(precisions) == 2 else " |"))
    print("| --- | ---: |" + " ---: | ---: | ---: |" * len(precisions) + (" ---: |" if len(precisions) == 2 else ""))

    def row(name, t: dict, flops=None):
        cells = []
        for p in precisions:
            rate = f"{flops / t[p] / 1e9:.1f} | {flops / t[p] / 1e9 / ceiling[p]:.0%}" if flops else "- | -"
            cells.append(f"{t[p]:.3f} | {rate}")
        gain = f" {t[precisions[0]] / t[precisions[1]]:.2f}x |" if len(precisions) == 2 else ""
        print(f"| {name} | {f'{flops / 1e9:.2f}' if flops else '-'} | " + " | ".join(cells) + " |" + gain)

    def pick(key):
        return {p: best[p][key] for p in precisions}
    row("data: draw the batch (a DataLoader worker, beside the step)", pick("data"))
    row("forward (objective, LPIPS included)", pick("forward"), fwd_flops)
    row("backward", pick("backward"), bwd_flops)
    if lpips is not None:
        row("of which LPIPS, forward + backward", pick("lpips"), lpips_flops)
    row("clip + AdamW + EMA", pick("update"))
    row("**forward + backward**", {p: best[p]["forward"] + best[p]["backward"] for p in precisions},
        fwd_flops + bwd_flops)
    row("step (all phases)", step, fwd_flops + bwd_flops)

    if args.by_conv:
        _conv_table(shapes, clock)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precisions[-1] == "bf16"):
                loss = objective(video, generator)["loss"]
            loss.backward()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    if temp is not None:
        temp.cleanup()


if __name__ == "__main__":
    main()
