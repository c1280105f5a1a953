"""BD-rate: pure functions of (rate, quality) points; cdt against every reference curve."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from cdtcodec.bench.config import LOW_OVERLAP, curve_label
from cdtcodec.bench.records import RunRecord


def monotone(points: Sequence[tuple[float, float]]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(rate, quality) points -> (kept, dropped): kept are sorted by rate with quality strictly increasing."""
    pts = sorted(((float(r), float(q)) for r, q in points), key=lambda p: (p[0], -p[1]))
    kept, dropped = [], []
    for r, q in pts:
        if not (math.isfinite(r) and math.isfinite(q) and r > 0):
            dropped.append((r, q))
        elif kept and q <= kept[-1][1]:
            dropped.append((r, q))
        else:
            kept.append((r, q))
    return kept, dropped


def bd_rate(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]], unit: str = "",
            names: tuple[str, str] = ("anchor", "test")) -> dict:
    """BD-rate in percent of `test` against `anchor`, each a list of (rate, quality), quality higher-is-better.

    Returns {"value": float or None, "reason": None or why not, "overlap", "interval", points used/dropped}.
    """
    import bjontegaard

    a, a_drop = monotone(anchor)
    t, t_drop = monotone(test)
    entry = {"value": None, "reason": None, "overlap": None, "interval": None, "low_overlap": None,
             "anchor_points": len(a), "test_points": len(t), "anchor_dropped": a_drop, "test_dropped": t_drop}
    if len(a) < 2 or len(t) < 2:
        who = names[0] if len(a) < 2 else names[1]
        entry["reason"] = f"fewer than 2 usable points: {who} (after dropping points that do not raise quality)"
        return entry
    lo, hi = max(a[0][1], t[0][1]), min(a[-1][1], t[-1][1])
    span = max(a[-1][1], t[-1][1]) - min(a[0][1], t[0][1])
    if hi <= lo:
        entry["reason"] = (f"no overlap in quality: {names[1]} {t[0][1]:.4g}..{t[-1][1]:.4g}{unit}, "
                           f"{names[0]} {a[0][1]:.4g}..{a[-1][1]:.4g}{unit}")
        return entry
    entry["interval"] = [lo, hi]
    entry["overlap"] = (hi - lo) / span
    entry["low_overlap"] = entry["overlap"] < LOW_OVERLAP
    value = bjontegaard.bd_rate([p[0] for p in a], [p[1] for p in a], [p[0] for p in t], [p[1] for p in t],
                                method="akima", require_matching_points=False, min_overlap=0)
    if not math.isfinite(value):
        entry["reason"] = "the interpolation gave a non-finite value"
        return entry
    entry["value"] = float(value)
    return entry


AXES = {"psnr": ("psnr_rgb", 1.0, " dB"), "lpips": ("lpips", -1.0, " (-LPIPS)")}


def compute_bd(runs: Sequence[RunRecord], clips: list[str]) -> dict:
    """cdt against every reference curve, per clip and averaged, on both axes."""
    ok = [r for r in runs if r.ok]
    curves = list(dict.fromkeys(r.curve for r in ok if r.codec != "cdt"))
    out = {"method": "akima", "test": "cdt", "rate": "bpp", "axes": {"psnr": "PSNR-RGB (dB)", "lpips": "-LPIPS"},
           "per_clip": {}, "average": {}}
    for anchor in curves:
        out["per_clip"][anchor] = {}
        out["average"][anchor] = {}
        for axis, (key, sign, unit) in AXES.items():
            values, excluded = [], []
            for clip in clips:
                def pts(curve):
                    return [(r.bpp, sign * getattr(r.quality, key) if getattr(r.quality, key) is not None
                             else math.nan) for r in ok if r.clip == clip and r.curve == curve]
                test_pts = pts("cdt")
                if not test_pts:
                    entry = {"value": None, "reason": "cdt did not run on this clip"}
                else:
                    entry = bd_rate(pts(anchor), test_pts, unit, names=(curve_label(anchor), "cdt"))
                out["per_clip"][anchor].setdefault(clip, {})[axis] = entry
                if entry["value"] is None:
                    excluded.append({"clip": clip, "reason": entry["reason"]})
                else:
                    values.append(entry["value"])
            avg = {"value": float(np.mean(values)) if values else None, "clips": len(values), "excluded": excluded,
                   "reason": None if values else "no clip has a BD-rate on this axis"}
            out["average"][anchor][axis] = avg
    return out
