"""The run: jobs over clips x settings, each through the workers, measured, then the reports."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import shutil
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from cdtcodec.bench.bdrate import compute_bd
from cdtcodec.bench.clips import clip_names, prepare_clip, read_video
from cdtcodec.bench.config import CDT_CURVES, CDT_PRECISIONS, REFERENCES, SCHEMA, BenchConfig, BenchError, curve_label
from cdtcodec.bench.environment import environment, resolve_model
from cdtcodec.bench.method import PSNR_CAP_NOTE, method
from cdtcodec.bench.page import ClipFrames, frame_index, make_strip
from cdtcodec.bench.records import BenchResults, Clip, RunRecord
from cdtcodec.bench.report import write_outputs
from cdtcodec.bench.workers import Workers
from cdtcodec.media import VideoError, read_png_frames
from cdtcodec.metrics import clip_quality


def _jobs(cfg: BenchConfig) -> list[dict]:
    jobs = []
    for key in cfg.codecs:
        if key in CDT_CURVES:
            jobs += [{"codec": key, "curve": key, "preset": None, "setting": {"quality": q}, "order": q,
                      "entropy": CDT_CURVES[key] or _default_entropy(),
                      "precision": CDT_PRECISIONS.get(key, cfg.precision)}
                     for q in sorted(cfg.qualities)]
            continue
        ref = REFERENCES[key]
        for preset in cfg.presets:
            for crf in sorted(cfg.crfs[key], reverse=True):
                jobs.append({"codec": key, "curve": f"{key}-{preset}", "preset": preset, "setting": {"crf": crf},
                             "order": -crf, "encoder_preset": ref.presets[preset]})
    return jobs


def _run_one(workers: Workers, job: dict, clip: Clip, source: Path, streams: Path, work: Path, model: dict | None,
             cfg: BenchConfig) -> tuple[RunRecord, np.ndarray | None]:
    """One encode + decode in the workers: the run's record and the decoded frames (None when it failed)."""
    name = clip.name
    cdt = job["codec"] in CDT_CURVES
    tag = "q{}".format(job["setting"]["quality"]) if cdt else "crf{}".format(job["setting"]["crf"])
    stem = f"{name}.{job['curve']}.{tag}"
    settings: dict
    if cdt:
        stream = streams / f"{stem}.cdt"
        spec = {"source": str(source), "stream": str(stream), "model": model["file"],
                "quality": job["setting"]["quality"], "entropy": job["entropy"], "device": cfg.device,
                "precision": job["precision"], "threads": cfg.threads,
                "decoded": str(work / f"{stem}.decoded")}
        kind = "cdt"
        settings = {"encoder": "cdtcodec", "model": model["name"], "weights_sha256": model["sha256"],
                    "quality": job["setting"]["quality"], "entropy": job["entropy"],
                    "seed": 0, "device": cfg.device, "precision": job["precision"],
                    "threads": cfg.threads or "torch default",
                    "container": ".cdt (header, chunk index, payload)", "decoded_to": "PNG frames (exact)"}
    else:
        ref = REFERENCES[job["codec"]]
        stream = streams / f"{stem}.{ref.ext}"
        options = {"crf": str(job["setting"]["crf"]), "preset": job["encoder_preset"], **ref.options}
        spec = {"codec": job["codec"], "source": str(source), "stream": str(stream), "options": options,
                "fps": clip.fps, "width": cfg.size, "height": cfg.size, "decoded": str(work / f"{stem}.decoded")}
        kind = "ref"
        settings = {"encoder": ref.encoder, "options": options, "pix_fmt": "yuv420p",
                    "rgb_to_yuv": "BT.709 limited range (tagged bt709/tv)", "fps": clip.fps,
                    "rate_control": "CRF (constant quality), no bitrate cap", "gop": "encoder default",
                    "threads": "encoder default", "stream": f"raw {ref.muxer} elementary stream (no container)",
                    "settings_sei_removed": bool(ref.info_sei)}
    run = RunRecord(clip=name, codec=job["codec"], curve=job["curve"], label=curve_label(job["curve"]),
                    preset=job["preset"], setting=job["setting"], settings=settings, stream=stream.name)
    decoded_dir = Path(spec["decoded"])
    decoded = None
    try:
        enc = workers.run(kind, "encode", spec)
        dec = workers.run(kind, "decode", spec)
        nbytes = stream.stat().st_size
        if kind == "cdt":
            decoded = read_png_frames(decoded_dir)
        else:
            decoded = np.load(str(decoded_dir) + ".npy")
            settings["decoder"] = dec.decoder
            settings["encoder_info"] = enc.encoder_info
            run.stripped_sei_bytes = enc.stripped_sei_bytes or 0
            if enc.packet_bytes != nbytes:
                run.note = f"packet bytes {enc.packet_bytes} != file bytes {nbytes}"
        frames, pixels = clip.frames, cfg.size * cfg.size
        duration = frames / float(Fraction(clip.fps))
        run.bytes, run.bpp, run.kbps = nbytes, 8 * nbytes / (frames * pixels), 8 * nbytes / duration / 1000
        run.frames, run.decoded_frames = frames, int(decoded.shape[0])
        run.encode, run.decode = enc.record(), dec.record()
        if kind == "cdt":
            from cdtcodec.info import describe

            if enc.torch_threads is not None:
                settings["threads"] = enc.torch_threads
            info = describe(stream)
            head = info["header"]
            settings.update({k: head[k] for k in ("model_id", "quant_step", "entropy_coder", "entropy_params", "seed",
                                                  "sampling_steps", "latent_channels") if k in head})
            settings["entropy"] = head.get("entropy_coder", settings["entropy"])
            run.cdt_bytes = {k: info[k] for k in ("header_bytes", "index_bytes", "payload_bytes", "framing_bytes")
                             if k in info}
    except (BenchError, VideoError, OSError, ValueError) as e:
        run.failed(" ".join(str(e).split()))
    finally:
        shutil.rmtree(decoded_dir, ignore_errors=True)
        Path(str(decoded_dir) + ".npy").unlink(missing_ok=True)
        if not cfg.keep_streams:
            stream.unlink(missing_ok=True)
    return run, decoded


def _setting_text(setting: dict) -> str:
    return " ".join(f"{k} {v}" for k, v in setting.items())


def _default_entropy() -> str:
    from cdtcodec.rate.coder_choice import ENTROPY_DEFAULT

    return ENTROPY_DEFAULT


def run(cfg: BenchConfig, console=None) -> BenchResults:
    """Run the benchmark described by `cfg`; writes results.json/.csv, the plots, summary.md and report.html
    (its images in report/) into cfg.out."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

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
    model = resolve_model(cfg, work, notes) if cfg.runs_cdt else None
    lpips = LPIPS.from_file()
    names = clip_names(cfg.clips)
    jobs = _jobs(cfg)
    if not jobs:
        raise BenchError("nothing to run: no codec with a setting")
    clips, runs, strips = [], [], []
    workers = Workers(with_torch=cfg.runs_cdt)
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
            name = clip.name
            source = work / clip.lossless_source
            frames, _ = read_video(source)
            index = frame_index(len(frames), cfg.report_frame)
            kept = ClipFrames(index, frames[index].copy())  # the report's frame only: memory flat in the length
            first = len(runs)
            for job in jobs:
                label = curve_label(job["curve"])
                progress.update(task, description=f"{name}: {label} {_setting_text(job['setting'])}")
                r, decoded = _run_one(workers, job, clip, source, streams, work, model, cfg)
                if decoded is not None:
                    try:
                        r.quality = clip_quality(frames, decoded, lpips)
                        kept.keep(r, decoded)
                    except ValueError as e:
                        r.failed(str(e))
                del decoded
                if not r.ok:
                    progress.console.print(f"[yellow]failed[/]: {name} {label} {_setting_text(r.setting)}: {r.error}",
                                           highlight=False)
                runs.append(r)
                with open(partial, "a") as f:
                    f.write(json.dumps(r.as_dict()) + "\n")
                progress.advance(task)
            del frames
            progress.update(task, description=f"{name}: report")
            strips.append(make_strip(name, kept, runs[first:], out))
            source.unlink(missing_ok=True)
        progress.update(task, description="done")
    shutil.rmtree(work, ignore_errors=True)
    if not cfg.keep_streams:
        shutil.rmtree(streams, ignore_errors=True)

    env["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    bd = compute_bd(runs, [c.name for c in clips]) if "cdt" in cfg.codecs else \
        {"method": "akima", "reason": "cdt was not run", "per_clip": {}, "average": {}}
    notes.append(PSNR_CAP_NOTE)
    if any(c.upscaled for c in clips):
        notes.append("some clips were smaller than --size and were upscaled: " +
                     ", ".join(c.name for c in clips if c.upscaled))
    results = BenchResults(
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        seconds=time.time() - started,
        command=shlex.join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv else None,
        settings={"clips": cfg.clips, "codecs": list(cfg.codecs), "qualities": list(cfg.qualities),
                  "presets": list(cfg.presets), "crfs": {k: list(v) for k, v in cfg.crfs.items() if k in cfg.codecs},
                  "size": cfg.size, "frames": cfg.frames, "model": cfg.model, "device": cfg.device,
                  "threads": cfg.threads, "quick": cfg.quick, "report_frame": cfg.report_frame},
        model=model,
        lpips={"net": "alex", "version": "0.1", "weights": default_weights_path().name,
               "sha256": file_sha256(default_weights_path())},
        environment=env, method=method(), notes=notes, clips=clips,
        curves={c: curve_label(c) for c in dict.fromkeys(r.curve for r in runs)},
        runs=runs, coverage=_coverage(runs, [c.name for c in clips]), bd_rate=bd,
        failed=sum(not r.ok for r in runs), schema=SCHEMA)
    write_outputs(results, out, strips)
    partial.unlink(missing_ok=True)
    return results


def _coverage(runs: list[RunRecord], clips: list[str]) -> dict:
    """Per clip: does each reference curve's rate range cover cdt's? (BD-rate needs overlapping curves.)"""
    out = {}
    for clip in clips:
        ok = [r for r in runs if r.clip == clip and r.ok]
        cdt = [r.bpp for r in ok if r.codec == "cdt"]
        entry = {"cdt_bpp": [min(cdt), max(cdt)] if cdt else None}
        for curve in sorted({r.curve for r in ok if r.codec != "cdt"}):
            b = [r.bpp for r in ok if r.curve == curve]
            entry[curve] = {"bpp": [min(b), max(b)],
                            "covers_cdt_rates": bool(cdt) and min(b) <= min(cdt) and max(b) >= max(cdt)}
        out[clip] = entry
    return out
