"""Frames <-> latent frames <-> chunks: the one home of the chunk schedule, padding and trimming.

A CDT model maps a video of T = 1 + t*k frames (t = the model's temporal factor, 4) to k + 1 latent frames:
latent frame 0 stands for video frame 0 alone, latent frame j >= 1 for video frames t(j-1)+1 .. tj. Space
shrinks by the spatial factor s (8) per side. Any other length is padded at the tail by repeating the last
frame, any other size at the right and bottom by repeating the edge; the true size and count are recorded
(in the .cdt header) and restored by cropping and trimming.

The streaming encoder takes the video in the chunks this schedule allows: 1 frame, then t at a time.
The factors are read from CDTConfig (which holds every model to /8 and /4), never written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from cdtcodec.config import CDTConfig
from cdtcodec.pixels import from_uint8, to_uint8


@dataclass(frozen=True)
class Timeline:
    """The frame and pixel geometry of one model: `spatial` pixels per latent pixel, `temporal` frames per
    latent frame after the first."""

    spatial: int
    temporal: int

    @classmethod
    def of(cls, cfg: CDTConfig) -> "Timeline":
        return cls(cfg.spatial_factor, cfg.temporal_factor)

    # ---- time

    def coded_frames(self, frames: int) -> int:
        """Smallest 1 + t*k >= frames: what the encoder actually codes."""
        if frames < 1:
            raise ValueError("a video needs at least one frame")
        return 1 + self.temporal * -(-(frames - 1) // self.temporal)

    def latent_frames(self, frames: int) -> int:
        return (self.coded_frames(frames) - 1) // self.temporal + 1

    def frames_of_latents(self, first_latent: int, count: int) -> tuple[int, int]:
        """(first video frame, number of video frames) decoded from latent frames [first_latent, +count)."""
        start = 0 if first_latent == 0 else self.temporal * (first_latent - 1) + 1
        end = self.temporal * (first_latent + count - 1) + 1
        return start, end - start

    def chunk_sizes(self, frames_per_chunk: int | None = None) -> Iterator[int]:
        """The encoder's chunk schedule in video frames: 1, then `frames_per_chunk` (default t) for ever."""
        step = self.temporal if frames_per_chunk is None else frames_per_chunk
        if step < self.temporal or step % self.temporal:
            raise ValueError(f"encoder chunks must be a positive multiple of {self.temporal} frames")
        yield 1
        while True:
            yield step

    def tail_padding(self, pending: int) -> int:
        """Frames to repeat after the last `pending` frames (those after frame 0) to complete a latent frame."""
        return (-pending) % self.temporal

    def pad_tail(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, n, H, W) frames after frame 0 -> a whole number of latent frames, repeating the last frame."""
        pad = self.tail_padding(video.shape[2])
        if not pad:
            return video
        return torch.cat([video, video[:, :, -1:].expand(-1, -1, pad, -1, -1)], dim=2)

    # ---- space

    def coded_size(self, size: int) -> int:
        """A width or height padded up to a multiple of the spatial factor."""
        return -(-size // self.spatial) * self.spatial

    def latent_size(self, size: int) -> int:
        return self.coded_size(size) // self.spatial

    def to_model(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (t, H, W, 3) -> (1, 3, t, H', W') in [-1, 1], padded to the coded size by edge replication."""
        x = from_uint8(frames).unsqueeze(0)
        h, w = frames.shape[1:3]
        coded_h, coded_w = self.coded_size(h), self.coded_size(w)
        if (h, w) != (coded_h, coded_w):
            x = F.pad(x, (0, coded_w - w, 0, coded_h - h, 0, 0), mode="replicate")
        return x

    @staticmethod
    def to_frames(x: torch.Tensor, height: int, width: int) -> np.ndarray:
        """(1, 3, t, H', W') in [-1, 1] -> uint8 (t, height, width, 3), cropped to the original size."""
        return to_uint8(x[0, :, :, :height, :width])


#: The geometry every model has (CDTConfig.validate enforces it): what the .cdt header is checked against
#: before any model is loaded.
CODEC_TIMELINE = Timeline.of(CDTConfig())
