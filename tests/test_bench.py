"""Rate-distortion benchmark: BD-rate and overlap rules on known curves, clip preparation, option checks, and
`cdtcodec bench --quick` end to end (toy model, generated clip) with its JSON/CSV/PNG/markdown outputs."""

from __future__ import annotations

import csv
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cdtcodec import bench
from cdtcodec.cli import app
from cdtcodec.config import CDTConfig
from cdtcodec.metrics import ClipQuality
from cdtcodec.model import CDT
from cdtcodec.media import open_video
from cdtcodec.weights import save_model

ANCHOR = [(0.1, 30.0), (0.2, 33.0), (0.4, 36.0), (0.8, 39.0)]


# ---------------------------------------------------------------------------------------------------------
# BD-rate and its rules

def test_bd_rate_of_a_constant_rate_ratio_is_that_ratio():
    test = [(r * 0.8, q) for r, q in ANCHOR]  # same quality for 20 % fewer bits everywhere
    entry = bench.bd_rate(ANCHOR, test)
    assert entry["reason"] is None
    assert entry["value"] == pytest.approx(-20.0, abs=1e-6)
    assert entry["overlap"] == pytest.approx(1.0) and entry["low_overlap"] is False
    worse = bench.bd_rate(ANCHOR, [(r * 1.5, q) for r, q in ANCHOR])
    assert worse["value"] == pytest.approx(50.0, abs=1e-6)


def test_bd_rate_integrates_only_over_the_overlap():
    # The test curve covers 34.5..39 dB only: the value comes from that interval, flagged as a low overlap.
    test = [(r * 0.5, q) for r, q in ANCHOR if q >= 36] + [(0.5 * 0.3, 34.5)]
    entry = bench.bd_rate(ANCHOR, test)
    assert entry["interval"] == [34.5, 39.0]
    assert entry["overlap"] == pytest.approx(4.5 / 9)
    assert entry["low_overlap"] is True
    assert entry["value"] is not None and entry["value"] < 0


def test_bd_rate_without_overlap_is_null_with_the_reason():
    test = [(0.05, 20.0), (0.1, 24.0), (0.2, 27.0)]
    entry = bench.bd_rate(ANCHOR, test, " dB")
    assert entry["value"] is None
    assert "no overlap" in entry["reason"] and "20..27 dB" in entry["reason"]


def test_non_monotone_points_are_dropped_and_listed():
    kept, dropped = bench.monotone([(0.4, 36.0), (0.1, 30.0), (0.2, 29.0), (0.3, math.nan), (0.8, 39.0)])
    assert kept == [(0.1, 30.0), (0.4, 36.0), (0.8, 39.0)]
    assert (0.2, 29.0) in dropped and len(dropped) == 2
    entry = bench.bd_rate(ANCHOR, [(0.3, 31.0), (0.5, 30.0)])  # one usable point left
    assert entry["value"] is None and "fewer than 2" in entry["reason"]
    assert entry["test_dropped"] == [(0.5, 30.0)]


def test_lpips_axis_is_negated():
    runs = []
    for codec, curve, pts in (("cdt", "cdt", [(0.1, 0.30), (0.2, 0.20), (0.4, 0.12)]),
                              ("x264", "x264-medium", [(0.2, 0.30), (0.4, 0.20), (0.8, 0.12)])):
        for bpp, lp in pts:
            runs.append(bench.RunRecord(clip="a", codec=codec, curve=curve, label=curve, preset=None, setting={},
                                        settings={}, stream="", bpp=bpp,
                                        quality=ClipQuality(psnr_rgb=30 + 10 * bpp, psnr_y=None,
                                                            psnr_rgb_frame_mean=None, ssim=1.0, lpips=lp)))
    bd = bench.compute_bd(runs, ["a"])
    lp = bd["per_clip"]["x264-medium"]["a"]["lpips"]
    assert lp["value"] == pytest.approx(-50.0, abs=1e-6)  # half the bits for the same LPIPS
    assert bd["average"]["x264-medium"]["lpips"]["value"] == pytest.approx(-50.0, abs=1e-6)
    assert bd["average"]["x264-medium"]["lpips"]["clips"] == 1


# ---------------------------------------------------------------------------------------------------------
# clip preparation and options

def test_prepare_frames_resizes_the_short_side_and_centre_crops():
    frames = np.zeros((2, 40, 80, 3), np.uint8)
    frames[:, :, 20:60] = 200  # the centre half (in width) is bright
    out = bench.prepare_frames(frames, 32)
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.uint8
    assert out[:, :, 4:28].min() >= 190  # 80x40 -> 64x32, crop x 16..48: the bright band covers 16..48 minus ringing
    same = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert np.array_equal(bench.prepare_frames(same, 32), same)  # already the size: untouched


def test_lossless_source_reads_back_exactly(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    path = tmp_path / "s.mkv"
    bench.write_lossless(path, frames, Fraction(30000, 1001))
    with open_video(path) as reader:
        assert np.array_equal(np.stack(list(reader.frames())), frames)
        assert reader.info.fps == Fraction(30000, 1001)


def test_option_errors(tmp_path):
    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"x")
    with pytest.raises(bench.BenchError, match="even"):
        bench.make_config([str(clip)], size=33)
    with pytest.raises(bench.BenchError, match="unknown codec"):
        bench.make_config([str(clip)], codecs="cdt,vp8")
    with pytest.raises(bench.BenchError, match="CODEC=CRF"):
        bench.make_config([str(clip)], crfs=["x266=20"])
    with pytest.raises(bench.BenchError, match="no clips"):
        bench.make_config([])
    cfg = bench.make_config([str(clip)], crfs=["x264=30,20"], qualities="8,1")
    assert cfg.crfs["x264"] == (20, 30) and cfg.qualities == (1, 8) and cfg.size == 256 and cfg.frames == 33
    assert bench.clip_names(["a/x.mp4", "b/x.mp4", "c/y z.mkv"]) == ["x", "x_2", "y_z"]


# ---------------------------------------------------------------------------------------------------------
# cdtcodec bench --quick, end to end

def _moving_clip(path: Path, frames: int = 6, h: int = 40, w: int = 48) -> None:
    from cdtcodec.media import open_sink

    y, x = np.mgrid[0:h, 0:w]
    with open_sink(path, w, h, fps=Fraction(24)) as out:
        for t in range(frames):
            r = (x * 4 + t * 6) % 256
            g = (y * 5 + t * 3) % 256
            b = ((x + y) * 3) % 256
            out.write(np.stack([r, g, b], -1).astype(np.uint8))


def test_quick_bench_end_to_end(tmp_path):
    clip = tmp_path / "moving.mp4"
    _moving_clip(clip)
    torch.manual_seed(0)
    toy = tmp_path / "toy.safetensors"
    save_model(CDT(CDTConfig(context_dim=8, unet_dim=4)), toy, "toy")
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["bench", str(clip), "--quick", "--model", str(toy), "--out", str(out)])
    assert result.exit_code == 0, result.output

    data = json.loads((out / "results.json").read_text())
    for key in ("settings", "machine", "versions", "git", "model", "lpips", "method", "clips", "runs", "bd_rate",
                "coverage", "notes"):
        assert key in data, key
    assert data["machine"]["cpu"] and data["versions"]["ffmpeg"] and data["versions"]["torch"]
    assert data["model"]["file"] == str(toy) and len(data["model"]["sha256"]) == 64
    assert data["settings"]["size"] == 32 and data["settings"]["frames"] == 5
    (c,) = data["clips"]
    assert c["name"] == "moving" and c["frames"] == 5 and c["size"] == 32 and c["fps"] == "24"

    runs = data["runs"]
    assert [r["curve"] for r in runs] == ["cdt", "cdt", "x264-medium", "x264-medium"]
    assert [r["setting"] for r in runs] == [{"quality": 2}, {"quality": 6}, {"crf": 40}, {"crf": 24}]
    for r in runs:
        assert r["status"] == "ok", r["error"]
        stream = out / "streams" / r["stream"]
        assert r["bytes"] == stream.stat().st_size > 0
        assert r["bpp"] == pytest.approx(8 * r["bytes"] / (5 * 32 * 32))
        assert r["kbps"] == pytest.approx(8 * r["bytes"] / (5 / 24) / 1000)
        assert r["decoded_frames"] == 5
        for name in ("psnr_rgb", "psnr_y", "ssim", "lpips"):
            assert len(r["per_frame"][name]) == 5
        m = r["metrics"]
        assert 0 < m["psnr_rgb"] < 100 and -1 <= m["ssim"] <= 1 and m["lpips"] >= 0
        for phase in ("encode", "decode"):
            assert r[phase]["seconds"] > 0 and r[phase]["fps"] > 0
            assert r[phase]["peak_rss_mb"] >= r[phase]["rss_before_mb"] > 0
    x264 = [r for r in runs if r["codec"] == "x264"]
    assert x264[1]["bytes"] > x264[0]["bytes"] and x264[1]["metrics"]["psnr_rgb"] > x264[0]["metrics"]["psnr_rgb"] > 20
    assert x264[0]["settings"]["options"] == {"crf": "40", "preset": "medium"}
    assert x264[0]["settings"]["encoder_info"].startswith("x264 - core") and x264[0]["stripped_sei_bytes"] > 0
    cdt = runs[0]["settings"]
    assert cdt["quality"] == 2 and cdt["model"] == "toy"

    for axis in ("psnr", "lpips"):
        entry = data["bd_rate"]["per_clip"]["x264-medium"]["moving"][axis]
        assert (entry["value"] is None) != (entry["reason"] is None)
        assert entry["value"] is None or math.isfinite(entry["value"])
        avg = data["bd_rate"]["average"]["x264-medium"][axis]
        assert avg["value"] is not None or avg["reason"]

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4  # 1 clip x (2 cdt qualities + 2 x264 CRFs)
    assert {r["codec"] for r in rows} == {"cdt", "x264"} and all(r["status"] == "ok" for r in rows)
    assert [int(r["bytes"]) for r in rows] == [r["bytes"] for r in runs]
    for name in ("rd_psnr.png", "rd_lpips.png"):
        png = (out / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    summary = (out / "summary.md").read_text()
    assert "BD-rate" in summary and "x264 medium" in summary and "| cdt | quality 2 |" in summary
    assert not (out / "work").exists() and not (out / "runs.partial.jsonl").exists()


def test_the_range_coder_curve_is_the_same_frames_in_other_bytes(tmp_path):
    """`cdt-range`: the same model and qualities coded with the version-1 range coder, the anchor of the default
    coder's BD-rate. A toy model with an (untrained) prior beside it: cdt writes format 2, cdt-range format 1, and
    the decoded frames, the same symbols, score the same."""
    from bitstream.prior import PriorArch, save_prior
    from cdtcodec.entropy_model import ConditionalPrior, to_integer

    clip = tmp_path / "moving.mp4"
    _moving_clip(clip)
    torch.manual_seed(0)
    toy = tmp_path / "toy.safetensors"
    save_model(CDT(CDTConfig(context_dim=8, unet_dim=4)), toy, "toy")
    save_prior(to_integer(ConditionalPrior(PriorArch())), tmp_path / "toy.prior.safetensors")
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["bench", str(clip), "--quick", "--codecs", "cdt,cdt-range", "--model", str(toy),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    runs = {(r["curve"], r["setting"]["quality"]): r for r in data["runs"]}
    assert sorted(runs) == [("cdt", 2), ("cdt", 6), ("cdt-range", 2), ("cdt-range", 6)]
    for q in (2, 6):
        prior, plain = runs["cdt", q], runs["cdt-range", q]
        assert prior["status"] == plain["status"] == "ok"
        assert prior["settings"]["entropy_coder"] == "prior" and plain["settings"]["entropy_coder"] == "range"
        assert prior["bytes"] != plain["bytes"]
        assert prior["metrics"] == plain["metrics"]
    assert data["curves"]["cdt-range"] == "cdt, range coder (format 1)"
    assert set(data["bd_rate"]["per_clip"]) == {"cdt-range"}
