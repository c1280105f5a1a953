"""Worker processes: each encode and each decode alone in a fresh process, timed, its peak memory read."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import traceback
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from cdtcodec.bench.config import REFERENCES, BenchError
from cdtcodec.bench.records import ChunkTiming, Memory, Phase


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (the peak resident set) to the current resident set
        return True
    except OSError:
        return False


def _peak_kb() -> int:
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _measured(phase):
    """Run phase() in this (fresh) worker: its result, the wall time and the memory it took."""
    import gc

    gc.collect()
    before = _status_kb("VmRSS") or 0
    reset = _reset_peak()
    torch = sys.modules.get("torch")  # only when the worker has it already: importing it here would count
    cuda = torch if torch is not None and torch.cuda.is_initialized() else None
    if cuda is not None:
        cuda.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = phase()
    seconds = time.perf_counter() - start
    peak = _peak_kb()
    if cuda is None and "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        cuda = sys.modules["torch"]
    mem = Memory(rss_before_mb=before / 1024, peak_rss_mb=peak / 1024, peak_growth_mb=max(0, peak - before) / 1024,
                 peak_scope="phase" if reset else "whole worker process (VmHWM could not be reset)",
                 cuda_peak_mb=cuda.cuda.max_memory_allocated() / 2**20 if cuda is not None else None)
    return result, seconds, mem


class _Clock:
    """Progress callback that timestamps each chunk: the first chunk carries PyTorch's per-process warm-up
    (kernel selection for each new shape), so the rate after it is the steady one."""

    def __init__(self):
        self.start = time.perf_counter()
        self.marks: list[tuple[float, int]] = []

    def __call__(self, done: int, total) -> None:
        self.marks.append((time.perf_counter() - self.start, int(done)))

    def summary(self) -> ChunkTiming:
        marks = [m for m in self.marks if m[1] > 0]  # a report of 0 frames done is not a chunk
        if not marks:
            return ChunkTiming()
        (t0, n0), (t1, n1) = marks[0], marks[-1]
        steady = (n1 - n0) / (t1 - t0) if n1 > n0 and t1 > t0 else None
        return ChunkTiming(first_chunk_s=t0, first_chunk_frames=n0, fps_after_first_chunk=steady)


def _cdt_encode(spec: dict) -> Phase:
    from cdtcodec import codec

    clock = _Clock()
    report = codec.encode(spec["source"], spec["stream"], model=spec["model"], quality=spec["quality"],
                          entropy=spec["entropy"], device=spec["device"], precision=spec["precision"], audio=False,
                          progress=clock)
    return Phase(frames=report.frames, chunks=clock.summary())


def _cdt_decode(spec: dict) -> Phase:
    from cdtcodec import codec

    clock = _Clock()
    report = codec.decode(spec["stream"], spec["decoded"] + os.sep, model=spec["model"], device=spec["device"],
                          precision=spec["precision"], audio=False, progress=clock)
    return Phase(frames=report.frames, chunks=clock.summary())


def _ref_encode(spec: dict) -> Phase:
    import av
    from av.bitstream import BitStreamFilterContext

    from cdtcodec.media import open_video

    ref = REFERENCES[spec["codec"]]
    fps = Fraction(spec["fps"])
    stripped = {"bytes": 0, "text": None}
    packet_bytes = 0
    with open_video(spec["source"]) as reader:
        frames = reader.frames()
        container = av.open(spec["stream"], "w", format=ref.muxer)
        try:
            stream = container.add_stream(ref.encoder, rate=fps, options=dict(spec["options"]))
            stream.width, stream.height, stream.pix_fmt = spec["width"], spec["height"], "yuv420p"
            stream.time_base = Fraction(fps.denominator, fps.numerator)
            cc = stream.codec_context
            cc.time_base = stream.time_base
            cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc = 1, 1, 1, 1  # limited, BT.709
            bsf = (BitStreamFilterContext(f"filter_units=remove_types={ref.info_sei[1]}", stream) if ref.info_sei
                   else None)

            def mux(packets):
                nonlocal packet_bytes
                for packet in packets:
                    if bsf is not None:
                        raw = bytes(packet)
                        at = raw.find(ref.info_sei[0])
                        if at >= 0 and stripped["text"] is None:
                            end = raw.find(b"\x00", at)
                            text = raw[at:end if end > 0 else None].decode("ascii", "replace")
                            stripped["text"] = "".join(ch for ch in text if " " <= ch <= "~")
                        before = packet.size
                        out = bsf.filter(packet)
                        stripped["bytes"] += before - sum(p.size for p in out)
                    else:
                        out = [packet]
                    for p in out:
                        packet_bytes += p.size
                        container.mux(p)

            n = 0
            for n, rgb in enumerate(frames, 1):
                vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                    format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
                vf.pts = n - 1
                vf.time_base = stream.time_base
                mux(stream.encode(vf))
            mux(stream.encode(None))
            if bsf is not None:
                for p in bsf.filter(None):
                    packet_bytes += p.size
                    container.mux(p)
        finally:
            container.close()
    return Phase(frames=n, packet_bytes=packet_bytes, stripped_sei_bytes=stripped["bytes"],
                 encoder_info=stripped["text"])


@dataclass(frozen=True)
class Decoded:
    """A phase's result plus the frames it decoded, which go back through a file, not the pipe."""

    phase: Phase
    frames: np.ndarray | None


def _ref_decode(spec: dict) -> Decoded:
    import av

    frames = []
    with av.open(spec["stream"], "r", format=REFERENCES[spec["codec"]].muxer) as container:
        stream = container.streams.video[0]
        decoder = stream.codec_context.name
        for frame in container.decode(stream):
            frames.append(frame.reformat(format="rgb24", src_colorspace="ITU709", src_color_range="MPEG").to_ndarray())
    return Decoded(Phase(frames=len(frames), decoder=decoder), np.stack(frames) if frames else None)


_PHASES = {("cdt", "encode"): _cdt_encode, ("cdt", "decode"): _cdt_decode,
           ("ref", "encode"): _ref_encode, ("ref", "decode"): _ref_decode}


def _worker(conn, kind: str, phase: str, spec: dict) -> None:
    try:
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only
        if kind == "cdt":
            import torch

            import cdtcodec.codec  # noqa: F401  (imported before the clock starts)
            from cdtcodec.allocator import keep_freed_memory

            keep_freed_memory()  # as the command line runs

            if spec.get("threads"):
                torch.set_num_threads(int(spec["threads"]))
        result, seconds, mem = _measured(lambda: _PHASES[kind, phase](spec))
        frames = None
        if isinstance(result, Decoded):
            result, frames = result.phase, result.frames
        if frames is not None:  # after the measurement: the metrics read the decoded frames from here
            np.save(spec["decoded"] + ".npy", frames)
        result = replace(result, seconds=seconds, memory=mem)
        if kind == "cdt":
            import torch

            result = replace(result, torch_threads=torch.get_num_threads())
        conn.send(("ok", result))
    except BaseException as e:  # the parent records the failure and goes on
        conn.send(("error", f"{type(e).__name__}: {' '.join(str(e).split())}", traceback.format_exc()))
    finally:
        conn.close()


class Workers:
    """Fresh processes forked from a clean forkserver (started once, with the heavy imports done)."""

    def __init__(self, with_torch: bool):
        self.ctx = multiprocessing.get_context("forkserver")
        preload = ["numpy", "av", "PIL.Image", "cdtcodec.media", "cdtcodec.bench"]
        if with_torch:
            preload += ["torch", "cdtcodec.codec"]
        self.ctx.set_forkserver_preload(preload)

    def run(self, kind: str, phase: str, spec: dict) -> Phase:
        parent, child = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=_worker, args=(child, kind, phase, spec), daemon=True)
        proc.start()
        child.close()
        try:
            message = parent.recv()
        except EOFError:
            proc.join()
            raise BenchError(f"{phase} worker died (exit code {proc.exitcode})") from None
        finally:
            parent.close()
        proc.join()
        if message[0] != "ok":
            raise BenchError(message[1])
        return message[1]
