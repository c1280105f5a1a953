"""Weights on disk: our safetensors files (config in the metadata), official checkpoints, the shipped default."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from importlib import resources
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from bitstream.atomic import write_atomically
from cdtcodec.config import DEFAULT_MODEL, PRESETS, CDTConfig, get_config
from cdtcodec.model import CDT
from cdtcodec.precision import dtype_of, resolve


def _weights_dir() -> Path:
    """The shipped weights' folder: the package `cdtcodec_weights` (the repository's weights/, package data of
    `pip install .` and `pip install -e .`), or weights/ beside the package in a source tree used uninstalled."""
    try:
        return Path(str(resources.files("cdtcodec_weights")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "weights"


WEIGHTS_DIR = _weights_dir()  # the one place that knows where the shipped weights, priors and cards are


class WeightsError(Exception):
    """Weights that cannot be read or do not fit the model; the message is one line."""


# ---------------------------------------------------------------------------------------------------------
# Official key layout -> ours. Official names are positional (enc.0.1, downs.2.3, block1.block.0); ours
# say what each module is. Rules apply in order to the key with the "model." prefix removed.

def _shift(offset: int, template: str):
    return lambda m: template.format(int(m.group(1)) + offset)


_STAGE_SLOTS = {"enc": ("res", "down", "time_down"), "dec": ("res", "up", "time_up"),
                "downs": ("res1", "res2", "attn", "space", "time"), "ups": ("res1", "res2", "attn", "space", "time")}

_OFFICIAL_RULES: list[tuple[str, object]] = [
    (r"^context_fn\.enc\.(\d+)\.(\d)\.", lambda m: f"encoder.stages.{m[1]}.{_STAGE_SLOTS['enc'][int(m[2])]}."),
    (r"^context_fn\.quant_conv\.", "encoder.quant_conv."),
    (r"^context_fn\.quant_conv_res\.3\.", "encoder.quant_res_out."),
    (r"^context_fn\.quant_conv_res\.(\d)\.", r"encoder.quant_res.\1."),
    (r"^context_fn\.post_quant_conv\.", "context.post_quant_conv."),
    (r"^context_fn\.post_quant_conv_res\.0\.", "context.post_quant_in."),
    (r"^context_fn\.post_quant_conv_res\.(\d)\.", _shift(-1, "context.post_quant_res.{}.")),
    (r"^context_fn\.dec\.(\d+)\.(\d)\.", lambda m: f"context.stages.{m[1]}.{_STAGE_SLOTS['dec'][int(m[2])]}."),
    (r"^denoise_fn\.(downs|ups)\.(\d+)\.(\d)\.", lambda m: f"denoiser.{m[1]}.{m[2]}.{_STAGE_SLOTS[m[1]][int(m[3])]}."),
    (r"^denoise_fn\.final_conv\.0\.", "denoiser.final_norm."),
    (r"^denoise_fn\.final_conv\.1\.", "denoiser.final_conv."),
    (r"^denoise_fn\.", "denoiser."),
    (r"\.block([12])\.block\.0\.", r".block\1.conv."),
    (r"\.block([12])\.block\.1\.", r".block\1.norm."),
    (r"\.mlp\.1\.", ".time_proj."),
    (r"\.fn\.fn\.(to_qkv|to_out)\.", r".\1."),
    (r"\.fn\.norm\.", ".norm."),
]


def official_key_to_ours(key: str) -> str:
    key = key.removeprefix("model.")
    for pattern, repl in _OFFICIAL_RULES:
        key = re.sub(pattern, repl, key)
    return key


def official_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {official_key_to_ours(k): v for k, v in state.items()}


def _unwrap_checkpoint(obj: object) -> dict[str, torch.Tensor]:
    for wrapper in ("state_dict", "module"):
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError("checkpoint holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _looks_like_weights(path: Path) -> bool:
    """Whether the file starts as weights do: a zip (torch.save), a pickle (older torch.save) or safetensors (an
    8-byte header length, then its JSON), so that any other file is named for what it is not, not for where a
    reader happened to fail in it."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return True  # the reader reports why it cannot be read
    return head[:4] == b"PK\x03\x04" or head[:1] == b"\x80" or (len(head) == 9 and head[8:9] == b"{")


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors or torch checkpoint (weights_only), copied into fresh fp32 memory."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if not _looks_like_weights(path):
        raise WeightsError(f"{path}: not a weights file (neither safetensors nor a PyTorch checkpoint)")
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        else:
            tensors = _unwrap_checkpoint(torch.load(path, map_location="cpu", weights_only=True))
    except WeightsError:
        raise
    except Exception as e:  # safetensors/pickle errors vary by version; report them as one line
        first_line = str(e).splitlines()[0] if str(e) else ""
        raise WeightsError(f"{path}: not a readable weights file ({type(e).__name__}: {first_line})") from None
    # A fresh, aligned fp32 copy: mmap-backed tensors change CPU GEMM rounding (and fp16 files are upcast).
    return {k: v.to(torch.float32).clone() for k, v in tensors.items()}


def _mismatch(model: CDT, state: dict[str, torch.Tensor]) -> list[str]:
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [f"shape {k}: file {tuple(state[k].shape)} != model {tuple(v.shape)}"
                 for k, v in own.items() if k in state and state[k].shape != v.shape]
    return problems


def _describe(problems: list[str], limit: int = 8) -> str:
    more = f" (+{len(problems) - limit} more)" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more


def convert_official(path: str | Path, preset: str | None = None) -> tuple[str, dict[str, torch.Tensor]]:
    """Map an official CDT checkpoint onto our layout; the preset is detected from the shapes if not given."""
    raw = read_tensors(path)
    state = official_to_ours(raw)
    candidates = [preset] if preset else list(PRESETS)
    reports = []
    for name in candidates:
        with torch.device("meta"):
            model = CDT(get_config(name))
        problems = _mismatch(model, state)
        if not problems:
            return name, state
        reports.append(f"{name}: {len(problems)} problems: {_describe(problems, 4)}")
    raise WeightsError(f"{path}: does not match " + (" | ".join(reports)))


# ---------------------------------------------------------------------------------------------------------
# Our own files: safetensors with the config (and provenance) in the metadata.

def save_model(model: CDT, path: str | Path, name: str, half: bool = False, extra: dict | None = None) -> None:
    path = Path(path)
    meta = {"format": "cdtcodec", "name": name, "config": json.dumps(dataclasses.asdict(model.cfg))}
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    write_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def _config_from_metadata(meta: dict[str, str]) -> CDTConfig:
    fields = json.loads(meta["config"])
    return CDTConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


_SIMPLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def shipped_weights(name: str) -> Path | None:
    """The shipped weights file called `name` (e.g. "cdt-tiny"), or None: the one lookup of WEIGHTS_DIR."""
    if not _SIMPLE_NAME.fullmatch(name):
        return None
    path = WEIGHTS_DIR / f"{name}.safetensors"
    return path if path.is_file() else None


def weights_path(spec: str | Path | None = None) -> Path:
    """The file load_model(spec) reads: a preset's shipped weights, or the path itself."""
    spec = str(spec or DEFAULT_MODEL)
    path = Path(spec)
    if spec in PRESETS and not path.exists():
        path = shipped_weights(spec)
        if path is None:
            raise WeightsError(f"no shipped weights for {spec} (expected {WEIGHTS_DIR / spec}.safetensors); "
                               "convert a checkpoint with `cdtcodec convert`")
    return path


def load_model(spec: str | Path | None = None, device: str | torch.device = "cpu",
               precision: str = "fp32") -> tuple[CDT, str, str]:
    """A preset name (its shipped weights in weights/), our .safetensors, or an official checkpoint.

    Returns (model in eval mode, model name, sha256 of the weights file). `precision`: auto, fp32 or bf16
    (cdtcodec/precision.py), what the networks run at.
    """
    path = weights_path(spec)
    name, cfg, state = _read_any(path)
    model = CDT(cfg)
    problems = _mismatch(model, state)
    if problems:
        raise WeightsError(f"{path}: weights do not fit {name}: {_describe(problems)}")
    model.load_state_dict(state, strict=True)
    model.set_precision(dtype_of(resolve(precision, device)))
    return model.to(device).eval(), name, file_sha256(path)


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """Weights loaded once for many encodes (a corpus worker): the model, its name, the sha256 of its file
    and the file itself (where its prior lives beside it)."""

    net: CDT
    name: str
    digest: str
    path: Path


def load(spec: str | Path | None = None, device: str | torch.device = "cpu", precision: str = "fp32") -> LoadedModel:
    """load_model(spec, device, precision) kept together with the file it read."""
    net, name, digest = load_model(spec, device, precision)
    return LoadedModel(net, name, digest, weights_path(spec))


def _read_any(path: Path) -> tuple[str, CDTConfig, dict[str, torch.Tensor]]:
    meta = {}
    if path.suffix == ".safetensors" and path.is_file():
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception:
            raise WeightsError(f"{path}: not a readable safetensors file") from None
    if meta.get("format") == "cdtcodec":
        try:
            cfg = _config_from_metadata(meta)
        except (KeyError, TypeError, ValueError) as e:
            raise WeightsError(f"{path}: bad model config in metadata ({e})") from None
        return meta.get("name", path.stem), cfg, read_tensors(path)
    name, state = convert_official(path)
    return name, get_config(name), state


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
