#!/usr/bin/env python3
"""A GPU burst for cdt-tiny: prepare the inputs here, train on a lent GPU machine for a few minutes.

The GPU machine reaches nothing outside it and has PyTorch but not PyAV, so everything it needs travels
with the working tree (64 MiB in all, the tree's own ~38 MB included):

    python scripts/gpu_burst.py prepare --weights W.safetensors --data data --out gpu_inputs [--mbytes 14]
        (here, on the CPU) picks training segments across kinds of footage up to --mbytes or what the call's
        64 MiB leaves beside the tracked tree, re-encoded to fit (libx264 CRF 17), copies the starting
        weights, and stores a small fixed validation set as uint8.
    python scripts/gpu_burst.py train --inputs gpu_inputs --out OUT --minutes 7
        (there) decodes the segments once (PyAV, or OpenCV where PyAV is missing) into GPU memory, picks the
        largest batch of 17 x 256 x 256 clips that fits, trains under bf16 autocast with the project's
        Trainer (same objective, EMA, clipping) until the time is up, validates, and writes OUT/weights.safetensors
        (fp16 EMA), OUT/log.jsonl and OUT/summary.json.

scripts/gpu_burst.sh runs the speed table and this training step in one command; tests/test_gpu_burst.py
runs both on the CPU with a tiny model and a budget of seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cdtcodec.train.data import draw_window

KINDS_ORDER = ("camera", "photo", "animation", "screen", "credits")  # what users compress first


# ------------------------------------------------------------------------------------------- prepare (CPU)
def _reencode(src: Path, dst: Path, crf: int) -> int:
    import av

    with av.open(str(src)) as cin, av.open(str(dst), mode="w", format="mp4") as out:
        s = cin.streams.video[0]
        fps = Fraction(s.average_rate or 24)
        o = out.add_stream("libx264", rate=fps)
        o.width, o.height, o.pix_fmt = s.codec_context.width, s.codec_context.height, "yuv420p"
        o.options = {"crf": str(crf), "preset": "medium"}
        o.codec_context.time_base = 1 / fps
        n = 0
        for frame in cin.decode(s):
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = n, o.codec_context.time_base
            for p in o.encode(frame):
                out.mux(p)
            n += 1
        for p in o.encode(None):
            out.mux(p)
    return n


CALL_LIMIT = 64 * 2**20  # what one device call carries: the tracked tree, untracked files, carried paths


def _tracked_bytes() -> int:
    import subprocess

    root = Path(__file__).resolve().parents[1]
    names = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout.split(b"\0")
    return sum((root / n.decode()).stat().st_size for n in names if n and (root / n.decode()).is_file())


def _segment_budget(args) -> float:
    """--mbytes, or less where the tree, the weights and the validation set leave less of the call's 64 MiB
    (with 1 MiB to spare)."""
    room = CALL_LIMIT - 2**20 - _tracked_bytes() - Path(args.weights).stat().st_size - 2 * 2**20
    if room <= 0:
        raise SystemExit(f"the tracked tree and the weights already fill the {CALL_LIMIT >> 20} MiB a call carries")
    return min(args.mbytes * 1e6, room)


def prepare(args) -> None:
    from cdtcodec.train.data import list_segments, validation_set

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    (out / "train").mkdir(parents=True)
    segments = [s for s in list_segments(args.data, "train") if min(s.width, s.height) >= args.min_side]
    by_kind = {k: [s for s in segments if s.kind == k] for k in sorted({s.kind for s in segments})}
    def rank(k):
        return KINDS_ORDER.index(k) if k in KINDS_ORDER else len(KINDS_ORDER)
    # Round-robin over kinds until the byte budget is spent; within a kind a low-discrepancy order (golden
    # ratio steps), so a few picks already spread over the whole film rather than its first minutes.
    def spread(v):
        return [v[i] for i in np.argsort((np.arange(len(v)) * 0.6180339887) % 1.0, kind="stable")]
    queues = {k: spread(v) for k, v in by_kind.items()}
    budget, used, picked = _segment_budget(args), 0, []
    while any(queues.values()) and used < budget:
        for kind in sorted(queues, key=rank):
            if not queues[kind] or used >= budget:
                continue
            seg = queues[kind].pop(0)
            dst = out / "train" / Path(seg.path).name
            frames = _reencode(Path(seg.path), dst, args.crf)
            size = dst.stat().st_size
            if used + size > budget:
                dst.unlink()
                continue
            used += size
            picked.append({"file": dst.name, "kind": kind, "frames": frames, "bytes": size})
    val = validation_set(args.data, frames=args.val_frames, size=args.val_size, count=args.val_clips)
    videos = torch.stack([c.video for c in val])
    np.savez_compressed(out / "val.npz", video=((videos + 1) * 127.5).round().clamp(0, 255).byte().numpy(),
                        kinds=np.array([c.kind for c in val]))
    shutil.copy(args.weights, out / "init.safetensors")
    (out / "inputs.json").write_text(json.dumps({"segments": picked, "weights": str(args.weights),
                                                 "crf": args.crf, "val": [c.kind for c in val]}, indent=1))
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {len(picked)} segments ({sum(p['frames'] for p in picked)} frames, {used / 1e6:.1f} MB), "
          f"{len(val)} validation clips, weights; {total / 1e6:.1f} MB in all, "
          f"{(total + _tracked_bytes()) / 2**20:.1f} MiB with the tree (a call carries {CALL_LIMIT >> 20})")


# ------------------------------------------------------------------------------------------- train (GPU)
def decode_all(path: Path) -> np.ndarray:
    """Every frame of a video file as uint8 (T, H, W, 3) RGB: PyAV where it is installed, else OpenCV."""
    try:
        import av
    except ImportError:
        import cv2

        cap = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(bgr[:, :, ::-1])
        cap.release()
        if not frames:
            raise ValueError(f"{path}: OpenCV decoded no frame")
        return np.stack(frames)
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


class DeviceClips:
    """Training clips held on the device as uint8; the windows ClipDataset draws (draw_window: downscale up to
    2x, crop, flip), cut and resized there."""

    def __init__(self, root: Path, device: torch.device):
        self.videos = [torch.from_numpy(decode_all(p)).to(device) for p in sorted(root.glob("*.mp4"))]
        self.device = device

    @property
    def frames(self) -> int:
        return sum(v.shape[0] for v in self.videos)

    def batch(self, rng: np.random.Generator, batch: int, frames: int, size: int) -> torch.Tensor:
        usable = [v for v in self.videos if v.shape[0] >= frames and min(v.shape[1:3]) >= size]
        weights = np.array([v.shape[0] - frames + 1 for v in usable], dtype=np.float64)
        out = []
        for _ in range(batch):
            v = usable[int(rng.choice(len(usable), p=weights / weights.sum()))]
            start, y0, x0, crop, flip = draw_window(rng, *v.shape[:3], frames, size, min_scale=0.5, flip=0.5)
            clip = v[start:start + frames, y0:y0 + crop, x0:x0 + crop].permute(0, 3, 1, 2).float()
            if flip:
                clip = clip.flip(-1)
            if crop != size:
                clip = F.interpolate(clip, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            out.append((clip / 127.5 - 1).clamp(-1, 1).permute(1, 0, 2, 3))
        return torch.stack(out)


def _fits(trainer, video: torch.Tensor) -> bool:
    """One forward + backward at this batch shape without running out of device memory."""
    try:
        with torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=trainer.cfg.precision == "bf16"):
            loss = trainer.objective(video, trainer.generator)["loss"]
        loss.backward()
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        trainer.optimizer.zero_grad(set_to_none=True)
        if video.is_cuda:
            torch.cuda.empty_cache()


def train(args) -> None:
    from cdtcodec.train.loop import TrainConfig, Trainer

    started = time.time()
    deadline = started + args.minutes * 60
    inputs, out = Path(args.inputs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    clips = DeviceClips(inputs / "train", device)
    val = np.load(inputs / "val.npz")
    val_clips = [torch.from_numpy(v).float().div(127.5).sub(1) for v in val["video"]]
    print(f"{device}: {len(clips.videos)} segments, {clips.frames} frames decoded in {time.time() - started:.0f} s",
          flush=True)

    cfg = TrainConfig(model=str(inputs / "init.safetensors"), out=str(out / "run"), steps=10**6, batch=1,
                      frames=args.frames, crop=args.crop, lr=args.lr, warmup=args.warmup, ema=args.ema,
                      precision=args.precision, device=device.type, val_every=10**9, ckpt_every=10**9,
                      log_every=args.log_every)
    trainer = Trainer(cfg, lambda *_: iter(()), [c.to(device) for c in val_clips],
                      val_kinds=[str(k) for k in val["kinds"]])
    before = trainer.validate()
    rng = np.random.default_rng(args.seed)
    batch = 1
    for b in (int(x) for x in args.batches.split(",")):
        if _fits(trainer, clips.batch(rng, b, cfg.frames, cfg.crop)):
            batch = b
            break
    # Time one step, then fit the cosine schedule to the steps the remaining time allows.
    probe = time.time()
    trainer.train_step(clips.batch(rng, batch, cfg.frames, cfg.crop))
    if device.type == "cuda":
        torch.cuda.synchronize()
    per_step = max(time.time() - probe, 1e-3)
    reserve = args.reserve_seconds  # validation and export at the end
    steps = max(2, int((deadline - time.time() - reserve) / per_step))
    trainer.cfg = dataclasses.replace(cfg, batch=batch, steps=trainer.step + steps)
    print(f"batch {batch} x {cfg.frames} x {cfg.crop}^2, {per_step:.2f} s for the first step; planning {steps} steps",
          flush=True)

    def batches(start, rank, world):
        while time.time() < deadline - reserve:
            yield clips.batch(rng, batch, cfg.frames, cfg.crop)

    trainer.batches = batches
    trainer.run()
    after = trainer.validate()
    trainer.export(out / "weights.safetensors", extra={"gpu_burst": json.dumps({"batch": batch,
                                                                                  "precision": cfg.precision})})
    shutil.copy(Path(cfg.out) / "log.jsonl", out / "log.jsonl")
    summary = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "steps": trainer.step,
               "batch": batch, "frames": cfg.frames, "crop": cfg.crop, "precision": cfg.precision, "lr": cfg.lr,
               "seconds": round(time.time() - started, 1), "train_frames": clips.frames,
               "val_before": before, "val_after": after}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (Path(cfg.out) / "checkpoint.pt").unlink(missing_ok=True)  # too large to bring back; the weights are
    print(json.dumps(summary), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--weights", required=True)
    p.add_argument("--data", default="data")
    p.add_argument("--out", default="gpu_inputs")
    p.add_argument("--mbytes", type=float, default=14.0, help="budget for the training segments")
    p.add_argument("--crf", type=int, default=17)
    p.add_argument("--min-side", type=int, default=256)
    p.add_argument("--val-clips", type=int, default=8)
    p.add_argument("--val-frames", type=int, default=9)
    p.add_argument("--val-size", type=int, default=128)
    t = sub.add_parser("train")
    t.add_argument("--inputs", default="gpu_inputs")
    t.add_argument("--out", required=True)
    t.add_argument("--minutes", type=float, default=7.0)
    t.add_argument("--frames", type=int, default=17)
    t.add_argument("--crop", type=int, default=256)
    t.add_argument("--batches", default="32,24,16,12,8,4,2,1", help="tried in this order; the first that fits")
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--warmup", type=int, default=50)
    t.add_argument("--ema", type=float, default=0.998)
    t.add_argument("--precision", default="bf16")
    t.add_argument("--log-every", type=int, default=20)
    t.add_argument("--reserve-seconds", type=float, default=30.0)
    t.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    prepare(args) if args.command == "prepare" else train(args)


if __name__ == "__main__":
    main()
