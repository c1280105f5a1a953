"""Chunked encode and decode: the caches make streaming equal to one full pass, in bounded memory.

Frame bookkeeping: a video of T = 1 + 4k frames has k + 1 latent frames. Latent frame 0 stands for video
frame 0 alone; latent frame j >= 1 for video frames 4j-3 .. 4j. Any other length is padded at the tail by
repeating the last frame; the caller records the true count and trims on decode.
"""

from __future__ import annotations

import hashlib

import torch

from cdtcodec.model import CDT
from cdtcodec.nn.layers import Cache


def coded_frame_count(num_frames: int) -> int:
    """Smallest 1 + 4k >= num_frames."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    return 1 + 4 * -(-(num_frames - 1) // 4)


def latent_frame_count(num_frames: int) -> int:
    return (coded_frame_count(num_frames) - 1) // 4 + 1


def frames_of_latents(first_latent: int, count: int) -> tuple[int, int]:
    """(first video frame, number of video frames) decoded from latent frames [first_latent, +count)."""
    start = 0 if first_latent == 0 else 4 * first_latent - 3
    end = 4 * (first_latent + count - 1) + 1
    return start, end - start


def frame_noise(seed: int, first_frame: int, count: int, height: int, width: int,
                channels: int = 3) -> torch.Tensor:
    """Unit Gaussian noise (1, C, count, H, W); frame f depends only on (seed, f), so chunking cannot change it."""
    frames = []
    for f in range(first_frame, first_frame + count):
        digest = hashlib.blake2b(f"{seed}:{f}".encode(), digest_size=8).digest()
        g = torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
        frames.append(torch.randn(channels, height, width, generator=g))
    return torch.stack(frames, dim=1).unsqueeze(0)


class StreamEncoder:
    """Video frames in any pieces -> posterior moments, chunk by chunk: 1 frame, then `chunk_frames` at a time.

    push() takes (B, 3, t, H, W) in [-1, 1] and returns the moments chunks that became ready, each
    (B, 2L, t', h, w); finish() pads the tail to 1 + 4k frames by repeating the last frame.
    """

    def __init__(self, model: CDT, chunk_frames: int = 4):
        if chunk_frames < 4 or chunk_frames % 4:
            raise ValueError("encoder chunks must be a positive multiple of 4 frames")
        self.model = model
        self.chunk_frames = chunk_frames
        self.cache: Cache = {}
        self.pending: torch.Tensor | None = None
        self.frames_in = 0
        self.first_done = False

    @torch.no_grad()
    def push(self, frames: torch.Tensor) -> list[torch.Tensor]:
        self.frames_in += frames.shape[2]
        self.pending = frames if self.pending is None else torch.cat([self.pending, frames], dim=2)
        outs = []
        while self.pending is not None:
            need = self.chunk_frames if self.first_done else 1
            if self.pending.shape[2] < need:
                break
            outs.append(self.model.moments(self.pending[:, :, :need], self.cache))
            self.first_done = True
            rest = self.pending[:, :, need:]
            self.pending = rest if rest.shape[2] else None
        return outs

    @torch.no_grad()
    def finish(self) -> list[torch.Tensor]:
        if self.frames_in == 0:
            raise ValueError("no frames to encode")
        if self.pending is None:
            return []
        pad = (-self.pending.shape[2]) % 4
        tail = self.pending[:, :, -1:].expand(-1, -1, pad, -1, -1)
        chunk = torch.cat([self.pending, tail], dim=2)
        self.pending = None
        return [self.model.moments(chunk, self.cache)]


class StreamDecoder:
    """Latent frames in any pieces -> video frames, `chunk_latents` latent frames per denoiser pass.

    The initial noise of each output frame comes from frame_noise(seed, frame index) unless `noise_unit`
    gives it explicitly as a function (first_frame, count, H, W) -> (1, 3, count, H, W).
    """

    def __init__(self, model: CDT, seed: int = 0, steps: int | None = None, chunk_latents: int = 1,
                 noise_unit=None):
        if chunk_latents < 1:
            raise ValueError("decoder chunks need at least one latent frame")
        self.model = model
        self.seed = seed
        self.steps = steps or model.cfg.sample_steps
        self.chunk_latents = chunk_latents
        self.noise_unit = noise_unit or (lambda first, n, h, w: frame_noise(seed, first, n, h, w))
        self.context_cache: Cache = {}
        self.step_caches: list[Cache] = [{} for _ in range(self.steps)]
        self.latents_in = 0

    @torch.no_grad()
    def push(self, latent: torch.Tensor) -> list[torch.Tensor]:
        """(B, L, t', h, w) -> decoded chunks (B, 3, t, 8h, 8w) in [-1, 1] (not clamped), in order."""
        outs = []
        for i in range(0, latent.shape[2], self.chunk_latents):
            piece = latent[:, :, i : i + self.chunk_latents]
            first, count = frames_of_latents(self.latents_in, piece.shape[2])
            h, w = piece.shape[3] * 8, piece.shape[4] * 8
            noise = self.noise_unit(first, count, h, w).to(latent.device, latent.dtype)
            noise = noise.expand(piece.shape[0], -1, -1, -1, -1)
            outs.append(self.model.decode(piece, noise, self.steps, self.context_cache, self.step_caches))
            self.latents_in += piece.shape[2]
        return outs
