"""The quality scale, measured: bpp, PSNR and LPIPS against the quantizer step on the bench clips.

Each clip is prepared as `cdtcodec bench` prepares it (short side resized to --size, centre crop, the first
--frames frames, a lossless source), then for each step a real `cdtcodec.codec.encode` (real file bytes, the
default entropy coder, i.e. the model's prior) and a real `decode` to PNG frames, scored as the bench scores
them (PSNR-RGB over the clip, LPIPS-alex). Prints one row per step with bpp / PSNR / LPIPS for each clip and
their means; the steps are the quality levels' (default) or a log2 grid to fit a new scale from:

    PYTHONPATH=. nice -n 19 python benchmarks/quality_scale.py CLIP... --frames 17 --threads 1
    PYTHONPATH=. nice -n 19 python benchmarks/quality_scale.py CLIP... --grid=-5:3:0.5   # steps 2^-5 .. 2^3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cdtcodec.rate.quantize import QUALITY_STEPS  # noqa: E402


def steps_to_measure(grid: str | None) -> list[tuple[float, int | None]]:
    """(step, quality level or None): the quality scale's steps, or the log2 grid 'FROM:TO:SPACING'."""
    if not grid:
        return [(s, q) for q, s in QUALITY_STEPS.items()]
    lo, hi, spacing = (float(v) for v in grid.split(":"))
    levels = {s: q for q, s in QUALITY_STEPS.items()}
    steps = [round(2.0 ** (lo + k * spacing), 6) for k in range(int(round((hi - lo) / spacing)) + 1)]
    return [(s, levels.get(s)) for s in steps]


def measure_clip(path: str, name: str, steps, args, lpips, work: Path) -> list[dict]:
    from cdtcodec import codec
    from cdtcodec.bench.clips import prepare_clip, read_video
    from cdtcodec.media import read_png_frames
    from cdtcodec.metrics import clip_quality

    clip = prepare_clip(path, name, args.size, args.frames, work)
    source = work / clip.lossless_source
    frames, _ = read_video(source)
    rows = []
    for step, quality in steps:
        cdt = work / f"{name}.cdt"
        enc = codec.encode(source, cdt, model=args.model, step=step, entropy=args.entropy, audio=False)
        out = work / f"{name}_frames"
        codec.decode(cdt, f"{out}/", model=args.model, audio=False)
        q = clip_quality(frames, read_png_frames(out), lpips)
        for f in out.glob("frame_*.png"):
            f.unlink()
        rows.append({"clip": name, "step": step, "quality": quality, "bytes": enc.file_bytes, "bpp": enc.bpp,
                     "entropy": enc.entropy, "psnr_rgb": q.psnr_rgb, "lpips": q.lpips})
        print(f"  {name}: step {step:g} -> {enc.file_bytes} bytes, {enc.bpp:.4f} bpp, {q.psnr_rgb:.2f} dB, "
              f"LPIPS {q.lpips:.4f} ({enc.entropy})", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict], names: list[str]) -> str:
    """One line per step: bpp / PSNR / LPIPS per clip, then the means."""
    by = {(r["clip"], r["step"]): r for r in rows}
    steps = sorted({r["step"] for r in rows}, reverse=True)
    head = f"{'q':>2} {'step':>8} " + " ".join(f"{n[:22]:>22}" for n in names) + f" {'mean':>22}"
    lines = [head, " " * 12 + " ".join(f"{'bpp   dB   LPIPS':>22}" for _ in range(len(names) + 1))]
    for s in steps:
        cells = [by[(n, s)] for n in names if (n, s) in by]
        q = cells[0]["quality"]
        mean = {k: float(np.mean([c[k] for c in cells])) for k in ("bpp", "psnr_rgb", "lpips")}
        lines.append(f"{q if q else '':>2} {s:>8.4f} " + " ".join(
            f"{c['bpp']:>7.4f} {c['psnr_rgb']:>6.2f} {c['lpips']:>7.4f}" for c in cells + [mean]))
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("clips", nargs="*", help="video files (default: the bundled sample)")
    p.add_argument("--model", default="cdt-tiny")
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--grid", help="log2 step grid FROM:TO:SPACING instead of the quality levels")
    p.add_argument("--entropy", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="also write every measurement to this file")
    args = p.parse_args(argv)

    import torch

    from cdtcodec.bench.clips import clip_names
    from cdtcodec.lpips import LPIPS

    torch.set_num_threads(args.threads)
    clips = args.clips or [str(Path(__file__).resolve().parents[1] / "cdtcodec" / "assets" / "sample.mp4")]
    names = clip_names(clips)
    steps = steps_to_measure(args.grid)
    lpips = LPIPS.from_file()
    started = time.time()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="quality-scale-") as tmp:
        for path, name in zip(clips, names):
            rows += measure_clip(path, name, steps, args, lpips, Path(tmp))
    print(f"{len(clips)} clips, {args.frames} frames at {args.size}x{args.size}, {args.model}, entropy {args.entropy}; "
          f"real file bytes and decoded frames ({time.time() - started:.0f} s)")
    print(table(rows, names))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
