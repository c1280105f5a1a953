"""report.html: a bench run to look at, one page that a browser opens offline (its images in report/ beside it).

Per clip, one frame (`report_frame`, default the middle) from the bench's own decodes, as a strip: the source,
each cdt quality, and for each reference curve the setting whose file is closest in bytes to the chosen cdt
point (the default quality, or the run's quality nearest it). Under it the same region of those frames, 2x and
unfiltered, where the chosen point's error is largest (a reader sees the worst, not the best), and their PSNR
frame by frame, where flicker or drift would show. The runner keeps only that one frame of each decode
(`ClipFrames`), so memory does not grow with the clip's length, and nothing is encoded twice.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from bitstream.atomic import AtomicOutput
from cdtcodec.bench.config import CDT_CURVES
from cdtcodec.bench.plot import frame_psnr
from cdtcodec.bench.records import BenchResults, RunRecord

FOLDER = "report"  # the images, beside report.html
SHOWN = 128  # smaller images are shown enlarged (pixelated), so that a 32x32 quick run can be seen at all


def frame_index(frames: int, requested: int | None) -> int:
    """The frame shown: the requested index (the last frame of a shorter clip), else the middle one."""
    return frames // 2 if requested is None else min(requested, frames - 1)


@dataclass
class ClipFrames:
    """The one frame of a clip that the report shows: the source's and each successful decode's."""

    index: int
    source: np.ndarray  # (H, W, 3) uint8
    decoded: dict[str, np.ndarray] = field(default_factory=dict)  # run.stream (unique per clip) -> (H, W, 3)

    def keep(self, run: RunRecord, frames: np.ndarray) -> None:
        self.decoded[run.stream] = frames[self.index].copy()  # a copy, so that the whole decode can be freed


@dataclass(frozen=True)
class Tile:
    image: str  # relative to report.html
    title: str  # codec and setting
    facts: str  # bytes, bpp, PSNR, LPIPS of the whole clip, as results.json has them
    role: str  # source, cdt, chosen (the cdt point the references are matched to), matched
    run: RunRecord | None = None


@dataclass(frozen=True)
class Strip:
    clip: str
    frame: int
    frames: int
    tiles: list[Tile]
    region: tuple[int, int, int] | None  # x, y, side of the crop in the frame
    crops: list[Tile]
    psnr_plot: str | None
    notes: list[str]


def chosen_point(runs: list[RunRecord]) -> RunRecord | None:
    """The cdt point the references are matched to: the default quality, else the nearest quality that ran (the
    higher on a tie), on the `cdt` curve when it ran."""
    from cdtcodec.rate.quantize import DEFAULT_QUALITY

    cdt = [r for r in runs if r.ok and r.curve == "cdt"] or [r for r in runs if r.ok and r.codec in CDT_CURVES]
    return min(cdt, key=lambda r: (abs(r.setting["quality"] - DEFAULT_QUALITY), -r.setting["quality"]), default=None)


def matched_references(runs: list[RunRecord], point: RunRecord | None) -> list[RunRecord]:
    """Per reference curve, its setting whose file size is closest to the point's (the smaller file on a tie)."""
    best: dict[str, tuple[tuple[int, int], RunRecord]] = {}
    for r in runs:
        if point is not None and r.ok and r.codec not in CDT_CURVES:
            key = (abs(r.bytes - point.bytes), r.bytes)
            if r.curve not in best or key < best[r.curve][0]:
                best[r.curve] = (key, r)
    return [r for _, r in best.values()]


def worst_region(source: np.ndarray, decoded: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left (x, y) of the side x side window with the largest squared error over RGB (box sums of the
    error's integral image)."""
    err = ((source.astype(np.int64) - decoded.astype(np.int64)) ** 2).sum(-1)
    c = np.pad(err.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = c[side:, side:] - c[:-side, side:] - c[side:, :-side] + c[:-side, :-side]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(x), int(y)


def _setting(r: RunRecord) -> str:
    return " ".join(f"{k} {v}" for k, v in r.setting.items())


def _file_tag(r: RunRecord) -> str:
    return r.curve + "." + ".".join(f"{k}{v}" for k, v in r.setting.items())  # x264-medium.crf24


def facts(r: RunRecord) -> str:
    """A tile's numbers, the clip's as results.json holds them (PSNR None: no error at all)."""
    psnr = "inf dB" if r.quality.psnr_rgb is None else f"{r.quality.psnr_rgb:.2f} dB"
    return f"{r.bytes:,} bytes · {r.bpp:.3f} bpp · {psnr} · LPIPS {r.quality.lpips:.3f}"


def _png(out: Path, name: str, image: np.ndarray) -> str:
    from PIL import Image

    path = out / FOLDER / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with AtomicOutput(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(image), "RGB").save(tmp, format="PNG")
    return f"{FOLDER}/{name}"


def make_strip(clip: str, kept: ClipFrames, runs: list[RunRecord], out: Path) -> Strip:
    """Write one clip's images into out/report/ and describe its strip (`runs`: this clip's)."""
    k = kept.index
    stem = f"{clip}.f{k}"
    point = chosen_point([r for r in runs if r.stream in kept.decoded])
    matched = matched_references([r for r in runs if r.stream in kept.decoded], point)
    notes = []
    tiles = [Tile(_png(out, f"{stem}.source.png", kept.source), "source", f"frame {k}", "source")]
    shown: list[RunRecord] = []
    for r in runs:
        if r.codec not in CDT_CURVES or r.stream not in kept.decoded:
            continue
        twin = next((s for s in shown if s.setting == r.setting and
                     np.array_equal(kept.decoded[s.stream], kept.decoded[r.stream])), None)
        if twin is not None:  # cdt-range: the same symbols, so the same frames; shown once
            notes.append(f"{r.label} {_setting(r)}: the same frame as {twin.label} {_setting(twin)}, not repeated")
            continue
        shown.append(r)
    for r in shown + matched:
        role = "chosen" if r is point else ("cdt" if r.codec in CDT_CURVES else "matched")
        name = f"{stem}.{_file_tag(r)}.png"
        tiles.append(Tile(_png(out, name, kept.decoded[r.stream]), f"{r.label}, {_setting(r)}", facts(r), role, r))
    region, crops, plot = None, [], None
    if point is None:
        notes.append("no cdt point decoded: nothing to match the references to")
    else:
        h, w = kept.source.shape[:2]
        side = min(h, w, max(16, min(h, w) // 4))
        x, y = worst_region(kept.source, kept.decoded[point.stream], side)
        region = (x, y, side)
        def zoom(a):
            return np.repeat(np.repeat(a[y:y + side, x:x + side], 2, 0), 2, 1)
        crops.append(Tile(_png(out, f"{stem}.source.crop.png", zoom(kept.source)), "source", f"x {x}..{x + side - 1}, "
                          f"y {y}..{y + side - 1}, 2x", "source"))
        for r in [point] + matched:
            crops.append(Tile(_png(out, f"{stem}.{_file_tag(r)}.crop.png", zoom(kept.decoded[r.stream])),
                              f"{r.label}, {_setting(r)}", facts(r), "chosen" if r is point else "matched", r))
        plot = f"{FOLDER}/{clip}.psnr.png"
        frame_psnr([(f"{r.label}, {_setting(r)}", r.codec in CDT_CURVES, r.quality.per_frame["psnr_rgb"])
                    for r in [point] + matched], k, out / plot)
    frames = max((r.frames or 0 for r in runs), default=0)
    return Strip(clip, k, frames, tiles, region, crops, plot, notes)


# ---------------------------------------------------------------------------------------------------------
# the page

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; } h3 { font-size: 1em; }
.strip { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
figure { margin: 0; font-size: 12px; }
figure img { display: block; image-rendering: pixelated; background: #eee; }
figure.chosen figcaption b { color: #b00; }
.frame { position: relative; }
.box { position: absolute; border: 2px solid #e00; box-sizing: border-box; }
.plots img { display: block; max-width: 100%; margin-bottom: .5em; }  /* one a row: a many-clip plot is wide */
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
pre { background: #f4f4f4; padding: .6em; white-space: pre-wrap; word-break: break-all; }
.note { color: #666; }
.warn { color: #b00; font-weight: bold; }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _shown(n: int) -> int:
    return n * max(1, math.ceil(SHOWN / n))


def _img(src: str, w: int, h: int, alt: str) -> str:
    return f'<img src="{quote(src)}" width="{_shown(w)}" height="{_shown(w) * h // w}" alt="{_e(alt)}">'


def _plot(src: str, alt: str) -> str:
    return f'<img src="{quote(src)}" alt="{_e(alt)}">'


def _figure(tile: Tile, clip: str, w: int, h: int, box: str = "") -> str:
    r = tile.run
    data = f' data-curve="{_e(r.curve)}" data-setting="{_e(_setting(r))}"' if r is not None else ""
    return (f'<figure class="{tile.role}" data-clip="{_e(clip)}" data-role="{tile.role}"{data} '
            f'style="width:{_shown(w)}px"><div class="frame">{_img(tile.image, w, h, tile.title)}{box}</div>'
            f'<figcaption><b>{_e(tile.title)}</b><br>{_e(tile.facts)}</figcaption></figure>')


def _clip_section(strip: Strip, size: int) -> str:
    parts = [f'<section class="clip" data-clip="{_e(strip.clip)}"><h2>{_e(strip.clip)}: frame {strip.frame} '
             f'of {strip.frames}</h2>',
             '<p class="note">Each cdt quality, and for each reference encoder the setting whose file is closest in '
             'size to the cdt point in red; the numbers are the whole clip\'s.</p>']
    parts += [f'<p class="note">{_e(n)}</p>' for n in strip.notes]
    box = ""
    if strip.region is not None:
        x, y, side = strip.region
        box = (f'<span class="box" style="left:{100 * x / size:.2f}%;top:{100 * y / size:.2f}%;'
               f'width:{100 * side / size:.2f}%;height:{100 * side / size:.2f}%"></span>')
    parts.append('<div class="strip">' + "".join(_figure(t, strip.clip, size, size, box if t.role == "source" else "")
                                                 for t in strip.tiles) + "</div>")
    if strip.region is not None:
        x, y, side = strip.region
        parts.append(f"<h3>Where the cdt point's error is largest ({side}x{side} at x {x}, y {y}; 2x, unfiltered)</h3>")
        parts.append(f'<div class="strip crops" data-x="{x}" data-y="{y}" data-side="{side}">'
                     + "".join(_figure(t, strip.clip, 2 * side, 2 * side) for t in strip.crops) + "</div>")
        parts.append("<h3>PSNR-RGB frame by frame at the matched rate</h3>")
        parts.append(f'<div class="plot">{_plot(strip.psnr_plot, "PSNR frame by frame: " + strip.clip)}</div>')
    return "\n".join(parts) + "</section>"


def _environment(results: BenchResults) -> str:
    env, s = results.environment, results.settings
    mach, v, g = env["machine"], env["versions"], env["git"]
    used = sorted({r.settings["threads"] for r in results.runs if r.codec in CDT_CURVES
                   and isinstance(r.settings.get("threads"), int)})
    threads = f"--threads {s['threads']}" + (" (PyTorch's default)" if not s["threads"] else "")
    if used:
        threads += f"; cdt ran with {', '.join(map(str, used))} thread(s)"
    rows = [("CPU", f"{mach['cpu']} ({mach['usable_cpus']} usable of {mach['logical_cpus']} logical CPUs)"),
            ("device", mach["device"]), ("threads", threads + "; the references with their encoders' default"),
            ("versions", ", ".join(f"{k} {v[k]}" for k in ("cdtcodec", "python", "torch", "numpy", "av", "ffmpeg")
                                   if k in v)),
            ("commit", f"{g.get('commit') or 'unknown'}" + (" (uncommitted changes)" if g.get("dirty") else "")),
            ("platform", mach["platform"]), ("when", f"{results.created}, {results.seconds:.0f} s")]
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(val)}</td></tr>" for k, val in rows) + "</table>"


def page_html(results: BenchResults, strips: list[Strip], bd_rows: list[tuple[str, str, str]]) -> str:
    s, model = results.settings, results.model or {}
    clips = results.clips
    head = (f"{len(clips)} clip(s), {s['size']}x{s['size']}, {clips[0].frames if clips else 0} frames; "
            f"cdt model {model.get('name', '-')} (sha256 {str(model.get('sha256', ''))[:12]})")
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>cdtcodec bench report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>cdtcodec rate-distortion benchmark</h1>", f"<p>{_e(head)}</p>"]
    if model.get("untrained_toy"):
        parts.append('<p class="warn">cdt ran with an untrained toy model: a smoke test, not a result.</p>')
    if results.failed:
        parts.append(f'<p class="warn">{results.failed} run(s) failed; see results.json.</p>')
    parts += ["<h2>Rate and quality</h2>", '<div class="plots">',
              _plot("rd_psnr.png", "rate vs PSNR-RGB"), _plot("rd_lpips.png", "rate vs LPIPS"),
              "</div>", "<h3>BD-rate of cdt against each reference</h3>",
              '<p class="note">Negative: cdt needs that many percent fewer bits for the same quality; positive: more. '
              "Mean of the per-clip values over the overlapping quality interval.</p>",
              "<table><tr><th>reference</th><th>BD-rate (PSNR-RGB)</th><th>BD-rate (LPIPS)</th></tr>"]
    parts += [f"<tr><td>{_e(a)}</td><td>{_e(b)}</td><td>{_e(c)}</td></tr>" for a, b, c in bd_rows]
    parts.append("</table>")
    parts += [_clip_section(strip, s["size"]) for strip in strips]
    parts += ["<h2>How this was made</h2>", f"<pre>{_e(results.command or '(not recorded)')}</pre>",
              _environment(results)]
    parts += [f'<p class="note">Note: {_e(n)}</p>' for n in results.notes]
    parts.append("<p>All the numbers, per frame, with every encoder setting: results.json, results.csv, "
                 "summary.md.</p></body></html>")
    return "\n".join(parts) + "\n"
