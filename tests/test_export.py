"""The exported streaming graphs, run chunk by chunk in ONNX Runtime, equal PyTorch's streaming encode/decode."""

import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from cdtcodec.config import CDTConfig  # noqa: E402
from cdtcodec.export import RuntimeDecoder, RuntimeEncoder, export_decoder, export_encoder, ort_infer  # noqa: E402
from cdtcodec.model import CDT  # noqa: E402
from cdtcodec.stream import StreamDecoder, StreamEncoder  # noqa: E402

# float32 in both runtimes, different kernels and summation orders: rounding only (seen: ~1e-6).
TOL = 1e-4
SIZE = 32
FRAMES = 17  # 5 latent frames: the first graph once, then the step graph with caches fed back 4 times


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = CDT(CDTConfig(context_dim=8, unet_dim=8)).eval()
    with torch.no_grad():  # perturb norms and resamplers too, so every parameter (and every cache) matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_decoder_stream_in_onnx_runtime_equals_pytorch(model, tmp_path):
    graphs = export_decoder(model, SIZE, SIZE, tmp_path)
    latent = torch.randn(1, model.cfg.latent_dim, (FRAMES - 1) // 4 + 1, SIZE // 8, SIZE // 8)
    expected = torch.cat(StreamDecoder(model, seed=5).push(latent), dim=2)
    decoder = RuntimeDecoder(ort_infer(graphs.first, 1), ort_infer(graphs.step, 1), seed=5)
    # Latent frames arrive in uneven pieces, as a streaming caller would push them.
    got = torch.cat(decoder.push(latent[:, :, :2]) + decoder.push(latent[:, :, 2:]), dim=2)
    assert got.shape == expected.shape == (1, 3, FRAMES, SIZE, SIZE)
    assert (got - expected).abs().max().item() <= TOL
    # The caches carry real history: without them the later chunks would differ.
    restarted = RuntimeDecoder(ort_infer(graphs.first, 1), ort_infer(graphs.step, 1), seed=5)
    restarted.cache, restarted.latents_in = [0 * c for c in decoder.cache], 1
    assert (torch.cat(restarted.push(latent[:, :, 1:2]), 2) - expected[:, :, 1:5]).abs().max() > 100 * TOL


def test_encoder_stream_in_onnx_runtime_equals_pytorch(model, tmp_path):
    graphs = export_encoder(model, SIZE, SIZE, tmp_path)
    video = torch.rand(1, 3, FRAMES, SIZE, SIZE) * 2 - 1
    encoder = StreamEncoder(model)
    expected = torch.cat(encoder.push(video) + encoder.finish(), dim=2)
    got = RuntimeEncoder(ort_infer(graphs.first, 1), ort_infer(graphs.step, 1)).encode(video)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= TOL
