"""The files around a codec call: output paths checked before anything slow, .cdt files opened with one-line
errors that name them, and the weights file a .cdt names (and pins by its SHA-256) for decoding it.

codec.py (encode, decode) and info.py (`cdtcodec info`) use these; nothing here loads a network but
load_decoder, and nothing reads a video.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from bitstream import BitstreamError, CdtReader, Header
from bitstream.atomic import special_file
from cdtcodec.config import PRESETS
from cdtcodec.errors import ParamError
from cdtcodec.media import output_kind
from cdtcodec.weights import WeightsError, load_model, shipped_weights


class CodecError(Exception):
    """A request the codec cannot honour; the message is one line."""


class WrongWeights(ParamError, WeightsError):
    """The weights a .cdt file needs are not the ones at hand; the message says `model` would fix it."""


# ---------------------------------------------------------------------------------------------------------
# Checks that run before anything slow (model loading, the first pass over the input).

def _check_parent(dst: str | Path, path: Path) -> None:
    if special_file(path):
        return  # a device or FIFO is written into as it is; its folder (/dev) is not written
    parent = path.absolute().parent
    if not parent.exists():
        raise CodecError(f"{dst}: output directory {parent} does not exist")
    if not parent.is_dir():
        raise CodecError(f"{dst}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CodecError(f"{dst}: output directory {parent} is not writable")


def check_cdt_output(dst: str | Path) -> None:
    """A .cdt output path that can be written (the file itself is only created at the end, atomically)."""
    path = Path(dst)
    if path.is_dir():
        raise CodecError(f"{dst}: is a directory")
    _check_parent(dst, path)


def check_video_output(dst: str | Path) -> str:
    """The kind of a decode output path (see media.output_kind), after checking it can be written."""
    kind = output_kind(dst)
    path = Path(os.fspath(dst).rstrip("/" + os.sep) or ".")
    if kind != "png_dir" and path.is_dir():
        raise CodecError(f"{dst}: is a directory")
    if kind == "png_dir" and path.exists() and not path.is_dir():
        raise CodecError(f"{dst}: exists and is not a directory")
    _check_parent(dst, path)
    return kind


@contextmanager
def named_errors(label: str):
    """Bitstream errors do not know which file they come from: prefix them with its name."""
    try:
        yield
    except BitstreamError as e:
        if not str(e).startswith(f"{label}: "):
            e.args = (f"{label}: {e}",)
        raise


def open_cdt(src, label: str | None = None) -> CdtReader:
    """CdtReader for a path or seekable binary file; every failure is one line naming the file."""
    label = label or source_label(src)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise CodecError(f"{label}: no such file")
        if path.is_dir():
            raise CodecError(f"{label}: is a directory, not a .cdt file")
        try:
            empty = path.stat().st_size == 0
        except OSError as e:
            raise CodecError(f"{label}: cannot read: {e.strerror or e}") from None
        if empty:
            raise CodecError(f"{label}: empty file, not a .cdt file")
    try:
        with named_errors(label):
            return CdtReader(src)
    except OSError as e:
        raise CodecError(f"{label}: cannot read: {e.strerror or e}") from None


def source_label(src) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    name = getattr(src, "name", None)
    return name if isinstance(name, str) else "<stdin>"


# ---------------------------------------------------------------------------------------------------------
# Weights for decoding: the file names them (model_id) and pins them (sha256 of the weights file).

def named_weights(model_id: str, weights_sha256: str, model: str | Path | None, label: str) -> Path:
    """The weights file to decode what `label` holds with: `model` (a path or the name of shipped weights) when
    given, else the shipped weights called `model_id`. Its hash is checked once it is loaded."""
    if model:
        path = Path(model)
        if not path.is_file():
            path = shipped_weights(str(model))
            if path is None:
                raise WeightsError(f"{model}: no such weights file")
        return path
    path = shipped_weights(model_id)
    if path is None:
        hint = "" if model_id not in PRESETS else " (or convert them with `cdtcodec convert`)"
        raise WrongWeights("model", hint, before=f"{label} was encoded with the weights {model_id!r} (sha256 "
                           f"{weights_sha256}), but no shipped weights have that name; pass that weights file as ")
    return path


def decoder_weights(h: Header, model: str | Path | None, label: str) -> Path:
    """named_weights for a .cdt header."""
    return named_weights(h.model_id, h.weights_hash.hex(), model, label)


def load_decoder(model_id: str, weights_sha256: str, model, label: str, device: str, precision: str):
    """(network, weights file) to decode `label` with; WrongWeights unless the file's sha256 is the one named."""
    weights = named_weights(model_id, weights_sha256, model, label)
    net, _, digest = load_model(weights, device, precision)  # hashes the file once, as it loads it
    if digest != weights_sha256:
        raise WrongWeights("model", "", before=f"{label} was encoded with the weights {model_id!r} (sha256 "
                           f"{weights_sha256}), but {weights} has sha256 {digest}; pass the weights it was "
                           "encoded with as ")
    return net, weights
