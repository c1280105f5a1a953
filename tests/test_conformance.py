"""Our CDT reproduces the official implementation's golden tensors (tests/data/conformance, made with the
official code at tiny widths for both topologies), through the streaming paths."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cdtcodec.config import CDTConfig
from cdtcodec.model import CDT
from cdtcodec.stream import StreamDecoder, StreamEncoder
from cdtcodec.weights import official_to_ours, read_tensors

DATA = Path(__file__).parent / "data" / "conformance"
TOPOLOGIES = {
    "small_like": CDTConfig(context_dim=8, unet_dim=4),
    "base_like": CDTConfig(context_dim=8, unet_dim=4, space_down=(0, 1, 1, 1), out_channels=16, new_upsample=True),
}
TOL = 1e-4


@pytest.fixture(scope="module", params=list(TOPOLOGIES))
def topology(request):
    name = request.param
    model = CDT(TOPOLOGIES[name]).eval()
    model.load_state_dict(official_to_ours(read_tensors(DATA / f"{name}.weights.safetensors")), strict=True)
    return name, model


@pytest.mark.parametrize("frames", [9, 17])
def test_streaming_encode_matches_golden(topology, frames):
    name, model = topology
    golden = load_file(DATA / f"{name}_T{frames}.tensors.safetensors")
    enc = StreamEncoder(model)
    # Feed the video in uneven pieces: the encoder re-chunks them into 1, 4, 4, ... frames.
    video = golden["video"]
    chunks = enc.push(video[:, :, :3]) + enc.push(video[:, :, 3:]) + enc.finish()
    moments = torch.cat(chunks, dim=2)
    assert moments.shape == golden["posterior_moments"].shape
    assert (moments - golden["posterior_moments"]).abs().max() <= TOL
    latent = model.encode(video)
    assert (latent - golden["latent"]).abs().max() <= TOL


@pytest.mark.parametrize("frames", [9, 17])
@pytest.mark.parametrize("chunk_latents", [1, 2, 5])
def test_streaming_decode_matches_golden(topology, frames, chunk_latents):
    name, model = topology
    golden = load_file(DATA / f"{name}_T{frames}.tensors.safetensors")
    noise = golden["init_noise_unit"][:, :, 3:]  # the official layout drops noise frames 0-2
    dec = StreamDecoder(model, chunk_latents=chunk_latents, noise_unit=lambda f, n, h, w: noise[:, :, f : f + n])
    out = torch.cat(dec.push(golden["latent"]), dim=2)
    assert out.shape == golden["decoded"].shape
    assert (out - golden["decoded"]).abs().max() <= TOL
