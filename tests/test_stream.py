"""Streaming equals the full pass for every topology, at several chunkings and lengths; frame bookkeeping."""

import pytest
import torch

from cdtcodec.config import PRESETS, CDTConfig
from cdtcodec.model import CDT
from cdtcodec.sampling import frame_noise
from cdtcodec.stream import StreamDecoder, StreamEncoder
from cdtcodec.timeline import CODEC_TIMELINE as TIMELINE

TOL = 1e-4
# cdt-tiny runs in float32 as shipped. The 4-channel-wide topologies run in float64: with random weights,
# channel norms over 4 channels amplify float32 rounding to ~1e-4 on their own, which would hide nothing
# but also prove nothing; in float64 any structural difference stands out (exact streaming gives ~1e-13).
TOPOLOGIES = {
    "tiny": (PRESETS["cdt-tiny"], torch.float32),
    "small_like": (CDTConfig(context_dim=8, unet_dim=4), torch.float64),
    "base_like": (CDTConfig(context_dim=8, unet_dim=4, space_down=(0, 1, 1, 1), out_channels=16,
                            new_upsample=True), torch.float64),
}


def _randomised(name, seed=0):
    cfg, dtype = TOPOLOGIES[name]
    torch.manual_seed(seed)
    model = CDT(cfg).eval().to(dtype)
    with torch.no_grad():  # perturb norms and resamplers too, so every parameter matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module", params=list(TOPOLOGIES))
def model(request):
    return _randomised(request.param)


def _dtype(model):
    return next(model.parameters()).dtype


@pytest.mark.parametrize("frames", [1, 5, 9, 17, 33])
def test_encoder_stream_equals_full_pass(model, frames):
    video = torch.rand(1, 3, frames, 16, 16, dtype=_dtype(model)) * 2 - 1
    with torch.no_grad():
        full = model.moments(video)
    for chunk_frames in (4, 8):
        enc = StreamEncoder(model, chunk_frames)
        pieces = [enc.push(video[:, :, i : i + 3]) for i in range(0, frames, 3)]
        out = torch.cat([c for p in pieces for c in p] + enc.finish(), dim=2)
        assert out.shape == full.shape
        assert (out - full).abs().max() <= TOL


@pytest.mark.parametrize("frames", [1, 5, 9, 17, 33])
def test_decoder_stream_equals_full_pass(model, frames):
    latents = TIMELINE.latent_frames(frames)
    z = torch.randn(1, 16, latents, 2, 2, dtype=_dtype(model))
    noise = frame_noise(3, 0, frames, 16, 16).to(_dtype(model))
    with torch.no_grad():
        full = model.decode(z, noise)
    assert full.shape == (1, 3, frames, 16, 16)
    for chunk in (1, 2, 3):
        dec = StreamDecoder(model, seed=3, chunk_latents=chunk)
        out = torch.cat(dec.push(z[:, :, :1]) + dec.push(z[:, :, 1:]), dim=2)
        assert (out - full).abs().max() <= TOL


def test_multistep_stream_equals_step_major_full_pass():
    model = _randomised("small_like")
    z = torch.randn(1, 16, 3, 4, 4, dtype=torch.float64)
    noise = frame_noise(0, 0, 9, 32, 32).double()
    with torch.no_grad():
        full = model.decode(z, noise, steps=3)
        one = model.decode(z, noise, steps=1)
    dec = StreamDecoder(model, seed=0, steps=3)
    out = torch.cat(dec.push(z), dim=2)
    assert (out - full).abs().max() <= TOL
    assert (full - one).abs().max() > 1e-3  # more steps really change the result


def test_noise_depends_on_seed_and_frame_only():
    whole = frame_noise(7, 0, 9, 16, 24)
    assert torch.equal(torch.cat([frame_noise(7, 0, 4, 16, 24), frame_noise(7, 4, 5, 16, 24)], dim=2), whole)
    assert not torch.equal(frame_noise(8, 0, 9, 16, 24), whole)
    assert abs(whole.std().item() - 1) < 0.05


def test_decode_is_deterministic():
    model = _randomised("tiny")
    z = torch.randn(1, 16, 2, 4, 4)
    a = torch.cat(StreamDecoder(model, seed=5).push(z), dim=2)
    b = torch.cat(StreamDecoder(model, seed=5).push(z), dim=2)
    c = torch.cat(StreamDecoder(model, seed=6).push(z), dim=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("frames,coded,latents", [(1, 1, 1), (2, 5, 2), (5, 5, 2), (6, 9, 3), (17, 17, 5), (18, 21, 6)])
def test_frame_counts(frames, coded, latents):
    assert TIMELINE.coded_frames(frames) == coded
    assert TIMELINE.latent_frames(frames) == latents
    assert sum(TIMELINE.frames_of_latents(i, 1)[1] for i in range(latents)) == coded
    with pytest.raises(ValueError):
        TIMELINE.coded_frames(0)


@pytest.mark.parametrize("frames", [2, 3, 6, 12])
def test_tail_padding_repeats_last_frame(frames):
    model = _randomised("tiny")
    video = torch.rand(1, 3, frames, 16, 16) * 2 - 1
    coded = TIMELINE.coded_frames(frames)
    padded = torch.cat([video, video[:, :, -1:].expand(-1, -1, coded - frames, -1, -1)], dim=2)
    enc = StreamEncoder(model)
    out = torch.cat(enc.push(video) + enc.finish(), dim=2)
    with torch.no_grad():
        assert (out - model.moments(padded)).abs().max() <= TOL
    assert out.shape[2] == TIMELINE.latent_frames(frames)


def test_encoder_refuses_empty_stream():
    enc = StreamEncoder(_randomised("tiny"))
    with pytest.raises(ValueError, match="no frames"):
        enc.finish()


@pytest.mark.parametrize("preset", ["cdt-base", "cdt-small"])
def test_full_width_official_presets_stream_exactly(preset):
    """The real topologies in float32, including cdt-base whose official chunked decode is wrong."""
    torch.manual_seed(0)
    model = CDT(PRESETS[preset]).eval()
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    enc = StreamEncoder(model)
    streamed = torch.cat(enc.push(video) + enc.finish(), dim=2)
    z = torch.randn(1, 16, 3, 4, 4)
    with torch.no_grad():
        assert (streamed - model.moments(video)).abs().max() <= TOL
        full = model.decode(z, frame_noise(1, 0, 9, 32, 32))
    out = torch.cat(StreamDecoder(model, seed=1, chunk_latents=1).push(z), dim=2)
    assert (out - full).abs().max() <= TOL
