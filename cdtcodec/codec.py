"""Video file <-> .cdt file: the codec's whole data flow, streaming chunk by chunk.

encode: frames (uint8) -> pad to the model's stride -> StreamEncoder (the timeline's chunks) -> posterior mean
        -> quantize -> one chunk record per latent frame -> .cdt (+ the source audio packets, the frame times
        off the frame-rate grid, the display matrix and sample aspect ratio)
decode: .cdt -> chunk records -> dequantize -> StreamDecoder (one latent frame per pass) -> crop, trim
        -> frames (uint8) -> video file (+ the audio packets, each frame at its time, the display facts)

Nothing here prints: progress goes through a callback, so the CLI owns the progress bar.
"""

from __future__ import annotations

import functools
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable

import torch

from bitstream import CdtWriter, Header, spec
from bitstream.atomic import special_file
from bitstream.frame_times import Grid
from bitstream.writer import audio_record_bytes, frame_times_record_bytes
from cdtcodec.codec_files import (
    CodecError,
    check_cdt_output,
    check_video_output,
    load_decoder,
    named_errors,
    open_cdt,
    source_label,
)
from cdtcodec.errors import ParamError
from cdtcodec.limits import check_memory, decode_bytes, encode_bytes
from cdtcodec.media import MAX_SIDE, open_sink, open_video
from cdtcodec.media.facts import display_facts, facts_lost, frame_stamps, sink_facts
from cdtcodec.media.notes import input_reductions, missing_frames
from cdtcodec.overwrite import refuse_inputs
from cdtcodec.rate.coder_choice import (
    ENTROPY_CHOICES,
    ENTROPY_DEFAULT,
    BadEntropy,
    EntropyChoiceError,
    EntropyPlan,
    plan_encode,
    prior_for_decode,
)
from cdtcodec.rate.control import Choice, FileSizer, LatentSpool, RateTarget, Trial, choose_step
from cdtcodec.rate.quantize import (
    DEFAULT_QUALITY,
    MIN_STEP,
    QualityScaleError,
    dequantize,
    quantize,
    scale_for,
    step_for_quality,
)
from cdtcodec.stream import StreamDecoder, StreamEncoder
from cdtcodec.timeline import CODEC_TIMELINE, Timeline
from cdtcodec.weights import LoadedModel, WeightsError, load

Progress = Callable[[int, int | None], None]  # (frames done, frames total or None)


class BadArgument(ParamError, CodecError):
    """An argument of encode / decode out of its range; the message names the parameter (see ParamError)."""


@dataclass(frozen=True)
class Report:
    """What one encode or decode did, for the summary line and --json."""

    frames: int
    width: int
    height: int
    fps: Fraction
    file_bytes: int
    seconds: float
    audio: str  # "carried", "none", or why it was dropped
    entropy: str = ""  # the file's entropy coder
    note: str = ""  # one line worth telling the user (e.g. why the default coder fell back to range)
    step: float | None = None  # encode: the (global) quantizer step: the geometric mean of per-channel steps
    target: str = ""  # encode: the rate target rate control met ("" without one)
    precision: str = ""  # what the networks ran at: fp32 or bf16

    @property
    def bpp(self) -> float:
        return 8 * self.file_bytes / max(1, self.frames * self.width * self.height)

    @property
    def kbps(self) -> float:
        duration = self.frames / float(self.fps) if self.fps else 0
        return 8 * self.file_bytes / duration / 1000 if duration else 0.0

    def as_dict(self) -> dict:
        return {"frames": self.frames, "width": self.width, "height": self.height, "fps": str(self.fps),
                "bytes": self.file_bytes, "bpp": self.bpp, "kbps": self.kbps, "seconds": self.seconds,
                "fps_processed": self.frames / self.seconds if self.seconds else 0.0, "audio": self.audio,
                **({"entropy": self.entropy} if self.entropy else {}), **({"note": self.note} if self.note else {}),
                **({"step": self.step} if self.step is not None else {}),
                **({"target": self.target} if self.target else {}),
                **({"precision": self.precision} if self.precision else {})}


# ---------------------------------------------------------------------------------------------------------
# encode

def check_encode_args(quality: int | None = None, step: float | None = None, target: RateTarget | None = None,
                      seed: int = 0, steps: int | None = None, entropy: str = ENTROPY_DEFAULT) -> float | None:
    """The quantizer step encode() will use (None: rate control chooses it for `target`), after checking every
    argument that does not need the input (a corpus checks them once, before its first clip)."""
    if target is not None and (step is not None or quality is not None):
        raise BadArgument(target.param, " chooses the quantizer step itself: give it without quality or step")
    if target is None and step is None:
        try:
            step = step_for_quality(DEFAULT_QUALITY if quality is None else quality)
        except ValueError as e:
            raise CodecError(str(e)) from None
    if target is None and not (isinstance(step, (int, float)) and math.isfinite(step) and step >= MIN_STEP):
        raise BadArgument("step", f" must be a finite number >= {MIN_STEP:g}, got {step!r}")
    if steps is not None and steps < 1:
        raise BadArgument("steps", " must be >= 1")
    if entropy not in ENTROPY_CHOICES:
        raise BadArgument("entropy", f" must be one of {', '.join(ENTROPY_CHOICES)}, got {entropy!r}")
    if not 0 <= seed < 1 << 64:
        raise BadArgument("seed", " must be in 0 .. 2**64-1")
    return None if step is None else float(step)


@contextmanager
def _encoder_input(src, start_s: float, max_frames: int | None, model: str | Path | LoadedModel | None, device: str,
                   precision: str, notice: Callable[[str], None]):
    """(reader, model) for an encode: the input opened, what it loses said to `notice`, then the model loaded
    (unless it already is). Opening probes the input: missing, unreadable, not a video, zero frames, absurd size
    all fail here, before the (possibly large) model is loaded."""
    with open_video(src, start_s=start_s, max_frames=max_frames) as reader:
        for note in input_reductions(reader.info):
            notice(note)
        yield reader, model if isinstance(model, LoadedModel) else load(model, device, precision)


def _posterior_means(reader, net, device: str, progress: Progress | None, counted: list[int],
                     times: Callable[[list], object] | None = None):
    """One pass over the reader's window: the posterior mean (L, t, h, w), one encoder chunk at a time, as the
    timeline schedules them; the frames read are added to counted[0] as they go. `times`, when given, receives
    the frame boundaries' times in the source's ticks (boundary i >= 1 is the start of frame i, frame 0 starting
    at 0; last the end of the last frame), each batch's after its chunks, the end before the encoder's last."""
    encoder = StreamEncoder(net)
    timeline = encoder.timeline
    latent_dim = net.cfg.latent_dim
    total = reader.expected_frames  # for the progress bar only
    if progress:
        progress(0, total)
    for batch, starts in reader.timed_batches(timeline.chunk_sizes()):
        for moments in encoder.push(timeline.to_model(batch).to(device)):
            yield moments[0, :latent_dim]
        if times is not None:
            times(starts if counted[0] else starts[1:])
        counted[0] += batch.shape[0]
        if progress:
            progress(counted[0], total)
    if progress and counted[0] != total:  # the estimate was off (a VFR clip's duration x fps): close at the count
        progress(counted[0], counted[0])
    if times is not None:
        times([reader.end_tick])
    for moments in encoder.finish():
        yield moments[0, :latent_dim]


def encode(src: str | Path, dst: str | Path, *, model: str | Path | LoadedModel | None = None,
           quality: int | None = None, step: float | None = None, target: RateTarget | None = None, seed: int = 0,
           steps: int | None = None, entropy: str = ENTROPY_DEFAULT, start_s: float = 0.0,
           max_frames: int | None = None, audio: bool = True, device: str = "cpu", precision: str = "fp32",
           progress: Progress | None = None, max_memory: int | None = None, memory_share: int = 1,
           notice: Callable[[str], None] | None = None, rate_progress: Callable[[Trial], None] | None = None) -> Report:
    """Encode a video (or still image) into a .cdt file at `dst`; nothing appears there unless it succeeds.
    `model` is a preset, a weights file, or weights already loaded (on `device`, at their precision); `precision`
    (auto, fp32, bf16) is the encoder's arithmetic: the latents, hence the symbols, differ by its rounding.

    The quantizer step is `step` (one for all channels), else the steps of `quality` (default DEFAULT_QUALITY) on
    the model's quality scale (quantize.scale_for: a global step times per-channel gains where the weights have a
    fitted scale beside them), else, with `target`, the ones rate control chooses so that the whole file meets the
    target (cdtcodec/rate/control.py; each trial goes to `rate_progress`). `notice` receives warnings (alpha or
    deep samples reduced, frames missing, a target out of reach), one line each. `memory_share`: this encode runs
    beside that many (itself included) and may take only that share of the memory limit."""
    notice = notice or (lambda line: None)
    started = time.time()
    explicit_step = step is not None
    step = check_encode_args(quality, step, target, seed, steps, entropy)
    check_cdt_output(dst)
    refuse_inputs(dst, [src])  # never onto the source, whatever the caller's overwrite policy
    with _encoder_input(src, start_s, max_frames, model, device, precision, notice) as (reader, loaded):
        info = reader.info
        # With a target, rate control starts from the default quality; the coder planned here holds for every
        # step it tries (they all lie in the prior's range).
        quant = quality_steps(loaded, quality if target is None else DEFAULT_QUALITY, step if explicit_step else None,
                              notice)
        if target is None and not explicit_step:
            step = math.exp(sum(math.log(q) for q in quant) / len(quant))  # the global step (gains: geometric mean 1)
        plan = _entropy_plan(entropy, loaded, quant, info)
        header = _provisional_header(src, info, loaded, quant, plan, seed, steps, max_memory, memory_share, notice)
        job = _Encoding(reader, loaded, plan, header, keep_times=_keeps_frame_times(src, info, header, notice),
                        carry_audio=audio and info.audio is not None, device=device, progress=progress,
                        notice=notice, window=(start_s, max_frames))
        if target is None:
            frames = job.write_direct(dst, quant)
        else:
            frames, choice = job.write_to_target(dst, target, rate_progress)
            step = choice.step
    size = Path(dst).stat().st_size
    state = "carried" if job.carry_audio else ("dropped (--no-audio)" if info.audio else "none")
    return Report(frames, info.width, info.height, info.fps, size, time.time() - started, state, plan.coder,
                  plan.note, step=float(step), target=str(target) if target else "",
                  precision=_precision_of(loaded.net))


def _entropy_plan(entropy: str, loaded: LoadedModel, quant: tuple[float, ...], info) -> EntropyPlan:
    """The coder for these steps (coder_choice.plan_encode), its errors worded for the codec's callers."""
    timeline = Timeline.of(loaded.net.cfg)
    latent_pixels = timeline.latent_size(info.height) * timeline.latent_size(info.width)
    try:
        return plan_encode(entropy, loaded.path, quant, loaded.net.cfg.latent_dim, latent_pixels)
    except BadEntropy as e:  # names its parameter: the caller words it (--entropy on the command line)
        raise BadArgument(e.param, e.after, e.before) from None
    except EntropyChoiceError as e:
        raise CodecError(str(e)) from None


def _provisional_header(src, info, loaded: LoadedModel, quant: tuple[float, ...], plan: EntropyPlan, seed: int,
                        steps: int | None, max_memory: int | None, memory_share: int,
                        notice: Callable[[str], None]) -> Header:
    """The header an encode opens its output with, after checking the encode fits in memory. There is one pass
    over the input and its length is known only at its end, so the header starts with the most frames the format
    holds (its byte size does not depend on them) and is restated with the true counts at close."""
    net, timeline = loaded.net, Timeline.of(loaded.net.cfg)
    bound = 1 + (spec.MAX_FRAMES - 1) // timeline.temporal * timeline.temporal
    coded_h, coded_w = timeline.coded_size(info.height), timeline.coded_size(info.width)
    check_memory(encode_bytes(net.cfg, coded_h, coded_w), f"{src}: encoding {info.width}x{info.height}",
                 max_memory, memory_share)
    return Header(
        model_id=loaded.name, weights_hash=bytes.fromhex(loaded.digest), width=info.width, height=info.height,
        coded_width=coded_w, coded_height=coded_h, num_frames=bound, coded_frames=bound,
        fps_num=info.fps.numerator, fps_den=info.fps.denominator,
        time_base_num=info.time_base.numerator, time_base_den=info.time_base.denominator,
        pix_fmt=info.pix_fmt, color_range=info.color_range, color_space=info.color_space,
        color_primaries=info.color_primaries, color_trc=info.color_trc,
        latent_channels=net.cfg.latent_dim, latent_height=timeline.latent_size(info.height),
        latent_width=timeline.latent_size(info.width), latent_frames=timeline.latent_frames(bound),
        chunk_latent_frames=1, spatial_downsample=timeline.spatial, temporal_downsample=timeline.temporal,
        quant_step=quant, entropy_coder=plan.coder, entropy_params=plan.params,
        seed=seed, sampling_steps=steps or net.cfg.sample_steps, extensions={}, **display_facts(info, notice),
    )


def _keeps_frame_times(src, info, header: Header, notice: Callable[[str], None]) -> bool:
    """Whether the file records the source's frame times: where they leave the frame-rate grid and the header's
    time base holds them (a still image has none worth keeping)."""
    keep = not info.is_image and Grid.of(header).holds_frame_times
    if not info.is_image and not keep:
        notice(f"{src}: its time base {info.time_base} is coarser than a frame at {info.fps} fps; the frames are "
               "given the frame rate's times")
    return keep


@dataclass
class _Encoding:
    """One encode from its opened input to its closed .cdt: what was settled before the pass over the input, and
    the two ways to write the file: directly, or (rate control) from spooled latents once the step is chosen."""

    reader: object  # the opened input (media.open_video)
    loaded: LoadedModel
    plan: EntropyPlan
    header: Header  # provisional: restated with the true frame counts (counted) once the input has ended
    keep_times: bool  # record the frame boundaries' times (FRAME_TIMES records)
    carry_audio: bool
    device: str
    progress: Progress | None
    notice: Callable[[str], None]
    window: tuple[float, int | None]  # (start_s, max_frames): the part of the input that is read

    def write_direct(self, dst, quant: tuple[float, ...]) -> int:
        """One pass: each latent chunk is quantized and written as it is made. Returns the frames read."""
        with self._writer(dst, self.header) as writer:
            frames = self._read_latents(lambda latent: writer.write_chunk(quantize(latent, quant)),
                                        writer.write_frame_times)
            writer.restate_frame_counts(self._counted(frames))
        return frames

    def write_to_target(self, dst, target: RateTarget, on_trial: Callable[[Trial], None] | None) -> tuple[int, Choice]:
        """The latents spooled in one pass, the step rate control chooses for `target`, then the file at that step.
        Returns the frames read and the choice."""
        with LatentSpool() as spool:
            frame_times: list = []  # written before the chunks: the reader takes FRAME_TIMES records anywhere
            frames = self._read_latents(spool.append, frame_times.extend)
            header = self._counted(frames)
            choice = self._choose_step(header, spool, frame_times, target, on_trial)
            with self._writer(dst, replace(header, quant_step=choice.steps)) as writer:
                writer.write_frame_times(frame_times)
                for i in range(len(spool)):
                    writer.write_chunk(quantize(spool[i], choice.steps))
        return frames, choice

    def _read_latents(self, sink: Callable[[torch.Tensor], object], times: Callable[[list], object]) -> int:
        """The one pass over the input: each latent chunk (C, 1, h, w) to `sink`, the frame boundaries' times to
        `times` where they are kept; returns the frames read."""
        done = [0]
        for mean in _posterior_means(self.reader, self.loaded.net, self.device, self.progress, done,
                                     times if self.keep_times else None):
            for t in range(mean.shape[1]):
                sink(mean[:, t : t + 1])
        if shortfall := missing_frames(self.reader.info, done[0], *self.window):
            self.notice(shortfall)
        return done[0]

    def _counted(self, frames: int) -> Header:
        """The header with the true frame counts."""
        timeline = Timeline.of(self.loaded.net.cfg)
        return replace(self.header, num_frames=frames, coded_frames=timeline.coded_frames(frames),
                       latent_frames=timeline.latent_frames(frames))

    @contextmanager
    def _writer(self, dst, header: Header):
        """The .cdt writer, its audio track set; the body writes the chunks, then the audio packets follow."""
        with _open_writer(dst, header, self.plan.prior) as writer:
            if self.carry_audio:
                writer.set_audio_track(self.reader.info.audio)
            yield writer
            if self.carry_audio:
                for packet in self.reader.audio_packets():
                    writer.write_audio_packet(packet)

    def _choose_step(self, header: Header, spool: LatentSpool, frame_times: list, target: RateTarget,
                     on_trial: Callable[[Trial], None] | None) -> Choice:
        """Rate control on the spooled latents: exact file sizes (the records besides the chunks counted once)."""
        info, frames = self.reader.info, header.num_frames
        fixed = frame_times_record_bytes(header, frame_times)
        fixed += audio_record_bytes(info.audio, self.reader.audio_packets()) if self.carry_audio else 0
        scale = model_scale(self.loaded)  # its note, if any, was given with the steps above
        sizer = FileSizer(header, spool, self.plan.prior, fixed, scale)
        want = target.bytes_for(frames, info.width, info.height, info.fps)
        choice = choose_step(sizer, want, scale.global_step(DEFAULT_QUALITY), on_trial=on_trial)
        if not choice.reached:
            rate = target.rate_of(choice.bytes, frames, info.width, info.height, info.fps)
            self.notice(choice.missed(target, rate))
        return choice


def model_scale(loaded: LoadedModel, notice: Callable[[str], None] | None = None):
    """The quality scale of loaded weights (quantize.scale_for); a reason it falls back goes to `notice`."""
    try:
        scale, note = scale_for(loaded.path, loaded.digest, loaded.net.cfg.latent_dim)
    except QualityScaleError as e:
        raise CodecError(str(e)) from None
    if note and notice:
        notice(note)
    return scale


def quality_steps(loaded: LoadedModel, quality: int | None, step: float | None = None,
                  notice: Callable[[str], None] | None = None) -> tuple[float, ...]:
    """The quantizer steps a file gets: (step,) for an explicit `step`, else those of `quality` (default
    DEFAULT_QUALITY) on the model's quality scale: one global step, or one per channel with fitted gains."""
    if step is not None:
        return (float(step),)
    return model_scale(loaded, notice).steps(DEFAULT_QUALITY if quality is None else quality)


def _precision_of(net) -> str:
    return "bf16" if net.dtype == torch.bfloat16 else "fp32"


def _open_writer(dst, header: Header, prior) -> CdtWriter:
    try:
        return CdtWriter(dst, header, prior=prior)
    except OSError as e:
        raise CodecError(f"{dst}: cannot write: {e.strerror or e}") from None


@dataclass(frozen=True)
class LatentClip:
    """What encode_latents read and made: the clip's geometry and the weights' identity, for its metadata."""

    frames: int  # true frame count of the window
    coded_frames: int  # padded to 1 + 4k
    latent_frames: int
    width: int
    height: int
    latent_width: int
    latent_height: int
    latent_channels: int
    fps: Fraction
    model: str
    weights_sha256: str
    seconds: float


def encode_latents(src: str | Path, sink: Callable[[torch.Tensor], None], *,
                   model: str | Path | LoadedModel | None = None, start_s: float = 0.0,
                   max_frames: int | None = None, device: str = "cpu", precision: str = "fp32",
                   progress: Progress | None = None, max_memory: int | None = None, memory_share: int = 1,
                   notice: Callable[[str], None] | None = None) -> LatentClip:
    """The posterior mean of a video, unquantized: `sink` receives it in time order as float32 CPU tensors of
    shape (L, t, h, w), latent frame chunks of the encoder's schedule (all latent frames of the coded length,
    the padded tail included). The same pass as encode(), so the latents are the ones a .cdt quantizes."""
    notice = notice or (lambda line: None)
    started = time.time()
    with _encoder_input(src, start_s, max_frames, model, device, precision, notice) as (reader, loaded):
        info, net = reader.info, loaded.net
        timeline = Timeline.of(net.cfg)
        check_memory(encode_bytes(net.cfg, timeline.coded_size(info.height), timeline.coded_size(info.width)),
                     f"{src}: encoding {info.width}x{info.height}", max_memory, memory_share)
        done = [0]
        latent_frames = 0
        for mean in _posterior_means(reader, net, device, progress, done):
            sink(mean.float().cpu())
            latent_frames += mean.shape[1]
        if shortfall := missing_frames(info, done[0], start_s, max_frames):
            notice(shortfall)
    if latent_frames != timeline.latent_frames(done[0]):  # the encoder's schedule guarantees it
        raise CodecError(f"{src}: {latent_frames} latent frames for {done[0]} frames")
    return LatentClip(done[0], timeline.coded_frames(done[0]), latent_frames, info.width, info.height,
                      timeline.latent_size(info.width), timeline.latent_size(info.height), net.cfg.latent_dim,
                      info.fps, loaded.name, loaded.digest, time.time() - started)


# ---------------------------------------------------------------------------------------------------------
# decode

def parse_frame_range(spec: str | None, total: int) -> tuple[int, int]:
    """'A:B' (either side optional, B exclusive) -> (A, B) clipped to the video; errors name decode's `frames`."""
    if not spec:
        return 0, total
    try:
        a, b = spec.split(":")
        start = int(a) if a.strip() else 0
        end = int(b) if b.strip() else total
    except ValueError:
        raise BadArgument("frames", f" expects A:B (e.g. 10:50), got {spec!r}") from None
    if start < 0 or end < 0:
        raise BadArgument("frames", f" {spec}: frame numbers start at 0")
    if start >= total:
        raise BadArgument("frames", f" {spec}: the video has only {total} frames")
    if start >= end:
        raise BadArgument("frames", f" {spec}: need A < B")
    return start, min(end, total)


def _decode_into(out, stream: StreamDecoder, pieces, first: int, end: int, height: int, width: int, device: str,
                 progress: Progress | None, stamps=None) -> int:
    """Decode latent pieces into the sink `out`, keeping frames [first, end): `pieces` yields (first video frame
    of the piece, a function reading its latent (L, t, h, w)); none is read once the pieces pass `end`.
    `stamps`, when given, yields each written frame's (pts, duration) (media.facts.frame_stamps). Returns the frames
    written."""
    written = 0
    position = 0  # video frame index of the next decoded frame
    for start, read in pieces:
        if start >= end:
            break  # the pieces after this one are never read
        for x in stream.push(read().unsqueeze(0).to(device)):
            video = stream.timeline.to_frames(x, height, width)
            lo, hi = max(first, position), min(end, position + len(video))
            for frame in video[max(0, lo - position) : max(0, hi - position)]:
                out.write(frame, *(next(stamps) if stamps else ()))
                written += 1
            position += len(video)
        if progress:
            progress(written, end - first)
    return written


def _output_bytes(dst) -> int:
    path = Path(dst)
    if special_file(path):
        return 0  # a device or FIFO: what went through it is not kept
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.iterdir())


def _check_layout(h: Header, label: str) -> None:
    """A file this decoder handles: its /8 and /4 geometry, a frame size within MAX_SIDE."""
    t = CODEC_TIMELINE
    if (h.spatial_downsample, h.temporal_downsample) != (t.spatial, t.temporal):
        raise CodecError(f"{label}: coded at /{h.spatial_downsample} in space and /{h.temporal_downsample} in time; "
                         f"this decoder handles /{t.spatial} and /{t.temporal}")
    if h.width > MAX_SIDE or h.height > MAX_SIDE:
        raise CodecError(f"{label}: frame size {h.width}x{h.height} is beyond {MAX_SIDE} pixels per side")


def decode(src, dst: str | Path, *, frames: str | None = None, model: str | None = None, codec: str | None = None,
           crf: int = 12, preset: str = "medium", audio: bool = True, device: str = "cpu", precision: str = "fp32",
           progress: Progress | None = None, name: str | None = None, max_memory: int | None = None) -> Report:
    """Decode a .cdt (path or seekable binary file) into a video file, a .y4m, or a folder of PNGs.

    Only the chunks up to the last requested frame are read (the index gives their places); nothing
    appears at `dst` unless the whole decode succeeds. `name` labels `src` in error messages. `precision`
    (auto, fp32, bf16): the decoder's arithmetic; the file does not fix it, and frames differ by its rounding.
    """
    started = time.time()
    label = name or source_label(src)
    check_video_output(dst)
    refuse_inputs(dst, [src, model], folder=True)
    with open_cdt(src, label) as reader, named_errors(label):
        h = reader.header
        _check_layout(h, label)
        first, end = parse_frame_range(frames, h.num_frames)
        timed = reader.has_frame_times
        if timed:
            for _ in reader.frame_time_records():  # a damaged one fails now, not after minutes of decoding
                pass
        net, weights = load_decoder(h.model_id, h.weights_hash.hex(), model, label, device, precision)
        if net.cfg.latent_dim != h.latent_channels:
            raise CodecError(f"{label}: {h.latent_channels} latent channels, but the model has {net.cfg.latent_dim}")
        steps = h.sampling_steps or net.cfg.sample_steps
        check_memory(decode_bytes(net.cfg, h.coded_height, h.coded_width, steps),
                     f"{label}: decoding {h.width}x{h.height} at {steps} sampling step(s)", max_memory)
        try:
            reader.use_prior(prior_for_decode(h, weights, label))
        except EntropyChoiceError as e:
            raise WeightsError(str(e)) from None
        stream = StreamDecoder(net, seed=h.seed, steps=h.sampling_steps or None)
        fps = Fraction(h.fps_num, h.fps_den)
        source_audio = reader.audio_track
        whole = first == 0 and end == h.num_frames
        track = source_audio if audio and whole else None

        def read(index: int) -> torch.Tensor:
            symbols = reader.read_chunk(index)
            return dequantize(symbols, h.quant_step)  # one step, or one per channel

        pieces = ((stream.timeline.frames_of_latents(h.chunk_start_frame(i), h.chunk_frames(i))[0],
                   functools.partial(read, i)) for i in range(reader.num_chunks))
        with open_sink(dst, h.width, h.height, fps=fps, codec=codec, crf=crf, preset=preset, audio=track,
                       **sink_facts(h, timed)) as out:
            note = facts_lost(h, timed, out, os.fspath(dst))
            stamps = frame_stamps(reader.frame_times(), first, end) if timed and out.keeps_frame_times else None
            if track is not None:
                out.follow_audio(reader.audio_packets())  # pulled as far as the frames written, no further
            written = _decode_into(out, stream, pieces, first, end, h.height, h.width, device, progress, stamps)
            if written != end - first:  # the header fixes the count; a bad file fails before here
                raise CodecError(f"{label}: decoded {written} frames, expected {end - first}")
            skipped = out.audio_skipped_reason
    if source_audio is None:
        state = "none"
    elif not audio:
        state = "dropped (--no-audio)"
    elif not whole:
        state = "dropped (frame range)"
    else:
        state = f"dropped ({skipped})" if skipped else "carried"
    return Report(written, h.width, h.height, fps, _output_bytes(dst), time.time() - started, state, h.entropy_coder,
                  note, precision=_precision_of(net))


def decode_latents(latents: torch.Tensor, dst: str | Path, *, model_id: str, weights_sha256: str, width: int,
                   height: int, num_frames: int, fps: Fraction, frames: str | None = None, model: str | None = None,
                   codec: str | None = None, crf: int = 12, preset: str = "medium", device: str = "cpu",
                   precision: str = "fp32", progress: Progress | None = None, label: str = "latents",
                   inputs: tuple = (), max_memory: int | None = None) -> Report:
    """Decode unquantized latents (T', L, h, w: latent frames first, as latent shards hold them) of a
    `width` x `height` clip of `num_frames` frames into a video, like decode() does a .cdt's (noise seed 0,
    the model's sampling steps). `model_id` and `weights_sha256` name the weights that made them; `inputs`
    are the files they were read from (never written onto)."""
    started = time.time()
    check_video_output(dst)
    refuse_inputs(dst, [*inputs, model], folder=True)
    timeline = CODEC_TIMELINE
    if width > MAX_SIDE or height > MAX_SIDE or width < 1 or height < 1:
        raise CodecError(f"{label}: frame size {width}x{height} is outside 1..{MAX_SIDE} pixels per side")
    expect = (timeline.latent_frames(num_frames), timeline.latent_size(height), timeline.latent_size(width))
    if latents.dim() != 4 or (latents.shape[0], *latents.shape[2:]) != expect:
        raise CodecError(f"{label}: latents of shape {tuple(latents.shape)} do not fit {num_frames} frames of "
                         f"{width}x{height} ({expect[0]} latent frames of {expect[1]}x{expect[2]})")
    first, end = parse_frame_range(frames, num_frames)
    net, _ = load_decoder(model_id, weights_sha256, model, label, device, precision)
    if net.cfg.latent_dim != latents.shape[1]:
        raise CodecError(f"{label}: {latents.shape[1]} latent channels, but the model has {net.cfg.latent_dim}")
    check_memory(decode_bytes(net.cfg, timeline.coded_size(height), timeline.coded_size(width), net.cfg.sample_steps),
                 f"{label}: decoding {width}x{height}", max_memory)
    stream = StreamDecoder(net)

    def read(t: int) -> torch.Tensor:
        return latents[t : t + 1].transpose(0, 1).float()  # (L, 1, h, w)

    pieces = ((timeline.frames_of_latents(t, 1)[0], functools.partial(read, t)) for t in range(latents.shape[0]))
    with open_sink(dst, width, height, fps=fps, codec=codec, crf=crf, preset=preset) as out:
        written = _decode_into(out, stream, pieces, first, end, height, width, device, progress)
        if written != end - first:
            raise CodecError(f"{label}: decoded {written} frames, expected {end - first}")
    return Report(written, width, height, fps, _output_bytes(dst), time.time() - started, "none",
                  precision=_precision_of(net))
