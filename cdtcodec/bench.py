"""`cdtcodec bench`: the rate-distortion benchmark of cdtcodec against x264, x265 and SVT-AV1.

What it measures, and how (every choice below is also written into results.json under "method"):

* Clips. Each input is decoded once (the first N frames), its short side resized to `size` (Lanczos, antialiased)
  and centre-cropped to size x size. Those uint8 RGB frames are the reference for every metric, and every codec
  reads them from the same lossless file (FFV1, bgr0, in Matroska; read back and checked bit-exact before use).
* cdtcodec: `cdtcodec.codec.encode` at each quality, then `cdtcodec.codec.decode` into PNG frames (exact).
  The rate is the size of the .cdt file (header, index and payload: the whole file).
* References through PyAV: libx264 and libx265 (presets medium and slow), libsvtav1 (presets 6 and 5, the
  project's mapping of medium and slow); yuv420p, BT.709 limited range (tagged), the clip's frame rate, default
  GOP, constant-quality CRF over a grid spanning the cdt rate range. The streams are written raw (H.264 and HEVC
  Annex B, AV1 low-overhead OBUs), so the rate is the real file with no container overhead. x264 and x265 put a
  text SEI with their version and settings into the first frame (about 0.7 and 2.3 kB); it is recorded in the
  results and removed from the stream with FFmpeg's filter_units bitstream filter (it is not needed to decode),
  which makes the references slightly stronger at low rates. The streams are decoded back with FFmpeg and
  converted to RGB with the BT.709 limited-range matrix.
* Metrics on the decoded 8-bit RGB frames against the source frames, per frame and per clip: PSNR on RGB and on
  BT.601 luma (per clip from the clip's mean squared error, as `cdtcodec demo` reports it; the mean of the
  per-frame PSNRs is kept too; a frame with zero error is stored as null), SSIM (RGB, Gaussian 11x11, computed
  in float32: within 1e-6 of float64),
  LPIPS (AlexNet v0.1, weights/lpips-alex.safetensors).
* Speed and memory: each encode and each decode runs alone in a fresh worker process forked from a clean server
  (Python, NumPy, PyAV and, when cdt runs, PyTorch already imported). Seconds are the wall time of the call,
  frames/s = frames / seconds. cdt's times include loading the weights, and its decode time includes writing PNGs;
  the references' encode time includes reading the lossless source and RGB -> YUV, their decode time YUV -> RGB.
  Peak memory is the process's peak resident set (VmHWM) during the phase, given both as the absolute peak and as
  the growth over the worker's resident set before the phase.
* BD-rate (bjontegaard package, Akima interpolation) of cdt (test) against each reference curve (anchor), on
  two quality axes: PSNR-RGB in dB, and -LPIPS (LPIPS is lower-is-better; negating it leaves BD-rate unchanged
  and makes the axis increasing). Negative means cdt needs fewer bits for the same quality. Each curve is first
  reduced to its monotone part (points that do not raise quality over a cheaper point are dropped and listed);
  the integral runs only over the quality interval where both curves exist (no extrapolation). With fewer than
  two points left, or no overlap, the value is null with the reason. The overlap fraction (overlap / union of
  the two quality ranges) is reported; below 0.75 (the package's own warning threshold) the entry is flagged
  "low_overlap" but kept. The average over clips is the mean of the per-clip values that exist, with their count
  and the excluded clips.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ASSETS = Path(__file__).resolve().parent / "assets"
SCHEMA = 1


class BenchError(ValueError):
    """A benchmark request that cannot be run; the message is one line."""


# ---------------------------------------------------------------------------------------------------------
# settings

@dataclass(frozen=True)
class RefCodec:
    """A reference encoder through PyAV: how to run it and what its presets mean."""

    key: str
    display: str
    encoder: str  # FFmpeg encoder name
    muxer: str  # raw elementary-stream muxer
    ext: str
    crfs: tuple[int, ...]  # default CRF grid (spans ~0.005 .. 0.5 bpp at 256x256 on the validation footage)
    presets: dict[str, str]  # our preset name -> the encoder's preset value
    options: dict[str, str] = field(default_factory=dict)
    info_sei: tuple[bytes, int] | None = None  # (text prefix of the settings SEI, NAL type removed by filter_units)


REFERENCES: dict[str, RefCodec] = {
    "x264": RefCodec("x264", "x264", "libx264", "h264", "264", (10, 16, 22, 28, 34, 40, 46, 51),
                     {"medium": "medium", "slow": "slow"}, {}, (b"x264 - core", 6)),
    "x265": RefCodec("x265", "x265", "libx265", "hevc", "265", (10, 16, 22, 28, 34, 40, 46, 51),
                     {"medium": "medium", "slow": "slow"}, {"x265-params": "log-level=error"}, (b"x265 (build", 39)),
    "svtav1": RefCodec("svtav1", "SVT-AV1", "libsvtav1", "obu", "obu", (10, 20, 30, 40, 48, 55, 63),
                       {"medium": "6", "slow": "5"}, {}, None),
}
CODECS = ("cdt",) + tuple(REFERENCES)
PRESETS = ("medium", "slow")
FULL = {"size": 256, "frames": 33, "codecs": CODECS, "presets": PRESETS, "qualities": None}  # None: all
QUICK = {"size": 32, "frames": 5, "codecs": ("cdt", "x264"), "presets": ("medium",), "qualities": (2, 6),
         "crfs": {"x264": (24, 40), "x265": (24, 40), "svtav1": (30, 55)}}
TOY_CONFIG = {"context_dim": 8, "unet_dim": 4}
LOW_OVERLAP = 0.75
PSNR_CAP_NOTE = "a frame (or clip) with zero error has infinite PSNR: stored as null and left out of the means"


@dataclass
class BenchConfig:
    clips: list[str]
    codecs: tuple[str, ...]
    qualities: tuple[int, ...]
    presets: tuple[str, ...]
    crfs: dict[str, tuple[int, ...]]
    size: int
    frames: int
    out: Path
    model: str
    device: str = "cpu"
    threads: int = 0
    quick: bool = False
    keep_streams: bool = True


def _split(value, what: str) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    items = [i.strip() for i in items if i.strip()]
    if not items:
        raise BenchError(f"{what}: empty list")
    return items


def _ints(value, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _split(value, what))
    except ValueError:
        raise BenchError(f"{what} expects comma-separated integers, got {value!r}") from None


def parse_crfs(specs: Iterable[str] | None) -> dict[str, tuple[int, ...]]:
    """['x264=18,28,38', 'svtav1=30,50'] -> {'x264': (18, 28, 38), 'svtav1': (30, 50)}."""
    out: dict[str, tuple[int, ...]] = {}
    for spec in specs or ():
        name, sep, values = str(spec).partition("=")
        name = name.strip()
        if not sep or name not in REFERENCES:
            raise BenchError(f"--crf expects CODEC=CRF,CRF,... with CODEC one of {', '.join(REFERENCES)}; got {spec!r}")
        crfs = _ints(values, f"--crf {name}")
        hi = 63 if name == "svtav1" else 51
        if any(not 0 <= c <= hi for c in crfs):
            raise BenchError(f"--crf {name}: CRF values must be in 0..{hi}")
        out[name] = tuple(sorted(set(crfs)))
    return out


def make_config(clips: Sequence[str] | None = None, *, codecs=None, qualities=None, presets=None, crfs=None,
                size: int | None = None, frames: int | None = None, out: str | Path = "results",
                model: str | None = None, device: str = "cpu", threads: int = 0, quick: bool = False,
                keep_streams: bool = True) -> BenchConfig:
    """Resolve the options (None: the full-run default, or the --quick one) and check them."""
    from cdtcodec.quantize import QUALITY_STEPS
    from cdtcodec.weights import DEFAULT_MODEL

    base = QUICK if quick else FULL
    clips = [str(c) for c in (clips or [])]
    if not clips:
        if not quick:
            raise BenchError("no clips given (pass video files, or --quick for the bundled sample)")
        clips = [str(ASSETS / "sample.mp4")]
    if quick:
        clips = clips[:1]
    for c in clips:
        if not Path(c).is_file():
            raise BenchError(f"{c}: no such file")
    codec_list = tuple(_split(codecs, "--codecs")) if codecs is not None else tuple(base["codecs"])
    for c in codec_list:
        if c not in CODECS:
            raise BenchError(f"--codecs: unknown codec {c!r} (known: {', '.join(CODECS)})")
    codec_list = tuple(dict.fromkeys(codec_list))
    q = _ints(qualities, "--qualities") if qualities is not None else (base["qualities"] or tuple(QUALITY_STEPS))
    for v in q:
        if v not in QUALITY_STEPS:
            raise BenchError(f"--qualities: {v} is not a quality ({min(QUALITY_STEPS)}..{max(QUALITY_STEPS)})")
    preset_list = tuple(_split(presets, "--presets")) if presets is not None else tuple(base["presets"])
    for p in preset_list:
        if p not in PRESETS:
            raise BenchError(f"--presets: unknown preset {p!r} (known: {', '.join(PRESETS)})")
    grid = {k: r.crfs for k, r in REFERENCES.items()}
    if quick:
        grid.update(QUICK["crfs"])
    grid.update(crfs if isinstance(crfs, dict) else parse_crfs(crfs))
    size = base["size"] if size is None else int(size)
    frames = base["frames"] if frames is None else int(frames)
    if size < 32 or size % 2:
        raise BenchError(f"--size {size}: must be even (4:2:0 references) and at least 32 (LPIPS needs 32 px)")
    if frames < 1:
        raise BenchError("--frames must be >= 1")
    return BenchConfig(clips=clips, codecs=codec_list, qualities=tuple(sorted(set(q))),
                       presets=tuple(dict.fromkeys(preset_list)), crfs=grid, size=size, frames=frames, out=Path(out),
                       model=model or DEFAULT_MODEL, device=device, threads=threads, quick=quick,
                       keep_streams=keep_streams)


# ---------------------------------------------------------------------------------------------------------
# clip preparation

def prepare_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (T, H, W, 3) -> (T, size, size, 3): short side resized to `size` (Lanczos), centre crop."""
    from PIL import Image

    t, h, w, _ = frames.shape
    scale = size / min(h, w)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (nw - size) // 2, (nh - size) // 2
    out = np.empty((t, size, size, 3), np.uint8)
    for i, f in enumerate(frames):
        img = Image.fromarray(np.ascontiguousarray(f), "RGB")
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), Image.Resampling.LANCZOS)
        out[i] = np.asarray(img)[top:top + size, left:left + size]
    return out


def write_lossless(path: Path, frames: np.ndarray, fps: Fraction) -> None:
    """FFV1 (bgr0) in Matroska: lossless RGB that the codec's own reader (open_video) decodes bit-exactly."""
    import av

    h, w = frames.shape[1:3]
    tmp = path.with_name(path.name + ".tmp.mkv")
    with av.open(str(tmp), "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "bgr0"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24").reformat(format="bgr0")
            vf.pts = i
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    tmp.replace(path)


def read_video(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, object]:
    from cdtcodec.media import open_video

    with open_video(path, max_frames=max_frames) as reader:
        return np.stack(list(reader.frames())), reader.info


def prepare_clip(path: str, name: str, size: int, frames: int, work: Path) -> dict:
    raw, info = read_video(path, frames)
    clip = prepare_frames(raw, size)
    source = work / f"{name}.source.mkv"
    write_lossless(source, clip, info.fps)
    back, back_info = read_video(source)
    if back.shape != clip.shape or not np.array_equal(back, clip) or back_info.fps != info.fps:
        raise BenchError(f"{path}: the lossless source did not read back bit-exactly ({source})")
    record = {
        "name": name, "path": str(path), "source_width": info.width, "source_height": info.height,
        "source_codec": info.codec_name, "fps": str(info.fps), "frames": int(clip.shape[0]),
        "frames_requested": frames, "size": size, "upscaled": min(info.width, info.height) < size,
        "prepared_sha256": hashlib.sha256(clip.tobytes()).hexdigest(),
        "lossless_source": source.name, "lossless_source_bytes": source.stat().st_size,
    }
    return record


def clip_names(paths: Sequence[str]) -> list[str]:
    names: list[str] = []
    for p in paths:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(p).stem) or "clip"
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------------------
# worker processes: one fresh process per encode and per decode

def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (the peak resident set) to the current resident set
        return True
    except OSError:
        return False


def _peak_kb() -> int:
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _measured(phase):
    """Run phase() in this (fresh) worker, returning its result with wall time and peak memory."""
    import gc

    gc.collect()
    before = _status_kb("VmRSS") or 0
    reset = _reset_peak()
    torch = sys.modules.get("torch")  # only when the worker has it already: importing it here would count
    cuda = torch if torch is not None and torch.cuda.is_initialized() else None
    if cuda is not None:
        cuda.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = phase()
    seconds = time.perf_counter() - start
    peak = _peak_kb()
    if cuda is None and "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        cuda = sys.modules["torch"]
    mem = {"rss_before_mb": before / 1024, "peak_rss_mb": peak / 1024, "peak_growth_mb": max(0, peak - before) / 1024,
           "peak_scope": "phase" if reset else "whole worker process (VmHWM could not be reset)"}
    if cuda is not None:
        mem["cuda_peak_mb"] = cuda.cuda.max_memory_allocated() / 2**20
    return result, seconds, mem


class _Clock:
    """Progress callback that timestamps each chunk: the first chunk carries PyTorch's per-process warm-up
    (kernel selection for each new shape), so the rate after it is the steady one."""

    def __init__(self):
        self.start = time.perf_counter()
        self.marks: list[tuple[float, int]] = []

    def __call__(self, done: int, total) -> None:
        self.marks.append((time.perf_counter() - self.start, int(done)))

    def summary(self) -> dict:
        marks = [m for m in self.marks if m[1] > 0]  # a report of 0 frames done is not a chunk
        if not marks:
            return {"first_chunk_s": None, "fps_after_first_chunk": None}
        (t0, n0), (t1, n1) = marks[0], marks[-1]
        steady = (n1 - n0) / (t1 - t0) if n1 > n0 and t1 > t0 else None
        return {"first_chunk_s": t0, "first_chunk_frames": n0, "fps_after_first_chunk": steady}


def _cdt_encode(spec: dict) -> dict:
    from cdtcodec import codec

    clock = _Clock()
    report = codec.encode(spec["source"], spec["stream"], model=spec["model"], quality=spec["quality"],
                          device=spec["device"], audio=False, progress=clock)
    return {"frames": report.frames, "report_seconds": report.seconds, **clock.summary()}


def _cdt_decode(spec: dict) -> dict:
    from cdtcodec import codec

    clock = _Clock()
    report = codec.decode(spec["stream"], spec["decoded"] + os.sep, model=spec["model"], device=spec["device"],
                          audio=False, progress=clock)
    return {"frames": report.frames, "report_seconds": report.seconds, **clock.summary()}


def _ref_encode(spec: dict) -> dict:
    import av
    from av.bitstream import BitStreamFilterContext

    from cdtcodec.media import open_video

    ref = REFERENCES[spec["codec"]]
    fps = Fraction(spec["fps"])
    stripped = {"bytes": 0, "text": None}
    packet_bytes = 0
    with open_video(spec["source"]) as reader:
        frames = reader.frames()
        container = av.open(spec["stream"], "w", format=ref.muxer)
        try:
            stream = container.add_stream(ref.encoder, rate=fps, options=dict(spec["options"]))
            stream.width, stream.height, stream.pix_fmt = spec["width"], spec["height"], "yuv420p"
            stream.time_base = Fraction(fps.denominator, fps.numerator)
            cc = stream.codec_context
            cc.time_base = stream.time_base
            cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc = 1, 1, 1, 1  # limited, BT.709
            bsf = BitStreamFilterContext(f"filter_units=remove_types={ref.info_sei[1]}", stream) if ref.info_sei else None

            def mux(packets):
                nonlocal packet_bytes
                for packet in packets:
                    if bsf is not None:
                        raw = bytes(packet)
                        at = raw.find(ref.info_sei[0])
                        if at >= 0 and stripped["text"] is None:
                            end = raw.find(b"\x00", at)
                            text = raw[at:end if end > 0 else None].decode("ascii", "replace")
                            stripped["text"] = "".join(ch for ch in text if " " <= ch <= "~")
                        before = packet.size
                        out = bsf.filter(packet)
                        stripped["bytes"] += before - sum(p.size for p in out)
                    else:
                        out = [packet]
                    for p in out:
                        packet_bytes += p.size
                        container.mux(p)

            n = 0
            for n, rgb in enumerate(frames, 1):
                vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                    format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
                vf.pts = n - 1
                vf.time_base = stream.time_base
                mux(stream.encode(vf))
            mux(stream.encode(None))
            if bsf is not None:
                for p in bsf.filter(None):
                    packet_bytes += p.size
                    container.mux(p)
        finally:
            container.close()
    return {"frames": n, "packet_bytes": packet_bytes, "stripped_sei_bytes": stripped["bytes"],
            "encoder_info": stripped["text"]}


def _ref_decode(spec: dict) -> dict:
    import av

    frames = []
    with av.open(spec["stream"], "r", format=REFERENCES[spec["codec"]].muxer) as container:
        stream = container.streams.video[0]
        decoder = stream.codec_context.name
        for frame in container.decode(stream):
            frames.append(frame.reformat(format="rgb24", src_colorspace="ITU709", src_color_range="MPEG").to_ndarray())
    return {"frames": len(frames), "decoder": decoder, "_frames": np.stack(frames) if frames else None}


_PHASES = {("cdt", "encode"): _cdt_encode, ("cdt", "decode"): _cdt_decode,
           ("ref", "encode"): _ref_encode, ("ref", "decode"): _ref_decode}


def _worker(conn, kind: str, phase: str, spec: dict) -> None:
    try:
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only
        if kind == "cdt":
            import torch

            import cdtcodec.codec  # noqa: F401  (imported before the clock starts)
            from cdtcodec.allocator import keep_freed_memory

            keep_freed_memory()  # as the command line runs

            if spec.get("threads"):
                torch.set_num_threads(int(spec["threads"]))
        result, seconds, mem = _measured(lambda: _PHASES[kind, phase](spec))
        frames = result.pop("_frames", None)
        if frames is not None:  # after the measurement: the metrics read the decoded frames from here
            np.save(spec["decoded"] + ".npy", frames)
        if kind == "cdt":
            import torch

            result["torch_threads"] = torch.get_num_threads()
        conn.send(("ok", {"seconds": seconds, "memory": mem, **result}))
    except BaseException as e:  # the parent records the failure and goes on
        conn.send(("error", f"{type(e).__name__}: {' '.join(str(e).split())}", traceback.format_exc()))
    finally:
        conn.close()


class Workers:
    """Fresh processes forked from a clean forkserver (started once, with the heavy imports done)."""

    def __init__(self, with_torch: bool):
        self.ctx = multiprocessing.get_context("forkserver")
        preload = ["numpy", "av", "PIL.Image", "cdtcodec.media", "cdtcodec.bench"]
        if with_torch:
            preload += ["torch", "cdtcodec.codec"]
        self.ctx.set_forkserver_preload(preload)

    def run(self, kind: str, phase: str, spec: dict) -> dict:
        parent, child = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=_worker, args=(child, kind, phase, spec), daemon=True)
        proc.start()
        child.close()
        try:
            message = parent.recv()
        except EOFError:
            proc.join()
            raise BenchError(f"{phase} worker died (exit code {proc.exitcode})") from None
        finally:
            parent.close()
        proc.join()
        if message[0] != "ok":
            raise BenchError(message[1])
        return message[1]


# ---------------------------------------------------------------------------------------------------------
# metrics

def _psnr_from_mse(mse: float) -> float | None:
    return None if mse == 0 else 10 * math.log10(255.0**2 / mse)


def frame_metrics(src: np.ndarray, dec: np.ndarray, lpips) -> dict:
    """Per-frame and per-clip PSNR (RGB, Y), SSIM and LPIPS of decoded uint8 (T, H, W, 3) against the source."""
    import torch

    from cdtcodec.metrics import rgb_to_luma, ssim

    if src.shape != dec.shape:
        raise BenchError(f"decoded frames {dec.shape} do not match the source {src.shape}")
    diff = src.astype(np.float64) - dec.astype(np.float64)
    mse = (diff**2).mean(axis=(1, 2, 3))
    mse_y = ((rgb_to_luma(src) - rgb_to_luma(dec)) ** 2).mean(axis=(1, 2))
    # float32: 25x faster than float64 on CPU, and within 1e-6 of it (SSIM is in [-1, 1])
    to01 = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255.0
    to11 = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 127.5 - 1
    ssims, lp = [], []
    with torch.no_grad():
        for i in range(0, len(src), 8):
            ssims += ssim(to01(src[i:i + 8]), to01(dec[i:i + 8])).tolist()
            lp += lpips(to11(src[i:i + 8]), to11(dec[i:i + 8])).tolist()
    per_frame = {"psnr_rgb": [_psnr_from_mse(m) for m in mse], "psnr_y": [_psnr_from_mse(m) for m in mse_y],
                 "ssim": ssims, "lpips": lp}
    finite = [p for p in per_frame["psnr_rgb"] if p is not None]
    clip = {"psnr_rgb": _psnr_from_mse(float(mse.mean())), "psnr_y": _psnr_from_mse(float(mse_y.mean())),
            "psnr_rgb_frame_mean": float(np.mean(finite)) if finite else None,
            "ssim": float(np.mean(ssims)), "lpips": float(np.mean(lp))}
    return {"clip": clip, "per_frame": per_frame}


# ---------------------------------------------------------------------------------------------------------
# BD-rate

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


def compute_bd(runs: list[dict], clips: list[str]) -> dict:
    """cdt against every reference curve, per clip and averaged, on both axes."""
    ok = [r for r in runs if r["status"] == "ok"]
    curves = list(dict.fromkeys(r["curve"] for r in ok if r["codec"] != "cdt"))
    out = {"method": "akima", "test": "cdt", "rate": "bpp", "axes": {"psnr": "PSNR-RGB (dB)", "lpips": "-LPIPS"},
           "per_clip": {}, "average": {}}
    for anchor in curves:
        out["per_clip"][anchor] = {}
        out["average"][anchor] = {}
        for axis, (key, sign, unit) in AXES.items():
            values, excluded = [], []
            for clip in clips:
                pts = lambda curve: [(r["bpp"], sign * r["metrics"][key] if r["metrics"][key] is not None else math.nan)
                                     for r in ok if r["clip"] == clip and r["curve"] == curve]
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


# ---------------------------------------------------------------------------------------------------------
# environment

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _git() -> dict:
    def run(*args):
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = run("rev-parse", "HEAD")
    dirty = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit or None, "dirty": bool(dirty) if commit else None}


def environment(device: str) -> dict:
    import av
    import bjontegaard
    import matplotlib
    import PIL
    import scipy
    import torch

    from cdtcodec import __version__

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    machine = {"cpu": _cpu_model(), "logical_cpus": os.cpu_count(), "usable_cpus": cores,
               "memory_gb": _mem_total_gb(), "platform": platform.platform(), "hostname": platform.node(),
               "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
               "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name(0)
    versions = {"cdtcodec": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "numpy": np.__version__, "av": av.__version__, "ffmpeg": av.ffmpeg_version_info,
                "libav": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
                "bjontegaard": bjontegaard.__version__, "scipy": scipy.__version__,
                "matplotlib": matplotlib.__version__, "pillow": PIL.__version__}
    return {"machine": machine, "versions": versions, "git": _git()}


def resolve_model(cfg: BenchConfig, work: Path, notes: list[str]) -> dict:
    """The weights file cdt runs with; --quick without shipped weights uses a seeded, untrained toy model."""
    from cdtcodec.config import PRESETS as MODEL_PRESETS
    from cdtcodec.weights import WEIGHTS_DIR, file_sha256

    spec = cfg.model
    path = Path(spec)
    toy = False
    if not path.is_file():
        shipped = WEIGHTS_DIR / f"{spec}.safetensors"
        if shipped.is_file():
            path = shipped
        elif cfg.quick and spec in MODEL_PRESETS:
            import torch

            from cdtcodec.config import CDTConfig
            from cdtcodec.model import CDT
            from cdtcodec.weights import save_model

            torch.manual_seed(0)
            path = work / "toy-untrained.safetensors"
            save_model(CDT(CDTConfig(**TOY_CONFIG)), path, "toy-untrained")
            toy = True
            notes.append(f"cdt ran with an UNTRAINED toy model ({TOY_CONFIG}, seed 0): no weights for {spec} at "
                         f"{shipped}. A smoke test of the pipeline; its numbers say nothing about the codec.")
        else:
            raise BenchError(f"{spec}: no such weights file, and no shipped weights at {shipped} "
                             "(pass --model PATH to a weights file)")
    from safetensors import safe_open

    name = path.stem
    try:
        with safe_open(str(path), framework="pt") as f:
            name = (f.metadata() or {}).get("name", name)
    except Exception:
        pass
    return {"spec": spec, "file": str(path), "name": name, "sha256": file_sha256(path), "untrained_toy": toy}


# ---------------------------------------------------------------------------------------------------------
# the run

def _jobs(cfg: BenchConfig) -> list[dict]:
    from cdtcodec.quantize import QUALITY_STEPS

    jobs = []
    if "cdt" in cfg.codecs:
        for q in sorted(cfg.qualities):
            jobs.append({"codec": "cdt", "curve": "cdt", "preset": None, "setting": {"quality": q},
                         "order": q, "step": QUALITY_STEPS[q]})
    for key in cfg.codecs:
        if key == "cdt":
            continue
        ref = REFERENCES[key]
        for preset in cfg.presets:
            for crf in sorted(cfg.crfs[key], reverse=True):
                jobs.append({"codec": key, "curve": f"{key}-{preset}", "preset": preset, "setting": {"crf": crf},
                             "order": -crf, "encoder_preset": ref.presets[preset]})
    return jobs


def curve_label(curve: str) -> str:
    if curve == "cdt":
        return "cdt"
    key, preset = curve.split("-", 1)
    ref = REFERENCES[key]
    value = ref.presets.get(preset, preset)
    return f"{ref.display} {preset}" + (f" (preset {value})" if value != preset else "")


def _run_one(workers: Workers, job: dict, clip: dict, source: Path, streams: Path, work: Path, model: dict | None,
             cfg: BenchConfig) -> dict:
    name = clip["name"]
    tag = "q{}".format(job["setting"]["quality"]) if job["codec"] == "cdt" else "crf{}".format(job["setting"]["crf"])
    stem = f"{name}.{job['curve']}.{tag}"
    settings: dict
    if job["codec"] == "cdt":
        stream = streams / f"{stem}.cdt"
        spec = {"source": str(source), "stream": str(stream), "model": model["file"], "quality": job["setting"]["quality"],
                "device": cfg.device, "threads": cfg.threads, "decoded": str(work / f"{stem}.decoded")}
        kind = "cdt"
        settings = {"encoder": "cdtcodec", "model": model["name"], "weights_sha256": model["sha256"],
                    "quality": job["setting"]["quality"], "quant_step": job["step"], "entropy": _default_entropy(),
                    "seed": 0, "device": cfg.device, "threads": cfg.threads or "torch default",
                    "container": ".cdt (header, chunk index, payload)", "decoded_to": "PNG frames (exact)"}
    else:
        ref = REFERENCES[job["codec"]]
        stream = streams / f"{stem}.{ref.ext}"
        options = {"crf": str(job["setting"]["crf"]), "preset": job["encoder_preset"], **ref.options}
        spec = {"codec": job["codec"], "source": str(source), "stream": str(stream), "options": options,
                "fps": clip["fps"], "width": cfg.size, "height": cfg.size, "decoded": str(work / f"{stem}.decoded")}
        kind = "ref"
        settings = {"encoder": ref.encoder, "options": options, "pix_fmt": "yuv420p",
                    "rgb_to_yuv": "BT.709 limited range (tagged bt709/tv)", "fps": clip["fps"],
                    "rate_control": "CRF (constant quality), no bitrate cap", "gop": "encoder default",
                    "threads": "encoder default", "stream": f"raw {ref.muxer} elementary stream (no container)",
                    "settings_sei_removed": bool(ref.info_sei)}
    run = {"clip": name, "codec": job["codec"], "curve": job["curve"], "label": curve_label(job["curve"]),
           "preset": job["preset"], "setting": job["setting"], "settings": settings, "status": "ok", "error": None,
           "stream": stream.name}
    decoded_dir = Path(spec["decoded"])
    try:
        enc = workers.run(kind, "encode", spec)
        dec = workers.run(kind, "decode", spec)
        nbytes = stream.stat().st_size
        if kind == "cdt":
            decoded = _read_png_dir(decoded_dir)
        else:
            decoded = np.load(str(decoded_dir) + ".npy")
            settings["decoder"] = dec.get("decoder")
            settings["encoder_info"] = enc.get("encoder_info")
            run["stripped_sei_bytes"] = enc.get("stripped_sei_bytes", 0)
            if enc.get("packet_bytes") != nbytes:
                run["note"] = f"packet bytes {enc.get('packet_bytes')} != file bytes {nbytes}"
        frames, pixels = clip["frames"], cfg.size * cfg.size
        duration = frames / float(Fraction(clip["fps"]))
        run.update({"bytes": nbytes, "bpp": 8 * nbytes / (frames * pixels), "kbps": 8 * nbytes / duration / 1000,
                    "frames": frames, "decoded_frames": int(decoded.shape[0])})
        for phase, res in (("encode", enc), ("decode", dec)):
            run[phase] = {"seconds": res["seconds"], "fps": res["frames"] / res["seconds"] if res["seconds"] else None,
                          **{k: res[k] for k in ("first_chunk_s", "first_chunk_frames", "fps_after_first_chunk")
                             if k in res}, **res["memory"]}
        if kind == "cdt":
            from cdtcodec.inspect import describe

            settings["threads"] = enc.get("torch_threads", settings["threads"])
            info = describe(stream)
            head = info["header"]
            settings.update({k: head[k] for k in ("model_id", "quant_step", "entropy_coder", "entropy_params", "seed",
                                                  "sampling_steps", "latent_channels") if k in head})
            settings["entropy"] = head.get("entropy_coder", settings["entropy"])
            run["cdt_bytes"] = {k: info[k] for k in ("header_bytes", "index_bytes", "payload_bytes", "framing_bytes")
                                if k in info}
        run["_decoded"] = decoded
    except (BenchError, OSError, ValueError) as e:
        run.update({"status": "failed", "error": " ".join(str(e).split())})
    finally:
        shutil.rmtree(decoded_dir, ignore_errors=True)
        Path(str(decoded_dir) + ".npy").unlink(missing_ok=True)
        if not cfg.keep_streams:
            stream.unlink(missing_ok=True)
    return run


def _setting_text(setting: dict) -> str:
    return " ".join(f"{k} {v}" for k, v in setting.items())


def _default_entropy() -> str:
    from bitstream import DEFAULT_CODER

    return DEFAULT_CODER


def _read_png_dir(path: Path) -> np.ndarray:
    from PIL import Image

    files = sorted(path.glob("frame_*.png"))
    if not files:
        raise BenchError(f"{path}: the decoder wrote no frames")
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


def run(cfg: BenchConfig, console=None) -> dict:
    """Run the benchmark described by `cfg`; writes results.json/.csv, the plots and summary.md into cfg.out."""
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from cdtcodec.lpips import LPIPS, default_weights_path
    from cdtcodec.weights import file_sha256

    console = console or Console(stderr=True)
    started = time.time()
    out = cfg.out
    work, streams = out / "work", out / "streams"
    work.mkdir(parents=True, exist_ok=True)
    streams.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    env = environment(cfg.device)
    model = resolve_model(cfg, work, notes) if "cdt" in cfg.codecs else None
    lpips = LPIPS.from_file()
    names = clip_names(cfg.clips)
    jobs = _jobs(cfg)
    if not jobs:
        raise BenchError("nothing to run: no codec with a setting")
    clips, runs = [], []
    workers = Workers(with_torch="cdt" in cfg.codecs)
    partial = out / "runs.partial.jsonl"
    partial.unlink(missing_ok=True)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("bench", total=len(jobs) * len(cfg.clips))
        for path, name in zip(cfg.clips, names):  # all clips first: a bad input fails before hours of work
            progress.update(task, description=f"{name}: preparing")
            clips.append(prepare_clip(path, name, cfg.size, cfg.frames, work))
        for clip in clips:
            name = clip["name"]
            source = work / clip["lossless_source"]
            frames, _ = read_video(source)
            for job in jobs:
                label = curve_label(job["curve"])
                progress.update(task, description=f"{name}: {label} {_setting_text(job['setting'])}")
                r = _run_one(workers, job, clip, source, streams, work, model, cfg)
                decoded = r.pop("_decoded", None)
                if decoded is not None:
                    try:
                        m = frame_metrics(frames, decoded, lpips)
                        r["metrics"], r["per_frame"] = m["clip"], m["per_frame"]
                    except BenchError as e:
                        r.update({"status": "failed", "error": str(e)})
                if r["status"] != "ok":
                    progress.console.print(f"[yellow]failed[/]: {name} {label} {_setting_text(r['setting'])}: {r['error']}",
                                           highlight=False)
                runs.append(r)
                with open(partial, "a") as f:
                    f.write(json.dumps(r) + "\n")
                progress.advance(task)
            source.unlink(missing_ok=True)
        progress.update(task, description="done")
    shutil.rmtree(work, ignore_errors=True)
    if not cfg.keep_streams:
        shutil.rmtree(streams, ignore_errors=True)

    env["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    bd = compute_bd(runs, [c["name"] for c in clips]) if "cdt" in cfg.codecs else \
        {"method": "akima", "reason": "cdt was not run", "per_clip": {}, "average": {}}
    notes.append(PSNR_CAP_NOTE)
    if any(c["upscaled"] for c in clips):
        notes.append("some clips were smaller than --size and were upscaled: " +
                     ", ".join(c["name"] for c in clips if c["upscaled"]))
    coverage = _coverage(runs, [c["name"] for c in clips])
    results = {
        "schema": SCHEMA, "tool": "cdtcodec bench",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": time.time() - started,
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv else None,
        "settings": {"clips": cfg.clips, "codecs": list(cfg.codecs), "qualities": list(cfg.qualities),
                     "presets": list(cfg.presets), "crfs": {k: list(v) for k, v in cfg.crfs.items() if k in cfg.codecs},
                     "size": cfg.size, "frames": cfg.frames, "model": cfg.model, "device": cfg.device,
                     "threads": cfg.threads, "quick": cfg.quick},
        "model": model,
        "lpips": {"net": "alex", "version": "0.1", "weights": default_weights_path().name,
                  "sha256": file_sha256(default_weights_path())},
        **env,
        "method": _method(),
        "notes": notes,
        "clips": clips,
        "curves": {c: curve_label(c) for c in dict.fromkeys(r["curve"] for r in runs)},
        "runs": runs,
        "coverage": coverage,
        "bd_rate": bd,
        "failed": sum(r["status"] != "ok" for r in runs),
    }
    write_outputs(results, out)
    partial.unlink(missing_ok=True)
    return results


def _coverage(runs: list[dict], clips: list[str]) -> dict:
    """Per clip: does each reference curve's rate range cover cdt's? (BD-rate needs overlapping curves.)"""
    out = {}
    for clip in clips:
        ok = [r for r in runs if r["clip"] == clip and r["status"] == "ok"]
        cdt = [r["bpp"] for r in ok if r["codec"] == "cdt"]
        entry = {"cdt_bpp": [min(cdt), max(cdt)] if cdt else None}
        for curve in sorted({r["curve"] for r in ok if r["codec"] != "cdt"}):
            b = [r["bpp"] for r in ok if r["curve"] == curve]
            entry[curve] = {"bpp": [min(b), max(b)],
                            "covers_cdt_rates": bool(cdt) and min(b) <= min(cdt) and max(b) >= max(cdt)}
        out[clip] = entry
    return out


def _method() -> dict:
    doc = __doc__.split("What it measures, and how", 1)[1]
    items = [" ".join(p.split()) for p in doc.split("\n* ")[1:]]
    return {"description": items, "psnr": "per clip: 10 log10(255^2 / MSE over all frames and pixels); "
            "psnr_rgb_frame_mean: mean of the per-frame PSNRs", "bd_rate": {
                "package": "bjontegaard", "interpolation": "akima", "rate": "bpp (log10)",
                "test": "cdt", "anchor": "each reference curve", "psnr_axis": "PSNR-RGB (dB)",
                "lpips_axis": "-LPIPS (higher is better; same BD-rate as 1-LPIPS)",
                "overlap_rule": "integrate only over the quality interval where both curves exist; null with the "
                                "reason when there is none or a curve has < 2 monotone points",
                "low_overlap_flag": LOW_OVERLAP,
                "average": "mean of the per-clip values that exist (count and exclusions given)"}}


# ---------------------------------------------------------------------------------------------------------
# outputs

CSV_FIELDS = ["clip", "codec", "curve", "preset", "setting", "value", "status", "bytes", "bpp", "kbps", "psnr_rgb",
              "psnr_y", "psnr_rgb_frame_mean", "ssim", "lpips", "encode_s", "encode_fps", "decode_s", "decode_fps",
              "encode_peak_rss_mb", "encode_peak_growth_mb", "decode_peak_rss_mb", "decode_peak_growth_mb", "error"]


def _csv_row(r: dict) -> dict:
    (setting, value), = r["setting"].items()
    row = {"clip": r["clip"], "codec": r["codec"], "curve": r["curve"], "preset": r["preset"] or "",
           "setting": setting, "value": value, "status": r["status"], "error": r["error"] or ""}
    if r["status"] == "ok":
        m = r["metrics"]
        row.update({"bytes": r["bytes"], "bpp": r["bpp"], "kbps": r["kbps"], **{k: m[k] for k in
                    ("psnr_rgb", "psnr_y", "psnr_rgb_frame_mean", "ssim", "lpips")},
                    "encode_s": r["encode"]["seconds"], "encode_fps": r["encode"]["fps"],
                    "decode_s": r["decode"]["seconds"], "decode_fps": r["decode"]["fps"],
                    "encode_peak_rss_mb": r["encode"]["peak_rss_mb"], "encode_peak_growth_mb": r["encode"]["peak_growth_mb"],
                    "decode_peak_rss_mb": r["decode"]["peak_rss_mb"], "decode_peak_growth_mb": r["decode"]["peak_growth_mb"]})
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


def write_outputs(results: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "csv": out / "results.csv", "psnr_plot": out / "rd_psnr.png",
             "lpips_plot": out / "rd_lpips.png", "summary": out / "summary.md"}
    _atomic_text(paths["json"], json.dumps(_json_safe(results), indent=1, allow_nan=False) + "\n")
    tmp = paths["csv"].with_name("results.csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in results["runs"]:
            writer.writerow({k: ("" if v is None else v) for k, v in _csv_row(r).items()})
    tmp.replace(paths["csv"])
    plot(results, "psnr_rgb", "PSNR-RGB (dB)", paths["psnr_plot"])
    plot(results, "lpips", "LPIPS-Alex (lower is better)", paths["lpips_plot"])
    _atomic_text(paths["summary"], summary_markdown(results))
    return paths


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def average_curves(results: dict) -> dict[str, list[dict]]:
    """Per curve and setting, the mean over clips (only settings that succeeded on every clip)."""
    clips = [c["name"] for c in results["clips"]]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results["runs"]:
        if r["status"] == "ok":
            groups.setdefault((r["curve"], json.dumps(r["setting"])), []).append(r)
    out: dict[str, list[dict]] = {}
    for (curve, setting), rs in groups.items():
        if len({r["clip"] for r in rs}) != len(clips):
            continue

        def mean(get):
            values = [get(r) for r in rs]
            return None if any(v is None for v in values) else float(np.mean(values))

        out.setdefault(curve, []).append({
            "setting": json.loads(setting), "bpp": mean(lambda r: r["bpp"]), "kbps": mean(lambda r: r["kbps"]),
            **{k: mean(lambda r, k=k: r["metrics"][k]) for k in ("psnr_rgb", "psnr_y", "ssim", "lpips")},
            "encode_fps": sum(r["frames"] for r in rs) / sum(r["encode"]["seconds"] for r in rs),
            "decode_fps": sum(r["frames"] for r in rs) / sum(r["decode"]["seconds"] for r in rs),
            "encode_peak_growth_mb": max(r["encode"]["peak_growth_mb"] for r in rs),
            "decode_peak_growth_mb": max(r["decode"]["peak_growth_mb"] for r in rs),
            "encode_peak_rss_mb": max(r["encode"]["peak_rss_mb"] for r in rs),
            "decode_peak_rss_mb": max(r["decode"]["peak_rss_mb"] for r in rs)})
    for pts in out.values():
        pts.sort(key=lambda p: p["bpp"])
    return out


def plot(results: dict, key: str, ylabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = [c["name"] for c in results["clips"]]
    panels = clips + (["average"] if len(clips) > 1 else [])
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.2 * cols, 9.0), 3.4 * rows + 0.8), squeeze=False)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    curves = list(results["curves"])
    families = list(dict.fromkeys(c.split("-", 1)[0] for c in curves))
    colours = {c: plt.cm.tab10(families.index(c.split("-", 1)[0]) % 10) for c in curves}
    avg = average_curves(results)
    for ax, panel in zip(axes.flat, panels):
        for curve in curves:
            if panel == "average":
                pts = [(p["bpp"], p[key]) for p in avg.get(curve, []) if p[key] is not None]
            else:
                pts = sorted((r["bpp"], r["metrics"][key]) for r in results["runs"] if r["clip"] == panel and
                             r["curve"] == curve and r["status"] == "ok" and r["metrics"][key] is not None)
            if not pts:
                continue
            x, y = zip(*pts)
            style = dict(lw=2.2, marker="o", ms=5) if curve == "cdt" else dict(lw=1.2, marker=".", ms=6)
            ax.plot(x, y, label=results["curves"][curve], color=colours[curve],
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
        h, l = ax.get_legend_handles_labels()
        if len(l) > len(labels):
            handles, labels = h, l
    size, frames = results["settings"]["size"], results["clips"][0]["frames"] if results["clips"] else 0
    model = results.get("model") or {}
    fig.suptitle(f"cdtcodec bench: {size}x{size}, {frames} frames, cdt model {model.get('name', '-')}"
                 + (" (UNTRAINED TOY)" if model.get("untrained_toy") else ""), fontsize=11)
    ncol = min(len(labels), 4)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    legend_rows = -(-len(labels) // ncol) if labels else 0
    fig.tight_layout(rect=(0, min(0.4, (0.2 + 0.2 * legend_rows) / fig.get_figheight()), 1, 0.93))
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _fmt(v, spec: str, none: str = "–") -> str:
    return none if v is None else format(v, spec)


def summary_markdown(results: dict) -> str:
    s, m, g = results["settings"], results.get("model") or {}, results["git"]
    clips = results["clips"]
    lines = ["# cdtcodec rate-distortion benchmark", ""]
    lines.append(f"{len(clips)} clip(s) ({', '.join(c['name'] for c in clips)}), {s['size']}x{s['size']}, "
                 f"{clips[0]['frames'] if clips else 0} frames at {clips[0]['fps'] if clips else '-'} fps; "
                 f"cdt model `{m.get('name', '-')}` (sha256 {str(m.get('sha256', ''))[:12]})"
                 + (" — **untrained toy model: smoke test only**" if m.get("untrained_toy") else "") + ".")
    mach = results["machine"]
    lines.append(f"{results['created']}, commit {str(g.get('commit'))[:10]}{' (dirty)' if g.get('dirty') else ''}, "
                 f"{mach['cpu']} ({mach['usable_cpus']} CPUs), torch {results['versions']['torch']}, "
                 f"FFmpeg {results['versions']['ffmpeg']}, device {mach['device']}.")
    lines += ["", "## BD-rate of cdt against each reference", "",
              "Negative: cdt needs that many percent fewer bits for the same quality; positive: more. Akima, "
              "over the overlapping quality interval only; mean of the per-clip values (clips counted).", "",
              "| reference | BD-rate (PSNR-RGB) | BD-rate (LPIPS) |", "|---|---:|---:|"]
    bd = results["bd_rate"]
    if not bd.get("average"):
        lines.append(f"| – | {bd.get('reason', 'no reference run')} | |")
    for curve, axes in bd.get("average", {}).items():
        cells = []
        for axis in ("psnr", "lpips"):
            a = axes[axis]
            cells.append(f"{a['value']:+.1f}% ({a['clips']}/{len(clips)} clips)" if a["value"] is not None
                         else f"n/a: {a['reason']}")
        lines.append(f"| {results['curves'][curve]} | {cells[0]} | {cells[1]} |")
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
            lines.append(f"| {results['curves'][curve]} | {k} {v} | {_fmt(p['bpp'], '.4f')} | {_fmt(p['kbps'], '.1f')} | "
                         f"{_fmt(p['psnr_rgb'], '.2f')} | {_fmt(p['psnr_y'], '.2f')} | {_fmt(p['ssim'], '.4f')} | "
                         f"{_fmt(p['lpips'], '.4f')} | {_fmt(p['encode_fps'], '.1f')} | {_fmt(p['decode_fps'], '.1f')} | "
                         f"{p['encode_peak_growth_mb']:.0f} / {p['decode_peak_growth_mb']:.0f} |")
    lines += ["", "Peak MB: growth of a fresh worker's peak resident set over its size before the call "
              "(the worker already holds Python, NumPy, PyAV" + (" and PyTorch" if "cdt" in s["codecs"] else "") + ").",
              "Full data, per frame, with every encoder setting and the machine: results.json; plots rd_psnr.png, "
              "rd_lpips.png."]
    if results["failed"]:
        lines += ["", f"**{results['failed']} run(s) failed**; see results.json."]
    for n in results["notes"]:
        lines += ["", f"Note: {n}"]
    return "\n".join(lines) + "\n"


def console_lines(results: dict, out: Path) -> list[str]:
    """What `cdtcodec bench` prints at the end: where the outputs are, and the averaged BD-rates."""
    lines = [f"bench: {len(results['runs'])} runs on {len(results['clips'])} clip(s) in {results['seconds']:.0f} s -> "
             f"{out}/ (results.json, results.csv, rd_psnr.png, rd_lpips.png, summary.md)"]
    for curve, axes in results["bd_rate"].get("average", {}).items():
        cells = [f"{axis} {a['value']:+.1f}% ({a['clips']} clips)" if a["value"] is not None else f"{axis} n/a"
                 for axis, a in axes.items()]
        lines.append(f"  BD-rate of cdt vs {results['curves'][curve]}: " + ", ".join(cells))
    if (results.get("model") or {}).get("untrained_toy"):
        lines.append("  cdt ran with an untrained toy model (no shipped weights): a smoke test, not a result")
    return lines
