"""How a file's chunks depend on each other, for the writer and the reader.

    zstd, range   every chunk is coded on its own (format version 1): chunk i is decoded from its record alone.
    prior         chunk i is conditioned on the latent frames of chunk i-1 (format version 2), except at a
                  context reset: chunk 0 and every chunk i with i mod N = 0 (N = the header's reset interval;
                  0: chunk 0 only). A reset chunk is coded as if it were the first frame of the video; its
                  payload says so in its first byte (docs/bitstream.md, "Chunk payload, coder prior").

Reading chunk i of a prior file entropy-decodes the chunks from the last reset at or before i up to i (no
neural decode; the reader keeps the last decoded chunk's frames, so reading in order costs one chunk each).
A damaged chunk k makes the chunks after it unreadable up to the next reset; from there on they decode again.

Writing: chunk i's payload is a function of its symbols and of the `context_chunks` chunks before it (none at a
reset), so `payload(i, symbols, before)` codes any chunk on its own; rate control sizes a file that way without
writing it. `encode(i, symbols)` is the same in chunk order, remembering the chunks it was given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from . import spec
from .entropy import make_coder
from .errors import BitstreamError, CorruptRecord, UnsupportedFeature


def guarded(what: str, fn):
    """Run a decoder; anything but a BitstreamError (or running out of memory) becomes CorruptRecord."""
    try:
        return fn()
    except BitstreamError:
        raise
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:  # never let a decoder bug escape untyped
        raise CorruptRecord(f"{what}: undecodable ({type(e).__name__}: {e})") from None


class IndependentChunks:
    """zstd and range: chunk i's payload is a function of chunk i's symbols only."""

    context_chunks = 0

    def __init__(self, header):
        self.header = header
        self.coder = make_coder(header.entropy_coder, header.full_entropy_params())

    def payload(self, i: int, symbols: np.ndarray, before=()) -> bytes:
        return self.coder.encode(symbols)

    def encode(self, i: int, symbols: np.ndarray) -> bytes:
        return self.coder.encode(symbols)

    def decode(self, i: int, payload_of: Callable[[int], bytes]) -> np.ndarray:
        payload = payload_of(i)
        what = f"chunk {i}"
        return guarded(what, lambda: self.coder.decode(payload, self.header.chunk_shape(i), what=what))


def load_prior_for(header, prior):
    """The PriorWeights for a prior-coded header: `prior` is PriorWeights or a path to its file; its SHA-256 and
    channel count must be the ones the header names."""
    from .prior import PriorWeights, load_prior

    want = header.full_entropy_params()["prior_sha256"]
    if prior is None:
        raise UnsupportedFeature(f"file: coded with the prior whose sha256 is {want}; no prior weights were given")
    if isinstance(prior, (str, Path)):
        prior = load_prior(prior)
    if not isinstance(prior, PriorWeights):
        raise TypeError("prior must be PriorWeights or the path of a prior weights file")
    if prior.sha256 != want:
        raise UnsupportedFeature(f"file: coded with the prior whose sha256 is {want}, but the given prior "
                                 f"weights have sha256 {prior.sha256}")
    if prior.arch.channels != header.latent_channels:
        raise UnsupportedFeature(f"file: {header.latent_channels} latent channels, but the prior has "
                                 f"{prior.arch.channels}")
    return prior


class PriorChunks:
    """The prior coder across chunks: the writer's and the reader's state (the previous chunk's latent frames)."""

    def __init__(self, header, prior):
        from .prior import PriorCoder

        self.header = header
        weights = load_prior_for(header, prior)
        self.coder = PriorCoder(weights)
        self.keep = weights.arch.prev_frames
        self.step = header.quant_step  # one step (layout 1) or one per channel (layout 2)
        self.interval = header.full_entropy_params()["reset_interval"]
        # the chunks whose frames the next chunk may see (every chunk but the last is full)
        self.context_chunks = -(-self.keep // max(1, header.chunk_latent_frames))
        self._recent: list[np.ndarray] = []  # writer: the last chunks written, oldest first
        self._cached: tuple[int, list[np.ndarray], np.ndarray] | None = None  # reader: (i, history after i, symbols)

    def is_reset(self, i: int) -> bool:
        return i == 0 or (self.interval > 0 and i % self.interval == 0)

    def last_reset(self, i: int) -> int:
        return i - i % self.interval if self.interval else 0

    def _after(self, history: list[np.ndarray], symbols: np.ndarray) -> list[np.ndarray]:
        frames = [np.asarray(symbols[:, t], dtype=np.int64) for t in range(symbols.shape[1])]
        return (history + frames)[-self.keep:]

    def payload(self, i: int, symbols: np.ndarray, before=()) -> bytes:
        """Chunk i's payload, given the symbols of the chunks before it (oldest first, chunk i-1 last): at least
        `context_chunks` of them, or all since the last reset; the older ones are ignored."""
        since_reset = i - self.last_reset(i)
        before = list(before)
        if len(before) < min(since_reset, self.context_chunks):
            raise ValueError(f"chunk {i}: its payload depends on the {min(since_reset, self.context_chunks)} chunk(s) "
                             f"before it, {len(before)} given")
        history: list[np.ndarray] = []
        for chunk in before[len(before) - min(len(before), since_reset, self.context_chunks):]:
            history = self._after(history, np.asarray(chunk))
        body = self.coder.encode(symbols, self.step, history)
        return spec.PRIOR_CHUNK_FLAGS.pack(spec.PRIOR_FLAG_RESET if self.is_reset(i) else 0) + body

    def encode(self, i: int, symbols: np.ndarray) -> bytes:
        body = self.payload(i, symbols, self._recent)
        self._recent = (self._recent + [np.asarray(symbols)])[max(0, len(self._recent) + 1 - self.context_chunks):]
        return body

    def _decode_one(self, j: int, payload: bytes, history: list[np.ndarray]) -> np.ndarray:
        what = f"chunk {j}"
        if len(payload) < spec.PRIOR_CHUNK_FLAGS.size:
            raise CorruptRecord(f"{what}: prior payload without its flags byte")
        (flags,) = spec.PRIOR_CHUNK_FLAGS.unpack_from(payload, 0)
        if flags & ~spec.PRIOR_FLAG_RESET:
            raise CorruptRecord(f"{what}: unknown prior chunk flags {flags:#x}")
        if bool(flags & spec.PRIOR_FLAG_RESET) != self.is_reset(j):
            raise CorruptRecord(f"{what}: context reset flag {flags & 1} disagrees with the reset interval "
                                f"{self.interval}")
        body = payload[spec.PRIOR_CHUNK_FLAGS.size:]
        return guarded(what, lambda: self.coder.decode(body, self.header.chunk_shape(j), self.step, history,
                                                       what=what))

    def decode(self, i: int, payload_of: Callable[[int], bytes]) -> np.ndarray:
        if self._cached is not None and self._cached[0] == i:
            return self._cached[2].copy()
        start = self.last_reset(i)
        history: list[np.ndarray] = []
        if self._cached is not None and start <= self._cached[0] < i:
            start, history = self._cached[0] + 1, self._cached[1]
        self._cached = None
        for j in range(start, i + 1):
            if self.is_reset(j):
                history = []
            try:
                symbols = self._decode_one(j, payload_of(j), history)
            except BitstreamError as e:
                if j == i:
                    raise
                raise CorruptRecord(f"chunk {i}: not decodable: it is conditioned on chunk {j}, which is damaged "
                                    f"({e})") from None
            history = self._after(history, symbols)
        self._cached = (i, history, symbols)
        return symbols.copy()


def chunk_coder(header, prior=None):
    """The writer's / reader's chunk coder for a header (`prior`: PriorWeights or a path, for prior files)."""
    if header.entropy_coder == "prior":
        return PriorChunks(header, prior)
    return IndependentChunks(header)
