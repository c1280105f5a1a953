"""The media facts a .cdt carries beside its frames: colour, display matrix, sample aspect ratio and frame times.

Into the header from what the source says (display_facts), out of it into a sink (sink_facts, frame_stamps),
and one line on what an output cannot hold (facts_lost). The header fields are docs/bitstream.md's DISPLAY and
FRAME_TIMES; the sinks say what they keep (keeps_display, keeps_frame_times).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Callable

from bitstream import Header, spec
from cdtcodec.media.probe import VideoInfo


def display_facts(info: VideoInfo, notice: Callable[[str], None]) -> dict:
    """The header's DISPLAY attributes from what the source says (nothing when it shows the frames as coded)."""
    facts = {}
    m = info.display_matrix
    if m is not None and tuple(m) != spec.IDENTITY_MATRIX:
        if len(m) == 9 and m[2] == m[5] == 0 and m[8] == 1 << 30 and m[0] * m[4] - m[1] * m[3] != 0:
            facts["display_matrix"] = tuple(m)
        else:
            notice(f"{info.path}: its display matrix {tuple(m)} is not a 2-D transform; not kept")
    sar = info.sample_aspect
    if sar is not None and max(sar.numerator, sar.denominator) <= spec.MAX_ASPECT:
        facts.update(sample_aspect_num=sar.numerator, sample_aspect_den=sar.denominator)
    return facts


def sink_facts(h: Header, timed: bool) -> dict:
    """open_sink's keyword arguments for the facts of a .cdt header (`timed`: the file records frame times)."""
    facts = dict(color_range=h.color_range, color_space=h.color_space, color_primaries=h.color_primaries,
                 color_trc=h.color_trc)
    if timed:
        facts["time_base"] = Fraction(h.time_base_num, h.time_base_den)
    if h.display_matrix != spec.IDENTITY_MATRIX:
        facts["display_matrix"] = h.display_matrix
    if (h.sample_aspect_num, h.sample_aspect_den) != (1, 1):
        facts["sample_aspect"] = Fraction(h.sample_aspect_num, h.sample_aspect_den)
    return facts


def frame_stamps(times, first: int, end: int):
    """(pts, duration) of frames first .. end - 1 from the boundary times t_0 .. (a file's frame_times()), pts
    counted from frame `first`."""
    previous = origin = None
    for i, t in enumerate(times):
        if i > end:
            return
        if i - 1 >= first:
            origin = previous if origin is None else origin
            yield previous - origin, t - previous
        previous = t


def facts_lost(h: Header, timed: bool, out, dst: str) -> str:
    """One line on what of the file's media facts the output cannot hold ("" when it holds them all)."""
    lost = []
    if timed and not out.keeps_frame_times:
        lost.append("frame times (variable frame rate: frames are written 1/fps apart)")
    if not out.keeps_display:
        if h.display_matrix != spec.IDENTITY_MATRIX:
            lost.append(f"display matrix (rotation {h.rotation:g} degrees{', mirrored' if h.mirrored else ''})")
        if (h.sample_aspect_num, h.sample_aspect_den) != (1, 1):
            lost.append(f"sample aspect ratio {h.sample_aspect_num}:{h.sample_aspect_den}")
    parts = [f"{dst}: this output holds no {', no '.join(lost)}; decode to .mp4 or .mkv to keep them"] if lost else []
    if out.facts_lost:
        parts.append(f"{dst}: not written: {'; '.join(out.facts_lost)}")
    return "; ".join(parts)
