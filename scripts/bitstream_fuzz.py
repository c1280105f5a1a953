#!/usr/bin/env python
"""Long fuzz run of the .cdt reader (the CI test runs ~1000 cases of the same thing).

    .venv/bin/python scripts/bitstream_fuzz.py --iterations 200000 --seed 1 [--files x.cdt ...]

Mutants of small generated files (both coders, with and without audio, several chunkings) and of
any --files given: bit flips, insertions, deletions, truncations (random and at every record
boundary), and "deep" mutants with all checksums recomputed so the parsers and entropy decoders
see hostile content, and crafted headers (valid checksums, extreme values: billions of sampling steps,
the largest sizes and frame counts, extreme rationals). Each must decode or raise a BitstreamError. The address
space is capped (--max-memory-mb) so an absurd allocation fails loudly instead of swapping; any other exception,
or a case slower than --time-limit seconds, stops the run with the mutant saved for replay.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitstream import fuzz  # noqa: E402


def seed_files() -> list[bytes]:
    return [
        fuzz.sample_file("range", seed=1),
        fuzz.sample_file("zstd", seed=2),
        fuzz.sample_file("range", seed=3, audio=False, latent_frames=4, coded_frames=13, num_frames=13,
                         chunk_latent_frames=2),
        fuzz.sample_file("zstd", seed=4, audio=True, latent_frames=5, coded_frames=17, num_frames=15,
                         chunk_latent_frames=3, quant_step=(0.25,)),
        fuzz.sample_file("prior", seed=5),
        fuzz.sample_file("prior", seed=6, audio=False, latent_frames=5, coded_frames=17, num_frames=17,
                         chunk_latent_frames=2),
        fuzz.sample_file("range", seed=7, media_facts=True),  # version 1.1: DISPLAY field, FRAME_TIMES records
        fuzz.sample_file("prior", seed=8, media_facts=True, audio=False),  # 2.1
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--files", nargs="*", default=[], help="extra valid .cdt files to mutate")
    ap.add_argument("--time-limit", type=float, default=5.0, help="seconds allowed per case")
    ap.add_argument("--max-memory-mb", type=int, default=3072, help="address-space cap (0: none)")
    ap.add_argument("--out", default="fuzz-crash.cdt", help="where a failing mutant is written")
    args = ap.parse_args()

    if args.max_memory_mb:
        cap = args.max_memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    seeds = seed_files() + [Path(p).read_bytes() for p in args.files]
    for i, data in enumerate(seeds):
        assert fuzz.exercise(data) == "ok", f"seed file {i} does not decode"
    print(f"seed {args.seed}: {len(seeds)} seed files, {args.iterations} random mutants + boundary truncations")

    # replicate fuzz.run but keep the failing mutant
    rng = random.Random(args.seed)
    lays = [fuzz.layout(d) for d in seeds]
    counts: dict[str, int] = {}
    started = time.time()
    slowest = 0.0

    def cases():
        for d in seeds:
            yield from fuzz.boundary_truncations(d)
            yield from fuzz.crafted_cases(d)  # valid checksums, extreme values (huge steps, sizes, rationals)
        for _ in range(args.iterations):
            k = rng.randrange(len(seeds))
            yield fuzz.mutate(seeds[k], rng, lays[k])

    for n, (name, data) in enumerate(cases()):
        t = time.perf_counter()
        try:
            outcome = fuzz.exercise(data, salvage=name.startswith("truncate") and n % 2 == 0)
        except BaseException as e:  # noqa: BLE001 - anything but a BitstreamError is a finding
            if isinstance(e, KeyboardInterrupt):
                raise
            Path(args.out).write_bytes(data)
            print(f"FAIL case {n} ({name}): {type(e).__name__}: {e}; mutant saved to {args.out}")
            return 1
        dt = time.perf_counter() - t
        slowest = max(slowest, dt)
        if dt > args.time_limit:
            Path(args.out).write_bytes(data)
            print(f"FAIL case {n} ({name}): {dt:.2f}s; mutant saved to {args.out}")
            return 1
        key = f"{name.split('@')[0]}:{outcome}"
        counts[key] = counts.get(key, 0) + 1
        if n and n % 10_000 == 0:
            print(f"  {n} cases, {time.time() - started:.0f}s, slowest {1e3 * slowest:.1f} ms", flush=True)
    total = sum(counts.values())
    print(f"OK: {total} cases in {time.time() - started:.1f}s, slowest case {1e3 * slowest:.1f} ms, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")
    for k in sorted(counts):
        print(f"  {k:<40} {counts[k]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
