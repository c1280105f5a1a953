"""The corpus summary: one JSON line per clip (input, output, frames, bytes, bpp, seconds, status, error, ...)
in input order, written atomically at the end of every run (an interrupted one included), and its totals."""

from __future__ import annotations

import json
from dataclasses import dataclass

from bitstream.atomic import AtomicOutput
from cdtcodec.corpus.worker import Outcome

SUMMARY_NAME = "summary.jsonl"
STATUSES = ("encoded", "skipped", "failed", "interrupted")
_FIELDS = ("input", "output", "status", "frames", "bytes", "bpp", "seconds", "error", "width", "height", "fps",
           "warnings", "note")


def write_summary(path: str, outcomes: list[Outcome]) -> None:
    with AtomicOutput(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for outcome in sorted(outcomes, key=lambda o: o.index):
            d = outcome.as_dict()
            f.write(json.dumps({k: d[k] for k in _FIELDS}) + "\n")


def read_summary(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass(frozen=True)
class Totals:
    inputs: int
    encoded: int
    skipped: int
    failed: int
    interrupted: int
    frames: int  # encoded in this run
    bytes: int  # of what this run encoded
    seconds: float  # the whole run, wall clock
    pixels: int

    @property
    def bpp(self) -> float:
        return 8 * self.bytes / max(1, self.pixels)

    @property
    def fps_processed(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {"inputs": self.inputs, "encoded": self.encoded, "skipped": self.skipped, "failed": self.failed,
                "interrupted": self.interrupted, "frames": self.frames, "bytes": self.bytes, "bpp": self.bpp,
                "seconds": self.seconds, "fps_processed": self.fps_processed}


def totals(outcomes: list[Outcome], seconds: float) -> Totals:
    done = [o for o in outcomes if o.status == "encoded"]
    count = {s: sum(1 for o in outcomes if o.status == s) for s in STATUSES}
    return Totals(len(outcomes), count["encoded"], count["skipped"], count["failed"], count["interrupted"],
                  sum(o.frames for o in done), sum(o.bytes for o in done), seconds,
                  sum(o.frames * o.width * o.height for o in done))
