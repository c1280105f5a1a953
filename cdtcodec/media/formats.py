"""What the media layer knows about formats: size limit, output kinds, encoder presets, colour enums."""

from __future__ import annotations

import os
from pathlib import Path

from cdtcodec.media.errors import VideoError

#: Largest accepted width or height, in pixels.
MAX_SIDE = 8192

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})

#: What a folder walk takes as video (a corpus's folders; a file named on its own is read whatever its name).
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".y4m", ".mpg", ".mpeg", ".ts",
                              ".m2ts", ".mts", ".flv", ".wmv", ".ogv", ".3gp", ".mxf", ".dv", ".gif"})

# Output extension -> FFmpeg muxer name.
_CONTAINER_FORMATS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
}
_Y4M_EXTENSIONS = frozenset({".y4m"})
#: the video encoder a container gets unless one is named (as ffmpeg picks: one the container holds)
_DEFAULT_CODECS = {"mp4": "libx264", "mov": "libx264", "matroska": "libx264", "webm": "libvpx-vp9"}

# Encoders that can code an odd width/height in subsampled (4:2:0 / 4:2:2) pixel formats.
_ODD_SIZE_SUBSAMPLED_OK = frozenset(
    {"libsvtav1", "libaom-av1", "librav1e", "libdav1d", "libvpx-vp9", "libvpx", "ffv1"}
)

# x264-style preset names -> SVT-AV1 preset numbers / libvpx cpu-used values.
_SVT_PRESETS = {
    "placebo": 2, "veryslow": 3, "slower": 4, "slow": 5, "medium": 6,
    "fast": 8, "faster": 9, "veryfast": 10, "superfast": 11, "ultrafast": 12,
}
_VPX_CPU_USED = {
    "placebo": 0, "veryslow": 0, "slower": 1, "slow": 1, "medium": 2,
    "fast": 3, "faster": 4, "veryfast": 5, "superfast": 6, "ultrafast": 8,
}

# FFmpeg colour enum values -> FFmpeg's names (av_color_*_name); unspecified/reserved -> "".
_COLOR_RANGE_NAMES = {1: "tv", 2: "pc"}
_COLOR_SPACE_NAMES = {
    0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco",
    9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc",
    13: "chroma-derived-c", 14: "ictcp", 15: "ipt-c2", 16: "ycgco-re", 17: "ycgco-ro",
}
_COLOR_PRIMARIES_NAMES = {
    1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
    9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213",
}
_COLOR_TRC_NAMES = {
    1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
    9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1",
    14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67",
}
_COLOR_PRIMARIES_VALUES = {v: k for k, v in _COLOR_PRIMARIES_NAMES.items()}
_COLOR_TRC_VALUES = {v: k for k, v in _COLOR_TRC_NAMES.items()}
_COLOR_SPACE_VALUES = {v: k for k, v in _COLOR_SPACE_NAMES.items()}
# Colour matrices swscale converts RGB with (PyAV's Colorspace names), by FFmpeg's name; the others (gbr, ycgco,
# bt2020c, ictcp, chroma-derived, ...) have no RGB -> YUV conversion there.
_SWS_MATRICES = {"bt709": "ITU709", "smpte170m": "SMPTE170M", "bt470bg": "ITU601", "fcc": "FCC",
                 "smpte240m": "SMPTE240M", "bt2020nc": "BT2020"}

# What PyAV 18.1 (FFmpeg 8.1) cannot write, found by writing outputs and reading them back (README, media facts):
# Matroska and WebM take the sample aspect ratio from the AVStream, which PyAV cannot set (it sets the codec
# context's): only codecs that carry it in their own bitstream keep it there. mp4 / mov write it from the codec.
_ASPECT_IN_BITSTREAM = frozenset({"libx264", "libx265"})
_ASPECT_FROM_STREAM = frozenset({"matroska", "webm"})

_AVCOL_RANGE_MPEG = 1
_AVCOL_RANGE_JPEG = 2
_AVCOL_SPC_BT709 = 1
_AVCOL_SPC_SMPTE170M = 6


def is_image_path(path) -> bool:
    """True when the path names a still image (by extension): read as a one-frame video."""
    return Path(str(path)).suffix.lower() in IMAGE_EXTENSIONS


def is_video_path(path) -> bool:
    """True when the path's extension names a video container (VIDEO_EXTENSIONS)."""
    return Path(str(path)).suffix.lower() in VIDEO_EXTENSIONS


#: containers whose muxer seeks back (an index, box sizes): they cannot go into a FIFO
_SEEKING_FORMATS = frozenset({"mp4", "mov"})


def output_kind(path) -> str:
    """``"container"``, ``"y4m"`` or ``"png_dir"`` for an output path; VideoError if unknown.

    An existing device or FIFO (`/dev/null`) is written into as it is: y4m unless its name says otherwise, as
    for standard output; a container that needs seeking cannot go into a FIFO, refused before any work."""
    from bitstream.atomic import special_file

    s = os.fspath(path)
    special = special_file(s)
    suffix = Path(s).suffix.lower()
    if special:
        if special in ("FIFO", "socket") and _CONTAINER_FORMATS.get(suffix) in _SEEKING_FORMATS:
            raise VideoError(f"{s}: a {special} cannot take {suffix[1:]}, whose muxer seeks back; name a format "
                             "that streams (.mkv or .y4m), or write a file")
        return "container" if suffix in _CONTAINER_FORMATS else "y4m"
    if s.endswith(("/", os.sep)) or os.path.isdir(s):
        return "png_dir"
    if suffix in _CONTAINER_FORMATS:
        return "container"
    if suffix in _Y4M_EXTENSIONS:
        return "y4m"
    if suffix == "":
        return "png_dir"
    known = ", ".join(sorted(set(_CONTAINER_FORMATS) | _Y4M_EXTENSIONS))
    raise VideoError(
        f"{s}: unknown output extension {suffix!r} (use {known}, or a directory for PNG frames)"
    )



def _color_name(table: dict, value) -> str:
    try:
        return table.get(int(value), "")
    except (TypeError, ValueError):
        return ""

