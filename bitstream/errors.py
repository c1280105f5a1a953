"""Typed errors raised while reading (or refusing to write) a .cdt file.

Every message is one line and names what is wrong, e.g. "chunk 3: checksum mismatch".
BitstreamError derives from ValueError: a damaged file is a bad value, not a program bug.
"""

from __future__ import annotations


class BitstreamError(ValueError):
    """Base class of everything the .cdt parser raises for a bad file."""

    def __init__(self, message: str):
        # keep messages to one line whatever was interpolated into them
        super().__init__(" ".join(str(message).split()))


class BadMagic(BitstreamError):
    """The file does not start with the .cdt magic bytes."""


class UnsupportedVersion(BitstreamError):
    """The file's major format version is not one this reader understands."""


class UnsupportedFeature(BitstreamError):
    """The file needs something this reader does not know (a required header field, record
    type, entropy coder or model id)."""


class Truncated(BitstreamError):
    """The file ends before a structure it announces (header, record, trailer)."""


class ChecksumMismatch(BitstreamError):
    """A CRC-32 does not match: the bytes were damaged."""


class InconsistentHeader(BitstreamError):
    """The header is malformed or contradicts itself (sizes, counts, ranges)."""


class CorruptRecord(BitstreamError):
    """A body record (chunk, audio, index) is malformed although its checksum matched, or the
    index contradicts the records it points at."""


class LimitExceeded(BitstreamError):
    """A size field is beyond what this reader is willing to allocate."""


__all__ = [
    "BitstreamError",
    "BadMagic",
    "UnsupportedVersion",
    "UnsupportedFeature",
    "Truncated",
    "ChecksumMismatch",
    "InconsistentHeader",
    "CorruptRecord",
    "LimitExceeded",
]
