"""Latent shards: WebDataset-style tar files of posterior means with per-clip metadata, for training.

A shard `shard-NNNNNN.tar` holds, for each clip, two members named by the clip's sample key (inputs.py):

    <key>.json          metadata: source path, fps, frame counts, sizes, the model and its weights' sha256,
                        the dtype, and the CRC-32 of the latents' data
    <key>.latents.npy   the posterior mean, shape (latent frames, channels, height/8, width/8): latent
                        frames first, so a clip of any length is written as it is encoded; float16, or
                        bfloat16 stored as its uint16 bit patterns ("stored_as" in the metadata says which)

Members of one clip are consecutive (WebDataset groups members by the name before the first dot), in input
order; member headers carry no time or owner, so the same latents make the same bytes. A corpus's clips go
to shards in input order, `shard_size` clips each, so a rerun knows which shard each clip belongs in.

Each clip is first staged in DIR/.cdtcodec-staging (its .npy streamed to disk, then its .json), and a
shard is written, through a temporary renamed into place, once all of its clips are done; the staged files
are then removed. A rerun takes over what an earlier run left: entries of an existing shard and staged
clips whose metadata matches (same source, same size and mtime, same window, weights and dtype) and whose
data matches its CRC, so an interrupted run loses at most the clips that were being encoded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tarfile
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from bitstream.atomic import AtomicOutput
from cdtcodec.corpus.inputs import Clip

SHARD_NAME = "shard-{:06d}.tar"
STAGING = ".cdtcodec-staging"
LATENTS = ".latents.npy"
META = ".json"
MAX_META_BYTES = 1 << 20  # a clip's metadata is a few hundred bytes; a crafted shard gets no further
_NPY_HEADER = 128  # fixed, so the header can be restated with the final length once the clip has ended
_STORED = {"float16": "<f2", "bfloat16": "<u2"}  # numpy has no bfloat16: its bit patterns, as uint16
# What makes a staged or shard entry the one this run would make (besides its key).
IDENTITY = ("source", "source_bytes", "source_mtime_ns", "start_s", "max_frames", "dtype", "weights_sha256")


class ShardError(Exception):
    """A shard or shard entry that cannot be read; the message is one line naming it."""


# ---------------------------------------------------------------------------------------------------------
# staging one clip (in a worker)

class _NpyStream:
    """A .npy file written in pieces along its first axis; its header, of fixed size, is restated with the
    final length at the end. The CRC-32 of the data (everything after the header) is kept as it goes."""

    def __init__(self, f, descr: str, tail: tuple[int, ...]):
        self.f, self.descr, self.tail = f, descr, tail
        self.rows = 0
        self.crc = 0
        self.data_bytes = 0
        f.write(self._header(0))

    def _header(self, rows: int) -> bytes:
        text = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (self.descr, (rows, *self.tail))
        body = text.ljust(_NPY_HEADER - 11) + "\n"
        if len(body) != _NPY_HEADER - 10:
            raise ValueError(f"npy header for shape {(rows, *self.tail)} does not fit {_NPY_HEADER} bytes")
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")

    def append(self, array: np.ndarray) -> None:
        if array.shape[1:] != self.tail or array.dtype.str != self.descr:
            raise ValueError(f"latent piece {array.shape} {array.dtype.str}, expected (t, *{self.tail}) {self.descr}")
        data = np.ascontiguousarray(array).tobytes()
        self.f.write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.data_bytes += len(data)
        self.rows += array.shape[0]

    def finish(self) -> None:
        self.f.seek(0)
        self.f.write(self._header(self.rows))
        self.f.seek(0, os.SEEK_END)


def _stored(piece, dtype: str) -> np.ndarray:
    """(L, t, h, w) float32 tensor -> (t, L, h, w) array of the stored dtype."""
    import torch

    x = piece.permute(1, 0, 2, 3).contiguous()
    if dtype == "float16":
        return x.to(torch.float16).numpy().astype("<f2", copy=False)
    return x.to(torch.bfloat16).view(torch.int16).numpy().view("<u2")


def source_identity(path: str) -> dict:
    st = os.stat(path)
    return {"source": path, "source_bytes": st.st_size, "source_mtime_ns": st.st_mtime_ns}


@dataclass(frozen=True)
class Staged:
    frames: int
    width: int
    height: int
    fps: Fraction
    bytes: int  # of the latents' .npy


def stage_clip(clip: Clip, base: str, *, model, dtype: str, start_s: float = 0.0, max_frames: int | None = None,
               device: str = "cpu", progress=None, max_memory: int | None = None, memory_share: int = 1,
               notice=None) -> Staged:
    """Encode one clip's posterior mean into `base`.latents.npy and its metadata into `base`.json, each
    written atomically, the metadata last (its presence marks a complete staged clip)."""
    from cdtcodec import __version__, codec
    from cdtcodec.timeline import CODEC_TIMELINE

    if dtype not in _STORED:
        raise ValueError(f"latent dtype must be one of {', '.join(_STORED)}, got {dtype!r}")
    identity = source_identity(clip.source)  # before reading it: a file changed meanwhile is not taken as this
    stream: list[_NpyStream] = []
    with AtomicOutput(base + LATENTS) as tmp, open(tmp, "wb") as f:
        def sink(piece) -> None:
            if not stream:
                stream.append(_NpyStream(f, _STORED[dtype], (piece.shape[0], piece.shape[2], piece.shape[3])))
            stream[0].append(_stored(piece, dtype))

        made = codec.encode_latents(clip.source, sink, model=model, start_s=start_s, max_frames=max_frames,
                                    device=device, progress=progress, max_memory=max_memory,
                                    memory_share=memory_share, notice=notice)
        npy = stream[0]
        npy.finish()
        size = f.tell()
    meta = {"key": clip.key, **identity, "relative": clip.relative, "start_s": start_s, "max_frames": max_frames,
            "fps": str(made.fps), "frames": made.frames, "coded_frames": made.coded_frames,
            "latent_frames": made.latent_frames, "width": made.width, "height": made.height,
            "latent_channels": made.latent_channels, "latent_height": made.latent_height,
            "latent_width": made.latent_width, "layout": "latent frames, channels, height, width",
            "dtype": dtype, "stored_as": "float16" if dtype == "float16" else "uint16 (bfloat16 bit patterns)",
            "model": made.model, "weights_sha256": made.weights_sha256,
            "spatial_downsample": CODEC_TIMELINE.spatial, "temporal_downsample": CODEC_TIMELINE.temporal,
            "latents_bytes": size, "latents_crc32": npy.crc, "cdtcodec": __version__}
    with AtomicOutput(base + META) as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
    return Staged(made.frames, made.width, made.height, made.fps, size)


def staged_base(out_dir: str, key: str) -> str:
    """Where a clip is staged: named by a hash of its key (keys hold folders; staging is flat)."""
    return os.path.join(out_dir, STAGING, hashlib.sha256(key.encode()).hexdigest()[:24])


# ---------------------------------------------------------------------------------------------------------
# entries: a clip's two members, wherever they are (staged files or a shard)

def _npy_data_offset(raw: bytes) -> int:
    if raw[:6] != b"\x93NUMPY" or len(raw) < 10:
        raise ValueError("not a .npy file")
    if raw[6] == 1:
        return 10 + struct.unpack("<H", raw[8:10])[0]
    if len(raw) < 12:
        raise ValueError("not a .npy file")
    return 12 + struct.unpack("<I", raw[8:12])[0]


def check_latents(raw: bytes, meta: dict, label: str) -> np.ndarray:
    """The latents array of an entry, after checking it against its metadata (shape, dtype, CRC)."""
    try:
        crc = zlib.crc32(memoryview(raw)[_npy_data_offset(raw):])
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ShardError(f"{label}: latents unreadable ({_reason(e)})") from None
    try:
        expect = (int(meta["latent_frames"]), int(meta["latent_channels"]), int(meta["latent_height"]),
                  int(meta["latent_width"]))
        stored = _STORED[meta["dtype"]]
        want_crc = int(meta["latents_crc32"])
    except (KeyError, TypeError, ValueError):
        raise ShardError(f"{label}: metadata lacks the latents' shape, dtype or CRC") from None
    if array.shape != expect or array.dtype.str != stored:
        raise ShardError(f"{label}: latents {array.shape} {array.dtype.str}, the metadata says {expect} {stored}")
    if crc != want_crc:
        raise ShardError(f"{label}: latents fail their CRC (damaged)")
    return array


def _parse_meta(raw: bytes, label: str) -> dict:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ShardError(f"{label}: metadata is not JSON") from None
    if not isinstance(meta, dict):
        raise ShardError(f"{label}: metadata is not a JSON object")
    return meta


@dataclass(frozen=True)
class Entry:
    """A clip's members: staged files (`tar` None, `npy` the file) or members of the shard `tar` (`npy`'s data
    at byte `offset`, `size` bytes long)."""

    key: str
    meta: dict
    tar: str | None = None
    npy: str = ""
    offset: int = 0
    size: int = 0

    @property
    def label(self) -> str:
        return f"{self.tar}#{self.key}" if self.tar else self.npy

    def identity(self) -> tuple:
        return tuple(self.meta.get(k) for k in IDENTITY)

    def open_latents(self):
        """A binary file positioned at the start of the .npy (read `size` bytes from there)."""
        f = open(self.tar or self.npy, "rb")
        f.seek(self.offset)
        return f


def read_staged(base: str) -> Entry | None:
    """The staged clip at `base` once its metadata is written, else None."""
    try:
        with open(base + META, "rb") as f:
            raw = f.read(MAX_META_BYTES + 1)
        size = os.path.getsize(base + LATENTS)
    except OSError:
        return None
    try:
        meta = _parse_meta(raw, base)
    except ShardError:
        return None
    return Entry(str(meta.get("key", "")), meta, None, base + LATENTS, 0, size)


def _key_and_ext(name: str) -> tuple[str, str]:
    """WebDataset's split of a member name: the key is all before the first dot of the last component."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (dot + ext)


def _open_tar(path: str) -> tarfile.TarFile:
    if not os.path.isfile(path):
        raise ShardError(f"{path}: no such shard" if not os.path.exists(path) else f"{path}: not a file")
    try:
        return tarfile.open(path, "r:")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ShardError(f"{path}: not a readable tar shard ({_reason(e)})") from None


def _reason(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def shard_entries(path: str) -> list[Entry]:
    """The clips of a shard, in order, with their metadata (their latents are not read here)."""
    with _open_tar(path) as tf:
        try:
            groups: dict[str, dict[str, tarfile.TarInfo]] = {}
            for member in tf.getmembers():
                if member.isfile():
                    key, ext = _key_and_ext(member.name)
                    groups.setdefault(key, {})[ext] = member
            entries = []
            for key, parts in groups.items():
                if META not in parts or LATENTS not in parts:
                    continue  # not one of ours
                if parts[META].size > MAX_META_BYTES:
                    raise ShardError(f"{path}#{key}: metadata of {parts[META].size} bytes")
                meta = _parse_meta(tf.extractfile(parts[META]).read(), f"{path}#{key}")
                npy = parts[LATENTS]
                entries.append(Entry(key, meta, path, npy.name, npy.offset_data, npy.size))
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ShardError(f"{path}: damaged tar shard ({_reason(e)})") from None
    if any(e.offset + e.size > os.path.getsize(path) for e in entries):
        raise ShardError(f"{path}: truncated tar shard")
    return entries


def entry_latents_bytes(entry: Entry) -> bytes:
    want = entry.meta.get("latents_bytes")
    if want != entry.size:
        raise ShardError(f"{entry.label}: latents of {entry.size} bytes, the metadata says {want}")
    try:
        with entry.open_latents() as f:
            raw = f.read(entry.size)
    except OSError as e:
        raise ShardError(f"{entry.label}: cannot read the latents ({e.strerror or _reason(e)})") from None
    if len(raw) != entry.size:
        raise ShardError(f"{entry.label}: latents truncated")
    return raw


def verify(entry: Entry) -> bool:
    """Whether an entry's latents are intact (they match the metadata's size, shape, dtype and CRC)."""
    try:
        check_latents(entry_latents_bytes(entry), entry.meta, entry.label)
        return True
    except ShardError:
        return False


# ---------------------------------------------------------------------------------------------------------
# writing a shard (in the caller, once its clips are done)

def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0  # no time, no owner: the same latents, the same bytes
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_shard(path: str, entries: Iterable[Entry]) -> int:
    """Write the entries (staged or from shards, the one at `path` included) into the shard `path`,
    atomically; returns its size in bytes. Each entry's latents are streamed into the tar, never held whole."""
    with AtomicOutput(path) as tmp:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as out:
            for entry in entries:
                meta = json.dumps(entry.meta, indent=1).encode() + b"\n"
                out.addfile(_info(entry.key + META, len(meta)), io.BytesIO(meta))
                with entry.open_latents() as f:
                    out.addfile(_info(entry.key + LATENTS, entry.size), f)
        size = os.path.getsize(tmp)
    return size


def remove_staged(base: str) -> None:
    for suffix in (META, LATENTS):  # the metadata first: without it a staged clip is not taken
        try:
            os.remove(base + suffix)
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------------------------------------------------
# reading back (the Python API) and decoding one entry

@dataclass(frozen=True)
class LatentSample:
    """One clip of a shard: its key, its latents (T', L, h, w; float16 or bfloat16) and its metadata."""

    key: str
    latents: "object"  # torch.Tensor
    meta: dict

    def __iter__(self):  # key, latents, meta = sample
        return iter((self.key, self.latents, self.meta))


def _tensor(array: np.ndarray, dtype: str):
    import torch

    if dtype == "bfloat16":
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(array.copy())


def _shard_paths(paths) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found = []
    for p in map(os.fspath, paths):
        if os.path.isdir(p):
            found += sorted(str(q) for q in Path(p).glob("shard-*.tar"))
        else:
            found.append(p)
    return found


def read_shards(paths) -> Iterator[LatentSample]:
    """Every clip of the shards (a shard, a folder of shards, or a list of either), in order, one at a time:
    (key, latents tensor, metadata). Each clip's latents are checked against their metadata and CRC."""
    for path in _shard_paths(paths):
        with _open_tar(path) as tf:
            try:
                pending: dict[str, dict] = {}
                for member in tf:
                    if not member.isfile():
                        continue
                    key, ext = _key_and_ext(member.name)
                    label = f"{path}#{key}"
                    if ext == META:
                        if member.size > MAX_META_BYTES:
                            raise ShardError(f"{label}: metadata of {member.size} bytes")
                        pending[key] = _parse_meta(tf.extractfile(member).read(), label)
                    elif ext == LATENTS:
                        if key not in pending:
                            raise ShardError(f"{label}: latents before their metadata")
                        meta = pending.pop(key)
                        array = check_latents(tf.extractfile(member).read(), meta, label)
                        yield LatentSample(key, _tensor(array, meta["dtype"]), meta)
            except (tarfile.TarError, OSError, EOFError) as e:
                raise ShardError(f"{path}: damaged tar shard ({_reason(e)})") from None


def read_entry(path: str, key: str | None = None) -> LatentSample:
    """One clip of a shard by key; without a key, the shard's only clip."""
    entries = shard_entries(path)
    if key is None:
        if len(entries) != 1:
            hint = f" (e.g. {path}#{entries[0].key})" if entries else ""
            raise ShardError(f"{path}: holds {len(entries)} clips; name one as {path}#KEY{hint}")
        entry = entries[0]
    else:
        matches = [e for e in entries if e.key == key]
        if not matches:
            raise ShardError(f"{path}: no clip with the key {key!r}")
        entry = matches[0]
    array = check_latents(entry_latents_bytes(entry), entry.meta, entry.label)
    return LatentSample(entry.key, _tensor(array, entry.meta["dtype"]), entry.meta)


def split_entry(spec: str) -> tuple[str, str | None] | None:
    """(shard, key or None) when `spec` names a shard entry, `SHARD.tar#KEY` (or a whole `SHARD.tar`); else
    None (a .cdt file, whose name may hold a '#')."""
    if spec.endswith(".tar") and not os.path.isdir(spec):
        return spec, None
    path, hash_, key = spec.rpartition("#")
    if hash_ and path.endswith(".tar") and key:
        return path, key
    return None


def decode_entry(path: str, key: str | None, dst, **options):
    """Decode one clip of a shard into a video (codec.decode_latents; `options` are its keyword arguments)."""
    from cdtcodec import codec

    sample = read_entry(path, key)
    meta = sample.meta
    label = f"{path}#{sample.key}"
    try:
        fps = Fraction(meta["fps"])
        fields = dict(model_id=str(meta["model"]), weights_sha256=str(meta["weights_sha256"]),
                      width=int(meta["width"]), height=int(meta["height"]), num_frames=int(meta["frames"]))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        raise ShardError(f"{label}: metadata lacks the model, the frame size or the frame rate") from None
    if fps <= 0 or fields["num_frames"] < 1:
        raise ShardError(f"{label}: metadata says {fields['num_frames']} frames at {fps} fps")
    return codec.decode_latents(sample.latents, dst, fps=fps, label=label, inputs=(path,), **fields, **options)
