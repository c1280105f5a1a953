"""CDT's streaming steps as ONNX graphs whose feature caches are explicit inputs and outputs.

A stream's first chunk differs from the others (one frame in, front padding instead of history, TimeUpsample
drops a frame), so each direction exports two fixed-shape graphs:

* ``first``: the first chunk. No cache in; the cache after it out.
* ``step``: any later chunk (decoder: one latent frame -> 4 video frames; encoder: 4 frames -> one latent
  frame). The cache in, the updated cache out.

Cache tensors travel in a fixed order (the insertion order of the PyTorch cache dicts) as inputs ``cache.i``
and outputs ``cache_out.i``; feed each output back as the same-numbered input of the next chunk. Entries that
only record "first chunk seen" (True) are constants of the step graph. After the first chunk a causal conv
holds fewer past frames than it will later; the first graph pads them in the conv's own padding mode, which
is exactly what the second chunk would have done, so one step graph (with one set of shapes) serves every
later chunk.

Runtimes: ``ort_infer`` (ONNX Runtime, CPU) and ``openvino_infer`` (OpenVINO, CPU) turn a graph file into a
function feeds -> outputs; ``RuntimeDecoder`` / ``RuntimeEncoder`` are the stream classes (stream.py) running such a
pair.
``quantize_int8`` makes an int8 (QDQ, per-channel weights) copy of a graph from calibration feeds.
onnx, onnxruntime and openvino are optional: they are imported only by the functions that need them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cdtcodec.model import CDT
from cdtcodec.model.layers import Cache, CausalConv3d
from cdtcodec.stream import ChunkedDecoder, ChunkedEncoder
from cdtcodec.timeline import CODEC_TIMELINE, Timeline

OPSET = 17  # LayerNormalization is an ONNX op from 17 on

# feeds (input name -> array) -> outputs in graph order
Infer = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


# ---------------------------------------------------------------------------------------------------------
# Cache layout


@dataclass(frozen=True)
class CacheLayout:
    """Where each streaming-cache entry lives: ``(cache index, layer)`` pairs in graph order.

    The cache index says which of the stream's dicts holds it (decoder: 0 = context, 1 + k = DDIM step k;
    encoder: 0). ``shapes`` are the steady-state shapes of the tensor entries.
    """

    tensors: tuple[tuple[int, nn.Module], ...]
    shapes: tuple[tuple[int, ...], ...]
    flags: tuple[tuple[int, nn.Module], ...]
    num_caches: int

    @classmethod
    def of(cls, caches: Sequence[Cache]) -> "CacheLayout":
        tensors, shapes, flags = [], [], []
        for i, cache in enumerate(caches):
            for layer, value in cache.items():
                if isinstance(value, torch.Tensor):
                    tensors.append((i, layer))
                    shapes.append(tuple(full_history(layer, value).shape))
                elif value is True:
                    flags.append((i, layer))
                else:
                    raise TypeError(f"unexpected cache entry {value!r} for {type(layer).__name__}")
        return cls(tuple(tensors), tuple(shapes), tuple(flags), len(caches))

    def input_names(self) -> list[str]:
        return [f"cache.{i}" for i in range(len(self.tensors))]

    def output_names(self) -> list[str]:
        return [f"cache_out.{i}" for i in range(len(self.tensors))]

    def build(self, tensors: Sequence[torch.Tensor]) -> list[Cache]:
        """Fresh cache dicts holding ``tensors`` and the flags (the state a later chunk starts from)."""
        caches: list[Cache] = [{} for _ in range(self.num_caches)]
        for (i, layer), value in zip(self.tensors, tensors):
            caches[i][layer] = value
        for i, layer in self.flags:
            caches[i][layer] = True
        return caches

    def collect(self, caches: Sequence[Cache]) -> list[torch.Tensor]:
        """The tensor entries of ``caches`` in graph order, each with its full steady-state history."""
        known = set(self.tensors)
        unknown = [type(layer).__name__ for i, cache in enumerate(caches) for layer, value in cache.items()
                   if isinstance(value, torch.Tensor) and (i, layer) not in known]
        if unknown:  # a later chunk caching what the first did not: its state would be silently dropped
            raise RuntimeError(f"cache entries missing from the layout: {', '.join(unknown)}")
        return [full_history(layer, caches[i][layer]) for i, layer in self.tensors]


def full_history(layer: nn.Module, past: torch.Tensor) -> torch.Tensor:
    """A causal conv's cache padded at the front to its steady length (time_context frames).

    After the first chunk a causal conv keeps only the frames it has seen; the next chunk pads the missing
    past in the conv's padding mode. Padding the cache the same way now gives that chunk identical input.
    """
    if isinstance(layer, CausalConv3d) and past.shape[2] < layer.time_context:
        past = F.pad(past, (0, 0, 0, 0, layer.time_context - past.shape[2], 0), mode=layer.pad_mode)
    return past


# ---------------------------------------------------------------------------------------------------------
# Exportable modules


class _Streamed(nn.Module):
    """Runs one chunk of a stream on caches rebuilt from explicit tensors; returns (output, *new caches)."""

    def __init__(self, layout: CacheLayout, first: bool):
        super().__init__()
        self.layout = layout
        self.first = first

    def _caches(self, cache_tensors: Sequence[torch.Tensor]) -> list[Cache]:
        if self.first:
            return [{} for _ in range(self.layout.num_caches)]
        return self.layout.build(cache_tensors)

    def _result(self, output: torch.Tensor, caches: list[Cache]) -> tuple[torch.Tensor, ...]:
        return (output, *self.layout.collect(caches))


class DecoderChunk(_Streamed):
    """forward(latent (1, L, 1, h, w), noise (1, 3, t, 8h, 8w), *cache) -> (video, *new cache)."""

    def __init__(self, model: CDT, steps: int, layout: CacheLayout, first: bool):
        super().__init__(layout, first)
        self.model = model
        self.steps = steps

    def forward(self, latent: torch.Tensor, noise: torch.Tensor, *cache_tensors: torch.Tensor):
        caches = self._caches(cache_tensors)
        video = self.model.decode(latent, noise, self.steps, caches[0], caches[1:])
        return self._result(video, caches)


class EncoderChunk(_Streamed):
    """forward(video (1, 3, t, H, W), *cache) -> (moments, *new cache)."""

    def __init__(self, model: CDT, layout: CacheLayout, first: bool):
        super().__init__(layout, first)
        self.model = model

    def forward(self, video: torch.Tensor, *cache_tensors: torch.Tensor):
        caches = self._caches(cache_tensors)
        return self._result(self.model.moments(video, caches[0]), caches)


def decoder_layout(model: CDT, height: int, width: int, steps: int | None = None) -> CacheLayout:
    """The decoder's cache layout at a video size (a multiple of 8), from a first chunk run in PyTorch."""
    steps = steps or model.cfg.sample_steps
    caches: list[Cache] = [{} for _ in range(1 + steps)]
    s = Timeline.of(model.cfg).spatial
    latent = torch.zeros(1, model.cfg.latent_dim, 1, height // s, width // s)
    with torch.no_grad():
        model.decode(latent, torch.zeros(1, 3, 1, height, width), steps, caches[0], caches[1:])
    return CacheLayout.of(caches)


def encoder_layout(model: CDT, height: int, width: int) -> CacheLayout:
    caches: list[Cache] = [{}]
    with torch.no_grad():
        model.moments(torch.zeros(1, 3, 1, height, width), caches[0])
    return CacheLayout.of(caches)


# ---------------------------------------------------------------------------------------------------------
# Export


@dataclass(frozen=True)
class ExportedStream:
    """The two graphs of one direction at one size."""

    first: Path
    step: Path
    layout: CacheLayout


def _mkldnn_convolution_symbolic(g, x, weight, bias, padding, stride, dilation, groups):
    # layers.conv3d calls oneDNN directly on CPU (torch.mkldnn_convolution); the TorchScript exporter has no
    # rule for it. It is a plain convolution: emit ONNX Conv.
    from torch.onnx import symbolic_helper as sym

    padding, stride, dilation = (sym._get_const(v, "is", name) for v, name in
                                 ((padding, "padding"), (stride, "stride"), (dilation, "dilation")))
    inputs = [x, weight] if sym._is_none(bias) else [x, weight, bias]
    return g.op("Conv", *inputs, strides_i=stride, pads_i=list(padding) * 2, dilations_i=dilation,
                group_i=sym._get_const(groups, "i", "groups"))


_RULES = {"aten::mkldnn_convolution": _mkldnn_convolution_symbolic}


class _ExportRules:
    """Registers the exporter rules CDT needs for the duration of an export (the registry is process-wide)."""

    def __enter__(self):
        for op, rule in _RULES.items():
            torch.onnx.register_custom_op_symbolic(op, rule, OPSET)
        return self

    def __exit__(self, *exc):
        for op in _RULES:
            torch.onnx.unregister_custom_op_symbolic(op, OPSET)


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
            output_names: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Contiguous example inputs: the graph's inputs are plain NCDHW arrays whatever layout torch prefers.
    args = tuple(a.contiguous() for a in args)
    with _ExportRules(), torch.no_grad(), warnings.catch_warnings():
        # Tracing warns at every Python branch on a shape; the graphs are fixed-shape by design.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, input_names=input_names,
                          output_names=output_names, do_constant_folding=True)
    return path


def _first_two(schedule) -> tuple[int, int]:
    return next(schedule), next(schedule)


def export_decoder(model: CDT, height: int, width: int, out_dir: str | Path, steps: int | None = None,
                   name: str = "decoder") -> ExportedStream:
    """Writes ``<name>_first.onnx`` and ``<name>_step.onnx`` for video frames of height x width."""
    model = model.eval()
    steps = steps or model.cfg.sample_steps
    out_dir = Path(out_dir)
    layout = decoder_layout(model, height, width, steps)
    timeline = Timeline.of(model.cfg)
    s = timeline.spatial
    latent = torch.randn(1, model.cfg.latent_dim, 1, height // s, width // s)
    cache = [torch.randn(shape) for shape in layout.shapes]
    first_frames, step_frames = timeline.frames_of_latents(0, 1)[1], timeline.frames_of_latents(1, 1)[1]
    first = _export(DecoderChunk(model, steps, layout, first=True),
                    (latent, torch.randn(1, 3, first_frames, height, width)),
                    out_dir / f"{name}_first.onnx", ["latent", "noise"], ["video", *layout.output_names()])
    step = _export(DecoderChunk(model, steps, layout, first=False),
                   (latent, torch.randn(1, 3, step_frames, height, width), *cache), out_dir / f"{name}_step.onnx",
                   ["latent", "noise", *layout.input_names()], ["video", *layout.output_names()])
    return ExportedStream(first, step, layout)


def export_encoder(model: CDT, height: int, width: int, out_dir: str | Path, name: str = "encoder") -> ExportedStream:
    """Writes ``<name>_first.onnx`` and ``<name>_step.onnx`` (the timeline's first and later chunk sizes)."""
    model = model.eval()
    out_dir = Path(out_dir)
    layout = encoder_layout(model, height, width)
    cache = [torch.randn(shape) for shape in layout.shapes]
    first_frames, step_frames = _first_two(Timeline.of(model.cfg).chunk_sizes())
    first = _export(EncoderChunk(model, layout, first=True), (torch.randn(1, 3, first_frames, height, width),),
                    out_dir / f"{name}_first.onnx", ["video"], ["moments", *layout.output_names()])
    step = _export(EncoderChunk(model, layout, first=False), (torch.randn(1, 3, step_frames, height, width), *cache),
                   out_dir / f"{name}_step.onnx", ["video", *layout.input_names()],
                   ["moments", *layout.output_names()])
    return ExportedStream(first, step, layout)


# ---------------------------------------------------------------------------------------------------------
# Runtimes


def ort_infer(path: str | Path, threads: int) -> Infer:
    """An ONNX Runtime CPU session (all graph optimizations, ``threads`` intra-op threads) as a function."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return lambda feeds: session.run(names, feeds)


def openvino_infer(path: str | Path, threads: int) -> Infer:
    """An OpenVINO CPU compiled model (latency hint, fp32 arithmetic unless the graph is quantized)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    count = len(compiled.outputs)

    def infer(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request.infer(feeds)
        # The request reuses its output memory on the next call, and the caches are fed back: copy.
        return [request.get_output_tensor(i).data.copy() for i in range(count)]

    return infer


class RuntimeDecoder(ChunkedDecoder):
    """ChunkedDecoder on exported graphs: one latent frame per pass, the cache a list of arrays.

    Batch 1 (the graphs' fixed shape). Same noise as StreamDecoder(seed), so the output equals it to rounding.
    ``record`` (a list) receives the feeds of every step-graph call, e.g. to calibrate a quantized graph.
    """

    def __init__(self, first: Infer, step: Infer, seed: int = 0, record: list | None = None,
                 timeline: Timeline = CODEC_TIMELINE):
        super().__init__(timeline, seed, chunk_latents=1)
        self.first, self.step = first, step
        self.record = record
        self.cache: list[np.ndarray] | None = None

    def decode_chunk(self, latent: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        feeds = {"latent": _array(latent), "noise": _array(noise)}
        if self.cache is None:
            video, *self.cache = self.first(feeds)
        else:
            feeds.update((f"cache.{j}", c) for j, c in enumerate(self.cache))
            if self.record is not None:
                self.record.append(dict(feeds))  # nothing here is written to later: no copy needed
            video, *self.cache = self.step(feeds)
        return torch.from_numpy(np.asarray(video))


class RuntimeEncoder(ChunkedEncoder):
    """ChunkedEncoder on exported graphs (1 frame, then 4 at a time), the cache a list of arrays."""

    def __init__(self, first: Infer, step: Infer, timeline: Timeline = CODEC_TIMELINE):
        super().__init__(timeline)
        self.first, self.step = first, step
        self.cache: list[np.ndarray] | None = None

    def encode_chunk(self, frames: torch.Tensor) -> torch.Tensor:
        feeds = {"video": _array(frames)}
        if self.cache is None:
            out, *self.cache = self.first(feeds)
        else:
            feeds.update((f"cache.{j}", c) for j, c in enumerate(self.cache))
            out, *self.cache = self.step(feeds)
        return torch.from_numpy(np.asarray(out))

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """A whole clip -> its moments (the tail padded as StreamEncoder pads it)."""
        return torch.cat(self.push(video) + self.finish(), dim=2)


def _array(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------
# int8


def quantize_int8(fp32_path: str | Path, out_path: str | Path, calibration: Sequence[dict[str, np.ndarray]],
                  op_types: Sequence[str] = ("Conv",), exclude: Sequence[str] = ()) -> Path:
    """Static int8 copy of a graph (ONNX Runtime QDQ: uint8 activations, per-channel int8 weights).

    ``calibration``: feeds recorded from real data (e.g. RuntimeDecoder's ``record``); activation ranges are
    their min-max, so they need enough variety (a few clips): ranges from a single clip clipped others badly.
    ``op_types``: the ops to quantize. Convolutions only by default: they hold nearly all the arithmetic,
    and on cdt-tiny adding ConvTranspose and MatMul (attention included) cost quality for no measurable speed.
    ``exclude``: node names left in fp32.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self):
            return next(self.items, None)

    out_path = Path(out_path)
    prepared = out_path.with_name(out_path.stem + ".prepared.onnx")
    # The recommended preparation (shape inference, constant folding). ORT's symbolic shape inference trips
    # on these graphs' Reshapes; every shape is static, so ONNX's own inference is enough.
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_static(str(prepared), str(out_path), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=list(op_types),
                        nodes_to_exclude=list(exclude))
    finally:
        prepared.unlink(missing_ok=True)
    return out_path
