"""Video in and out through PyAV: probe once, read a window (source), write frames (sinks), carry audio.

    probe.py    what an input is (VideoInfo), found once when it is opened
    source.py   open_video -> VideoReader: frames, batches and audio packets of a window
    sinks.py    open_sink -> a Sink (PNG folder, y4m, encoded container), all written atomically
    audio.py    the one audio interleaver the sinks use
    formats.py  output kinds, encoder presets, colour enums;  errors.py  VideoError

Every failure is a VideoError with a one-line message naming the file; raw PyAV/FFmpeg exceptions never
escape.
"""

from cdtcodec.media.errors import VideoError
from cdtcodec.media.formats import MAX_SIDE, VIDEO_EXTENSIONS, is_image_path, is_video_path, output_kind
from cdtcodec.media.probe import VideoInfo
from cdtcodec.media.sinks import ContainerSink, PngSink, Sink, Y4mSink, open_sink
from cdtcodec.media.source import VideoReader, open_video, read_png_frames

__all__ = ["VideoError", "VideoInfo", "VideoReader", "Sink", "PngSink", "ContainerSink", "Y4mSink", "open_sink",
           "open_video", "read_png_frames", "is_image_path", "is_video_path", "output_kind", "MAX_SIDE",
           "VIDEO_EXTENSIONS"]
