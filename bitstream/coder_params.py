"""Each entropy coder's parameters: the bytes after the coder id in the header's ENTROPY field.

One place per coder for its defaults, its checks, its byte form and the format version its files carry
(docs/bitstream.md, "Entropy coder ids and parameters"); header.py calls these and knows no coder.

    zstd    i8 level (informational)                                          version 1
    range   u8 model id = 1, u8 precision = 24                                version 1
    prior   u8 layout id (1: one quantizer step, 2: one per channel),       version 2
            u8 precision = 24, 32 bytes SHA-256 of the prior weights file, u32 context reset interval N
"""

from __future__ import annotations

import re

from . import spec
from .errors import InconsistentHeader, UnsupportedFeature

DEFAULT_ZSTD_LEVEL = 19
_HEX64 = re.compile(r"[0-9a-f]{64}")


def defaults(coder: str, params, steps: int = 1) -> dict:
    """`params` with the coder's defaults filled in (prior_sha256 has none: it names the weights). The prior's
    layout follows the number of quantizer steps (`steps`, the QUANT count): 1 for one step, so such files stay
    byte for byte as before, 2 for one step per channel."""
    if coder == "zstd":
        return {"level": DEFAULT_ZSTD_LEVEL, **params}
    if coder == "range":
        return {"model": spec.RANGE_MODEL_CHANNEL_V1, "precision": spec.RANGE_PRECISION, **params}
    if coder == "prior":
        layout = spec.PRIOR_LAYOUT_V1 if steps == 1 else spec.PRIOR_LAYOUT_PER_CHANNEL
        return {"layout": layout, "precision": spec.RANGE_PRECISION,
                "reset_interval": spec.DEFAULT_PRIOR_RESET_INTERVAL, **params}
    return dict(params)


def _int(v, name: str, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InconsistentHeader(f"header: {name} must be an integer in {lo}..{hi}, got {v!r}")


def _keys(coder: str, params: dict, want: set) -> None:
    if set(params) != want:
        raise InconsistentHeader(f"header: {coder} parameters must be {sorted(want)}, got {sorted(params)}")


def validate(coder: str, params: dict, quant_step: tuple[float, ...], channels: int) -> None:
    """Raise InconsistentHeader / UnsupportedFeature unless `params` (full, see defaults) fit the coder, its
    quantizer steps and the latent channel count."""
    if coder == "zstd":
        _keys(coder, params, {"level"})
        _int(params["level"], "zstd level", -7, 22)
        return
    if coder == "range":
        _keys(coder, params, {"model", "precision"})
        if params["model"] != spec.RANGE_MODEL_CHANNEL_V1:
            raise UnsupportedFeature(f"header: unknown range model id {params['model']}")
        if params["precision"] != spec.RANGE_PRECISION:
            raise UnsupportedFeature(f"header: range precision {params['precision']} (only {spec.RANGE_PRECISION})")
        return
    if coder == "prior":
        _keys(coder, params, {"layout", "precision", "prior_sha256", "reset_interval"})
        if params["layout"] not in spec.PRIOR_LAYOUTS:
            raise UnsupportedFeature(f"header: unknown prior layout id {params['layout']}")
        if params["precision"] != spec.RANGE_PRECISION:
            raise UnsupportedFeature(f"header: prior precision {params['precision']} (only {spec.RANGE_PRECISION})")
        if not isinstance(params["prior_sha256"], str) or not _HEX64.fullmatch(params["prior_sha256"]):
            raise InconsistentHeader("header: prior_sha256 must be 64 lowercase hex digits")
        _int(params["reset_interval"], "prior reset_interval", 0, (1 << 32) - 1)
        from .prior_tables import STEP_BITS, STEP_Q_MAX, STEP_Q_MIN

        if params["layout"] == spec.PRIOR_LAYOUT_V1 and len(quant_step) != 1:
            raise InconsistentHeader(f"header: prior layout 1 needs one global quantizer step, QUANT has "
                                     f"{len(quant_step)}")
        if params["layout"] == spec.PRIOR_LAYOUT_PER_CHANNEL and len(quant_step) != channels:
            raise InconsistentHeader(f"header: prior layout 2 needs one quantizer step per channel ({channels}), "
                                     f"QUANT has {len(quant_step)}")
        for c, q in enumerate(quant_step):
            if not STEP_Q_MIN <= round(q * (1 << STEP_BITS)) <= STEP_Q_MAX:
                where = "" if len(quant_step) == 1 else f" (channel {c})"
                raise InconsistentHeader(f"header: quantizer step {q}{where} outside the prior's 2^-12 .. 2^12")
        return
    raise InconsistentHeader(f"header: unknown entropy coder {coder!r}")


def pack(coder: str, params: dict) -> bytes:
    if coder == "zstd":
        return spec.ZSTD_PARAMS.pack(params["level"])
    if coder == "range":
        return spec.RANGE_PARAMS.pack(params["model"], params["precision"])
    return spec.PRIOR_PARAMS.pack(params["layout"], params["precision"], bytes.fromhex(params["prior_sha256"]),
                                  params["reset_interval"])


def unpack(coder: str, unpack_struct) -> dict:
    """The parameters from a cursor's unpack(struct) (the caller checks that nothing is left)."""
    if coder == "zstd":
        (level,) = unpack_struct(spec.ZSTD_PARAMS)
        return {"level": level}
    if coder == "range":
        model, precision = unpack_struct(spec.RANGE_PARAMS)
        return {"model": model, "precision": precision}
    layout, precision, sha, reset = unpack_struct(spec.PRIOR_PARAMS)
    return {"layout": layout, "precision": precision, "prior_sha256": sha.hex(), "reset_interval": reset}


def version(coder: str) -> tuple[int, int]:
    """(major, minor) a file with this coder is written as."""
    return spec.CODER_VERSION[coder]


def check_version(coder: str, major: int, minor: int) -> None:
    """A file's coder must belong to its major version (a v1 file never holds prior chunks)."""
    if spec.CODER_VERSION[coder][0] != major:
        raise InconsistentHeader(f"header: coder {coder} in a version {major}.{minor} file")
