"""A second .cdt decoder written from docs/bitstream.md alone: pure Python, struct, zlib, zstandard,
no `bitstream` code and no constriction. It must agree with the reference reader on the golden
files and on freshly written files, which keeps the document honest."""

from __future__ import annotations

import bisect
import math
import struct
import zlib
from decimal import Decimal, getcontext
from pathlib import Path

import numpy as np
import pytest
import zstandard

GOLDEN = sorted((Path(__file__).parent / "data" / "golden").glob("golden_v1.*_*.cdt"))
M64 = (1 << 64) - 1


def exp2_q30():
    getcontext().prec = 60
    return [int((Decimal(2) ** 30 * Decimal(2) ** (Decimal(-i) / 256)).to_integral_value()) for i in range(256)]


EXP2 = exp2_q30()


def table(family, m, s):
    K = {0: 32.0, 1: 6.0, 2: 1024.0}[family]
    c = math.floor(m + 0.5)
    H = min(4096, max(2, math.ceil(K * s)))
    lo, n = c - H, 2 * H + 1
    w = []
    for k in range(lo, lo + n):
        u = abs(float(k) - m) / s
        if family == 2:
            w.append(math.floor(float(1 << 30) / (1.0 + u * u)))
        else:
            t = u if family == 0 else u * u
            tq = math.floor(min(t, 64.0) * 256.0)
            w.append(EXP2[tq % 256] >> min(tq // 256, 40))
    W = sum(w)
    if W == 0:
        w, W = [1] * n, n
    free = (1 << 24) - n
    q = [wj * free // W for wj in w]
    f = [qj + 1 for qj in q]
    f[w.index(max(w))] += free - sum(q)
    return lo, f


def leb128(data, pos):
    v = shift = 0
    while True:
        b = data[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return v, pos


def decode_range(payload, C, N):
    if C * N == 0:
        return []
    nf = (C + 3) // 4
    fams = [(payload[c // 4] >> (2 * (c % 4))) & 3 for c in range(C)]
    params = [struct.unpack_from("<ee", payload, nf + 4 * c) for c in range(C)]
    pos = nf + 4 * C
    (M,) = struct.unpack_from("<I", payload, pos)
    words = list(struct.unpack_from(f"<{M}I", payload, pos + 4))
    pos += 4 + 4 * M
    wi = 0

    def word():
        nonlocal wi
        wi += 1
        return words[wi - 1] if wi - 1 < len(words) else 0

    lower, rng = 0, M64
    point = (word() << 32) | word()
    out = []
    for c in range(C):
        lo, f = table(fams[c], float(params[c][0]), float(params[c][1]))
        cum = [0]
        for fj in f:
            cum.append(cum[-1] + fj)
        for _ in range(N):
            scale = rng >> 24
            q = ((point - lower) & M64) // scale
            assert q < 1 << 24
            j = bisect.bisect_right(cum, q) - 1
            lower = (lower + scale * cum[j]) & M64
            rng = scale * f[j]
            if rng < 1 << 32:
                rng = (rng << 32) & M64
                lower = (lower << 32) & M64
                point = ((point << 32) & M64) | word()
            if j == 0 or j == len(f) - 1:
                e, pos = leb128(payload, pos)
                out.append(lo - e if j == 0 else lo + len(f) - 1 + e)
            else:
                out.append(lo + j)
    assert pos == len(payload)
    return out


def decode_zstd(payload, C, N):
    if C * N == 0:
        return []
    W = payload[0]
    raw = zstandard.ZstdDecompressor().decompress(payload[1:])
    n = C * N
    assert len(raw) == n * W
    out = []
    for i in range(n):
        z = sum(raw[j * n + i] << (8 * j) for j in range(W))
        out.append(z >> 1 if z % 2 == 0 else -(z >> 1) - 1)
    return out


def record(data, off):
    rtype, P = struct.unpack_from("<BI", data, off)
    payload = data[off + 5: off + 5 + P]
    (crc,) = struct.unpack_from("<I", data, off + 5 + P)
    assert crc == zlib.crc32(data[off: off + 5 + P])
    return rtype, payload


def read_cdt(data: bytes):
    assert data[:8] == b"\x89CDT\r\n\x1a\n"
    major, minor, L = struct.unpack_from("<HHI", data, 8)
    assert major == 1
    assert struct.unpack_from("<I", data, 16 + L)[0] == zlib.crc32(data[:16 + L])
    fields, pos = {}, 16
    while pos < 16 + L:
        tag, flags, n = struct.unpack_from("<HBI", data, pos)
        fields.setdefault(tag, data[pos + 7: pos + 7 + n])
        pos += 7 + n
    C, T, h, w, K, S, D = struct.unpack("<7I", fields[6])
    coder = fields[8][0]
    # trailer and index
    ioff, ilen, tcrc = struct.unpack_from("<QII", data, len(data) - 20)
    assert data[-4:] == b"CDTe" and tcrc == zlib.crc32(data[len(data) - 20: len(data) - 8])
    rtype, ip = record(data, ioff)
    assert rtype == 4 and ioff + ilen == len(data) - 20
    nchunks, audio_off, naudio = struct.unpack_from("<IQQ", ip, 0)
    assert nchunks == 1 + -(-(T - 1) // K)
    chunks = []
    for i in range(nchunks):
        off, ln = struct.unpack_from("<QI", ip, 20 + 12 * i)
        rtype, p = record(data, off)
        idx, t = struct.unpack_from("<II", p, 0)
        assert rtype == 1 and idx == i and len(p) + 9 == ln
        assert t == (1 if i == 0 else min(K, T - (1 + (i - 1) * K)))
        sym = (decode_range if coder == 2 else decode_zstd)(p[8:], C, t * h * w)
        chunks.append(np.array(sym, dtype=np.int64).reshape(C, t, h, w))
    packets = []
    pos = 16 + L + 4
    while pos < ioff:
        rtype, p = record(data, pos)
        if rtype == 3:
            flags, pts, dts, dur = struct.unpack_from("<Bqqq", p, 0)
            packets.append((p[25:], pts if flags & 1 else None, dts if flags & 2 else None, dur))
        pos += 9 + len(p)
    assert len(packets) == naudio
    return chunks, packets


def test_golden_files_are_present():
    assert {p.name.split("_")[-1] for p in GOLDEN} >= {"range.cdt", "zstd.cdt"}


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_reference_decoder_reads_golden_files(path):
    from bitstream import CdtReader

    chunks, packets = read_cdt(path.read_bytes())
    with CdtReader(path) as r:
        assert len(chunks) == r.num_chunks
        for i, c in enumerate(chunks):
            np.testing.assert_array_equal(c, r.read_chunk(i))
        assert packets == [(p.data, p.pts, p.dts, p.duration) for p in r.audio_packets()]


@pytest.mark.parametrize("coder", ["range", "zstd"])
def test_reference_decoder_reads_fresh_files(coder):
    from bitstream import CdtReader, fuzz
    import io

    for seed in range(3):
        data = fuzz.sample_file(coder, seed=seed, latent_frames=4, coded_frames=13, num_frames=12,
                                chunk_latent_frames=2, latent_channels=5 + seed, quant_step=(0.3,))
        chunks, _ = read_cdt(data)
        r = CdtReader(io.BytesIO(data))
        for i, c in enumerate(chunks):
            np.testing.assert_array_equal(c, r.read_chunk(i))


def test_reference_tables_equal_implementation_tables():
    from bitstream.entropy import model_table

    rng = np.random.default_rng(0)
    for _ in range(200):
        fam = int(rng.integers(3))
        m = float(np.float16(rng.normal(0, 50)))
        s = float(np.float16(np.exp(rng.uniform(-6, 6))))
        lo, f = model_table(fam, m, s)
        rlo, rf = table(fam, m, s)
        assert lo == rlo and f.tolist() == rf
