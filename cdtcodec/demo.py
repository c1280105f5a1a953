"""`cdtcodec demo`: the bundled clip through encode -> decode with the shipped weights, measured honestly.

The metrics are taken on the exact decoded frames (a PNG folder, lossless) with metrics.clip_quality, the
function the benchmark uses, so the demo reports what `cdtcodec bench` reports for the same clip and setting.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bitstream.atomic import not_a_socket, temporary_folder
from cdtcodec import codec
from cdtcodec.lpips import LPIPS
from cdtcodec.media import open_sink, open_video, read_png_frames
from cdtcodec.metrics import clip_quality


def read_frames(path: str | Path) -> tuple[np.ndarray, object]:
    with open_video(path) as reader:
        return np.stack(list(reader.frames())), reader.info


def run_demo(sample: Path, output: Path, model: str, quality: int, console: Console, precision: str = "fp32") -> dict:
    console.print(f"[bold]cdtcodec demo[/]: {sample.name} through encode -> decode with {model} ({precision}) at "
                  f"quality {quality}")
    not_a_socket(output)  # before any work
    with temporary_folder() as tmp:  # /tmp/cdtcodec-PID-*: a later run removes it if this one is killed
        cdt = Path(tmp) / "sample.cdt"
        exact = Path(tmp) / "recon"  # PNG frames: the decoded frames exactly, for the metrics
        enc = codec.encode(sample, cdt, model=model, quality=quality, precision=precision)
        dec = codec.decode(cdt, f"{exact}/", model=model, precision=precision)
        source, info = read_frames(sample)
        recon = read_png_frames(exact)
        with open_sink(output, info.width, info.height, fps=info.fps) as out:
            for frame in recon:
                out.write(frame)
    measured = clip_quality(source, recon, LPIPS.from_file())
    metrics = {
        "frames": enc.frames, "size": f"{enc.width}x{enc.height}", "bytes": enc.file_bytes,
        "bpp": enc.bpp, "kbps": enc.kbps, "psnr_rgb_db": measured.psnr_rgb, "psnr_y_db": measured.psnr_y,
        "ssim": measured.ssim, "lpips_alex": measured.lpips, "encode_s": enc.seconds, "decode_s": dec.seconds,
        "precision": precision,
    }
    table = Table("measure", "value", title=f"{sample.name} -> {output}")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"decoded video left at [bold]{escape(str(output))}[/]")
    return metrics
