"""Training data pipeline: shapes, range, 1+4k windows, frame order, determinism, per-worker streams."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from cdtcodec.train.data import ClipDataset, list_segments, read_frames, validation_clips, validation_set

FPS = 8
KEYINT = 4


def _level(i: int) -> int:
    return 16 + 5 * i  # gray level of frame i: identifies the frame after decoding


def _make_clip(path: Path, n: int, w: int, h: int, pattern: bool = True) -> None:
    """Lossless H.264 clip: frame i is gray level _level(i) plus a fixed texture."""
    yy, xx = np.mgrid[0:h, 0:w]
    tex = ((xx // 4 + yy // 4) % 2 * 16).astype(np.int32) if pattern else 0
    with av.open(str(path), mode="w") as out:
        s = out.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = w, h, "yuv444p"
        s.codec_context.time_base = Fraction(1, FPS)
        s.options = {"qp": "0", "preset": "ultrafast", "x264-params": f"keyint={KEYINT}:min-keyint={KEYINT}"}
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
