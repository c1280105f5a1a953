"""Rate-distortion benchmark: BD-rate and overlap rules on known curves, clip preparation, option checks, and
`cdtcodec bench --quick` end to end (toy model, generated clip) with its JSON/CSV/PNG/markdown outputs."""

from __future__ import annotations

import csv
import html
import json
import math
import re
import shutil
import subprocess
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cdtcodec import bench
from cdtcodec.cli import app
from cdtcodec.config import CDTConfig
from cdtcodec.media import open_video
from cdtcodec.metrics import ClipQuality
from cdtcodec.model import CDT
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
    with pytest.raises(bench.BenchError, match="report_frame 5: must be a frame index, 0..4"):
        bench.make_config([str(clip)], frames=5, report_frame=5)
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
    result = CliRunner().invoke(app, ["bench", str(clip), "--quick", "--model", str(toy), "--output", str(out)])
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
    page = (out / "report.html").read_text()  # always written; the default frame is the middle one
    assert "moving: frame 2 of 5" in page and (out / "report" / "moving.f2.source.png").is_file()


def test_the_range_coder_curve_is_the_same_frames_in_other_bytes(tmp_path):
    """`cdt-range`: the same model and qualities coded with the version-1 range coder, the anchor of the default
    coder's BD-rate. A toy model with an (untrained) prior beside it: cdt writes format 2, cdt-range format 1, and
    the decoded frames, the same symbols, score the same."""
    from bitstream.prior import PriorArch, save_prior
    from cdtcodec.rate.prior_twin import ConditionalPrior, to_integer

    clip = tmp_path / "moving.mp4"
    _moving_clip(clip)
    torch.manual_seed(0)
    toy = tmp_path / "toy.safetensors"
    save_model(CDT(CDTConfig(context_dim=8, unet_dim=4)), toy, "toy")
    save_prior(to_integer(ConditionalPrior(PriorArch())), tmp_path / "toy.prior.safetensors")
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["bench", str(clip), "--quick", "--codecs", "cdt,cdt-range", "--model", str(toy),
                                      "--output", str(out)])
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
    page = (out / "report.html").read_text()  # the same frames are shown once
    assert page.count('data-curve="cdt-range"') == 0 and page.count('data-curve="cdt"') == 2 + 1  # strip, crop
    assert "cdt, range coder (format 1) quality 6: the same frame as cdt quality 6, not repeated" in page


# ---------------------------------------------------------------------------------------------------------
# report.html: what it names, and how a real browser shows it

class _Page(HTMLParser):
    """report.html's images, its figures (attributes and caption text) and its crop rows."""

    def __init__(self):
        super().__init__()
        self.images, self.figures, self.crop_rows, self.sections = [], [], [], []
        self._figure, self._where = None, ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
            if self._figure is not None:
                self._figure["src"] = a["src"]
        elif tag == "figure":
            self._figure = {**a, "text": "", "row": self.crop_rows[-1] if "crops" in self._where else None}
        elif tag == "div" and "strip" in a.get("class", ""):
            self._where = a["class"]
            if "crops" in a["class"]:
                self.crop_rows.append({k: int(a[f"data-{k}"]) for k in ("x", "y", "side")})
        elif tag == "section":
            self.sections.append(a["data-clip"])

    def handle_endtag(self, tag):
        if tag == "figure":
            self.figures.append(self._figure)
            self._figure = None

    def handle_data(self, data):
        if self._figure is not None:
            self._figure["text"] += data


@pytest.fixture(scope="module")
def two_clip_run(tmp_path_factory):
    """A tiny bench of two clips against x264 and x265 (toy model, 32x32, 5 frames), shown at frame 1."""
    tmp = tmp_path_factory.mktemp("report")
    clips = [tmp / "moving.mp4", tmp / "other.mp4"]
    _moving_clip(clips[0])
    _moving_clip(clips[1], frames=7, h=48, w=40)
    torch.manual_seed(0)
    toy = tmp / "toy.safetensors"
    save_model(CDT(CDTConfig(context_dim=8, unet_dim=4)), toy, "toy")
    out = tmp / "results"
    result = CliRunner().invoke(app, ["bench", *map(str, clips), "--codecs", "cdt,x264,x265", "--qualities", "2,6",
                                      "--presets", "medium", "--crf", "x264=20,32,44", "--crf", "x265=24,40",
                                      "--size", "32", "--max-frames", "5", "--report-frame", "1", "--model", str(toy),
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


def test_report_shows_each_clip_at_matched_rates(two_clip_run):
    from cdtcodec.bench.workers import _ref_decode

    out = two_clip_run
    data = json.loads((out / "results.json").read_text())
    page = _Page()
    text = (out / "report.html").read_text()
    page.feed(text)
    assert "http://" not in text and "https://" not in text  # nothing to fetch: it opens offline
    assert {"rd_psnr.png", "rd_lpips.png"} <= set(page.images)
    for src in page.images:  # every image it names exists and decodes
        assert _rgb(out / src).size > 0, src
    assert page.sections == ["moving", "other"]
    assert html.escape(data["command"]) in text and html.escape(data["machine"]["cpu"]) in text
    assert "x264 medium" in text and "x265 medium" in text and "BD-rate" in text

    for clip in ("moving", "other"):
        runs = [r for r in data["runs"] if r["clip"] == clip]
        assert all(r["status"] == "ok" for r in runs)
        point = next(r for r in runs if r["curve"] == "cdt" and r["setting"] == {"quality": 6})  # nearest the default
        matched = [min((r for r in runs if r["curve"] == curve), key=lambda r: abs(r["bytes"] - point["bytes"]))
                   for curve in ("x264-medium", "x265-medium")]
        figures = [f for f in page.figures if f["data-clip"] == clip]
        strip = [f for f in figures if f["row"] is None]
        crops = [f for f in figures if f["row"] is not None]
        expected = [r for r in runs if r["codec"] == "cdt"] + matched
        assert [f["data-role"] for f in strip] == ["source", "cdt", "chosen", "matched", "matched"]
        assert [(f["data-curve"], f["data-setting"]) for f in strip[1:]] == \
            [(r["curve"], " ".join(f"{k} {v}" for k, v in r["setting"].items())) for r in expected]
        for f, r in zip(strip[1:], expected):  # the labels are results.json's numbers
            m = r["metrics"]
            for part in (r["label"], f"{r['bytes']:,} bytes", f"{r['bpp']:.3f} bpp", f"{m['psnr_rgb']:.2f} dB",
                         f"LPIPS {m['lpips']:.3f}"):
                assert part in f["text"], (part, f["text"])
        tiles = {f["data-role"] if f["data-role"] == "source" else f["data-curve"] + f["data-setting"]:
                 _rgb(out / f["src"]) for f in strip}
        assert all(t.shape == (32, 32, 3) for t in tiles.values())
        assert strip[0]["src"] == f"report/{clip}.f1.source.png"
        # the tiles are frame 1 of the bench's own decodes: x264's stream decodes to the same frame
        x264 = _ref_decode({"stream": str(out / "streams" / matched[0]["stream"]), "codec": "x264"}).frames
        assert np.array_equal(tiles["x264-mediumcrf " + str(matched[0]["setting"]["crf"])], x264[1])

        # the crop: the window where the chosen point's error is largest, 2x, the same region of every codec
        (row,) = {json.dumps(f["row"]) for f in crops}
        x, y, side = json.loads(row).values()
        assert side == 16 and [f["data-role"] for f in crops] == ["source", "chosen", "matched", "matched"]
        err = ((tiles["source"].astype(int) - tiles["cdtquality 6"].astype(int)) ** 2).sum(-1)
        def window(i, j):
            return err[i:i + side, j:j + side].sum()
        assert window(y, x) == max(window(i, j) for i in range(33 - side) for j in range(33 - side))
        for f in crops:
            key = "source" if f["data-role"] == "source" else f["data-curve"] + f["data-setting"]
            zoomed = np.repeat(np.repeat(tiles[key][y:y + side, x:x + side], 2, 0), 2, 1)
            assert np.array_equal(_rgb(out / f["src"]), zoomed), f["src"]
        assert f"report/{clip}.psnr.png" in page.images


CHECK_SCRIPT = """<script>addEventListener('load', () => { const i = [...document.images];
document.body.setAttribute('data-check', JSON.stringify({images: i.length,
  broken: i.filter(x => !x.complete || x.naturalWidth === 0).map(x => x.getAttribute('src'))})); });</script>"""


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    command = [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed: `make test` "
                    "installs it (apt-get install -y chromium) and could not here")
def test_report_renders_in_a_real_browser(two_clip_run, tmp_path):
    out = two_clip_run
    page = _Page()
    page.feed((out / "report.html").read_text())
    # The page itself carries no script: a copy of it with one reports, into the DOM, what the browser loaded.
    check = out / "check.html"
    check.write_text((out / "report.html").read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    try:
        dom = _chromium(["--virtual-time-budget=10000", "--dump-dom", check.as_uri()], tmp_path / "profile")
    finally:
        check.unlink()
    found = re.search(r'data-check="([^"]*)"', dom.stdout)
    assert found, f"the page's load event did not run: {dom.stderr[-2000:]}"
    loaded = json.loads(html.unescape(found.group(1)))
    assert loaded == {"images": len(page.images), "broken": []} and len(page.images) == 2 + 2 * (5 + 4 + 1)

    shot = tmp_path / "report.png"
    taken = _chromium(["--window-size=1280,2400", f"--screenshot={shot}", (out / "report.html").as_uri()],
                      tmp_path / "profile")
    assert shot.is_file(), taken.stderr[-2000:]
    pixels = _rgb(shot)
    assert pixels.shape == (2400, 1280, 3)
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert pixels.std() > 20 and colours > 500, (pixels.std(), colours)  # not blank: text, plots, frames
