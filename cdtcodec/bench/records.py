"""Typed bench results, from what a worker phase returns to the whole run; `as_dict` gives results.json's form.

Worker phase -> Phase (frames, time, memory, what that codec's phase reports) -> PhaseRecord in a RunRecord
(one clip at one setting) -> BenchResults (every run, the clips, BD-rate, the environment). report, plot and
bdrate read these types; only `as_dict` knows the JSON keys and their order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cdtcodec.bench.config import SCHEMA
from cdtcodec.metrics import ClipQuality


def _fields(record, *absent_when_none: str) -> dict:
    """A record's fields in order, leaving out the named ones while they are None (keys results.json omits)."""
    return {k: v for k, v in asdict(record).items() if not (k in absent_when_none and v is None)}


@dataclass(frozen=True)
class Memory:
    """A phase's resident memory in MB: before it, its peak, the growth; and the CUDA peak when it used CUDA."""

    rss_before_mb: float
    peak_rss_mb: float
    peak_growth_mb: float
    peak_scope: str  # "phase", or why the peak covers the whole worker
    cuda_peak_mb: float | None = None

    def as_dict(self) -> dict:
        return _fields(self, "cuda_peak_mb")


@dataclass(frozen=True)
class ChunkTiming:
    """cdt's progress marks: the first chunk carries the per-process warm-up, the rate after it is the steady one."""

    first_chunk_s: float | None = None
    first_chunk_frames: int | None = None  # None when no chunk was reported
    fps_after_first_chunk: float | None = None

    def as_dict(self) -> dict:
        return _fields(self, "first_chunk_frames")


@dataclass(frozen=True)
class Phase:
    """What one encode or decode in a worker reports; the fields a codec's phase does not have stay None."""

    frames: int
    seconds: float = 0.0  # wall time of the call, set by the worker around it
    memory: Memory | None = None  # likewise
    chunks: ChunkTiming | None = None  # cdt
    torch_threads: int | None = None  # cdt
    packet_bytes: int | None = None  # reference encode: bytes of the packets muxed
    stripped_sei_bytes: int | None = None  # reference encode: the settings SEI removed
    encoder_info: str | None = None  # reference encode: the text of that SEI
    decoder: str | None = None  # reference decode: FFmpeg's decoder name

    def record(self) -> "PhaseRecord":
        return PhaseRecord(self.seconds, self.frames / self.seconds if self.seconds else None, self.chunks,
                           self.memory)


@dataclass(frozen=True)
class PhaseRecord:
    """A run's encode or decode as results.json keeps it."""

    seconds: float
    fps: float | None
    chunks: ChunkTiming | None
    memory: Memory

    def as_dict(self) -> dict:
        return {"seconds": self.seconds, "fps": self.fps, **(self.chunks.as_dict() if self.chunks else {}),
                **self.memory.as_dict()}


@dataclass(frozen=True)
class Clip:
    """One prepared input: where it came from and the lossless source every codec reads."""

    name: str
    path: str
    source_width: int
    source_height: int
    source_codec: str
    fps: str  # exact, as a fraction's text
    frames: int
    frames_requested: int
    size: int
    upscaled: bool
    prepared_sha256: str
    lossless_source: str  # file name in the work folder
    lossless_source_bytes: int

    def as_dict(self) -> dict:
        return _fields(self)


@dataclass
class RunRecord:
    """One codec at one setting on one clip: its settings, then (filled in as it runs) rate, phases, quality."""

    clip: str
    codec: str
    curve: str
    label: str
    preset: str | None
    setting: dict  # {"quality": q} or {"crf": c}
    settings: dict  # every encoder setting, as recorded
    stream: str  # file name of the encoded stream
    status: str = "ok"
    error: str | None = None
    stripped_sei_bytes: int | None = None  # references
    note: str | None = None
    bytes: int | None = None
    bpp: float | None = None
    kbps: float | None = None
    frames: int | None = None
    decoded_frames: int | None = None
    encode: PhaseRecord | None = None
    decode: PhaseRecord | None = None
    cdt_bytes: dict | None = None  # cdt: header / index / payload / framing bytes
    quality: ClipQuality | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def failed(self, error: str) -> None:
        self.status, self.error = "failed", error

    def as_dict(self) -> dict:
        d = {"clip": self.clip, "codec": self.codec, "curve": self.curve, "label": self.label, "preset": self.preset,
             "setting": self.setting, "settings": self.settings, "status": self.status, "error": self.error,
             "stream": self.stream}
        later = {"stripped_sei_bytes": self.stripped_sei_bytes, "note": self.note, "bytes": self.bytes,
                 "bpp": self.bpp, "kbps": self.kbps, "frames": self.frames, "decoded_frames": self.decoded_frames,
                 "encode": self.encode.as_dict() if self.encode else None,
                 "decode": self.decode.as_dict() if self.decode else None, "cdt_bytes": self.cdt_bytes}
        d.update((k, v) for k, v in later.items() if v is not None)  # present once measured
        if self.quality is not None:
            d["metrics"], d["per_frame"] = self.quality.summary(), self.quality.per_frame
        return d


@dataclass
class BenchResults:
    """A whole benchmark run, as results.json holds it (`as_dict`)."""

    created: str
    seconds: float
    command: str | None
    settings: dict
    model: dict | None  # the weights cdt ran with (None: cdt not run)
    lpips: dict
    environment: dict  # machine, versions, git
    method: object
    notes: list[str]
    clips: list[Clip]
    curves: dict[str, str]  # curve -> label
    runs: list[RunRecord]
    coverage: dict
    bd_rate: dict
    failed: int
    schema: int = SCHEMA
    tool: str = "cdtcodec bench"

    def as_dict(self) -> dict:
        return {"schema": self.schema, "tool": self.tool, "created": self.created, "seconds": self.seconds,
                "command": self.command, "settings": self.settings, "model": self.model, "lpips": self.lpips,
                **self.environment, "method": self.method, "notes": self.notes,
                "clips": [c.as_dict() for c in self.clips], "curves": self.curves,
                "runs": [r.as_dict() for r in self.runs], "coverage": self.coverage, "bd_rate": self.bd_rate,
                "failed": self.failed}
