"""`cdtcodec train`: from scratch and from weights, exact resume, and 2-process DDP (gloo) staying in sync."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cdtcodec.cli import app
from cdtcodec.config import CDTConfig
from cdtcodec.model import CDT
from cdtcodec.train.loop import TrainConfig, Trainer
from cdtcodec.train.run import make_batches
from cdtcodec.weights import load_model, save_model

TORCHRUN = Path(sys.executable).with_name("torchrun")


def _clip(path: Path, frames: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size // 8, size // 8, 3)).repeat(8, 0).repeat(8, 1).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24, options={"crf": "10"})
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            frame = np.clip(np.roll(base, t, axis=1) + rng.integers(-8, 8, base.shape), 0, 255).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for split, n in (("train", 2), ("val", 1)):
        (root / split).mkdir()
        for i in range(n):
            _clip(root / split / f"{split}{i}.mp4", 12, 64, seed=i + (10 if split == "val" else 0))
    return root


@pytest.fixture(scope="module")
def toy_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "toy.safetensors"
    torch.manual_seed(0)
    save_model(CDT(CDTConfig(context_dim=8, unet_dim=4)), path, name="toy")
    return path


def _config(data_dir, out, model, **kw):
    base = dict(model=str(model), data=str(data_dir), out=str(out), steps=4, batch=1, frames=5, crop=32,
                workers=0, val_every=2, val_clips=1, val_size=32, val_frames=5, ckpt_every=2, log_every=1,
                lpips_weight=0.1)
    base.update(kw)
    return TrainConfig(**base)


def _params(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_resume_is_exact(data_dir, toy_weights, tmp_path):
    cfg = _config(data_dir, tmp_path / "a", toy_weights)
    straight = Trainer(cfg, make_batches(cfg), [])
    straight.run()
    before = _params(Trainer(_config(data_dir, tmp_path / "fresh", toy_weights), make_batches(cfg), []))

    cfg_b = _config(data_dir, tmp_path / "b", toy_weights)
    first = Trainer(cfg_b, make_batches(cfg_b), [])
    first.run(stop_after=2)
    assert first.step == 2
    spent = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["cpu_seconds"]
    assert spent > 0
    resumed = Trainer(cfg_b, make_batches(cfg_b), [])  # picks up runs/b/checkpoint.pt
    assert resumed.step == 2
    assert resumed.cpu_seconds >= spent  # CPU time carries across resumes, for gains per CPU-hour
    resumed.run()
    assert resumed.step == straight.step == 4
    end_a, end_b = _params(straight), _params(resumed)
    for k in end_a:
        assert torch.equal(end_a[k], end_b[k]), k
    assert any(not torch.equal(before[k], end_a[k]) for k in end_a)  # training changed the weights
    ema_a, ema_b = straight.ema.state_dict(), resumed.ema.state_dict()
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)


def test_cli_from_scratch_logs_validates_and_exports(data_dir, tmp_path):
    out, export = tmp_path / "run", tmp_path / "tiny.safetensors"
    result = CliRunner().invoke(app, ["train", "--model", "cdt-tiny", "--data", str(data_dir), "--output", str(out),
                                      "--steps", "2", "--batch", "1", "--clip-frames", "5", "--crop", "32",
                                      "--workers", "0", "--val-every", "2", "--ckpt-every", "1",
                                      "--lr", "1e-3", "--warmup", "0", "--final-lr-ratio", "0.5",
                                      "--export", str(export)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps][-1] == 2 and all(np.isfinite(r["loss"]) for r in steps)
    assert {"mse", "kl", "lpips", "lr", "grad_norm"} <= set(steps[0])
    # no warm-up, a cosine from 1e-3 to 0.5e-3 at step 2: 1e-3 and 0.75e-3, logged as the mean of the window
    assert [r["lr"] for r in steps] == pytest.approx([0.875e-3])
    assert any("val_psnr" in r and "val_lpips" in r and "val_psnr_q5" in r for r in records)
    model, name, _ = load_model(export)
    assert name == "cdt-tiny" and next(model.parameters()).dtype == torch.float32
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 2 and {"model", "ema", "optimizer", "generators", "torch_rng"} <= set(ckpt)


def test_refuses_missing_data_and_bad_frames(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "nothing"), "--steps", "1"])
    assert result.exit_code == 1 and "build the data set" in result.output
    result = runner.invoke(app, ["train", "--clip-frames", "8"])
    assert result.exit_code == 1 and "1 + 4k" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed next to this python")
def test_torchrun_two_processes_stay_in_sync(data_dir, toy_weights, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(TORCHRUN), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "cdtcodec", "train", "--model", str(toy_weights), "--data", str(data_dir), "--output", str(out),
           "--steps", "2", "--batch", "1", "--clip-frames", "5", "--crop", "32", "--workers", "0",
           "--ckpt-every", "1", "--val-every", "100", "--lpips-weight", "0", "--device", "cpu", "--threads", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    syncs = [r for r in records if "ranks_in_sync" in r]
    assert [r["step"] for r in syncs][:2] == [1, 2]
    assert all(len(r["fingerprints"]) == 2 and r["fingerprints"][0] == r["fingerprints"][1] for r in syncs)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert len(ckpt["generators"]) == 2 and not torch.equal(ckpt["generators"][0], ckpt["generators"][1])


@pytest.mark.parametrize("group", [False, True], ids=["process", "process-group"])
def test_sigterm_checkpoints_before_exit(data_dir, toy_weights, tmp_path, group):
    """A shutdown or a job scheduler sends SIGTERM: the run must leave a checkpoint of the step it reached. Sent to
    the whole process group (a shell's Ctrl-C, a session's end), the data workers get it too: still one line."""
    out = tmp_path / "term"
    cmd = [sys.executable, "-m", "cdtcodec", "train", "--model", str(toy_weights), "--data", str(data_dir),
           "--output", str(out), "--steps", "100000", "--batch", "1", "--clip-frames", "5", "--crop", "32",
           "--workers", "1", "--ckpt-every", "100000", "--val-every", "100000", "--lpips-weight", "0",
           "--threads", "1", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=group)
    try:
        log = out / "log.jsonl"
        deadline = time.monotonic() + 120
        while proc.poll() is None and not log.exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the first log line is written at step 10
        assert proc.poll() is None and log.exists(), "training ended or logged nothing before the signal"
        os.killpg(proc.pid, signal.SIGTERM) if group else proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM  # what a shell reports for a process SIGTERM ended
    last = err.decode().strip().splitlines()[-1]  # it says where the run is kept, not that nothing was written
    assert "interrupted by SIGTERM" in last and str(out / "checkpoint.pt") in last, last
    assert "Traceback" not in err.decode(), err.decode()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] >= 10


def test_rate_term_adds_the_priors_bits_and_reaches_the_encoder():
    from cdtcodec.rate.prior_twin import ConditionalPrior
    from cdtcodec.train.losses import LossWeights, Objective

    torch.manual_seed(0)
    model = CDT(CDTConfig(context_dim=8, unet_dim=4))
    prior = ConditionalPrior()
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    with pytest.raises(ValueError, match="prior"):
        Objective(model, LossWeights(lpips=0.0, rate=0.1), None)
    grads = []
    for rate in (0.0, 0.1):
        model.zero_grad()
        out = Objective(model, LossWeights(lpips=0.0, rate=rate), None, prior if rate else None)(
            video, torch.Generator().manual_seed(1))
        out["loss"].backward()
        grads.append(next(model.encoder.parameters()).grad.clone())
        if rate:
            assert out["bpp"].item() > 0
            assert out["loss"].item() == pytest.approx(out["mse"].item() + 1e-4 * out["kl"].item()
                                                       + rate * out["bpp"].item(), rel=1e-5)
    assert not torch.allclose(grads[0], grads[1])  # the rate's gradient reaches the encoder
    assert all(p.grad is None for p in prior.parameters())  # the prior stays frozen


def _decoded_latents(objective, video, seed):
    """Runs the objective once; returns its outputs and the latents the decoder was conditioned on."""
    seen = []
    hook = objective.model.context.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        out = objective(video, torch.Generator().manual_seed(seed))
    finally:
        hook.remove()
    return out, seen[0]


def test_quantized_share_decodes_the_rounded_mean_with_a_straight_through_gradient():
    from cdtcodec.model.encoder import split_moments
    from cdtcodec.train.losses import LossWeights, Objective

    torch.manual_seed(0)
    model = CDT(CDTConfig(context_dim=8, unet_dim=4))
    video = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        mean, _ = split_moments(model.moments(video))
    def on_grid(z, step):
        return torch.allclose(z, torch.round(mean / step) * step, atol=1e-6)

    # no KL, LPIPS or rate: the encoder's gradient can only come through the decoded latent
    quantized = Objective(model, LossWeights(kl=0.0, lpips=0.0, quantized_share=1.0), None, steps=(0.5, 0.5))
    out, z = _decoded_latents(quantized, video, 1)
    assert on_grid(z.detach(), 0.5)
    out["loss"].backward()
    assert next(model.encoder.parameters()).grad.abs().sum() > 0  # rounding did not cut the encoder off

    model.zero_grad()
    _, z = _decoded_latents(Objective(model, LossWeights(kl=0.0, lpips=0.0), None), video, 1)
    assert not on_grid(z.detach(), 0.5)  # without the share, the posterior sample


def test_rate_and_quantized_decode_share_each_samples_step(monkeypatch):
    from cdtcodec.model.encoder import split_moments
    from cdtcodec.rate import prior_twin
    from cdtcodec.rate.prior_twin import ConditionalPrior
    from cdtcodec.train.losses import LossWeights, Objective

    torch.manual_seed(0)
    model = CDT(CDTConfig(context_dim=8, unet_dim=4))
    video = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    steps = []
    rate_bits = prior_twin.rate_bits
    monkeypatch.setattr(prior_twin, "rate_bits", lambda prior, latent, step: (steps.append(step),
                                                                                 rate_bits(prior, latent, step))[1])
    objective = Objective(model, LossWeights(lpips=0.0, rate=0.1, quantized_share=1.0), None, ConditionalPrior(),
                          steps=(0.1, 4.0))
    out, z = _decoded_latents(objective, video, 2)
    with torch.no_grad():
        mean, _ = split_moments(model.moments(video))
    assert steps[0].shape == (2, 16) and (steps[0] == steps[0][:, :1]).all()  # no gains: one step per sample
    step = steps[0][:, 0].view(2, 1, 1, 1, 1)
    assert step[0] != step[1] and ((0.1 <= step) & (step <= 4.0)).all()
    assert torch.allclose(z.detach(), torch.round(mean / step) * step, atol=1e-6)
    assert out["bpp"].item() > 0


def test_quantized_samples_take_the_quality_scales_per_channel_steps():
    from cdtcodec.model.encoder import split_moments
    from cdtcodec.rate.quantize import QualityScale
    from cdtcodec.train.losses import LossWeights, Objective

    torch.manual_seed(0)
    model = CDT(CDTConfig(context_dim=8, unet_dim=4))
    video = torch.rand(3, 3, 5, 32, 32) * 2 - 1
    # quality 1 without gains (all 1), as a fitted scale may leave a level
    gains = [tuple(float(v) for v in np.exp(np.linspace(-0.2 * q, 0.2 * q, 16))) for q in range(8)]
    scale = QualityScale(tuple(2.0 * 0.6 ** q for q in range(8)), tuple(gains))
    objective = Objective(model, LossWeights(kl=0.0, lpips=0.0, quantized_share=1.0), None, scale=scale)
    drawn = torch.cat([objective.draw_steps(3, torch.Generator().manual_seed(i)) for i in range(4)])
    assert drawn.shape == (12, 16)
    for row in drawn:  # each row: one global step inside the scale's range, times the gains the scale gives there
        g = float(torch.exp(torch.log(row.double()).mean()))
        assert scale.global_steps[-1] <= g <= scale.global_steps[0]
        assert torch.allclose(row, torch.tensor(scale.steps_at(g)), rtol=1e-5)
    draws, draw = [], objective.draw_steps
    objective.draw_steps = lambda b, generator: (draws.append(draw(b, generator)), draws[-1])[1]
    out, z = _decoded_latents(objective, video, 4)
    with torch.no_grad():
        mean, _ = split_moments(model.moments(video))
    step = draws[0].view(3, 16, 1, 1, 1)
    assert torch.allclose(z.detach(), torch.round(mean / step) * step, atol=1e-5)


def test_a_frozen_encoder_keeps_the_latents_and_trains_the_decoder(tmp_path):
    from cdtcodec.train.losses import LossWeights, Objective

    torch.manual_seed(0)
    model = CDT(CDTConfig(context_dim=8, unet_dim=4))
    video = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    objective = Objective(model, LossWeights(kl=1.0, lpips=0.0, quantized_share=0.5), None, steps=(0.5, 2.0),
                          freeze_encoder=True)
    out = objective(video, torch.Generator().manual_seed(0))
    assert torch.allclose(out["loss"], out["mse"])  # the KL of fixed latents is left out
    out["loss"].backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.denoiser.parameters())


def test_a_decoder_only_export_carries_the_prior_and_quality_scale(data_dir, toy_weights, tmp_path):
    import shutil

    from cdtcodec.rate.coder_choice import prior_path
    from cdtcodec.rate.quantize import QualityScale, load_scale, save_scale, scale_for, scale_path
    from cdtcodec.weights import file_sha256

    start = tmp_path / "start.safetensors"
    shutil.copyfile(toy_weights, start)
    prior = b"the starting weights' prior"  # copied as it is, never read by this run
    prior_path(start).write_bytes(prior)
    gains = tuple(tuple(float(v) for v in np.exp(np.linspace(-0.1, 0.1, 16)) ** q) for q in range(8))
    fitted = QualityScale(tuple(2.0 * 0.6 ** q for q in range(8)), gains, file_sha256(start), "fit")
    save_scale(fitted, scale_path(start))

    cfg = _config(data_dir, tmp_path / "run", start, steps=2, freeze_encoder=True, quantized_share=0.5)
    trainer = Trainer(cfg, make_batches(cfg), [])
    trainer.run()
    export = tmp_path / "tuned.safetensors"
    trainer.export(export)
    assert prior_path(export).read_bytes() == prior
    scale = load_scale(scale_path(export))
    assert (scale.global_steps, scale.gains) == (fitted.global_steps, fitted.gains)
    assert scale.weights_sha256 == file_sha256(export) != fitted.weights_sha256
    assert scale_for(export, file_sha256(export), 16) == (scale, "")  # what encode uses: no fallback note

    cfg = _config(data_dir, tmp_path / "run2", start, steps=2)  # the encoder trained: the latents change
    Trainer(cfg, make_batches(cfg), []).export(tmp_path / "full.safetensors")
    assert not scale_path(tmp_path / "full.safetensors").exists()
    assert not prior_path(tmp_path / "full.safetensors").exists()
