"""Frame times: when each frame starts, kept only where it leaves the frame-rate grid (FRAME_TIMES records).

A video of N frames has N + 1 *boundaries*: boundary i < N is the start of frame i, boundary N the end of the last
frame. Their times t_0 .. t_N are integers in the header's time base (TIMING time_base_num / time_base_den), t_0 = 0
(the first frame), strictly increasing. The grid is the header's frame rate in those ticks:

    grid(i) = floor((2 i fps_den tb_den + fps_num tb_num) / (2 fps_num tb_num))     (i / (fps * tb), rounded half up)

and a boundary no record gives continues from the one before it along the grid:
t_i = t_{i-1} + grid(i) - grid(i-1). A constant-rate clip therefore needs no record at all, and a clip that drops
a frame once needs one value (the boundary after the gap), not one per later frame.

FRAME_TIMES payload: u32 first boundary k (>= 1), u32 count n (1 .. MAX_FRAME_TIMES), then n i64: t_k .. t_{k+n-1};
k + n - 1 <= N. Records follow each other in increasing k without overlap, and need a time base of at least one
tick per frame (fps * tb <= 1), so the grid itself always increases. Readers hold one record at a time.

Writing: TimesWriter takes the source's times one boundary at a time and says which records to write; a time
within one tick of the grid is left to it when the grid falls between ticks (the source's clock had to round it),
so a constant-rate clip from a millisecond clock costs nothing either.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Iterable, Iterator

from . import spec
from .errors import CorruptRecord, LimitExceeded


class Grid:
    """The frame-rate grid of a header, in its time-base ticks."""

    def __init__(self, fps_num: int, fps_den: int, tb_num: int, tb_den: int):
        self._num = fps_den * tb_den  # ticks per frame = num / den
        self._den = fps_num * tb_num
        self.ticks_per_frame = Fraction(self._num, self._den)

    @classmethod
    def of(cls, header) -> "Grid":
        return cls(header.fps_num, header.fps_den, header.time_base_num, header.time_base_den)

    def __call__(self, i: int) -> int:
        return (2 * i * self._num + self._den) // (2 * self._den)

    def step(self, i: int) -> int:
        """grid(i) - grid(i - 1): how far an unrecorded boundary i lies after boundary i - 1."""
        return self(i) - self(i - 1)

    @property
    def holds_frame_times(self) -> bool:
        """At least one tick per frame: only then can a file carry frame times (the grid always increases)."""
        return self._num >= self._den

    @property
    def tolerance(self) -> int:
        """How far (ticks) a source time may sit off the grid and still be taken as on it: one tick when the grid
        falls between ticks (the source clock rounded it, possibly from another origin), none when it is whole."""
        return 0 if self.ticks_per_frame.denominator == 1 else 1


# ---------------------------------------------------------------------------------------------------------
# the record

def encode_record(first: int, ticks: list[int]) -> bytes:
    return spec.FRAME_TIMES_HEAD.pack(first, len(ticks)) + b"".join(spec.FRAME_TIME.pack(t) for t in ticks)


def check_record_length(length: int, what: str) -> None:
    """Refuse a record too long for MAX_FRAME_TIMES before any of it is read."""
    most = spec.FRAME_TIMES_HEAD.size + spec.MAX_FRAME_TIMES * spec.FRAME_TIME.size
    if length > most:
        raise LimitExceeded(f"{what}: {length} bytes, more than {spec.MAX_FRAME_TIMES} frame times ({most} bytes)")


def decode_record(payload: bytes, what: str, num_frames: int) -> tuple[int, list[int]]:
    """(first boundary, times) of one FRAME_TIMES payload, its counts checked against its length first."""
    check_record_length(len(payload), what)
    if len(payload) < spec.FRAME_TIMES_HEAD.size:
        raise CorruptRecord(f"{what}: record too short")
    first, count = spec.FRAME_TIMES_HEAD.unpack_from(payload, 0)
    if not 1 <= count <= spec.MAX_FRAME_TIMES:
        raise CorruptRecord(f"{what}: {count} frame times (1 .. {spec.MAX_FRAME_TIMES} per record)")
    if len(payload) != spec.FRAME_TIMES_HEAD.size + count * spec.FRAME_TIME.size:
        raise CorruptRecord(f"{what}: says {count} frame times but holds "
                            f"{len(payload) - spec.FRAME_TIMES_HEAD.size} bytes of them")
    if first < 1 or first + count - 1 > num_frames:
        raise CorruptRecord(f"{what}: boundaries {first}..{first + count - 1} outside 1..{num_frames} "
                            f"(the video has {num_frames} frames)")
    ticks = [v for (v,) in spec.FRAME_TIME.iter_unpack(payload[spec.FRAME_TIMES_HEAD.size:])]
    return first, ticks


def checked_records(header, records: Iterable[tuple[int, list[int]]], what: str = "frame times"
                    ) -> Iterator[tuple[int, list[int]]]:
    """The records (first, ticks) in file order, each checked against the ones before it: increasing boundaries
    without overlap, every time after the one before it (the grid in between computed in closed form, so the
    check costs nothing per unrecorded frame). Raises CorruptRecord naming the boundary."""
    grid = Grid.of(header)
    last, t_last = 0, 0  # the last boundary given (0: t_0 = 0) and its time
    for first, ticks in records:
        if not grid.holds_frame_times:
            raise CorruptRecord(f"{what}: the time base {header.time_base_num}/{header.time_base_den} is coarser "
                                f"than a frame at {header.fps_num}/{header.fps_den} fps")
        if first <= last:
            raise CorruptRecord(f"{what}: a record for boundaries from {first} comes after one up to {last}")
        before = t_last + grid(first - 1) - grid(last)  # t_{first-1}, on the grid from the last one given
        for i, t in enumerate(ticks, first):
            if not before < t <= spec.MAX_TICK:
                raise CorruptRecord(f"{what}: boundary {i} at {t} ticks is not after boundary {i - 1} at {before}")
            before = t
        last, t_last = first + len(ticks) - 1, before
        if t_last + grid(header.num_frames) - grid(last) > spec.MAX_TICK:
            raise CorruptRecord(f"{what}: the frames after boundary {last} run past 2^63 ticks")
        yield first, ticks


def end_time(header, records: Iterable[tuple[int, list[int]]]) -> tuple[int, int, int]:
    """(t_N, records, times recorded) from checked records, in closed form: when the last frame ends."""
    grid = Grid.of(header)
    last, t_last, count, recorded = 0, 0, 0, 0
    for first, ticks in records:
        last, t_last = first + len(ticks) - 1, ticks[-1]
        count, recorded = count + 1, recorded + len(ticks)
    return t_last + grid(header.num_frames) - grid(last), count, recorded


def boundary_times(header, records: Iterable[tuple[int, list[int]]]) -> Iterator[int]:
    """t_0 .. t_N, lazily, from checked records (see checked_records): one record in memory at a time."""
    grid = Grid.of(header)
    records = iter(records)
    pending = next(records, None)
    t = 0
    yield t
    i = 1
    while i <= header.num_frames:
        if pending is not None and pending[0] == i:
            for t in pending[1]:
                yield t
            i += len(pending[1])
            pending = next(records, None)
            continue
        stop = header.num_frames + 1 if pending is None else pending[0]
        for j in range(i, stop):
            t += grid.step(j)
            yield t
        i = stop


# ---------------------------------------------------------------------------------------------------------
# writing

class TimesWriter:
    """Decides, boundary by boundary, which times a file must record; `add` returns the records due now."""

    def __init__(self, header):
        self.grid = Grid.of(header)
        self.next = 1  # the boundary `add` takes next
        self._read_as = 0  # t of the boundary before it, as a reader will compute it
        self._run: list[int] = []
        self._run_first = 0
        self.records = 0

    def add(self, tick: int | None) -> list[bytes]:
        """The time of the next boundary (None: unknown, left to the grid). A time not after the one before it is
        moved one tick past it (it cannot be shown otherwise); one within `grid.tolerance` of the grid is left
        to the grid."""
        i = self.next
        self.next += 1
        on_grid = self._read_as + self.grid.step(i)
        due: list[bytes] = []
        if tick is None or abs(tick - on_grid) <= self.grid.tolerance:
            due += self.flush()
            self._read_as = on_grid
            return due
        if not self.grid.holds_frame_times:
            raise ValueError(f"frame times need a time base of at least one tick per frame "
                             f"({self.grid.ticks_per_frame} ticks per frame)")
        tick = min(max(int(tick), self._read_as + 1), spec.MAX_TICK)
        if not self._run:
            self._run_first = i
        self._run.append(tick)
        self._read_as = tick
        if len(self._run) == spec.MAX_FRAME_TIMES:
            due += self.flush()
        return due

    def flush(self) -> list[bytes]:
        """The record of the run of recorded times so far, if any."""
        if not self._run:
            return []
        run, self._run = self._run, []
        self.records += 1
        return [encode_record(self._run_first, run)]
