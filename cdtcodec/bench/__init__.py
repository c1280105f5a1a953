"""`cdtcodec bench`: the rate-distortion benchmark of cdtcodec against x264, x265 and SVT-AV1.

What it measures, and how (method.py holds this list too; results.json carries it under "method"):

* Clips. Each input is decoded once (the first N frames), its short side resized to `size` (Lanczos, antialiased)
  and centre-cropped to size x size. Those uint8 RGB frames are the reference for every metric, and every codec
  reads them from the same lossless file (FFV1, bgr0, in Matroska; read back and checked bit-exact before use).
* cdtcodec: `cdtcodec.codec.encode` at each quality, then `cdtcodec.codec.decode` into PNG frames (exact).
  The rate is the size of the .cdt file (header, index and payload: the whole file). `cdt` uses the default
  entropy coder; `cdt-range` is the same model and quality with the version-1 range coder (the same symbols,
  so the same frames): the anchor for what the default coder saves.
* References through PyAV: libx264 and libx265 (presets medium and slow), libsvtav1 (presets 6 and 5, the
  project's mapping of medium and slow); yuv420p, BT.709 limited range (tagged), the clip's frame rate, default
  GOP, constant-quality CRF over a grid spanning the cdt rate range. The streams are written raw (H.264 and HEVC
  Annex B, AV1 low-overhead OBUs), so the rate is the real file with no container overhead. x264 and x265 put a
  text SEI with their version and settings into the first frame (about 0.7 and 2.3 kB); it is recorded in the
  results and removed from the stream with FFmpeg's filter_units bitstream filter (it is not needed to decode),
  which makes the references slightly stronger at low rates. The streams are decoded back with FFmpeg and
  converted to RGB with the BT.709 limited-range matrix.
* Metrics on the decoded 8-bit RGB frames against the source frames, per frame and per clip: PSNR on RGB and on
  BT.601 luma (per clip from the clip's mean squared error, as `cdtcodec demo` reports it; the mean of the
  per-frame PSNRs is kept too; a frame with zero error is stored as null), SSIM (RGB, Gaussian 11x11, computed
  in float32: within 1e-6 of float64),
  LPIPS (AlexNet v0.1, weights/lpips-alex.safetensors).
* Speed and memory: each encode and each decode runs alone in a fresh worker process forked from a clean server
  (Python, NumPy, PyAV and, when cdt runs, PyTorch already imported). Seconds are the wall time of the call,
  frames/s = frames / seconds. cdt's times include loading the weights, and its decode time includes writing PNGs;
  the references' encode time includes reading the lossless source and RGB -> YUV, their decode time YUV -> RGB.
  Peak memory is the process's peak resident set (VmHWM) during the phase, given both as the absolute peak and as
  the growth over the worker's resident set before the phase.
* BD-rate (bjontegaard package, Akima interpolation) of cdt (test) against each reference curve (anchor), on
  two quality axes: PSNR-RGB in dB, and -LPIPS (LPIPS is lower-is-better; negating it leaves BD-rate unchanged
  and makes the axis increasing). Negative means cdt needs fewer bits for the same quality. Each curve is first
  reduced to its monotone part (points that do not raise quality over a cheaper point are dropped and listed);
  the integral runs only over the quality interval where both curves exist (no extrapolation). With fewer than
  two points left, or no overlap, the value is null with the reason. The overlap fraction (overlap / union of
  the two quality ranges) is reported; below 0.75 (the package's own warning threshold) the entry is flagged
  "low_overlap" but kept. The average over clips is the mean of the per-clip values that exist, with their count
  and the excluded clips.

Modules, along the data flow: config (settings), clips (preparation), workers (processes, time, memory),
runner (the run), records (the typed results, from a worker's phase to the whole run), bdrate (pure functions),
report, page (report.html) and plot (outputs), environment, method.
"""

from cdtcodec.bench.bdrate import bd_rate, compute_bd, monotone
from cdtcodec.bench.clips import clip_names, prepare_frames, write_lossless
from cdtcodec.bench.config import BenchConfig, BenchError, make_config
from cdtcodec.bench.records import BenchResults, Clip, Memory, Phase, PhaseRecord, RunRecord
from cdtcodec.bench.report import console_lines
from cdtcodec.bench.runner import run

__all__ = ["bd_rate", "compute_bd", "monotone", "clip_names", "prepare_frames", "write_lossless", "BenchConfig",
           "BenchError", "make_config", "console_lines", "run", "BenchResults", "Clip", "Memory", "Phase",
           "PhaseRecord", "RunRecord"]
