"""scripts/text_clips.py, the synthetic text footage, and its place in scripts/build_dataset.py."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules[name]
    return mod


TEXT_CLIPS = _script("text_clips")


@pytest.fixture(scope="module")
def font() -> Path:
    # matplotlib (a pinned dependency) ships DejaVu Sans, the family the data set renders from Debian's package
    from matplotlib import font_manager

    return Path(font_manager.findfont("DejaVu Sans", fallback_to_default=False))


def _render(font, count, seed, size=(128, 72)):
    return np.stack(list(TEXT_CLIPS.text_frames(font, count, seed, size)))


def test_frames_have_the_size_and_count_asked_for(font):
    clip = _render(font, 130, seed=1)  # two or three shots, the last one cut short
    assert clip.shape == (130, 72, 128, 3) and clip.dtype == np.uint8


def test_a_seed_gives_the_same_clip_and_another_seed_another(font):
    a, b, c = _render(font, 60, 5), _render(font, 60, 5), _render(font, 60, 6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_the_frames_hold_glyph_edges_over_smooth_backgrounds(font):
    # Sharp left-right steps are what text puts in a frame: the backgrounds (plain, ramps over the whole
    # width, bicubic fields of a few cells, blurred grain) step by well under 64 levels between pixels.
    for seed in range(3):
        clip = _render(font, 150, seed).astype(np.int16)
        edge = np.abs(np.diff(clip, axis=2)).max(axis=(1, 2, 3))
        assert np.mean(edge >= 64) > 0.8, (seed, np.percentile(edge, [10, 50]))
        assert clip.std(axis=0).mean() > 1.0  # and they move: rolls, crawls, fades, drifting backgrounds


def test_the_build_renders_text_for_training_only():
    sys.path.insert(0, str(SCRIPTS))
    try:
        build = _script("build_dataset")
    finally:
        sys.path.remove(str(SCRIPTS))
    text = [c for s in build.SOURCES for c in s.clips if c.kind == "text"]
    assert len(text) >= 10 and all(c.text_seed is not None for c in text)
    assert len({c.text_seed for c in text}) == len(text)  # every clip its own shots
    assert all(r[0] == "train" for c in text for r in c.ranges)  # the validation split stays as it was
    assert all(c.member[0].endswith(".ttf") for c in text)
