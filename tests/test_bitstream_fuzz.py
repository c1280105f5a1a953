"""Hostile files: thousands of mutants (blind and checksum-fixed), truncation at every record
boundary. Each must decode or raise a BitstreamError with a one-line message; none may crash,
hang or allocate absurdly. scripts/bitstream_fuzz.py runs the same thing for longer."""

from __future__ import annotations

import io
import resource
import time
import tracemalloc

import pytest

from bitstream import CdtReader, fuzz


@pytest.fixture(scope="module")
def seeds():
    return [fuzz.sample_file("range", seed=1), fuzz.sample_file("zstd", seed=2),
            fuzz.sample_file("range", seed=3, audio=False, latent_frames=4, coded_frames=13,
                             num_frames=13, chunk_latent_frames=2),
            fuzz.sample_file("prior", seed=4),
            fuzz.sample_file("prior", seed=5, audio=False, latent_frames=4, coded_frames=13, num_frames=13,
                             chunk_latent_frames=2),
            fuzz.sample_file("prior", seed=8, quant_step=PER_CHANNEL_STEPS),  # layout 2: one step per channel
            fuzz.sample_file("range", seed=6, media_facts=True),  # version 1.1: DISPLAY, FRAME_TIMES
            fuzz.sample_file("prior", seed=7, media_facts=True, audio=False)]  # 2.1 (the media-facts seeds: last)


PER_CHANNEL_STEPS = tuple(0.5 * 2 ** ((c % 5 - 2) / 2) for c in range(16))


def test_per_channel_seed_is_layout_2(seeds):
    r = CdtReader(io.BytesIO(seeds[5]), prior=fuzz.sample_prior())
    assert r.header.quant_step == PER_CHANNEL_STEPS and r.header.entropy_params["layout"] == 2
    r.verify()


def test_media_facts_seeds_hold_them(seeds):
    for data in seeds[-2:]:
        r = CdtReader(io.BytesIO(data), prior=fuzz.sample_prior())
        assert r.version[1] == 1 and r.header.rotation == 90.0 and r.has_frame_times
        assert list(r.frame_times()) == [0, *fuzz.MEDIA_FACTS_TIMES]


def test_valid_seed_files_decode(seeds):
    for data in seeds:
        assert fuzz.exercise(data) == "ok"
        for name, mutant in fuzz.boundary_truncations(data):
            assert fuzz.exercise(mutant) != "ok", name  # a truncated file is never taken as whole


def test_fuzz_mutants_decode_or_raise_bitstream_error(seeds):
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counts = fuzz.run(seeds, iterations=1000, seed=1234, time_limit=2.0)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mib < 256, f"peak RSS grew by {grown_mib:.0f} MiB"
    outcomes = {k.split(":")[1] for k in counts}
    # the run must reach the deep parsers and both verdicts, otherwise it tests nothing
    assert "ok" in outcomes and "ChecksumMismatch" in outcomes and "CorruptRecord" in outcomes
    assert "InconsistentHeader" in outcomes and "Truncated" in outcomes
    assert sum(v for k, v in counts.items() if k.startswith("deep-payload")) > 60
    assert sum(counts.values()) > 1500  # random mutants + boundary truncations (twice: salvage)


def test_fuzz_allocations_stay_small(seeds):
    """Traced allocation peak over a few hundred mutants (tracemalloc sees numpy buffers)."""
    tracemalloc.start()
    try:
        fuzz.run(seeds, iterations=200, seed=99, boundaries=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"peak traced allocation {peak} bytes"


def test_crafted_headers_are_answered_quickly_and_in_bounded_memory(seeds):
    """Valid checksums, every field in range, extreme values: each case answers within 2 s, allocating at most
    one declared chunk's symbols (8 bytes each, 128 MiB for 16 x 1024 x 1024) before the payload is judged.
    The media-facts seeds add frame-times records claiming 2^32 - 1 times or 4 GiB, one holding 65,536 times,
    times out of place, and impossible display values."""
    outcomes, facts = {}, {}
    for k, data in enumerate(seeds):
        for name, mutant in fuzz.crafted_cases(data):
            tracemalloc.start()
            started = time.perf_counter()
            try:
                outcome = fuzz.exercise(mutant)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            seconds = time.perf_counter() - started
            assert seconds < 2.0, (name, seconds)
            assert peak < 160 << 20, (name, peak)
            if "frame-times" in name:
                assert peak < 1 << 20, (name, peak)  # refused before the times are read
            (facts if k >= len(seeds) - 2 else outcomes).setdefault(name, set()).add(outcome)
    assert outcomes["crafted-steps-1000"] == {"ok"}
    assert outcomes["crafted-steps-1001"] == outcomes["crafted-steps-4294967295"] == {"InconsistentHeader"}
    assert outcomes["crafted-size-65536"] == {"LimitExceeded"}
    assert all(o == {"ok"} for name, o in outcomes.items() if "fps" in name or "timebase" in name)
    assert "ok" not in outcomes["crafted-size-8192"] | outcomes["crafted-frames-max"]
    assert not any("frame-times" in name or "display" in name for name in outcomes)  # need the media facts
    assert facts["crafted-frame-times-count-max"] == facts["crafted-frame-times-first-max"] == {"CorruptRecord"}
    assert facts["crafted-frame-times-first-0"] == facts["crafted-frame-times-backwards"] == {"CorruptRecord"}
    assert facts["crafted-frame-times-length-max"] == {"Truncated"}
    assert facts["crafted-frame-times-65536"] == {"LimitExceeded"}
    assert facts["crafted-display-singular"] == facts["crafted-display-aspect-0"] == {"InconsistentHeader"}
    # an extreme grid cannot hold the seeds' times (coarser than a frame, or past 2^63 ticks); 1 fps at 1 s can
    assert facts["crafted-fps-max/max"] == {"ok"}
    assert all(facts[n] == {"CorruptRecord"} for n in ("crafted-fps-1/max", "crafted-fps-max/1",
                                                       "crafted-timebase-max/1"))
