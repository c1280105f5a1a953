"""What a benchmark run is: the reference codecs, the default and the quick settings, BenchConfig."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from cdtcodec.errors import ParamError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SCHEMA = 1


class BenchError(ValueError):
    """A benchmark request that cannot be run; the message is one line."""


class BadBenchArgument(ParamError, BenchError):
    """An argument of make_config that cannot be used; the message names the parameter (see ParamError)."""


@dataclass(frozen=True)
class RefCodec:
    """A reference encoder through PyAV: how to run it and what its presets mean."""

    key: str
    display: str
    encoder: str  # FFmpeg encoder name
    muxer: str  # raw elementary-stream muxer
    ext: str
    crfs: tuple[int, ...]  # default CRF grid (spans ~0.005 .. 0.5 bpp at 256x256 on the validation footage)
    presets: dict[str, str]  # our preset name -> the encoder's preset value
    options: dict[str, str] = field(default_factory=dict)
    info_sei: tuple[bytes, int] | None = None  # (text prefix of the settings SEI, NAL type removed by filter_units)


REFERENCES: dict[str, RefCodec] = {
    "x264": RefCodec("x264", "x264", "libx264", "h264", "264", (10, 16, 22, 28, 34, 40, 46, 51),
                     {"medium": "medium", "slow": "slow"}, {}, (b"x264 - core", 6)),
    "x265": RefCodec("x265", "x265", "libx265", "hevc", "265", (10, 16, 22, 28, 34, 40, 46, 51),
                     {"medium": "medium", "slow": "slow"}, {"x265-params": "log-level=error"}, (b"x265 (build", 39)),
    "svtav1": RefCodec("svtav1", "SVT-AV1", "libsvtav1", "obu", "obu", (10, 20, 30, 40, 48, 55, 63),
                       {"medium": "6", "slow": "5"}, {}, None),
}
#: cdtcodec's own curves -> their entropy coder: the default (None), the test curve of every BD-rate, and the
#: version-1 range coder on the same model: the same symbols, so the same frames, and so the anchor that
#: measures what the default coder saves
CDT_CURVES: dict[str, str | None] = {"cdt": None, "cdt-range": "range", "cdt-fp32": None, "cdt-bf16": None}
#: the curves whose networks run at a fixed precision (the others at the run's --precision): the same file
#: decoded both ways side by side, for what bf16 costs in quality and gains in speed
CDT_PRECISIONS = {"cdt-fp32": "fp32", "cdt-bf16": "bf16"}
CODECS = tuple(CDT_CURVES) + tuple(REFERENCES)
PRESETS = ("medium", "slow")
FULL = {"size": 256, "frames": 33, "codecs": tuple(c for c in CODECS if c not in CDT_PRECISIONS), "presets": PRESETS,
        "qualities": None}  # None: all
QUICK = {"size": 32, "frames": 5, "codecs": ("cdt", "x264"), "presets": ("medium",), "qualities": (2, 6),
         "crfs": {"x264": (24, 40), "x265": (24, 40), "svtav1": (30, 55)}}
TOY_CONFIG = {"context_dim": 8, "unet_dim": 4}
LOW_OVERLAP = 0.75


@dataclass
class BenchConfig:
    clips: list[str]
    codecs: tuple[str, ...]
    qualities: tuple[int, ...]
    presets: tuple[str, ...]
    crfs: dict[str, tuple[int, ...]]
    size: int
    frames: int
    out: Path
    model: str
    device: str = "cpu"
    precision: str = "fp32"  # of the cdt curves not in CDT_PRECISIONS (resolved: fp32 or bf16)
    threads: int = 0
    quick: bool = False
    keep_streams: bool = True
    report_frame: int | None = None  # the frame report.html shows of each clip (None: the middle one)

    @property
    def runs_cdt(self) -> bool:
        """Whether any cdtcodec curve runs (the model and PyTorch are needed)."""
        return any(c in CDT_CURVES for c in self.codecs)


def _split(value, param: str, which: str = "") -> list[str]:
    """A comma-separated list (or a sequence) of the parameter `param` (`which`: the part of it, e.g. a codec)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    items = [i.strip() for i in items if i.strip()]
    if not items:
        raise BadBenchArgument(param, f"{which}: empty list")
    return items


def _ints(value, param: str, which: str = "") -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _split(value, param, which))
    except BadBenchArgument:
        raise
    except ValueError:
        raise BadBenchArgument(param, f"{which} expects comma-separated integers, got {value!r}") from None


def parse_crfs(specs: Iterable[str] | None) -> dict[str, tuple[int, ...]]:
    """['x264=18,28,38', 'svtav1=30,50'] -> {'x264': (18, 28, 38), 'svtav1': (30, 50)}."""
    out: dict[str, tuple[int, ...]] = {}
    for spec in specs or ():
        name, sep, values = str(spec).partition("=")
        name = name.strip()
        if not sep or name not in REFERENCES:
            raise BadBenchArgument("crfs", f" expects CODEC=CRF,CRF,... with CODEC one of {', '.join(REFERENCES)}; "
                                           f"got {spec!r}")
        crfs = _ints(values, "crfs", f" {name}")
        hi = 63 if name == "svtav1" else 51
        if any(not 0 <= c <= hi for c in crfs):
            raise BadBenchArgument("crfs", f" {name}: CRF values must be in 0..{hi}")
        out[name] = tuple(sorted(set(crfs)))
    return out


def make_config(clips: Sequence[str] | None = None, *, codecs=None, qualities=None, presets=None, crfs=None,
                size: int | None = None, frames: int | None = None, out: str | Path = "results",
                model: str | None = None, device: str = "cpu", precision: str = "fp32", threads: int = 0,
                quick: bool = False,
                keep_streams: bool = True, report_frame: int | None = None) -> BenchConfig:
    """Resolve the settings (None: the full-run default, or the quick one) and check them."""
    from cdtcodec.rate.quantize import QUALITY_STEPS
    from cdtcodec.weights import DEFAULT_MODEL

    base = QUICK if quick else FULL
    clips = [str(c) for c in (clips or [])]
    if not clips:
        if not quick:
            raise BadBenchArgument("quick", " for the bundled sample)",
                                   before="no clips given (pass video files, or set ")
        clips = [str(ASSETS / "sample.mp4")]
    if quick:
        clips = clips[:1]
    for c in clips:
        if not Path(c).is_file():
            raise BenchError(f"{c}: no such file")
    codec_list = tuple(_split(codecs, "codecs")) if codecs is not None else tuple(base["codecs"])
    for c in codec_list:
        if c not in CODECS:
            raise BadBenchArgument("codecs", f": unknown codec {c!r} (known: {', '.join(CODECS)})")
    codec_list = tuple(dict.fromkeys(codec_list))
    q = _ints(qualities, "qualities") if qualities is not None else (base["qualities"] or tuple(QUALITY_STEPS))
    for v in q:
        if v not in QUALITY_STEPS:
            raise BadBenchArgument("qualities", f": {v} is not a quality ({min(QUALITY_STEPS)}..{max(QUALITY_STEPS)})")
    preset_list = tuple(_split(presets, "presets")) if presets is not None else tuple(base["presets"])
    for p in preset_list:
        if p not in PRESETS:
            raise BadBenchArgument("presets", f": unknown preset {p!r} (known: {', '.join(PRESETS)})")
    grid = {k: r.crfs for k, r in REFERENCES.items()}
    if quick:
        grid.update(QUICK["crfs"])
    grid.update(crfs if isinstance(crfs, dict) else parse_crfs(crfs))
    size = base["size"] if size is None else int(size)
    frames = base["frames"] if frames is None else int(frames)
    if size < 32 or size % 2:
        raise BadBenchArgument("size", f" {size}: must be even (4:2:0 references) and at least 32 (LPIPS needs 32 px)")
    if frames < 1:
        raise BadBenchArgument("frames", " must be >= 1")
    if report_frame is not None and not 0 <= report_frame < frames:
        raise BadBenchArgument("report_frame", f" {report_frame}: must be a frame index, 0..{frames - 1}")
    return BenchConfig(clips=clips, codecs=codec_list, qualities=tuple(sorted(set(q))),
                       presets=tuple(dict.fromkeys(preset_list)), crfs=grid, size=size, frames=frames, out=Path(out),
                       model=model or DEFAULT_MODEL, device=device, precision=precision, threads=threads, quick=quick,
                       keep_streams=keep_streams, report_frame=report_frame)


def curve_label(curve: str) -> str:
    if curve in CDT_CURVES:
        return {"cdt": "cdt", "cdt-range": "cdt, range coder (format 1)", "cdt-fp32": "cdt, fp32",
                "cdt-bf16": "cdt, bf16"}[curve]
    key, preset = curve.split("-", 1)
    ref = REFERENCES[key]
    value = ref.presets.get(preset, preset)
    return f"{ref.display} {preset}" + (f" (preset {value})" if value != preset else "")
