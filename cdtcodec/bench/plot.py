"""Rate-distortion plots, per clip and averaged over clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bitstream.atomic import AtomicOutput
from cdtcodec.bench.config import CDT_CURVES
from cdtcodec.bench.records import BenchResults


def average_curves(results: BenchResults) -> dict[str, list[dict]]:
    """Per curve and setting, the mean over clips (only settings that succeeded on every clip)."""
    clips = [c.name for c in results.clips]
    groups: dict[tuple[str, str], list] = {}
    for r in results.runs:
        if r.ok:
            groups.setdefault((r.curve, json.dumps(r.setting)), []).append(r)
    out: dict[str, list[dict]] = {}
    for (curve, setting), rs in groups.items():
        if len({r.clip for r in rs}) != len(clips):
            continue

        def mean(get):
            values = [get(r) for r in rs]
            return None if any(v is None for v in values) else float(np.mean(values))

        out.setdefault(curve, []).append({
            "setting": json.loads(setting), "bpp": mean(lambda r: r.bpp), "kbps": mean(lambda r: r.kbps),
            **{k: mean(lambda r, k=k: getattr(r.quality, k)) for k in ("psnr_rgb", "psnr_y", "ssim", "lpips")},
            "encode_fps": sum(r.frames for r in rs) / sum(r.encode.seconds for r in rs),
            "decode_fps": sum(r.frames for r in rs) / sum(r.decode.seconds for r in rs),
            "encode_peak_growth_mb": max(r.encode.memory.peak_growth_mb for r in rs),
            "decode_peak_growth_mb": max(r.decode.memory.peak_growth_mb for r in rs),
            "encode_peak_rss_mb": max(r.encode.memory.peak_rss_mb for r in rs),
            "decode_peak_rss_mb": max(r.decode.memory.peak_rss_mb for r in rs)})
    for pts in out.values():
        pts.sort(key=lambda p: p["bpp"])
    return out


def plot(results: BenchResults, key: str, ylabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = [c.name for c in results.clips]
    panels = clips + (["average"] if len(clips) > 1 else [])
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.2 * cols, 9.0), 3.4 * rows + 0.8), squeeze=False)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    curves = list(results.curves)
    families = list(dict.fromkeys(c.split("-", 1)[0] for c in curves))
    colours = {c: plt.cm.tab10(families.index(c.split("-", 1)[0]) % 10) for c in curves}
    avg = average_curves(results)
    for ax, panel in zip(axes.flat, panels):
        for curve in curves:
            if panel == "average":
                pts = [(p["bpp"], p[key]) for p in avg.get(curve, []) if p[key] is not None]
            else:
                pts = sorted((r.bpp, getattr(r.quality, key)) for r in results.runs if r.clip == panel and
                             r.curve == curve and r.ok and getattr(r.quality, key) is not None)
            if not pts:
                continue
            x, y = zip(*pts)
            style = dict(lw=2.2, marker="o", ms=5) if curve in CDT_CURVES else dict(lw=1.2, marker=".", ms=6)
            ax.plot(x, y, label=results.curves[curve], color=colours[curve],
                    ls="-" if curve == "cdt" or curve.endswith("medium") else "--", **style)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        title = "average over clips" if panel == "average" else panel
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat:
        ax_handles, ax_labels = ax.get_legend_handles_labels()
        if len(ax_labels) > len(labels):
            handles, labels = ax_handles, ax_labels
    size, frames = results.settings["size"], results.clips[0].frames if results.clips else 0
    model = results.model or {}
    fig.suptitle(f"cdtcodec bench: {size}x{size}, {frames} frames, cdt model {model.get('name', '-')}"
                 + (" (UNTRAINED TOY)" if model.get("untrained_toy") else ""), fontsize=11)
    ncol = min(len(labels), 4)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    legend_rows = -(-len(labels) // ncol) if labels else 0
    fig.tight_layout(rect=(0, min(0.4, (0.2 + 0.2 * legend_rows) / fig.get_figheight()), 1, 0.93))
    with AtomicOutput(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def frame_psnr(series: list[tuple[str, bool, list]], frame: int, path: Path) -> None:
    """PSNR-RGB frame by frame, one line per (label, is cdt, values) with None for a frame without error, the
    shown frame marked: where temporal flicker or drift would show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 2.6))
    for label, cdt, values in series:
        y = [np.nan if v is None else v for v in values]
        ax.plot(range(len(y)), y, label=label, lw=2.2 if cdt else 1.2, marker="o" if len(y) <= 40 else None, ms=3)
    ax.axvline(frame, color="0.5", ls=":", lw=1)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("frame")
    ax.set_ylabel("PSNR-RGB (dB)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    with AtomicOutput(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
