"""The one audio interleaver: passthrough packets held back until the video has reached their time.

Packets come from a queue (one at a time, as a caller hands them over) or from an iterator that is pulled
lazily, so the audio of a long file never piles up in memory and the muxer sees audio and video in step.
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction
from typing import Iterable, Iterator

from bitstream.audio import AudioPacket


class AudioInterleaver:
    def __init__(self, time_base: Fraction):
        self.time_base = time_base
        self.queue: deque[AudioPacket] = deque()
        self.source: Iterator[AudioPacket] = iter(())

    def add(self, packet: AudioPacket) -> None:
        self.queue.append(packet)

    def follow(self, packets: Iterable[AudioPacket]) -> None:
        """Pull further packets from `packets` when the queue runs dry (after those already queued)."""
        self.source = iter(packets)

    def due(self, seconds: Fraction | None) -> Iterator[AudioPacket]:
        """The packets that start at or before `seconds` (all of them for None), in order."""
        while True:
            if not self.queue:
                packet = next(self.source, None)
                if packet is None:
                    return
                self.queue.append(packet)
            packet = self.queue[0]
            ts = packet.dts if packet.dts is not None else packet.pts
            if seconds is not None and ts is not None and ts * self.time_base > seconds:
                return
            yield self.queue.popleft()
