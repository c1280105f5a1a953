"""Video clip sampling for training and evaluation.

Footage is the segment files written by ``scripts/build_dataset.py``: ``<root>/train/*.mp4`` and
``<root>/val/*.mp4`` (~10 s each, keyframe every ~1 s). Samples are float32 tensors laid out
``(3, T, size, size)`` with values in ``[-1, 1]``; ``T = 1 + 4k`` frames (the tokenizer's
temporal layout: one leading frame then groups of four).

Why an :class:`~torch.utils.data.IterableDataset`: training draws an endless stream of random
windows (random segment weighted by length, random start, crop, scale, flip) rather than walking
a fixed index, so there is nothing for a sampler to shard. Each DataLoader worker of each
distributed rank runs its own random generator, seeded from ``(seed, epoch, rank, worker id)``,
so streams differ across workers/ranks and are reproducible for a given seed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from cdtcodec.pixels import from_uint8
from cdtcodec.timeline import CODEC_TIMELINE

__all__ = ["ClipDataset", "Segment", "ValidationClip", "draw_window", "list_segments", "read_frames",
           "validation_clips", "validation_set"]


@dataclass(frozen=True)
class Segment:
    path: str
    frames: int
    width: int
    height: int
    fps: float
    kind: str = "unknown"  # what the footage is (animation, credits, camera, photo, screen), from the manifest


@dataclass(frozen=True)
class ValidationClip:
    kind: str
    path: str
    start: int  # first frame in the segment
    video: torch.Tensor  # (3, T, size, size) in [-1, 1]


def _split_dir(root: str | Path, split: str) -> Path:
    root = Path(root)
    d = root / split
    return d if d.is_dir() else root


def _probe(path: Path) -> Segment:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = s.frames
        if not n:
            n = sum(1 for p in c.demux(s) if p.size > 0)
        rate = s.average_rate or s.guessed_rate or Fraction(25)
        return Segment(str(path), int(n), s.codec_context.width, s.codec_context.height, float(rate))


def list_segments(root: str | Path, split: str = "train") -> list[Segment]:
    """Segments of one split, sorted by file name.

    Frame counts come from ``<root>/manifest.json`` when it lists the file, else from the file.
    ``root`` may be the data directory (holding ``train/`` and ``val/``) or a split folder.
    """
    d = _split_dir(root, split)
    files = sorted(d.glob("*.mp4"))
    known: dict[str, Segment] = {}
    manifest = Path(root) / "manifest.json"
    if manifest.is_file():
        try:
            m = json.loads(manifest.read_text())
            for src in m.get("sources", []):
                for clip in src.get("clips", []):
                    for s in clip.get("segments", []):
                        p = (Path(root) / s["path"]).resolve()
                        fps = s["fps"][0] / s["fps"][1] if isinstance(s["fps"], list) else float(s["fps"])
                        known[str(p)] = Segment(str(p), int(s["frames"]), int(s["width"]),
                                                int(s["height"]), fps, s.get("kind", "unknown"))
        except (ValueError, KeyError, TypeError):
            known = {}
    out = []
    for f in files:
        seg = known.get(str(f.resolve()))
        out.append(Segment(str(f), seg.frames, seg.width, seg.height, seg.fps, seg.kind) if seg else _probe(f))
    return out


def read_frames(path: str | Path, start: int, count: int) -> np.ndarray:
    """Decode frames ``[start, start + count)`` of a constant-frame-rate file as uint8 (T, H, W, 3).

    Seeks to the keyframe at or before ``start`` and decodes forward from there; falls back to
    decoding from the beginning when timestamps are unusable.
    """
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = s.average_rate or s.guessed_rate
        tb = s.time_base
        t0 = s.start_time or 0
        frames: list[np.ndarray] = []
        if rate and tb and start > 0:
            target = t0 + int(math.floor(Fraction(start) / Fraction(rate) / Fraction(tb)))
            c.seek(target, stream=s, backward=True, any_frame=False)
            ok = True

            def index(pts: int) -> int:  # a timestamp's frame number
                return int(round(float((pts - t0) * tb * rate)))

            for frame in _decode_skipping(c, s, index, start):
                if frame.pts is None:
                    ok = False
                    break
                idx = index(frame.pts)
                if idx > start and not frames:
                    ok = False  # landed after the window start: timestamps not trustworthy
                    break
                if idx >= start:
                    frames.append(frame.to_ndarray(format="rgb24"))
                    if len(frames) == count:
                        break
            if ok and len(frames) == count:
                return np.stack(frames)
            frames = []
            s.codec_context.skip_frame = "DEFAULT"
            c.seek(0, stream=s, backward=True, any_frame=False)
        for idx, frame in enumerate(c.decode(s)):
            if idx >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == count:
                    break
    if len(frames) != count:
        raise ValueError(f"{path}: wanted frames {start}..{start + count - 1}, decoded {len(frames)}")
    return np.stack(frames)


def _decode_skipping(container, stream, index, start: int):
    """The stream's frames from where the container stands, the decoder told to skip the non-reference frames
    of every packet shown before frame `start` (`index(pts)`: a packet's frame number): no frame depends on
    those, and none of them is wanted. The pre-roll from the keyframe is then about half as long to decode
    (x264's default B-frames), a read of 9 frames from 512 x 288 footage 22% faster."""
    decoder = stream.codec_context
    for packet in container.demux(stream):  # its last packet is the empty one that flushes the decoder
        shown_before = packet.pts is not None and index(packet.pts) < start
        decoder.skip_frame = "NONREF" if shown_before else "DEFAULT"
        yield from decoder.decode(packet)


_to_tensor = from_uint8  # uint8 (T, H, W, 3) -> float32 (3, T, H, W) in [-1, 1]


def _resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Antialiased bilinear resize of (3, T, H, W); identity when the size already matches."""
    if x.shape[-2:] == (h, w):
        return x
    y = F.interpolate(x.permute(1, 0, 2, 3), size=(h, w), mode="bilinear", align_corners=False,
                      antialias=True)
    return y.permute(1, 0, 2, 3).clamp_(-1.0, 1.0)


def _check_frames(frames: int) -> None:
    if frames < 1 or CODEC_TIMELINE.coded_frames(frames) != frames:
        raise ValueError(f"frames must be 1 + {CODEC_TIMELINE.temporal}k, got {frames}")


def draw_window(rng: np.random.Generator, length: int, height: int, width: int, frames: int, size: int,
                min_scale: float, flip: float) -> tuple[int, int, int, int, bool]:
    """A random training window of a (length, height, width) video: (first frame, top, left, square crop side
    in source pixels, horizontal flip). The crop is `size` / scale with scale uniform in [min_scale, 1] (never
    below `size` on the source), so a resize to `size` is a random downscale of up to 1 / min_scale."""
    start = int(rng.integers(0, length - frames + 1))
    short = min(width, height)
    lo = max(min_scale, size / short)
    scale = float(rng.uniform(lo, 1.0)) if lo < 1.0 else 1.0
    crop = min(short, max(size, int(round(size / scale))))
    y0 = int(rng.integers(0, height - crop + 1))
    x0 = int(rng.integers(0, width - crop + 1))
    return start, y0, x0, crop, bool(rng.random() < flip)


class ClipDataset(torch.utils.data.IterableDataset):
    """Endless (or ``num_samples``-long) stream of random training clips.

    Each item is a float32 tensor ``(3, frames, size, size)`` in ``[-1, 1]``: ``frames``
    consecutive frames (``1 + 4k``) from a random segment (probability proportional to its
    number of possible windows), randomly downscaled by a factor in ``[min_scale, 1]`` (never
    below ``size`` on the short side, so crops see more context), randomly cropped to
    ``size x size``, and flipped horizontally with probability ``flip``. Segments shorter than
    ``frames`` or with a short side below ``size`` are not used.

    Randomness: worker ``w`` of rank ``r`` draws from ``numpy.random.default_rng([seed, epoch,
    r, w])``; ``rank``/``world_size`` default to ``torch.distributed`` when it is initialised
    (at construction, or else when iteration starts).
    Call :meth:`set_epoch` to get a fresh stream per epoch. With ``num_samples`` set, each rank
    yields that many items in total, split over its DataLoader workers.
    """

    def __init__(self, root: str | Path, frames: int = 17, size: int = 256, *, split: str = "train",
                 seed: int = 0, min_scale: float = 1.0, flip: float = 0.5,
                 num_samples: int | None = None, rank: int | None = None,
                 world_size: int | None = None, kind_mix: dict[str, float] | None = None) -> None:
        super().__init__()
        _check_frames(frames)
        if not 0.0 < min_scale <= 1.0:
            raise ValueError("min_scale must be in (0, 1]")
        self.root, self.frames, self.size, self.split = Path(root), frames, size, split
        self.seed, self.min_scale, self.flip, self.num_samples = seed, min_scale, flip, num_samples
        if rank is None and torch.distributed.is_available() and torch.distributed.is_initialized():
            # Resolved here, in the launching process: spawned DataLoader workers have no process group.
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        self._rank, self._world_size = rank, world_size
        self.epoch = 0
        all_segs = list_segments(root, split)
        self.segments = [s for s in all_segs if s.frames >= frames and min(s.width, s.height) >= size]
        if not self.segments:
            raise ValueError(f"no segment in {_split_dir(root, split)} holds {frames} frames of at "
                             f"least {size}x{size} ({len(all_segs)} segment(s) found)")
        w = np.array([s.frames - frames + 1 for s in self.segments], dtype=np.float64)
        # kind_mix: the share of samples each kind of footage gets (renormalised over the kinds present; kinds it
        # does not name are not drawn), so a long film does not drown the camera footage. Within a kind,
        # segments are drawn by their number of windows.
        present = {k: v for k, v in (kind_mix or {}).items() if v > 0 and any(s.kind == k for s in self.segments)}
        if present:
            kinds = np.array([s.kind for s in self.segments])
            share = np.zeros_like(w)
            for kind, v in present.items():
                mine = kinds == kind
                share[mine] = w[mine] / w[mine].sum() * v
            w = share
        self.weights = w / w.sum()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rank_info(self) -> tuple[int, int]:
        if self._rank is not None:
            return self._rank, self._world_size or 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def rng_for(self, rank: int, worker: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, rank, worker])

    def sample(self, rng: np.random.Generator) -> torch.Tensor:
        """Draw one clip with the given generator."""
        seg = self.segments[int(rng.choice(len(self.segments), p=self.weights))]
        start, y0, x0, crop, flip = draw_window(rng, seg.frames, seg.height, seg.width, self.frames, self.size,
                                                self.min_scale, self.flip)
        frames = read_frames(seg.path, start, self.frames)[:, y0:y0 + crop, x0:x0 + crop]
        if flip:
            frames = frames[:, :, ::-1]
        return _resize(_to_tensor(frames), self.size, self.size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        rank, world = self._rank_info()
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = self.rng_for(rank, worker)
        if self.num_samples is None:
            while True:
                yield self.sample(rng)
        n = self.num_samples // n_workers + (1 if worker < self.num_samples % n_workers else 0)
        for _ in range(n):
            yield self.sample(rng)


def validation_set(root: str | Path, frames: int = 17, size: int = 256, count: int = 8, *,
                   split: str = "val", plain_std: float = 0.03) -> list[ValidationClip]:
    """A fixed, deterministic list of ``count`` evaluation clips drawn across the kinds of footage.

    The count is shared evenly between the kinds the manifest gives the split's segments (in name
    order; the first kinds take the remainder), so no single source dominates. Within a kind, window
    starts are spread evenly over its non-overlapping windows (segments in file order). Each clip is
    resized so its short side is ``size`` (antialiased) and center-cropped. A window whose first frame
    is nearly uniform (pixel std below ``plain_std``, e.g. black frames) is replaced by the next window
    of the same segment, when there is one.
    """
    _check_frames(frames)
    segs = [s for s in list_segments(root, split) if s.frames >= frames]
    if not segs:
        raise ValueError(f"no segment with {frames} frames in {_split_dir(root, split)}")
    kinds = sorted({s.kind for s in segs})
    share = [count // len(kinds) + (1 if k < count % len(kinds) else 0) for k in range(len(kinds))]
    picks = []
    for kind, n in zip(kinds, share):
        windows = [(s, k * frames) for s in segs if s.kind == kind for k in range(s.frames // frames)]
        n = min(n, len(windows))
        picks += [windows[int(j * len(windows) / n)] for j in range(n)]
    clips = []
    used = set()
    for seg, start in picks:
        clip = None
        while start + frames <= seg.frames:
            if (seg.path, start) not in used:
                x = _to_tensor(read_frames(seg.path, start, frames))
                if x[:, 0].std().item() >= plain_std or clip is None:
                    clip = (start, x)
                if x[:, 0].std().item() >= plain_std:
                    break
            start += frames
        if clip is None:
            continue
        used.add((seg.path, clip[0]))
        x = clip[1]
        h, w = x.shape[-2:]
        s = size / min(h, w)
        nh, nw = max(size, int(round(h * s))), max(size, int(round(w * s)))
        x = _resize(x, nh, nw)
        top, left = (nh - size) // 2, (nw - size) // 2
        clips.append(ValidationClip(seg.kind, seg.path, clip[0],
                                    x[:, :, top:top + size, left:left + size].contiguous()))
    return clips


def validation_clips(root: str | Path, frames: int = 17, size: int = 256, count: int = 8, *,
                     split: str = "val", plain_std: float = 0.03) -> list[torch.Tensor]:
    """The videos of :func:`validation_set`."""
    return [c.video for c in validation_set(root, frames, size, count, split=split, plain_std=plain_std)]
