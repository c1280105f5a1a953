"""`cdtcodec info`: what a .cdt file holds and where its bytes go."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

from bitstream.frame_times import end_time
from cdtcodec.codec_files import decoder_weights, named_errors, open_cdt, source_label
from cdtcodec.rate.coder_choice import prior_for_decode
from cdtcodec.timeline import CODEC_TIMELINE


def describe(path, label: str | None = None, verify: bool = False, model=None) -> dict:
    """Format version, header fields, display facts, frame times, byte accounting, rate (bpp, kbps) and the
    per-chunk table, as plain JSON-able data.

    The byte counts add up: file_bytes = header_bytes + index_bytes + payload_bytes + framing_bytes + audio_bytes
    + frame_times_bytes + other_bytes. `frame_times` is None for a file on its frame-rate grid, else how many
    records and times it holds and when the last frame ends (which `duration_s` then is). `path` is a path or a
    seekable binary file. `verify` also reads every chunk and audio packet through its CRC and entropy-decodes the
    chunks (no neural decode), raising on the first bad one; otherwise only the header, index and trailer are
    checked.
    """
    label = label or source_label(path)
    with open_cdt(path, label) as reader, named_errors(label):
        h = reader.header
        stats = reader.stats
        header = {}
        for f in dataclasses.fields(h):
            value = getattr(h, f.name)
            header[f.name] = value.hex() if isinstance(value, bytes) else (
                {k: v.hex() for k, v in value.items()} if f.name == "extensions" else
                list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, dict) else value)
        header["audio"] = dataclasses.asdict(reader.audio_track) if reader.audio_track else None
        if header["audio"]:
            header["audio"]["extradata"] = header["audio"]["extradata"].hex()
        pixels = h.width * h.height
        fps = Fraction(h.fps_num, h.fps_den)
        seconds = h.num_frames / float(fps) if fps else 0.0
        frame_times = None
        if reader.has_frame_times:  # off the frame-rate grid: the file says when the last frame ends
            end, records, recorded = end_time(h, reader.frame_time_records())
            seconds = float(end * Fraction(h.time_base_num, h.time_base_den))
            frame_times = {"records": records, "recorded": recorded, "end_ticks": end, "end_s": seconds}
        chunks = []
        for i, payload in enumerate(stats.chunk_payload_bytes):
            start, count = CODEC_TIMELINE.frames_of_latents(h.chunk_start_frame(i), h.chunk_frames(i))
            count = max(0, min(count, h.num_frames - start))  # the padded tail is not shown
            chunks.append({"index": i, "first_frame": start, "frames": count, "bytes": payload,
                           "bpp": 8 * payload / max(1, count * pixels)})
        if verify and h.entropy_coder == "prior":  # the prior beside the weights (default: those the file names)
            reader.use_prior(prior_for_decode(h, decoder_weights(h, model, label), label))
        verified = ({"chunks": sum(1 for _ in reader.chunks()),
                     "audio_packets": sum(1 for _ in reader.audio_packets())} if verify else None)
    return {
        "verified": verified,
        "version": "{}.{}".format(*reader.version),
        "header": header,
        "display": {"rotation": h.rotation, "mirrored": h.mirrored,
                    "sample_aspect": f"{h.sample_aspect_num}:{h.sample_aspect_den}"},
        "frame_times": frame_times,
        "frames": h.num_frames,
        "file_bytes": stats.file_bytes,
        "header_bytes": stats.header_bytes,
        "index_bytes": stats.index_bytes,
        "audio_bytes": stats.audio_bytes,
        "frame_times_bytes": stats.frame_times_bytes,
        "payload_bytes": stats.payload_bytes,
        "framing_bytes": stats.chunk_framing_bytes,
        "other_bytes": stats.other_bytes,
        "bpp": 8 * stats.file_bytes / max(1, h.num_frames * pixels),
        "kbps": 8 * stats.file_bytes / seconds / 1000 if seconds else 0.0,
        "duration_s": seconds,
        "chunks": chunks,
    }
