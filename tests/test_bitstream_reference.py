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

from cdtcodec.weights import WEIGHTS_DIR  # only where the shipped prior lies; the decoder below uses no project code

GOLDEN = sorted((Path(__file__).parent / "data" / "golden").glob("golden_v*_*.cdt"))
SHIPPED_PRIOR = WEIGHTS_DIR / "cdt-tiny.prior.safetensors"
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


# ------------------------------------------------------------------------------------------------
# coder `prior` (format version 2), from "Chunk payload, coder prior"
# ------------------------------------------------------------------------------------------------
def read_prior_file(path):
    """A safetensors file read by hand: u64 header length, JSON header, raw little-endian tensors."""
    import json

    raw = Path(path).read_bytes()
    (n,) = struct.unpack_from("<Q", raw, 0)
    head = json.loads(raw[8:8 + n])
    meta = head.pop("__metadata__")
    assert meta["format"] == "cdtcodec-prior"
    tensors = {}
    for name, t in head.items():
        a, b = t["data_offsets"]
        dtype = {"I32": "<i4", "I64": "<i8"}[t["dtype"]]
        tensors[name] = np.frombuffer(raw[8 + n + a: 8 + n + b], dtype=dtype).astype(np.int64).reshape(t["shape"])
    import hashlib

    return json.loads(meta["arch"]), tensors, hashlib.sha256(raw).hexdigest()


def log2q(sq, A):
    e = sq.bit_length() - 1
    m = (sq << 62) >> e
    r = e - 16
    for _ in range(A):
        m = (m * m) >> 62
        r *= 2
        if m >= 1 << 63:
            m >>= 1
            r += 1
    return r


def layer(x, W, b, k, B, relu):
    """x (h, w, in) int64 -> (h, w, out): a sum over the kernel offsets (no im2col, unlike bitstream/)."""
    h, w, cin = x.shape
    acc = np.zeros((h, w, W.shape[1]), dtype=np.int64) + b
    r = k // 2
    p = np.zeros((h + 2 * r, w + 2 * r, cin), dtype=np.int64)
    p[r:r + h, r:r + w] = x
    for dy in range(k):
        for dx in range(k):
            rows = W[(dy * k + dx) * cin:(dy * k + dx + 1) * cin]
            acc += np.einsum("hwc,co->hwo", p[dy:dy + h, dx:dx + w], rows)
    y = (acc + (1 << (B - 1))) >> B
    if relu:
        y = np.maximum(y, 0)
    return np.clip(y, -(1 << 20), 1 << 20)


_PRIOR_TABLES = {}


def prior_table(family, tid):
    if (family, tid) in _PRIOR_TABLES:
        return _PRIOR_TABLES[family, tid]
    k, o = divmod(tid, 8)
    assert 0 <= k <= 80
    mant = 1 << 30 if k % 8 == 0 else 2 * EXP2[256 - 32 * (k % 8)]
    s = math.ldexp(float(mant), -4 + k // 8 - 30)
    mo = (o - 4) / 8
    H = max(2, math.ceil((6 if family == 0 else 14) * s) + 1)
    w = []
    for j in range(-H, H + 1):
        wj = 0
        for r in range(16):
            d = j + (2 * r + 1 - 16) / 32
            u = abs(d - mo) / s
            t = (u * u) * 0.7213475204444817 if family == 0 else u * 1.4426950408889634
            tq = math.floor(min(t, 64.0) * 256.0)
            wj += EXP2[tq % 256] >> min(tq // 256, 40)
        w.append(wj)
    n = len(w)
    free = (1 << 24) - n
    q = [x * free // sum(w) for x in w]
    f = [x + 1 for x in q]
    f[w.index(max(w))] += free - sum(q)
    cum = [0]
    for x in f:
        cum.append(cum[-1] + x)
    _PRIOR_TABLES[family, tid] = (H, f, cum)
    return _PRIOR_TABLES[family, tid]


class RangeDecoder:
    def __init__(self, words):
        self.words, self.wi = words, 0
        self.lower, self.rng = 0, M64
        self.point = (self.word() << 32) | self.word()

    def word(self):
        self.wi += 1
        return self.words[self.wi - 1] if self.wi - 1 < len(self.words) else 0

    def decode(self, f, cum):
        scale = self.rng >> 24
        q = ((self.point - self.lower) & M64) // scale
        assert q < 1 << 24
        j = bisect.bisect_right(cum, q) - 1
        self.lower = (self.lower + scale * cum[j]) & M64
        self.rng = scale * f[j]
        if self.rng < 1 << 32:
            self.rng = (self.rng << 32) & M64
            self.lower = (self.lower << 32) & M64
            self.point = ((self.point << 32) & M64) | self.word()
        return j


def decode_prior_chunk(payload, is_reset, shape, steps, history, prior):
    """Symbols (C, t, h, w) of one chunk; `history`: the previous frames (C, h, w), oldest first; `steps`: the
    QUANT steps, one (layout 1) or one per channel (layout 2)."""
    arch, Wt, _ = prior
    A, B, P, G = arch["act_bits"], arch["weight_bits"], arch["prev_frames"], arch["channel_groups"]
    C, T, h, w = shape
    g = C // G
    assert payload[0] == (1 if is_reset else 0)
    (M,) = struct.unpack_from("<I", payload, 1)
    dec = RangeDecoder(list(struct.unpack_from(f"<{M}I", payload, 5)))
    pos = 5 + 4 * M
    sqs = [round(s * 65536) for s in (steps if len(steps) == C else list(steps) * C)]  # per channel
    Ls = [log2q(sq, A) for sq in sqs]
    L = sum(Ls) // C  # the condition: floor of the mean (equals log2q(sq) with one step)

    def deq(v):  # (C, h, w) symbols -> (h, w, C), channel c with its own step
        sq = np.array(sqs, dtype=np.int64)[:, None, None]
        return np.clip((v.astype(np.int64) * sq + (1 << (15 - A))) >> (16 - A), -(1 << 20), 1 << 20).transpose(1, 2, 0)

    def lay(name, x, relu, extra=0):
        kernel = 3 if name in ("trunk1", "trunk2", "context1") else 1
        return layer(x, Wt[name + ".weight"], Wt[name + ".bias"] + extra, kernel, B, relu)

    out = np.zeros(shape, dtype=np.int64)
    hist = [] if is_reset else list(history)[-P:]
    for t in range(T):
        prev = [deq(f) for f in hist[::-1]] + [np.zeros((h, w, C), np.int64)] * (P - len(hist))
        cond = [L] + [(1 << A) if i < len(hist) else 0 for i in range(P)]
        extra = np.array(cond, dtype=np.int64) @ Wt["trunk1.condition"]
        F = lay("trunk2", lay("trunk1", np.concatenate(prev, axis=2), True, extra), True)
        frame = np.zeros((C, h, w), dtype=np.int64)
        passes = ([lambda y, x: (y + x) % 2 == 0, lambda y, x: (y + x) % 2 == 1] if arch["checkerboard"]
                  else [lambda y, x: True])
        for s, inside in enumerate(passes):
            where = [(y, x) for y in range(h) for x in range(w) if inside(y, x)]
            if s == 0:
                base = F
            else:
                anchors = deq(np.where(np.add.outer(np.arange(h), np.arange(w)) % 2 == 0, frame, 0))
                base = lay("context1", np.concatenate([F, anchors], axis=2), True)
            for j in range(G):
                known = deq(frame)
                known[:, :, j * g:] = 0
                x = np.concatenate([base, prev[0], known], axis=2)
                o = lay(f"pass{s}{j}.out", lay(f"pass{s}{j}.hidden", x, True), False)
                items = []  # (table id, channel, y, x, centre)
                for c in range(g):
                    for (y, xx) in where:
                        mu, ls = int(o[y, xx, c]), int(o[y, xx, g + c])
                        sq, Lc = sqs[j * g + c], Ls[j * g + c]
                        m8 = (2 * (mu << (19 - A)) + sq) // (2 * sq)
                        cen = (m8 + 4) >> 3
                        off = m8 - 8 * cen + 4
                        cen = max(-(1 << 30), min(1 << 30, cen))
                        k = max(0, min(80, (ls - Lc + 4 * (1 << A) + (1 << A) // 16) // ((1 << A) // 8)))
                        items.append((8 * k + off, c, y, xx, cen))
                items.sort(key=lambda it: it[0])  # stable: (channel, y, x) order kept inside a table id
                esc = []
                for tid, c, y, xx, cen in items:
                    H, f, cum = prior_table(arch["family"], tid)
                    jj = dec.decode(f, cum)
                    frame[j * g + c, y, xx] = cen - H + jj
                    if jj in (0, 2 * H):
                        esc.append((j * g + c, y, xx, -1 if jj == 0 else 1))
                for c, y, xx, sign in esc:  # escapes of this group, in coding order
                    e, pos = leb128(payload, pos)
                    frame[c, y, xx] += sign * e
        out[:, t] = frame
        hist = (hist + [frame])[-P:]
    assert pos == len(payload)
    return out, hist


def record(data, off):
    rtype, P = struct.unpack_from("<BI", data, off)
    payload = data[off + 5: off + 5 + P]
    (crc,) = struct.unpack_from("<I", data, off + 5 + P)
    assert crc == zlib.crc32(data[off: off + 5 + P])
    return rtype, payload


def read_display(fields, minor):
    """DISPLAY (tag 11, minor >= 1): the display matrix and sample aspect ratio, or the defaults."""
    if minor < 1 or 11 not in fields:
        return (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30), (1, 1)
    v = struct.unpack("<9iII", fields[11])
    a, b, u, c, d, vv, x, y, w = v[:9]
    assert u == vv == 0 and w == 1 << 30 and a * d - b * c != 0 and v[9] >= 1 and v[10] >= 1
    return v[:9], (v[9], v[10])


def frame_times(fields, records, num_frames):
    """t_0 .. t_N from "Frame times": the grid, and the FRAME_TIMES records (k, times) in file order."""
    fps_num, fps_den, tb_num, tb_den = struct.unpack("<4I", fields[4])

    def grid(i):
        return (2 * i * fps_den * tb_den + fps_num * tb_num) // (2 * fps_num * tb_num)

    given = {}
    last = 0
    for k, times in records:
        assert k > last and k + len(times) - 1 <= num_frames and 1 <= len(times) <= 4096
        assert fps_num * tb_num <= fps_den * tb_den
        given.update(zip(range(k, k + len(times)), times))
        last = k + len(times) - 1
    t = [0]
    for i in range(1, num_frames + 1):
        t.append(given[i] if i in given else t[-1] + grid(i) - grid(i - 1))
        assert t[-1] > t[-2] and t[-1] < 1 << 63
    return t


def read_cdt(data: bytes, prior_path=None, facts=None):
    """Chunks and audio packets; `facts` (a dict), when given, receives the display and the frame times."""
    assert data[:8] == b"\x89CDT\r\n\x1a\n"
    major, minor, L = struct.unpack_from("<HHI", data, 8)
    assert major in (1, 2)
    assert struct.unpack_from("<I", data, 16 + L)[0] == zlib.crc32(data[:16 + L])
    fields, pos = {}, 16
    while pos < 16 + L:
        tag, flags, n = struct.unpack_from("<HBI", data, pos)
        fields.setdefault(tag, data[pos + 7: pos + 7 + n])
        pos += 7 + n
    C, T, h, w, K, S, D = struct.unpack("<7I", fields[6])
    coder = fields[8][0]
    assert (coder == 3) == (major == 2)
    (nq,) = struct.unpack_from("<H", fields[7], 0)
    steps = struct.unpack_from(f"<{nq}d", fields[7], 2)
    if coder == 3:
        layout_id, precision, sha, N = struct.unpack("<BB32sI", fields[8][1:])
        assert (layout_id, precision, nq) in ((1, 24, 1), (2, 24, C))
        prior = read_prior_file(prior_path)
        assert prior[2] == sha.hex() and prior[0]["channels"] == C
        history = []
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
        if coder == 3:
            sym, history = decode_prior_chunk(p[8:], i == 0 or (N > 0 and i % N == 0), (C, t, h, w), steps,
                                              history, prior)
            chunks.append(sym)
            continue
        sym = (decode_range if coder == 2 else decode_zstd)(p[8:], C, t * h * w)
        chunks.append(np.array(sym, dtype=np.int64).reshape(C, t, h, w))
    packets, times = [], []
    pos = 16 + L + 4
    while pos < ioff:
        rtype, p = record(data, pos)
        if rtype == 3:
            flags, pts, dts, dur = struct.unpack_from("<Bqqq", p, 0)
            packets.append((p[25:], pts if flags & 1 else None, dts if flags & 2 else None, dur))
        if rtype == 0x80 and minor >= 1:
            k, n = struct.unpack_from("<II", p, 0)
            assert len(p) == 8 + 8 * n
            times.append((k, list(struct.unpack_from(f"<{n}q", p, 8))))
        pos += 9 + len(p)
    assert len(packets) == naudio
    if facts is not None:
        num_frames = struct.unpack_from("<6I", fields[3])[4]
        facts["version"] = (major, minor)
        facts["display"] = read_display(fields, minor)
        facts["times"] = frame_times(fields, times, num_frames)
    return chunks, packets


def test_golden_files_are_present():
    assert {p.name.split("_")[-1] for p in GOLDEN} >= {"range.cdt", "zstd.cdt", "prior.cdt"}


def _beside(path):
    return path.with_name(path.name.removesuffix(".cdt") + ".prior.safetensors")


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_reference_decoder_reads_golden_files(path):
    from bitstream import CdtReader

    prior = _beside(path) if "_prior" in path.name else None  # _prior.cdt, _prior_steps.cdt (layout 2)
    facts = {}
    chunks, packets = read_cdt(path.read_bytes(), prior, facts)
    with CdtReader(path, prior=prior) as r:
        assert len(chunks) == r.num_chunks
        for i, c in enumerate(chunks):
            np.testing.assert_array_equal(c, r.read_chunk(i))
        assert packets == [(p.data, p.pts, p.dts, p.duration) for p in r.audio_packets()]
        assert facts["version"] == r.version
        assert facts["display"] == (r.header.display_matrix, (r.header.sample_aspect_num, r.header.sample_aspect_den))
        assert facts["times"] == list(r.frame_times())
    if facts["version"][1] >= 1:  # the golden x.1 files hold the media facts (tests/test_bitstream_golden.py)
        assert facts["display"][0] != (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30)
        assert facts["times"] != list(range(len(facts["times"])))


def test_reference_decoder_reads_fresh_media_facts():
    """Frame times with gaps between records, a run cut at MAX_FRAME_TIMES, and the grid falling between ticks."""
    import io

    from bitstream import CdtReader, CdtWriter, fuzz

    h = fuzz.sample_header("zstd", fps_num=30000, fps_den=1001, time_base_num=1, time_base_den=1000,
                           latent_frames=1201, coded_frames=4801, num_frames=4800, latent_height=1, latent_width=1,
                           coded_height=8, coded_width=8, width=8, height=8, quant_step=(0.5,),
                           display_matrix=(-65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30),
                           sample_aspect_num=32, sample_aspect_den=27)
    ms = [round(i * 1001 / 30) for i in range(4801)]  # a millisecond clock: on the grid within one tick
    ms[100:] = [t + 500 for t in ms[100:]]  # half a second without frames after frame 99: one recorded time
    ms[400:] = [ms[399] + 20 * (i + 1) for i in range(4401)]  # then 50 fps: 4401 times off the grid, two records
    buf = io.BytesIO()
    with CdtWriter(buf, h) as w:
        for i in range(h.num_chunks):
            w.write_chunk(np.zeros(h.chunk_shape(i), np.int32))
        w.write_frame_times(ms[1:])
    facts = {}
    read_cdt(buf.getvalue(), None, facts)
    r = CdtReader(io.BytesIO(buf.getvalue()))
    assert facts["times"] == list(r.frame_times()) and len(facts["times"]) == 4801
    assert max(abs(a - b) for a, b in zip(facts["times"], ms)) <= 1  # within one tick of the source
    assert facts["display"] == ((-65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30), (32, 27))
    assert abs(r.header.rotation) == 180 and not r.header.mirrored  # FFmpeg says -180 for a half turn
    assert facts["version"] == (1, 1) and [(k, len(t)) for k, t in r.frame_time_records()] == [(100, 1), (400, 4096),
                                                                                              (4496, 305)]


@pytest.mark.parametrize("coder", ["range", "zstd"])
def test_reference_decoder_reads_fresh_files(coder):
    import io

    from bitstream import CdtReader, fuzz

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


@pytest.mark.skipif(not SHIPPED_PRIOR.is_file(), reason="no shipped prior")
@pytest.mark.parametrize("reset_interval", [0, 2])
def test_reference_decoder_reads_fresh_prior_files(reset_interval):
    """The shipped prior (real weights: checkerboard, 4 channel groups) on smooth, correlated latents."""
    import io

    from bitstream import CdtReader, CdtWriter, fuzz

    h = fuzz.sample_header("prior", latent_frames=5, coded_frames=17, num_frames=17, chunk_latent_frames=2,
                           latent_height=4, latent_width=6, coded_height=32, coded_width=48, width=45, height=30,
                           quant_step=(0.7071,),
                           entropy_params={"prior_sha256": read_prior_file(SHIPPED_PRIOR)[2],
                                           "reset_interval": reset_interval})
    rng = np.random.default_rng(reset_interval)
    base = rng.normal(0, 2.5, size=(16, 1, 4, 6))
    buf = io.BytesIO()
    written = []
    with CdtWriter(buf, h, prior=SHIPPED_PRIOR) as w:
        for i in range(h.num_chunks):
            c = np.round(base + rng.normal(0, 0.7, size=h.chunk_shape(i))).astype(np.int64)
            c[0, 0, 0, 0] = 5000 * (1 - 2 * (i % 2))  # escapes, both signs
            w.write_chunk(c)
            written.append(c)
    chunks, _ = read_cdt(buf.getvalue(), SHIPPED_PRIOR)
    r = CdtReader(io.BytesIO(buf.getvalue()), prior=SHIPPED_PRIOR)
    assert len(chunks) == r.num_chunks == 3
    for i, c in enumerate(chunks):
        np.testing.assert_array_equal(c, written[i])
        np.testing.assert_array_equal(c, r.read_chunk(i))


@pytest.mark.skipif(not SHIPPED_PRIOR.is_file(), reason="no shipped prior")
def test_reference_decoder_reads_per_channel_step_prior_files():
    """Layout 2: sixteen different steps (a gain vector), shipped prior, escapes; the reference decoder and the
    implementation agree with what was written."""
    import io

    from bitstream import CdtReader, CdtWriter, fuzz

    steps = tuple(0.6 * 2 ** ((c % 6 - 2.5) / 2) for c in range(16))
    h = fuzz.sample_header("prior", latent_frames=4, coded_frames=13, num_frames=13, chunk_latent_frames=2,
                           latent_height=4, latent_width=5, coded_height=32, coded_width=40, width=40, height=30,
                           quant_step=steps,
                           entropy_params={"prior_sha256": read_prior_file(SHIPPED_PRIOR)[2], "reset_interval": 2})
    assert h.full_entropy_params()["layout"] == 2
    rng = np.random.default_rng(7)
    base = rng.normal(0, 2.5, size=(16, 1, 4, 5)) / np.array(steps).reshape(16, 1, 1, 1)
    buf = io.BytesIO()
    written = []
    with CdtWriter(buf, h, prior=SHIPPED_PRIOR) as w:
        for i in range(h.num_chunks):
            c = np.round(base + rng.normal(0, 0.7, size=h.chunk_shape(i))).astype(np.int64)
            c[2, 0, 1, 1] = -7000 * (1 - 2 * (i % 2))
            w.write_chunk(c)
            written.append(c)
    chunks, _ = read_cdt(buf.getvalue(), SHIPPED_PRIOR)
    r = CdtReader(io.BytesIO(buf.getvalue()), prior=SHIPPED_PRIOR)
    assert len(chunks) == r.num_chunks == 3 and r.header.quant_step == steps
    for i, c in enumerate(chunks):
        np.testing.assert_array_equal(c, written[i])
        np.testing.assert_array_equal(c, r.read_chunk(i))
