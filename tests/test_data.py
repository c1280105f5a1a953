"""Training data pipeline: shapes, range, 1+4k windows, frame order, determinism, per-worker streams."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from cdtcodec.train.data import (
    ClipDataset,
    _decode_skipping,
    list_segments,
    read_frames,
    validation_clips,
    validation_set,
)

FPS = 8
KEYINT = 4


def _level(i: int) -> int:
    return 16 + 5 * i  # gray level of frame i: identifies the frame after decoding


def _make_clip(path: Path, n: int, w: int, h: int, pattern: bool = True, keyint: int = KEYINT,
               bframes: int = 0) -> None:
    """Lossless H.264 clip: frame i is gray level _level(i) plus a fixed texture. bframes: that many B-frames
    between references, none of them a reference (lossy then, at x264's CRF 20: its lossless mode makes no
    B-frames)."""
    yy, xx = np.mgrid[0:h, 0:w]
    tex = ((xx // 4 + yy // 4) % 2 * 16).astype(np.int32) if pattern else 0
    with av.open(str(path), mode="w") as out:
        s = out.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = w, h, "yuv444p"
        s.codec_context.time_base = Fraction(1, FPS)
        s.options = {**({"crf": "20", "preset": "medium"} if bframes else {"qp": "0", "preset": "ultrafast"}),
                     "x264-params": f"keyint={keyint}:min-keyint={keyint}:bframes={bframes}:b-adapt=0:b-pyramid=none"}
        for i in range(n):
            img = np.clip(_level(i) + tex, 0, 255).astype(np.uint8)
            rgb = np.repeat(img[..., None], 3, axis=2)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv444p")
            frame.pts = i
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "train").mkdir()
    (root / "val").mkdir()
    _make_clip(root / "train" / "a_000.mp4", 30, 64, 48)
    _make_clip(root / "train" / "b_000.mp4", 21, 48, 40)
    _make_clip(root / "train" / "c_000.mp4", 4, 64, 48)       # too short for any window: ignored
    _make_clip(root / "train" / "d_000.mp4", 30, 40, 24)      # short side < size: ignored
    _make_clip(root / "val" / "v_000.mp4", 40, 64, 48)
    _make_clip(root / "val" / "v_001.mp4", 12, 48, 64)
    return root


def _frame_ids(x: torch.Tensor) -> list[int]:
    """Recover frame indices from a clip (3, T, H, W) in [-1, 1] (texture averages to +8)."""
    m = ((x + 1) * 127.5).mean(dim=(0, 2, 3))
    return [int(round((v.item() - 8 - 16) / 5)) for v in m]


def test_list_segments_probes_without_manifest(data_root):
    segs = list_segments(data_root, "train")
    assert [Path(s.path).name for s in segs] == ["a_000.mp4", "b_000.mp4", "c_000.mp4", "d_000.mp4"]
    assert [s.frames for s in segs] == [30, 21, 4, 30]
    assert (segs[0].width, segs[0].height) == (64, 48)


@pytest.mark.parametrize("start", [0, 1, 4, 7, 13, 25])
def test_read_frames_seek_is_exact(data_root, start):
    x = read_frames(data_root / "train" / "a_000.mp4", start, 5)
    assert x.shape == (5, 48, 64, 3) and x.dtype == np.uint8
    ids = [int(round((f.astype(np.float64).mean() - 8 - 16) / 5)) for f in x]
    assert ids == list(range(start, start + 5))


def test_read_frames_skips_only_unwanted_frames(tmp_path):
    """Long GOPs with B-frames: the pre-roll's non-reference frames are not decoded, and every window is still
    exactly what a decode from the first frame gives."""
    path = tmp_path / "bframes.mp4"
    _make_clip(path, 40, 64, 48, keyint=16, bframes=2)
    with av.open(str(path)) as c:
        full = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    for start in range(len(full) - 8):
        assert np.array_equal(read_frames(path, start, 9), full[start : start + 9]), start

    with av.open(str(path)) as c:  # from the keyframe at 16 to frame 31: fewer frames come out than are shown
        s = c.streams.video[0]
        c.seek(int(16 / FPS / s.time_base), stream=s, backward=True, any_frame=False)
        index = lambda pts: int(round(float(pts * s.time_base * FPS)))  # noqa: E731
        shown = [index(f.pts) for f in _decode_skipping(c, s, index, 31)]
    assert shown[-9:] == list(range(31, 40)) and len(shown) < 24


def test_clip_shapes_range_and_order(data_root):
    ds = ClipDataset(data_root, frames=9, size=32, seed=3, min_scale=0.5, num_samples=6)
    assert len(ds.segments) == 2  # too short / too small segments are dropped
    items = list(ds)
    assert len(items) == 6
    for x in items:
        assert x.shape == (3, 9, 32, 32) and x.dtype == torch.float32
        assert x.min() >= -1.0 and x.max() <= 1.0
        ids = _frame_ids(x)
        assert ids == list(range(ids[0], ids[0] + 9)), ids  # consecutive frames


def test_frames_must_be_one_plus_4k(data_root):
    with pytest.raises(ValueError):
        ClipDataset(data_root, frames=8, size=32)
    with pytest.raises(ValueError):
        validation_clips(data_root, frames=6, size=32)


def test_deterministic_for_a_seed(data_root):
    a = list(ClipDataset(data_root, frames=5, size=32, seed=7, min_scale=0.6, num_samples=3))
    b = list(ClipDataset(data_root, frames=5, size=32, seed=7, min_scale=0.6, num_samples=3))
    c = list(ClipDataset(data_root, frames=5, size=32, seed=8, min_scale=0.6, num_samples=3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    ds = ClipDataset(data_root, frames=5, size=32, seed=7, min_scale=0.6, num_samples=3)
    ds.set_epoch(1)
    assert not all(torch.equal(x, y) for x, y in zip(a, list(ds)))


def test_different_streams_per_rank(data_root):
    r0 = list(ClipDataset(data_root, frames=5, size=32, seed=1, rank=0, world_size=2, num_samples=4))
    r1 = list(ClipDataset(data_root, frames=5, size=32, seed=1, rank=1, world_size=2, num_samples=4))
    assert not all(torch.equal(x, y) for x, y in zip(r0, r1))
    ds = ClipDataset(data_root, frames=5, size=32, seed=1)
    draws = {(r, w): ds.rng_for(r, w).random(4).tolist() for r in range(2) for w in range(2)}
    assert len({tuple(v) for v in draws.values()}) == 4


def test_dataloader_workers_get_different_streams(data_root):
    def run():
        ds = ClipDataset(data_root, frames=5, size=32, seed=5, min_scale=0.5, num_samples=4)
        dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2,
                                         multiprocessing_context="fork")
        return list(dl)

    first = run()
    assert len(first) == 4
    # DataLoader alternates workers: items 0, 2 from worker 0; 1, 3 from worker 1.
    assert not torch.equal(first[0], first[1])
    ref0 = ClipDataset(data_root, frames=5, size=32, seed=5, min_scale=0.5)
    w0 = ref0.rng_for(0, 0)
    torch.testing.assert_close(first[0], ref0.sample(w0), rtol=0, atol=0)
    second = run()
    assert all(torch.equal(x, y) for x, y in zip(first, second))


def test_validation_clips_fixed_center_crops(data_root):
    clips = validation_clips(data_root, frames=5, size=32, count=4)
    again = validation_clips(data_root, frames=5, size=32, count=4)
    assert len(clips) == 4
    for x, y in zip(clips, again):
        assert x.shape == (3, 5, 32, 32) and x.dtype == torch.float32
        assert x.min() >= -1.0 and x.max() <= 1.0
        assert torch.equal(x, y)
    starts = [_frame_ids(x)[0] for x in clips]
    # 8 windows in v_000 (40 frames) + 2 in v_001 (12 frames): picks 0, 2, 5, 7 of the 10
    assert starts == [0, 10, 25, 35]


def _tagged_root(data_root: Path, root: Path, split: str, kinds: dict[str, str]) -> Path:
    """A data root holding links to data_root's `split` files, tagged in its manifest with the given kinds."""
    import json

    (root / split).mkdir(parents=True)
    found = {Path(seg.path).name: seg for seg in list_segments(data_root, split)}
    segments = []
    for name, kind in kinds.items():
        (root / split / name).symlink_to(data_root / split / name)
        seg = found[name]
        segments.append({"path": f"{split}/{name}", "frames": seg.frames, "width": seg.width, "height": seg.height,
                         "fps": [FPS, 1], "kind": kind})
    (root / "manifest.json").write_text(json.dumps({"sources": [{"clips": [{"segments": segments}]}]}))
    return root


def test_validation_set_shares_the_count_between_kinds(data_root, tmp_path):
    """Kinds from the manifest: each gets its share of the clips, whatever its share of the frames."""
    root = _tagged_root(data_root, tmp_path / "kinds", "val", {"v_000.mp4": "film", "v_001.mp4": "photo"})
    clips = validation_set(root, frames=5, size=32, count=4)
    # 8 film windows and 2 photo windows: 2 clips each, spread over each kind's own windows
    assert [(c.kind, Path(c.path).name, c.start) for c in clips] == [
        ("film", "v_000.mp4", 0), ("film", "v_000.mp4", 20), ("photo", "v_001.mp4", 0), ("photo", "v_001.mp4", 5)]
    assert [_frame_ids(c.video)[0] for c in clips] == [0, 20, 0, 5]


def test_kind_mix_sets_each_kinds_share_of_samples(data_root, tmp_path):
    root = _tagged_root(data_root, tmp_path / "mix", "train", {"a_000.mp4": "film", "b_000.mp4": "camera"})
    by_windows = ClipDataset(root, frames=5, size=32)
    np.testing.assert_allclose(by_windows.weights, [26 / 43, 17 / 43])
    even = ClipDataset(root, frames=5, size=32, kind_mix={"film": 1.0, "camera": 1.0, "photo": 5.0})
    np.testing.assert_allclose(even.weights, [0.5, 0.5])  # photo: none present, its share goes to the others
    only_camera = ClipDataset(root, frames=5, size=32, kind_mix={"camera": 1.0})
    np.testing.assert_allclose(only_camera.weights, [0.0, 1.0])


# ----------------------------------------------------------------------------- scripts/build_dataset.py (offline)


@pytest.fixture(scope="module")
def build():
    """scripts/build_dataset.py loaded as a module (it imports text_clips from beside itself)."""
    import importlib.util
    import sys

    scripts = Path(__file__).resolve().parents[1] / "scripts"
    spec = importlib.util.spec_from_file_location("build_dataset", scripts / "build_dataset.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(scripts))
    sys.modules["build_dataset"] = mod  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        del sys.modules["build_dataset"]
        sys.path.remove(str(scripts))


# The validation split as it was before the camera clips and photographs of newer packages: (clip, range).
VALIDATION = {("bbb", ("val", 476.0, 490.0)), ("bbb", ("val", 490.0, 581.5, "credits")), ("bbb", ("val", 581.5, None)),
              ("opencv_vtest", ("val", 59.5, None)), ("meca_balle_jbart", ("val", 6.2, None)),
              ("forensics_phone", ("val", 0.0, None)), ("photo_dune", ("val", 0.0, 10.0)),
              ("photo_ladybird", ("val", 0.0, 10.0)), ("photo_raindrops", ("val", 0.0, 10.0))}
NEW_CAMERA = {"opencv_box", "opencv_cup", "freecol_opening", "imageio_realshort", "docutils_pens", "libmpv2_jellyfish",
              "psychopy_jwpintro", "psychopy_testmovie", "voice_assistant_jabra", "kuttypy_lasercut", "kuttypy_robot"}
NEW_PHOTO_PACKAGES = {"plasma-workspace-wallpapers", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04",
                      "budgie-backgrounds"}


def test_the_validation_split_is_unchanged_and_new_sources_train_only(build):
    clips = {c.key: (s, c) for s in build.SOURCES for c in s.clips}
    assert len(clips) == sum(len(s.clips) for s in build.SOURCES)  # keys are unique: they name the output files
    val = {(key, tuple(r)) for key, (_, c) in clips.items() for r in c.ranges if r[0] == "val"}
    assert val == VALIDATION
    assert NEW_CAMERA <= clips.keys()
    assert all(clips[k][1].kind == "camera" for k in NEW_CAMERA)
    photos = [c for s in build.SOURCES if s.key in NEW_PHOTO_PACKAGES for c in s.clips]
    assert len(photos) == 38 and all(c.kind == "photo" for c in photos)
    for c in [clips[k][1] for k in NEW_CAMERA] + photos:
        assert [r[0] for r in c.ranges] == ["train"], c.key
    seeds = [c.motion_seed for _, c in clips.values() if c.motion_seed is not None]
    assert len(seeds) == len(set(seeds)) == 12 + 38  # every photograph its own camera path


def test_every_source_has_a_licence_and_mixed_packages_one_per_file(build):
    for s in build.SOURCES:
        assert s.licence.strip() and s.attribution.strip(), s.key
        if "per file" in s.licence:  # the package's files differ: each clip names its own licence and author
            assert all(c.licence.split(",")[0] in s.licence for c in s.clips), s.key
            assert all(len(c.licence.split(",")) == 2 for c in s.clips), s.key
    lomiri = {c.key: c.licence for s in build.SOURCES if s.key == "lomiri-wallpapers-16.04" for c in s.clips}
    assert lomiri["photo_lomiri_seeding"].startswith("CC0-1.0")
    assert lomiri["photo_lomiri_bridge"] == "CC-BY-SA-4.0, (c) 2018 Sander Klootwijk"
    suites = {s.key: s.suite for s in build.SOURCES if s.suite}
    assert suites == {"librust-libmpv2-dev": "sid", "psychopy": "sid", "linux-voice-assistant": "sid",
                      "kuttypy-gui": "trixie", "budgie-backgrounds": "trixie"}


def test_system_mirror_reads_deb822_and_one_line_sources(build, tmp_path):
    etc = tmp_path / "etc"
    (etc / "sources.list.d").mkdir(parents=True)
    assert build.system_mirror(etc) == ("http://deb.debian.org/debian", build.DEBIAN_KEYRING)  # nothing: default
    (etc / "sources.list.d" / "x.list").write_text(
        "# a comment\ndeb [arch=amd64 signed-by=/k/one.gpg] http://mirror.example/debian/ bookworm main\n")
    assert build.system_mirror(etc) == ("http://mirror.example/debian", "/k/one.gpg")
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://other.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
        "URIs: http://cache.example/debian\nSuites: bookworm\nComponents: main\nSigned-By: /k/archive.gpg\n")
    assert build.system_mirror(etc) == ("http://cache.example/debian", "/k/archive.gpg")  # deb822 first


def test_apt_config_is_self_contained(build, tmp_path):
    import os
    import shutil
    import subprocess

    root = tmp_path / "apt" / "sid"
    conf = build.apt_config(root, "sid", "http://cache.example/debian", "/k/archive.gpg")
    expected = "deb [signed-by=/k/archive.gpg] http://cache.example/debian sid main\n"
    assert (root / "sources.list").read_text() == expected
    for d in ("lists/partial", "archives/partial", "sources.list.d"):
        assert (root / d).is_dir()
    assert (root / "status").read_text() == ""
    settings = dict(line.rstrip(";").split(" ", 1) for line in conf.read_text().splitlines())
    for key in ("Dir::Etc::SourceList", "Dir::Etc::SourceParts", "Dir::State::Lists", "Dir::State::status",
                "Dir::Cache::archives"):
        assert settings[key].strip('"').startswith(str(root.resolve())), key  # nothing points at the system's
    if shutil.which("apt-config"):  # apt itself reads it so (offline: apt-config only parses configuration)
        out = subprocess.run(["apt-config", "dump"], env={**os.environ, "APT_CONFIG": str(conf)},
                             capture_output=True, text=True, check=True).stdout.lower()  # keys: any case
        assert f'dir::etc::sourcelist "{root.resolve()}/sources.list";'.lower() in out
        assert f'dir::state::lists "{root.resolve()}/lists";'.lower() in out


def _deb(path: Path, files: dict[str, bytes]) -> None:
    """A minimal .deb: an ar archive holding debian-binary and an xz data.tar with ``files``."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = b"!<arch>\n"
    for name, data in (("debian-binary", b"2.0\n"), ("data.tar.xz", buf.getvalue())):
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    path.write_bytes(out)


def test_extract_reads_the_members_it_needs_and_unpacks_gz(build, tmp_path):
    import gzip

    deb = tmp_path / "pkg_1.0_all.deb"
    _deb(deb, {"./usr/share/doc/a.txt": b"x" * 1001, "./usr/share/doc/html/box.mp4.gz": gzip.compress(b"BOX" * 50),
               "./usr/share/img/p.jpg": b"JPEG"})
    src = build.Source("pkg", "deb", "pkg", "MIT", "test",
                       [build.Clip("box", ("html/box.mp4.gz",)), build.Clip("pic", ("img/p.jpg",), kind="photo"),
                        build.Clip("gone", ("nowhere.mp4",))])
    paths = build.extract(src, deb, tmp_path / "raw")
    assert set(paths) == {"box", "pic"}  # a missing member is reported and left out
    assert paths["box"].name == "box.mp4" and paths["box"].read_bytes() == b"BOX" * 50
    assert paths["pic"].read_bytes() == b"JPEG"
    assert not list((tmp_path / "raw").rglob("*.part"))


def test_build_adds_a_photo_source_and_records_its_licence(build, tmp_path, monkeypatch):
    """End to end without network: a .deb already in data/raw/deb, one photograph through the synthetic
    camera; the manifest carries the clip's licence, and a second run redoes nothing."""
    import io
    import json

    from PIL import Image

    rng = np.random.default_rng(0)
    jpg = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (400, 700, 3), dtype=np.uint8)).save(jpg, format="JPEG")
    data = tmp_path / "data"
    (data / "raw" / "deb").mkdir(parents=True)
    _deb(data / "raw" / "deb" / "walls_1.0_all.deb", {"./usr/share/backgrounds/one.jpg": jpg.getvalue()})
    clip = build.Clip("photo_walls_one", ("backgrounds/one.jpg",), ranges=(("train", 0.0, 1.0),), kind="photo",
                      motion_seed=7, licence="CC-BY-4.0, (c) 2018 Someone")
    monkeypatch.setattr(build, "SOURCES", [build.Source("walls", "deb", "walls", "per file", "test", [clip])])
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the renderer's setting outlives the test
    assert build.main(["--data", str(data)]) == 0
    manifest = json.loads((data / "manifest.json").read_text())
    (rec,) = manifest["sources"][0]["clips"]
    assert rec["licence"] == "CC-BY-4.0, (c) 2018 Someone"
    assert manifest["kinds"]["train"] == {"photo": 24} and manifest["failed"] == []
    segment = data / rec["segments"][0]["path"]
    assert len(read_frames(segment, 0, 24)) == 24
    stamp = segment.stat().st_mtime_ns
    assert build.main(["--data", str(data)]) == 0
    assert segment.stat().st_mtime_ns == stamp  # idempotent: the segment is not rewritten
    assert json.loads((data / "manifest.json").read_text())["sources"] == manifest["sources"]
    assert sorted(p.name for p in data.iterdir()) == ["manifest.json", "raw", "train", "work"]  # no temp file left
