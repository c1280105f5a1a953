"""The outputs: results.json, results.csv, summary.md, report.html, the console lines (the plots: plot.py; the page
of report.html: page.py)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from bitstream.atomic import AtomicOutput
from cdtcodec.bench.config import CDT_CURVES
from cdtcodec.bench.page import Strip, page_html
from cdtcodec.bench.plot import average_curves, plot
from cdtcodec.bench.records import BenchResults, RunRecord

CSV_FIELDS = ["clip", "codec", "curve", "preset", "setting", "value", "status", "bytes", "bpp", "kbps", "psnr_rgb",
              "psnr_y", "psnr_rgb_frame_mean", "ssim", "lpips", "encode_s", "encode_fps", "decode_s", "decode_fps",
              "encode_peak_rss_mb", "encode_peak_growth_mb", "decode_peak_rss_mb", "decode_peak_growth_mb", "error"]


def _csv_row(r: RunRecord) -> dict:
    (setting, value), = r.setting.items()
    row = {"clip": r.clip, "codec": r.codec, "curve": r.curve, "preset": r.preset or "",
           "setting": setting, "value": value, "status": r.status, "error": r.error or ""}
    if r.ok:
        row.update({"bytes": r.bytes, "bpp": r.bpp, "kbps": r.kbps, **r.quality.summary(),
                    "encode_s": r.encode.seconds, "encode_fps": r.encode.fps,
                    "decode_s": r.decode.seconds, "decode_fps": r.decode.fps,
                    "encode_peak_rss_mb": r.encode.memory.peak_rss_mb,
                    "encode_peak_growth_mb": r.encode.memory.peak_growth_mb,
                    "decode_peak_rss_mb": r.decode.memory.peak_rss_mb,
                    "decode_peak_growth_mb": r.decode.memory.peak_growth_mb})
    return row


def _json_safe(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_outputs(results: BenchResults, out: Path, strips: list[Strip] | None = None) -> dict[str, Path]:
    """results.json, results.csv, the plots, summary.md; and report.html with `strips` (their images are in
    out/report/ already)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "csv": out / "results.csv", "psnr_plot": out / "rd_psnr.png",
             "lpips_plot": out / "rd_lpips.png", "summary": out / "summary.md"}
    if strips is not None:
        paths["report"] = out / "report.html"
    _atomic_text(paths["json"], json.dumps(_json_safe(results.as_dict()), indent=1, allow_nan=False) + "\n")
    with AtomicOutput(paths["csv"]) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in results.runs:
            writer.writerow({k: ("" if v is None else v) for k, v in _csv_row(r).items()})
    plot(results, "psnr_rgb", "PSNR-RGB (dB)", paths["psnr_plot"])
    plot(results, "lpips", "LPIPS-Alex (lower is better)", paths["lpips_plot"])
    _atomic_text(paths["summary"], summary_markdown(results))
    if strips is not None:
        _atomic_text(paths["report"], page_html(results, strips, bd_rows(results)))
    return paths


def _atomic_text(path: Path, text: str) -> None:
    with AtomicOutput(path) as tmp:
        tmp.write_text(text)


def _fmt(v, spec: str, none: str = "–") -> str:
    return none if v is None else format(v, spec)


def bd_rows(results: BenchResults) -> list[tuple[str, str, str]]:
    """The averaged BD-rate table, as text cells: reference, PSNR axis, LPIPS axis (summary.md, report.html)."""
    bd, clips = results.bd_rate, results.clips
    if not bd.get("average"):
        return [("–", bd.get("reason", "no reference run"), "")]
    rows = []
    for curve, axes in bd["average"].items():
        cells = [f"{a['value']:+.1f}% ({a['clips']}/{len(clips)} clips)" if a["value"] is not None
                 else f"n/a: {a['reason']}" for a in (axes["psnr"], axes["lpips"])]
        rows.append((results.curves[curve], *cells))
    return rows


def summary_markdown(results: BenchResults) -> str:
    env = results.environment
    s, m, g = results.settings, results.model or {}, env["git"]
    clips = results.clips
    lines = ["# cdtcodec rate-distortion benchmark", ""]
    lines.append(f"{len(clips)} clip(s) ({', '.join(c.name for c in clips)}), {s['size']}x{s['size']}, "
                 f"{clips[0].frames if clips else 0} frames at {clips[0].fps if clips else '-'} fps; "
                 f"cdt model `{m.get('name', '-')}` (sha256 {str(m.get('sha256', ''))[:12]})"
                 + (" — **untrained toy model: smoke test only**" if m.get("untrained_toy") else "") + ".")
    mach, versions = env["machine"], env["versions"]
    lines.append(f"{results.created}, commit {str(g.get('commit'))[:10]}{' (dirty)' if g.get('dirty') else ''}, "
                 f"{mach['cpu']} ({mach['usable_cpus']} CPUs), torch {versions['torch']}, "
                 f"FFmpeg {versions['ffmpeg']}, device {mach['device']}.")
    lines += ["", "## BD-rate of cdt against each reference", "",
              "Negative: cdt needs that many percent fewer bits for the same quality; positive: more. Akima, "
              "over the overlapping quality interval only; mean of the per-clip values (clips counted).", "",
              "| reference | BD-rate (PSNR-RGB) | BD-rate (LPIPS) |", "|---|---:|---:|"]
    bd = results.bd_rate
    lines += [f"| {a} | {b} | {c} |" for a, b, c in bd_rows(results)]
    kinds: dict[str, int] = {}
    for axes in bd.get("average", {}).values():
        for a in axes.values():
            for e in a["excluded"]:
                kind = e["reason"].split(":")[0]
                kinds[kind] = kinds.get(kind, 0) + 1
    if kinds:
        lines += ["", "Per-clip values left out of the means: " + "; ".join(f"{k} ({n})" for k, n in kinds.items())
                  + " (details in results.json, bd_rate.per_clip)."]
    lines += ["", "## Operating points (mean over clips)", "",
              "| codec | setting | bpp | kbps | PSNR-RGB dB | PSNR-Y dB | SSIM | LPIPS | enc fps | dec fps | "
              "enc/dec peak MB |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for curve, pts in average_curves(results).items():
        for p in pts:
            (k, v), = p["setting"].items()
            lines.append(f"| {results.curves[curve]} | {k} {v} | {_fmt(p['bpp'], '.4f')} | {_fmt(p['kbps'], '.1f')} | "
                         f"{_fmt(p['psnr_rgb'], '.2f')} | {_fmt(p['psnr_y'], '.2f')} | {_fmt(p['ssim'], '.4f')} | "
                         f"{_fmt(p['lpips'], '.4f')} | {_fmt(p['encode_fps'], '.1f')} | "
                         f"{_fmt(p['decode_fps'], '.1f')} | "
                         f"{p['encode_peak_growth_mb']:.0f} / {p['decode_peak_growth_mb']:.0f} |")
    lines += ["", "Peak MB: growth of a fresh worker's peak resident set over its size before the call "
              "(the worker already holds Python, NumPy, PyAV"
              + (" and PyTorch" if any(c in CDT_CURVES for c in s["codecs"]) else "") + ").",
              "Full data, per frame, with every encoder setting and the machine: results.json; plots rd_psnr.png, "
              "rd_lpips.png."]
    if results.failed:
        lines += ["", f"**{results.failed} run(s) failed**; see results.json."]
    for n in results.notes:
        lines += ["", f"Note: {n}"]
    return "\n".join(lines) + "\n"


def console_lines(results: BenchResults, out: Path) -> list[str]:
    """What `cdtcodec bench` prints at the end: where the outputs are, and the averaged BD-rates."""
    lines = [f"bench: {len(results.runs)} runs on {len(results.clips)} clip(s) in {results.seconds:.0f} s -> "
             f"{out}/ (results.json, results.csv, rd_psnr.png, rd_lpips.png, summary.md"
             + (", report.html" if (out / "report.html").is_file() else "") + ")"]
    for curve, axes in results.bd_rate.get("average", {}).items():
        cells = [f"{axis} {a['value']:+.1f}% ({a['clips']} clips)" if a["value"] is not None else f"{axis} n/a"
                 for axis, a in axes.items()]
        lines.append(f"  BD-rate of cdt vs {results.curves[curve]}: " + ", ".join(cells))
    if (results.model or {}).get("untrained_toy"):
        lines.append("  cdt ran with an untrained toy model (no shipped weights): a smoke test, not a result")
    return lines
