"""Video file <-> .cdt file: the codec's whole data flow, streaming chunk by chunk.

encode: frames (uint8) -> pad to the model's stride -> StreamEncoder (1, 4, 4, ... frames) -> posterior mean
        -> quantize -> one chunk record per latent frame -> .cdt (+ the source audio packets)
decode: .cdt -> chunk records -> dequantize -> StreamDecoder (one latent frame per pass) -> crop, trim
        -> frames (uint8) -> video file (+ the audio packets)

Nothing here prints: progress goes through a callback, so the CLI owns the progress bar.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bitstream import DEFAULT_CODER, CdtReader, CdtWriter, Header
from cdtcodec.quantize import DEFAULT_QUALITY, dequantize, quantize, step_for_quality
from cdtcodec.stream import StreamDecoder, StreamEncoder, coded_frame_count, frames_of_latents, latent_frame_count
from cdtcodec.video_io import VideoWriter, open_video
from cdtcodec.weights import WeightsError, load_model

STRIDE = 8  # the latent grid: H and W are padded up to a multiple of this
Progress = Callable[[int, int | None], None]  # (frames done, frames total or None)


class CodecError(Exception):
    """A request the codec cannot honour; the message is one line."""


@dataclass(frozen=True)
class Report:
    """What one encode or decode did, for the summary line and --json."""

    frames: int
    width: int
    height: int
    fps: Fraction
    file_bytes: int
    seconds: float
    audio: str  # "carried", "none", or why it was dropped

    @property
    def bpp(self) -> float:
        return 8 * self.file_bytes / max(1, self.frames * self.width * self.height)

    @property
    def kbps(self) -> float:
        duration = self.frames / float(self.fps) if self.fps else 0
        return 8 * self.file_bytes / duration / 1000 if duration else 0.0

    def as_dict(self) -> dict:
        return {"frames": self.frames, "width": self.width, "height": self.height, "fps": str(self.fps),
                "bytes": self.file_bytes, "bpp": self.bpp, "kbps": self.kbps, "seconds": self.seconds,
                "fps_processed": self.frames / self.seconds if self.seconds else 0.0, "audio": self.audio}


def padded(size: int) -> int:
    return -(-size // STRIDE) * STRIDE


def frames_to_tensor(frames: np.ndarray, coded_h: int, coded_w: int) -> torch.Tensor:
    """uint8 (t, H, W, 3) -> (1, 3, t, coded_h, coded_w) in [-1, 1], padded by edge replication."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1
    h, w = frames.shape[1:3]
    if (h, w) != (coded_h, coded_w):
        x = F.pad(x, (0, coded_w - w, 0, coded_h - h, 0, 0), mode="replicate")
    return x


def tensor_to_frames(x: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(1, 3, t, H', W') in [-1, 1] -> uint8 (t, height, width, 3), cropped to the original size."""
    x = x[0, :, :, :height, :width].clamp(-1, 1)
    return ((x + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def count_frames(src: str | Path, start_s: float, max_frames: int | None) -> int:
    """Exact number of frames in the selection, by decoding it once (container counts can be absent or
    wrong, and the header must be right before the first chunk is written). Cheap next to the model."""
    with open_video(src, start_s=start_s, max_frames=max_frames) as reader:
        return sum(1 for _ in reader.frames())


def encode(src: str | Path, dst: str | Path, *, model: str | None = None, quality: int = DEFAULT_QUALITY,
           step: float | None = None, seed: int = 0, steps: int | None = None, entropy: str = DEFAULT_CODER,
           start_s: float = 0.0, max_frames: int | None = None, audio: bool = True, device: str = "cpu",
           progress: Progress | None = None) -> Report:
    started = time.time()
    net, name, digest = load_model(model, device)
    step = step if step is not None else step_for_quality(quality)
    if not step > 0:
        raise CodecError("--step must be > 0")
    steps = steps or net.cfg.sample_steps
    if steps < 1:
        raise CodecError("--steps must be >= 1")
    total = count_frames(src, start_s, max_frames)
    if total == 0:
        raise CodecError(f"{src}: no frames to encode" + (f" after {start_s} s" if start_s else ""))
    with open_video(src, start_s=start_s, max_frames=max_frames) as reader:
        info = reader.info
        coded_h, coded_w = padded(info.height), padded(info.width)
        header = Header(
            model_id=name, weights_hash=bytes.fromhex(digest), width=info.width, height=info.height,
            coded_width=coded_w, coded_height=coded_h, num_frames=total, coded_frames=coded_frame_count(total),
            fps_num=info.fps.numerator, fps_den=info.fps.denominator,
            time_base_num=info.time_base.numerator, time_base_den=info.time_base.denominator,
            pix_fmt=info.pix_fmt, color_range=info.color_range, color_space=info.color_space,
            color_primaries=info.color_primaries, color_trc=info.color_trc,
            latent_channels=net.cfg.latent_dim, latent_height=coded_h // STRIDE, latent_width=coded_w // STRIDE,
            latent_frames=latent_frame_count(total), chunk_latent_frames=1, quant_step=(float(step),), entropy_coder=entropy,
            seed=seed, sampling_steps=steps, extensions={},
        )
        encoder = StreamEncoder(net)
        done = 0
        with CdtWriter(dst, header) as writer:
            if audio and info.audio is not None:
                writer.set_audio_track(info.audio)

            def write(moments_chunks: list[torch.Tensor]) -> None:
                for moments in moments_chunks:
                    mean = moments[:, : net.cfg.latent_dim]
                    for t in range(mean.shape[2]):
                        writer.write_chunk(quantize(mean[0, :, t : t + 1], step))

            for batch in reader.batches(_chunk_sizes()):
                write(encoder.push(frames_to_tensor(batch, coded_h, coded_w).to(device)))
                done += batch.shape[0]
                if progress:
                    progress(done, total)
            if done != total:
                raise CodecError(f"{src}: decoded {done} frames on the second pass, {total} on the first")
            write(encoder.finish())
            if audio and info.audio is not None:
                for packet in reader.audio_packets():
                    writer.write_audio_packet(packet)
    size = Path(dst).stat().st_size
    carried = "carried" if audio and info.audio is not None else ("dropped (--no-audio)" if info.audio else "none")
    return Report(done, info.width, info.height, info.fps, size, time.time() - started, carried)


def _chunk_sizes():
    yield 1
    while True:
        yield 4


def parse_frame_range(spec: str | None, total: int) -> tuple[int, int]:
    """'A:B' (either side optional, B exclusive) -> (A, B) clipped to the video."""
    if not spec:
        return 0, total
    try:
        a, b = spec.split(":")
        start = int(a) if a else 0
        end = int(b) if b else total
    except ValueError:
        raise CodecError(f"--frames expects A:B (e.g. 10:50), got {spec!r}") from None
    if not 0 <= start < end:
        raise CodecError(f"--frames {spec}: need 0 <= A < B")
    if start >= total:
        raise CodecError(f"--frames {spec}: the video has only {total} frames")
    return start, min(end, total)


def decode(src, dst: str | Path, *, frames: str | None = None, model: str | None = None, codec: str = "libx264",
           crf: int = 12, preset: str = "medium", audio: bool = True, device: str = "cpu",
           progress: Progress | None = None) -> Report:
    """Decode a .cdt (path or seekable binary file) into a video file, a .y4m, or a folder of PNGs."""
    started = time.time()
    with CdtReader(src) as reader:
        h = reader.header
        first, end = parse_frame_range(frames, h.num_frames)
        net, _, digest = load_model(model or h.model_id, device)
        if bytes.fromhex(digest) != h.weights_hash:
            raise WeightsError(f"the weights ({model or h.model_id}, sha256 {digest[:12]}) are not those the file was "
                               f"encoded with (sha256 {h.weights_hash.hex()[:12]}); pass --model with the right weights")
        step = h.quant_step[0]
        steps_dec = StreamDecoder(net, seed=h.seed, steps=h.sampling_steps)
        fps = Fraction(h.fps_num, h.fps_den)
        source_audio = reader.audio_track
        track = source_audio if audio and first == 0 and end == h.num_frames else None
        written = 0
        with VideoWriter(dst, h.width, h.height, fps=fps, codec=codec, crf=crf, preset=preset, audio=track) as out:
            if track is not None:  # the writer queues audio and interleaves it with the frames
                for packet in reader.audio_packets():
                    out.write_audio_packet(packet)
            for index in range(reader.num_chunks):
                start, count = frames_of_latents(index, 1)
                if start >= end:
                    break  # the index lets us stop reading here
                latent = dequantize(reader.read_chunk(index), step).unsqueeze(0).to(device)
                for x in steps_dec.push(latent):
                    video = tensor_to_frames(x, h.height, h.width)
                    lo, hi = max(first, start), min(end, start + count)
                    for frame in video[lo - start : hi - start]:
                        out.write(frame)
                        written += 1
                if progress:
                    progress(min(end, start + count) - first if start + count > first else 0, end - first)
            skipped = out.audio_skipped_reason
    size = Path(dst).stat().st_size if Path(dst).is_file() else sum(p.stat().st_size for p in Path(dst).iterdir())
    if track is None:
        state = "none" if source_audio is None or not audio else "dropped (frame range)"
    else:
        state = f"dropped ({skipped})" if skipped else "carried"
    return Report(written, h.width, h.height, fps, size, time.time() - started, state)
