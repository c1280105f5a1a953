"""Clip preparation: decode once, resize and crop, write the lossless source every codec reads."""

from __future__ import annotations

import hashlib
import re
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from bitstream.atomic import AtomicOutput
from cdtcodec.bench.config import BenchError
from cdtcodec.bench.records import Clip


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
    with AtomicOutput(path, suffix=".mkv") as tmp:
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


def read_video(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, object]:
    from cdtcodec.media import open_video

    with open_video(path, max_frames=max_frames) as reader:
        return np.stack(list(reader.frames())), reader.info


def prepare_clip(path: str, name: str, size: int, frames: int, work: Path) -> Clip:
    raw, info = read_video(path, frames)
    clip = prepare_frames(raw, size)
    source = work / f"{name}.source.mkv"
    write_lossless(source, clip, info.fps)
    back, back_info = read_video(source)
    if back.shape != clip.shape or not np.array_equal(back, clip) or back_info.fps != info.fps:
        raise BenchError(f"{path}: the lossless source did not read back bit-exactly ({source})")
    return Clip(name=name, path=str(path), source_width=info.width, source_height=info.height,
                source_codec=info.codec_name, fps=str(info.fps), frames=int(clip.shape[0]), frames_requested=frames,
                size=size, upscaled=min(info.width, info.height) < size,
                prepared_sha256=hashlib.sha256(clip.tobytes()).hexdigest(), lossless_source=source.name,
                lossless_source_bytes=source.stat().st_size)


def clip_names(paths: Sequence[str]) -> list[str]:
    names: list[str] = []
    for p in paths:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(p).stem) or "clip"
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names
