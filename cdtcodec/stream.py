"""Chunked encode and decode: the caches make streaming equal to one full pass, in bounded memory.

The chunk schedule and the frame bookkeeping are the model's Timeline (cdtcodec/timeline.py): the encoder
takes 1 frame, then 4 at a time, and pads the tail; the caller records the true count and trims on decode.
"""

from __future__ import annotations

import torch

from cdtcodec.model import CDT
from cdtcodec.model.layers import Cache
from cdtcodec.sampling import frame_noise
from cdtcodec.timeline import Timeline


class ChunkedEncoder:
    """Video frames in any pieces -> posterior moments, chunk by chunk on the timeline's schedule.

    push() takes (B, 3, t, H, W) in [-1, 1] and returns the moments chunks that became ready, each
    (B, 2L, t', h, w); finish() pads the tail to 1 + 4k frames by repeating the last frame. Subclasses say
    how one chunk is encoded (encode_chunk), keeping whatever state that needs between chunks.
    """

    def __init__(self, timeline: Timeline, chunk_frames: int | None = None):
        self.timeline = timeline
        self.schedule = timeline.chunk_sizes(chunk_frames)
        self.need = next(self.schedule)  # validates chunk_frames
        self.pending: torch.Tensor | None = None
        self.frames_in = 0

    def encode_chunk(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def push(self, frames: torch.Tensor) -> list[torch.Tensor]:
        self.frames_in += frames.shape[2]
        self.pending = frames if self.pending is None else torch.cat([self.pending, frames], dim=2)
        outs = []
        while self.pending is not None and self.pending.shape[2] >= self.need:
            outs.append(self.encode_chunk(self.pending[:, :, : self.need]))
            rest = self.pending[:, :, self.need :]
            self.pending = rest if rest.shape[2] else None
            self.need = next(self.schedule)
        return outs

    @torch.no_grad()
    def finish(self) -> list[torch.Tensor]:
        if self.frames_in == 0:
            raise ValueError("no frames to encode")
        if self.pending is None:
            return []
        chunk = self.timeline.pad_tail(self.pending)
        self.pending = None
        return [self.encode_chunk(chunk)]


class StreamEncoder(ChunkedEncoder):
    """ChunkedEncoder on the PyTorch model: 1 frame, then `chunk_frames` (a multiple of 4) at a time."""

    def __init__(self, model: CDT, chunk_frames: int | None = None):
        super().__init__(Timeline.of(model.cfg), chunk_frames)
        self.model = model
        self.cache: Cache = {}

    def encode_chunk(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.moments(frames, self.cache)


class ChunkedDecoder:
    """Latent frames in any pieces -> video frames, `chunk_latents` latent frames per pass.

    The initial noise of each output frame comes from frame_noise(seed, frame index) unless `noise_unit`
    gives it explicitly as a function (first_frame, count, H, W) -> (1, 3, count, H, W). Subclasses say how
    one piece is decoded from its noise (decode_chunk), keeping whatever state that needs between pieces.
    """

    def __init__(self, timeline: Timeline, seed: int = 0, chunk_latents: int = 1, noise_unit=None):
        if chunk_latents < 1:
            raise ValueError("decoder chunks need at least one latent frame")
        self.timeline = timeline
        self.seed = seed
        self.chunk_latents = chunk_latents
        self.noise_unit = noise_unit or (lambda first, n, h, w: frame_noise(seed, first, n, h, w))
        self.latents_in = 0

    def decode_chunk(self, latent: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def push(self, latent: torch.Tensor) -> list[torch.Tensor]:
        """(B, L, t', h, w) -> decoded chunks (B, 3, t, 8h, 8w) in [-1, 1] (not clamped), in order."""
        outs = []
        s = self.timeline.spatial
        for i in range(0, latent.shape[2], self.chunk_latents):
            piece = latent[:, :, i : i + self.chunk_latents]
            first, count = self.timeline.frames_of_latents(self.latents_in, piece.shape[2])
            noise = self.noise_unit(first, count, piece.shape[3] * s, piece.shape[4] * s)
            noise = noise.to(latent.device, latent.dtype).expand(piece.shape[0], -1, -1, -1, -1)
            outs.append(self.decode_chunk(piece, noise))
            self.latents_in += piece.shape[2]
        return outs


class StreamDecoder(ChunkedDecoder):
    """ChunkedDecoder on the PyTorch model: one context cache and one denoiser cache per sampling step."""

    def __init__(self, model: CDT, seed: int = 0, steps: int | None = None, chunk_latents: int = 1,
                 noise_unit=None):
        super().__init__(Timeline.of(model.cfg), seed, chunk_latents, noise_unit)
        self.model = model
        self.steps = steps or model.cfg.sample_steps
        self.context_cache: Cache = {}
        self.step_caches: list[Cache] = [{} for _ in range(self.steps)]

    def decode_chunk(self, latent: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.model.decode(latent, noise, self.steps, self.context_cache, self.step_caches)
