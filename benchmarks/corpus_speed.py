"""Corpus throughput: frames/s for a corpus of short clips encoded one command per file, with --jobs 1,
with --jobs 2 and with --ray local, and the model-load time a corpus run saves against one command per file.

Each mode is one or more runs of the real command line (`python -m cdtcodec encode ... --json`), timed from
outside, start-up included: what a user waits for. The clips are windows of the bundled sample (33 frames of
256x256), resized to --size, so the modes encode the same frames. Run it on a machine at rest (the numbers
of a machine that something else keeps busy are contended and say so only by their spread).

    python benchmarks/corpus_speed.py [--clips 20] [--frames 17] [--size 128] [--threads 2]
                                      [--modes files,jobs1,jobs2,ray] [--json results.json]
    python benchmarks/corpus_speed.py --tiny   # a toy model and 3 tiny clips: checks the benchmark runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "cdtcodec" / "assets" / "sample.mp4"
MODES = ("files", "jobs1", "jobs2", "ray")


def make_clips(folder: Path, count: int, frames: int, size: int) -> int:
    """`count` clips of `frames` frames at size x size, each a different window of the sample; their frames."""
    import av
    import numpy as np
    from PIL import Image

    from cdtcodec.media import open_video

    with open_video(SAMPLE) as reader:
        source = np.stack(list(reader.frames()))
    folder.mkdir(parents=True)
    for i in range(count):
        start = (i * 3) % max(1, len(source) - frames + 1)
        window = source[start : start + frames]
        with av.open(str(folder / f"clip_{i:03d}.mp4"), "w") as c:
            v = c.add_stream("libx264", rate=Fraction(25), options={"preset": "ultrafast", "crf": "12"})
            v.width = v.height = size
            v.pix_fmt = "yuv420p"
            for rgb in window:
                picture = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC))
                for p in v.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                    c.mux(p)
            for p in v.encode():
                c.mux(p)
    return count * min(frames, len(source))


def toy_model(path: Path) -> Path:
    import torch

    from cdtcodec.config import CDTConfig
    from cdtcodec.model import CDT
    from cdtcodec.weights import save_model

    torch.manual_seed(0)
    save_model(CDT(CDTConfig(context_dim=8, unet_dim=4)), path, name="toy")
    return path


def cdtcodec(*args) -> tuple[float, dict]:
    """Run the command line; (wall seconds, its --json report)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "cdtcodec", "encode", *map(str, args), "--json"],
                         capture_output=True, env=env)
    wall = time.perf_counter() - started
    if run.returncode != 0:
        lines = run.stderr.decode(errors="replace").strip().splitlines()
        raise SystemExit(f"cdtcodec encode {' '.join(map(str, args))} failed: {lines[-1] if lines else run.returncode}")
    return wall, json.loads(run.stdout)


def measure(mode: str, clips: Path, out: Path, model: str, threads: int) -> dict:
    common = ["--model", model, "-y"]
    if mode == "files":
        wall, frames, encode_s = 0.0, 0, 0.0
        out.mkdir()
        for clip in sorted(clips.iterdir()):
            seconds, report = cdtcodec(clip, "-o", out / f"{clip.stem}.cdt", "--threads", threads, *common)
            wall += seconds
            frames += report["frames"]
            encode_s += report["seconds"]
        return {"mode": mode, "wall_s": wall, "frames": frames, "model_loads": len(list(clips.iterdir())),
                "encode_s_reported": encode_s}
    extra = {"jobs1": ["--jobs", "1", "--threads", threads],
             "jobs2": ["--jobs", "2", "--threads", threads],
             "ray": ["--ray", "local", "--jobs", "2", "--threads", max(1, threads // 2)]}[mode]
    wall, report = cdtcodec(clips, "-o", f"{out}/", *extra, *common)
    return {"mode": mode, "wall_s": wall, "frames": report["frames"], "model_loads": report["model_loads"],
            "model_load_s": report["model_load_seconds"], "encode_s_reported": report["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--model", default="cdt-tiny")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads in all (split between jobs)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--tiny", action="store_true", help="a toy model and 3 clips of 5 frames at 32x32")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        raise SystemExit(f"--modes: unknown {', '.join(sorted(unknown))} (use {', '.join(MODES)})")
    work = Path(tempfile.mkdtemp(prefix="corpus-speed-"))
    try:
        if args.tiny:
            args.clips, args.frames, args.size = 3, 5, 32
            args.model = str(toy_model(work / "toy.safetensors"))
        clips = work / "clips"
        make_clips(clips, args.clips, args.frames, args.size)
        rows = []
        for mode in modes:
            row = measure(mode, clips, work / f"out_{mode}", args.model, args.threads)
            row["frames_per_s"] = row["frames"] / row["wall_s"]
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.clips} clips of {args.frames} frames at {args.size}x{args.size}, model {Path(args.model).name}, "
          f"{args.threads} threads in all; wall time of the whole command, start-up included")
    print("| mode | wall s | frames | frames/s | model loads | model load s (each) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        load = f"{r['model_load_s'] / max(1, r['model_loads']):.2f}" if "model_load_s" in r else "-"
        print(f"| {r['mode']} | {r['wall_s']:.1f} | {r['frames']} | {r['frames_per_s']:.2f} | {r['model_loads']} "
              f"| {load} |")
    by = {r["mode"]: r for r in rows}
    if "files" in by and "jobs1" in by:
        saved = by["files"]["wall_s"] - by["jobs1"]["wall_s"]
        load = by["jobs1"]["model_load_s"]
        print(f"one command per file against --jobs 1: {saved:.1f} s saved ({saved / args.clips:.2f} s per clip: "
              f"{args.clips - 1} model loads of {load:.2f} s, the rest interpreter and torch start-up)")
    if args.json:
        args.json.write_text(json.dumps({"clips": args.clips, "frames": args.frames, "size": args.size,
                                         "model": args.model if not args.tiny else "toy", "threads": args.threads,
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
