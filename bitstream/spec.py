"""The .cdt format, written down once: magic, version, struct layouts, frozen enum ids and limits.

Everything a reader or writer needs to agree on lives here; docs/bitstream.md describes the
same thing in prose. Numbers in this file are part of the on-disk format: never renumber an
id, never change a layout without bumping FORMAT_MAJOR (incompatible) or FORMAT_MINOR
(compatible addition: new optional header fields, new optional record types).

All integers are little-endian. Every struct below uses standard sizes ("<" prefix).
"""

from __future__ import annotations

import struct

# --------------------------------------------------------------------------------------------
# File identification
# --------------------------------------------------------------------------------------------
#: First 8 bytes of every .cdt file. PNG-style: a high byte (catches 7-bit transports),
#: CR LF (catches newline translation), ^Z (stops DOS `type`), LF.
MAGIC = b"\x89CDT\r\n\x1a\n"
#: Last 4 bytes of every complete .cdt file (end of the trailer).
END_MAGIC = b"CDTe"

#: The newest format version. A reader accepts files whose major version is in READ_MAJORS and any minor
#: version: minor bumps only add optional things that older readers skip.
FORMAT_MAJOR = 2
FORMAT_MINOR = 1
#: The minor version that added the media facts: the DISPLAY header field and FRAME_TIMES records. A file that
#: holds either is written as x.1 (1.1 for zstd / range, 2.1 for prior); one that holds neither stays x.0, byte
#: for byte what earlier writers made. Readers interpret them only in files of minor >= 1 (in x.0 files they are
#: unknown optional content, skipped).
MEDIA_FACTS_MINOR = 1
#: major versions this reader reads. Version 1: coders zstd and range (chunks independent); version 2 adds the
#: coder `prior` (chunk i conditioned on chunk i-1). A writer uses the lowest major its coder needs, so
#: `zstd` and `range` files stay version 1.0 and readers of version 1 keep reading them.
READ_MAJORS = (1, 2)

# --------------------------------------------------------------------------------------------
# Struct layouts
# --------------------------------------------------------------------------------------------
#: magic, major, minor, length of the header field area in bytes
PREAMBLE = struct.Struct("<8sHHI")  # 16 bytes
#: CRC-32 (zlib/ISO-HDLC polynomial) of the preamble and the header field area
CRC = struct.Struct("<I")
#: header field: tag, flags, length of the value that follows
FIELD_HEAD = struct.Struct("<HBI")  # 7 bytes
FIELD_FLAG_REQUIRED = 0x01  # a reader that does not know the tag must refuse the file

#: body record: type, payload length; the payload follows, then CRC over type+length+payload
RECORD_HEAD = struct.Struct("<BI")  # 5 bytes
RECORD_OVERHEAD = RECORD_HEAD.size + CRC.size  # 9 bytes around every payload

#: first bytes of a chunk record's payload: chunk number, latent frames in the chunk
CHUNK_PREFIX = struct.Struct("<II")  # 8 bytes

#: index record payload start: number of chunks, offset of the audio track record (0: none),
#: number of audio packet records; followed by one INDEX_ENTRY per chunk
INDEX_HEAD = struct.Struct("<IQQ")  # 20 bytes
#: offset of the chunk record from the start of the file, total record length (head+payload+crc)
INDEX_ENTRY = struct.Struct("<QI")  # 12 bytes

#: last 20 bytes of the file: offset of the index record, its total length,
#: CRC-32 of those 12 bytes, END_MAGIC
TRAILER = struct.Struct("<QII4s")  # 20 bytes

# --- header field values -------------------------------------------------------------------
GEOMETRY = struct.Struct("<IIIIII")  # width, height, coded_width, coded_height, num_frames, coded_frames
TIMING = struct.Struct("<IIII")  # fps_num, fps_den, time_base_num, time_base_den
#: channels, latent_frames, latent_height, latent_width, chunk_latent_frames,
#: spatial_downsample, temporal_downsample
LATENT = struct.Struct("<IIIIIII")
QUANT_COUNT = struct.Struct("<H")  # then that many little-endian float64 step sizes
QUANT_STEP = struct.Struct("<d")
ENTROPY_ID = struct.Struct("<B")  # then the coder's parameter bytes (the rest of the field)
SAMPLING = struct.Struct("<QI")  # decoder noise seed, number of sampling steps
STR_LEN = struct.Struct("<B")  # short strings: u8 length then ASCII bytes
#: DISPLAY (optional, minor 1): the display matrix as FFmpeg's AV_PKT_DATA_DISPLAYMATRIX / ISO/IEC 14496-12's
#: tkhd matrix (9 i32, row by row: a b u c d v x y w; 16.16 fixed point except u, v, w in 2.30), then the sample
#: aspect ratio (u32 numerator, u32 denominator)
DISPLAY = struct.Struct("<9iII")  # 44 bytes
#: the display matrix of a picture shown as coded (and the DISPLAY defaults: identity, square samples)
IDENTITY_MATRIX = (1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30)

# --- frame times (FRAME_TIMES record payload, minor 1) ------------------------------------------------------
#: first boundary k (>= 1), count n; then n FRAME_TIME values: the times of boundaries k .. k+n-1 in time-base ticks
FRAME_TIMES_HEAD = struct.Struct("<II")  # 8 bytes
FRAME_TIME = struct.Struct("<q")

# --- audio record payloads -----------------------------------------------------------------
#: after codec_name (STR_LEN-prefixed): sample_rate, channels, then layout (STR_LEN-prefixed),
#: AUDIO_TRACK_TAIL, then extradata (the rest of the payload)
AUDIO_TRACK_MID = struct.Struct("<IH")
AUDIO_TRACK_TAIL = struct.Struct("<IIQ")  # time_base_num, time_base_den, bit_rate
#: flags, pts, dts, duration; then the packet data (the rest of the payload)
AUDIO_PACKET_HEAD = struct.Struct("<Bqqq")
AUDIO_PTS_PRESENT = 0x01
AUDIO_DTS_PRESENT = 0x02

# --------------------------------------------------------------------------------------------
# Frozen enum ids
# --------------------------------------------------------------------------------------------
class Tag:
    """Header field tags. 1..0x7FFF are assigned here; never reuse one."""

    MODEL_ID = 1  # ASCII preset/model name
    WEIGHTS_HASH = 2  # 32 bytes, SHA-256 of the weights file
    GEOMETRY = 3
    TIMING = 4
    COLOR = 5  # pix_fmt, color_range, color_space, color_primaries, color_trc (STR_LEN strings)
    LATENT = 6
    QUANT = 7
    ENTROPY = 8
    SAMPLING = 9
    EXTENSION = 10  # optional, repeatable: STR_LEN key then value bytes
    DISPLAY = 11  # optional (minor 1): display matrix and sample aspect ratio, when not the defaults


REQUIRED_TAGS = (
    Tag.MODEL_ID,
    Tag.WEIGHTS_HASH,
    Tag.GEOMETRY,
    Tag.TIMING,
    Tag.COLOR,
    Tag.LATENT,
    Tag.QUANT,
    Tag.ENTROPY,
    Tag.SAMPLING,
)


class RecordType:
    """Body record types. Types >= 0x80 are optional: a reader that does not know one skips it;
    an unknown type below 0x80 makes the file unreadable for that reader."""

    CHUNK = 1
    AUDIO_TRACK = 2
    AUDIO_PACKET = 3
    INDEX = 4
    OPTIONAL_MIN = 0x80
    FRAME_TIMES = 0x80  # optional (minor 1): frame times off the frame-rate grid


class CoderId:
    """Entropy coder ids stored in the ENTROPY header field."""

    ZSTD = 1
    RANGE = 2
    PRIOR = 3  # format version 2


CODER_NAMES = {CoderId.ZSTD: "zstd", CoderId.RANGE: "range", CoderId.PRIOR: "prior"}
#: (major, minor) a file coded with each coder is written as
CODER_VERSION = {"zstd": (1, 0), "range": (1, 0), "prior": (2, 0)}
CODER_IDS = {v: k for k, v in CODER_NAMES.items()}


class Family:
    """Per-channel distribution families of the range coder's model (2 bits each)."""

    LAPLACE = 0  # w(u) = 2^-u
    GAUSS = 1  # w(u) = 2^-(u*u)
    CAUCHY = 2  # w(u) = 2^30 / (1 + u*u)
    # 3 is reserved; a reader refuses it


# --------------------------------------------------------------------------------------------
# Entropy coder parameters (the bytes after the coder id in the ENTROPY field)
# --------------------------------------------------------------------------------------------
#: zstd: compression level used by the writer (informational for the reader)
ZSTD_PARAMS = struct.Struct("<b")
#: range: model id (RANGE_MODEL_CHANNEL_V1) and probability precision in bits (RANGE_PRECISION)
RANGE_PARAMS = struct.Struct("<BB")
RANGE_MODEL_CHANNEL_V1 = 1
RANGE_PRECISION = 24
#: half-width of a channel's alphabet is min(RANGE_MAX_HALF_WIDTH, max(2, ceil(K * scale)))
RANGE_MAX_HALF_WIDTH = 4096
RANGE_HALF_WIDTH_FACTOR = {Family.LAPLACE: 32.0, Family.GAUSS: 6.0, Family.CAUCHY: 1024.0}
#: per-channel parameters inside a range chunk payload: mean, scale as IEEE float16
RANGE_CHANNEL_PARAMS = struct.Struct("<ee")
RANGE_WORDS = struct.Struct("<I")  # number of 32-bit range coder words that follow
#: prior: layout id (PRIOR_LAYOUT_V1), probability precision (RANGE_PRECISION), SHA-256 of the prior weights
#: file, context reset interval N (chunk i is coded without the chunks before it when i mod N = 0; 0: only
#: chunk 0)
PRIOR_PARAMS = struct.Struct("<BB32sI")
PRIOR_LAYOUT_V1 = 1  # one global quantizer step (QUANT holds 1)
#: per-channel quantizer steps (QUANT holds C, gain vectors): a reader that knows only layout 1 refuses the file
#: with UnsupportedFeature (unknown layout id), which is what keeps an earlier reader from misreading it
PRIOR_LAYOUT_PER_CHANNEL = 2
PRIOR_LAYOUTS = (PRIOR_LAYOUT_V1, PRIOR_LAYOUT_PER_CHANNEL)
#: first byte of a prior chunk payload: flags; bit 0 = context reset (no previous latent frame)
PRIOR_CHUNK_FLAGS = struct.Struct("<B")
PRIOR_FLAG_RESET = 0x01
#: the writer's default reset interval: about 5 s of 24 fps video at 4 video frames per chunk
DEFAULT_PRIOR_RESET_INTERVAL = 32
#: zstd chunk payload: bytes per symbol of the zigzag-packed array (1, 2 or 4)
ZSTD_WIDTH = struct.Struct("<B")

# --------------------------------------------------------------------------------------------
# Limits (a reader refuses anything beyond these before allocating)
# --------------------------------------------------------------------------------------------
MAX_HEADER_BYTES = 1 << 20
MAX_STR = 255
MAX_DIM = 1 << 16  # width/height/coded sizes
MAX_FRAMES = 1 << 28
MAX_CHANNELS = 4096
#: DDIM steps at decode: each costs a full network pass and keeps its own feature cache, so a header may not
#: ask for more than the encoder ever writes (cdtcodec caps --sampling-steps here too)
MAX_SAMPLING_STEPS = 1000
MAX_CHUNK_SYMBOLS = 1 << 27  # symbols in one chunk record (512 MiB as int32)
# The prior coder evaluates a network at every latent position before it knows whether the payload holds them;
# its files are bounded to latent frames of at most this many positions (a 2048x2048 video at /8), so a
# crafted header cannot buy minutes of work and gigabytes of activations with a few bytes.
PRIOR_MAX_LATENT_PIXELS = 1 << 16
MAX_RECORD_PAYLOAD = (1 << 32) - 1
MAX_AUDIO_PACKET = 1 << 24
MAX_EXTRADATA = 1 << 20
MAX_QUANT_STEPS = MAX_CHANNELS
MAX_VARINT_BYTES = 5  # escape values fit in 33 bits
#: frame times per FRAME_TIMES record (32 KiB of values): a reader checks the count against this and the record's
#: length before it reads the values, and holds one record at a time whatever the number of frames
MAX_FRAME_TIMES = 4096
#: boundary times are signed 64-bit (FFmpeg's timestamps); the grid may not run past them either
MAX_TICK = (1 << 63) - 1
#: sample aspect ratio terms: FFmpeg's rationals are signed 32-bit
MAX_ASPECT = (1 << 31) - 1
SYMBOL_MIN = -(1 << 31)
SYMBOL_MAX = (1 << 31) - 1

# --------------------------------------------------------------------------------------------
# Frozen constant table: EXP2_Q30[i] = round(2^30 * 2^(-i/256)), i = 0..255
# (tests recompute it with 60-digit decimal arithmetic)
# --------------------------------------------------------------------------------------------
EXP2_Q30 = (
    1073741824, 1070838486, 1067942999, 1065055341, 1062175491, 1059303428, 1056439131, 1053582579,
    1050733751, 1047892626, 1045059183, 1042233401, 1039415261, 1036604740, 1033801819, 1031006477,
    1028218693, 1025438448, 1022665720, 1019900489, 1017142735, 1014392438, 1011649578, 1008914134,
    1006186087, 1003465416, 1000752102, 998046124, 995347464, 992656100, 989972014, 987295185,
    984625594, 981963222, 979308048, 976660054, 974019220, 971385527, 968758955, 966139485,
    963527098, 960921775, 958323496, 955732243, 953147997, 950570738, 948000448, 945437108,
    942880699, 940331203, 937788600, 935252872, 932724001, 930201967, 927686753, 925178340,
    922676710, 920181844, 917693724, 915212331, 912737649, 910269657, 907808339, 905353676,
    902905651, 900464244, 898029440, 895601218, 893179563, 890764456, 888355878, 885953814,
    883558244, 881169153, 878786521, 876410331, 874040567, 871677210, 869320244, 866969651,
    864625413, 862287515, 859955938, 857630665, 855311680, 852998965, 850692504, 848392279,
    846098274, 843810471, 841528855, 839253408, 836984114, 834720956, 832463917, 830212982,
    827968132, 825729353, 823496627, 821269938, 819049271, 816834607, 814625932, 812423229,
    810226483, 808035676, 805850792, 803671817, 801498734, 799331526, 797170178, 795014675,
    792865000, 790721137, 788583072, 786450787, 784324269, 782203500, 780088465, 777979150,
    775875538, 773777614, 771685363, 769598769, 767517817, 765442492, 763372778, 761308661,
    759250125, 757197155, 755149737, 753107854, 751071493, 749040637, 747015274, 744995386,
    742980960, 740971982, 738968435, 736970306, 734977579, 732990241, 731008277, 729031671,
    727060411, 725094480, 723133865, 721178552, 719228525, 717283772, 715344277, 713410026,
    711481005, 709557200, 707638598, 705725183, 703816941, 701913860, 700015924, 698123120,
    696235434, 694352853, 692475362, 690602947, 688735596, 686873293, 685016026, 683163781,
    681316545, 679474303, 677637043, 675804750, 673977412, 672155015, 670337545, 668524990,
    666717336, 664914570, 663116678, 661323648, 659535466, 657752119, 655973594, 654199878,
    652430958, 650666822, 648907455, 647152846, 645402981, 643657847, 641917433, 640181724,
    638450708, 636724373, 635002706, 633285695, 631573326, 629865587, 628162466, 626463950,
    624770026, 623080683, 621395908, 619715688, 618040012, 616368866, 614702239, 613040119,
    611382493, 609729349, 608080675, 606436459, 604796689, 603161352, 601530438, 599903933,
    598281827, 596664106, 595050760, 593441776, 591837143, 590236848, 588640881, 587049229,
    585461881, 583878825, 582300049, 580725543, 579155293, 577589290, 576027521, 574469975,
    572916640, 571367506, 569822560, 568281792, 566745190, 565212742, 563684439, 562160268,
    560640218, 559124278, 557612438, 556104685, 554601009, 553101399, 551605844, 550114332,
    548626854, 547143398, 545663953, 544188508, 542717053, 541249576, 539786068, 538326517,
)
