"""One corpus worker: the model loaded once, then one clip after another, each failure kept to its clip.

The same Worker runs in the calling process (--jobs 1), in each local worker process (--jobs N, local.py)
and in each Ray actor (ray_runner.py); what it is given (Settings, Task) and what it gives back (Outcome)
are plain data, so they cross process boundaries as they are.
"""

from __future__ import annotations

import dataclasses
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

from cdtcodec.corpus.inputs import Clip
from cdtcodec.rate.coder_choice import ENTROPY_DEFAULT

LATENT_DTYPES = ("float16", "bfloat16")


@dataclass(frozen=True)
class Settings:
    """Everything that encodes one clip of the corpus the same way as every other."""

    model: str
    quality: int | None = None  # None: DEFAULT_QUALITY (unless `step` is given)
    step: float | None = None
    seed: int = 0
    steps: int | None = None
    entropy: str = ENTROPY_DEFAULT
    start_s: float = 0.0
    max_frames: int | None = None
    audio: bool = True
    device: str = "cpu"
    precision: str = "fp32"  # auto, fp32 or bf16 (auto resolved on each worker's own device)
    max_memory: int | None = None  # the limit for all workers together (None: the machine's memory)
    threads: int = 0  # CPU threads of this worker (0: torch's default)
    latents: str | None = None  # a LATENT_DTYPES entry: posterior means for latent shards instead of .cdt files
    #: how the caller spells the parameters that errors name (the command line: its options), for the summary
    option_names: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Task:
    """One clip to encode and where its result goes: the .cdt file, or (latents) the staged entry's path
    without its extensions, which the caller later packs into `entry` (shard#key)."""

    clip: Clip
    output: str
    entry: str = ""
    #: the .cdt did not exist when the run was planned and -y was not given: one that appears meanwhile (another
    #: run writing the same folder) is kept, and this clip fails saying so (bitstream.atomic.only_new)
    new_only: bool = False


@dataclass
class Outcome:
    """What became of one clip: a line of the corpus summary."""

    index: int
    input: str
    output: str
    status: str  # encoded, skipped, failed, interrupted
    frames: int = 0
    bytes: int = 0
    bpp: float = 0.0
    seconds: float = 0.0
    error: str = ""
    width: int = 0
    height: int = 0
    fps: str = ""
    warnings: list[str] = field(default_factory=list)  # about this clip's input (alpha dropped, frames missing)
    note: str = ""  # about how it was coded (e.g. why the default coder fell back to range)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Outcome":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


def split_threads(threads: int, jobs: int) -> list[int]:
    """The CPU threads of each of `jobs` workers sharing `threads` (0: the machine's cores), at least one each."""
    total = threads or os.cpu_count() or 1
    return [max(1, total // jobs + (1 if i < total % jobs else 0)) for i in range(jobs)]


def describe(error: BaseException, source: str = "", names: dict[str, str] | None = None) -> str:
    """One line for a failed clip, without the clip's own path in front (the summary names it); a ParamError's
    parameter is called what `names` calls it (Settings.option_names)."""
    from cdtcodec.errors import ParamError

    if isinstance(error, MemoryError):
        return "out of memory"
    if isinstance(error, OSError) and error.strerror:
        text = f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    elif isinstance(error, ParamError) and names:
        text = " ".join(error.worded(names.get(error.param, error.param)).split())
    else:
        text = " ".join(str(error).split())
    known = _user_errors() + (ParamError, OSError, ValueError)
    if not isinstance(error, known):
        text = f"unexpected {type(error).__name__}" + (f": {text}" if text else "")
    for prefix in (f"{source}: ", f"{source} "):
        if source and text.startswith(prefix):
            text = text[len(prefix):]
    return text or type(error).__name__


def _user_errors() -> tuple[type, ...]:
    from bitstream import BitstreamError
    from cdtcodec.codec import CodecError
    from cdtcodec.limits import MemoryLimitExceeded
    from cdtcodec.media import VideoError
    from cdtcodec.overwrite import OutputRefused
    from cdtcodec.weights import WeightsError

    return BitstreamError, CodecError, MemoryLimitExceeded, VideoError, OutputRefused, WeightsError


def _device(name: str, slot: int) -> str:
    """`cuda` for several workers: one GPU each, in turn."""
    if name != "cuda":
        return name
    import torch

    count = torch.cuda.device_count()
    return f"cuda:{slot % count}" if count > 1 else name


class Worker:
    """Loads the model once (on construction) and encodes clips with it. `slot` numbers the worker among
    `jobs` sharing the machine: its GPU when there are several, and its share of the memory limit."""

    def __init__(self, settings: Settings, slot: int = 0, jobs: int = 1):
        import torch

        from cdtcodec.weights import load

        if settings.threads > 0:
            torch.set_num_threads(settings.threads)
        self.settings = settings
        self.jobs = jobs
        self.device = _device(settings.device, slot)
        started = time.perf_counter()
        self.model = load(settings.model, self.device, settings.precision)
        self.load_seconds = time.perf_counter() - started

    def run(self, task: Task, progress: Callable[[int, int | None], None] | None = None) -> Outcome:
        """Encode one clip; any error of the clip's own becomes a failed Outcome (a signal still raises)."""
        s = self.settings
        clip = task.clip
        warnings: list[str] = []
        note = ""
        started = time.perf_counter()
        output = task.entry or task.output
        try:
            if s.latents:
                from cdtcodec.corpus.shards import stage_clip

                made = stage_clip(clip, task.output, model=self.model, dtype=s.latents, start_s=s.start_s,
                                  max_frames=s.max_frames, device=self.device, progress=progress,
                                  max_memory=s.max_memory, memory_share=self.jobs, notice=warnings.append)
                frames, width, height, fps, size = made.frames, made.width, made.height, made.fps, made.bytes
            else:
                from bitstream.atomic import only_new
                from cdtcodec import codec

                with only_new(task.output) if task.new_only else nullcontext():
                    report = codec.encode(clip.source, task.output, model=self.model, quality=s.quality,
                                          step=s.step, seed=s.seed, steps=s.steps, entropy=s.entropy,
                                          start_s=s.start_s, max_frames=s.max_frames, audio=s.audio,
                                          device=self.device, progress=progress, max_memory=s.max_memory,
                                          memory_share=self.jobs, notice=warnings.append)
                note = report.note
                frames, width, height, fps, size = (report.frames, report.width, report.height, report.fps,
                                                    report.file_bytes)
        except Exception as e:  # the clip's own failure; KeyboardInterrupt (and signals) go through
            return Outcome(clip.index, clip.source, output, "failed", seconds=time.perf_counter() - started,
                           error=describe(e, clip.source, dict(s.option_names)), warnings=warnings)
        return Outcome(clip.index, clip.source, output, "encoded", frames, size,
                       8 * size / max(1, frames * width * height), time.perf_counter() - started, "", width, height,
                       str(fps), warnings, note)
