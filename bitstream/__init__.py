"""The .cdt container format. Depends on numpy, zstandard and constriction only; never imports torch.

    from bitstream import Header, CdtWriter, CdtReader, BitstreamError, ENTROPY_CODERS, DEFAULT_CODER

spec.py is the format written down in code; docs/bitstream.md describes it byte by byte.
"""

from .audio import AudioPacket, AudioTrack
from .entropy import ENTROPY_CODERS, CodedSize, best_coder, make_coder, measure
from .errors import (
    BadMagic,
    BitstreamError,
    ChecksumMismatch,
    CorruptRecord,
    InconsistentHeader,
    LimitExceeded,
    Truncated,
    UnsupportedFeature,
    UnsupportedVersion,
)
from .header import DEFAULT_CODER, Header, validate_header
from .reader import CdtReader, FileStats
from .spec import FORMAT_MAJOR, FORMAT_MINOR
from .writer import CdtWriter

__all__ = [
    "AudioPacket", "AudioTrack", "CdtReader", "CdtWriter", "FileStats", "ENTROPY_CODERS",
    "DEFAULT_CODER", "CodedSize", "best_coder", "make_coder", "measure", "Header",
    "validate_header", "FORMAT_MAJOR", "FORMAT_MINOR", "BitstreamError", "BadMagic",
    "UnsupportedVersion", "UnsupportedFeature", "Truncated", "ChecksumMismatch",
    "InconsistentHeader", "CorruptRecord", "LimitExceeded",
]
