"""`cdtcodec train`: AdamW + EMA + clipping, exact resume, periodic validation, single process or torchrun DDP.

A run directory holds everything a run needs to go on: checkpoint.pt (model, EMA, optimizer, step, RNG
states), log.jsonl (one line per logged step and per validation), samples/ (first frames, source | decoded).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from bitstream.atomic import AtomicOutput
from cdtcodec.config import PRESETS, get_config
from cdtcodec.interrupts import interrupt_on
from cdtcodec.lpips import LPIPS
from cdtcodec.metrics import psnr
from cdtcodec.model import CDT
from cdtcodec.precision import describe_cpu
from cdtcodec.precision import resolve as resolve_precision
from cdtcodec.rate.quantize import (
    DEFAULT_QUALITY,
    DEFAULT_SCALE,
    QualityScale,
    load_scale,
    roundtrip,
    save_scale,
    scale_path,
)
from cdtcodec.sampling import frame_noise
from cdtcodec.train.config import LossWeights, TrainConfig  # noqa: F401 (re-exported: their old home)
from cdtcodec.train.losses import Objective
from cdtcodec.weights import load_model, save_model


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world


def _learning_rate(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _initial_model(spec: str) -> tuple[CDT, str]:
    if spec in PRESETS and not Path(spec).exists():
        return CDT(get_config(spec)), spec
    model, name, _ = load_model(spec)  # fine-tune from our file or a converted official checkpoint
    return model.train(), name


def _starting_file(spec: str) -> str | Path:
    """The starting weights' file, whose neighbours (prior, quality scale) training reads: the path given, or the
    shipped file of a preset name."""
    from cdtcodec.weights import shipped_weights

    return spec if Path(spec).exists() else (shipped_weights(spec) or spec)


def _frozen_prior(spec: str, device: torch.device) -> nn.Module:
    """The torch twin of the conditional prior beside the starting weights, for the rate term."""
    from bitstream.prior import load_prior
    from cdtcodec.rate.coder_choice import prior_path
    from cdtcodec.rate.prior_twin import from_integer

    path = prior_path(_starting_file(spec))
    if not Path(path).is_file():
        raise ValueError(f"the rate term needs the model's prior, {path}: not found (scripts/train_prior.py makes it)")
    return from_integer(load_prior(path)).to(device).eval()


@torch.no_grad()
def _update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1 - decay)


def _starting_scale(spec: str) -> QualityScale | None:
    """The quality scale fitted beside the starting weights (<stem>.quality.safetensors), the steps the quantized
    samples and the validation use; None (the default scale's single step) where there is none."""
    path = scale_path(_starting_file(spec))
    return load_scale(path) if path.is_file() else None


@torch.no_grad()
def evaluate(model: CDT, clips: list[torch.Tensor], lpips: LPIPS | None, seed: int = 0,
             kinds: list[str] | None = None, qualities: tuple[int, ...] = (),
             scale: QualityScale = DEFAULT_SCALE) -> dict[str, float]:
    """One-step decode of the posterior mean, as the codec runs (no quantization); PSNR on [-1, 1] clamped.
    With `kinds` (one per clip) the means per kind come too, as val_psnr/<kind> and val_lpips/<kind>; with
    `qualities`, the PSNR of the same latents quantized at each quality's steps of `scale` too, as
    val_psnr_q<quality>."""
    model.eval()
    psnrs, lp, quantized = [], [], {q: [] for q in qualities}
    for clip in clips:
        video = clip.unsqueeze(0).to(next(model.parameters()).device)
        z = model.encode(video)
        _, _, t, h, w = video.shape
        noise = frame_noise(seed, 0, t, h, w).to(video)
        out = model.decode(z, noise).clamp(-1, 1)
        psnrs.append(psnr(out, video))
        for q in qualities:
            z_hat = roundtrip(z[0], scale.steps(q)).unsqueeze(0)
            quantized[q].append(psnr(model.decode(z_hat, noise).clamp(-1, 1), video))
        if lpips is not None:
            lp.append(lpips.video(out, video).mean().item())
    def mean(values):
        return sum(values) / len(values)
    result = {"val_psnr": mean(psnrs)}
    for q, values in quantized.items():
        result[f"val_psnr_q{q}"] = mean(values)
    if lp:
        result["val_lpips"] = mean(lp)
    for kind in sorted(set(kinds or [])):
        mine = [i for i, k in enumerate(kinds) if k == kind]
        result[f"val_psnr/{kind}"] = mean([psnrs[i] for i in mine])
        if lp:
            result[f"val_lpips/{kind}"] = mean([lp[i] for i in mine])
    return result


def _shareable(config: dict) -> dict:
    """The run's settings as shipped weights carry them: file and folder names without the trainer's own paths."""
    return {k: (Path(v).name if k in ("model", "data", "out") else v) for k, v in config.items()}


class Trainer:
    def __init__(self, cfg: TrainConfig, batches: Callable[[int, int, int], Iterator[torch.Tensor]],
                 val_clips: list[torch.Tensor], console=None, val_kinds: list[str] | None = None):
        """batches(start_step, rank, world) yields (B, 3, T, S, S) batches for steps start_step, start_step+1, ...
        val_kinds: the kind of footage of each validation clip, for per-kind means."""
        resolve_precision(cfg.precision)  # a bad value fails before anything loads
        self.cfg = cfg
        self.rank, self.world = _distributed()
        self.console = console
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        wants_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if wants_cuda else "gloo")
        self.device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if wants_cuda else "cpu")
        # bf16: the forward and backward under autocast, fp32 master weights and optimizer state
        self.precision = resolve_precision(cfg.precision, self.device)
        self.out = Path(cfg.out)
        self.batches = batches
        self.val_clips = val_clips
        self.val_kinds = val_kinds

        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        self.model, self.name = _initial_model(cfg.model)
        self.model.to(self.device).train()
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.lpips = LPIPS.from_file().to(self.device) if (cfg.lpips_weight > 0 or val_clips) else None
        weights = LossWeights(cfg.kl_weight, cfg.lpips_weight, cfg.inference_share, cfg.rate_weight,
                              cfg.quantized_share)
        self.scale = _starting_scale(cfg.model)
        objective = Objective(self.model, weights, self.lpips if cfg.lpips_weight > 0 else None,
                              _frozen_prior(cfg.model, self.device) if cfg.rate_weight > 0 else None,
                              scale=self.scale, freeze_encoder=cfg.freeze_encoder)
        self.objective = (nn.parallel.DistributedDataParallel(objective) if self.world > 1 else objective)
        trained = [p for p in self.model.parameters() if p.requires_grad]
        # the fused kernel and the foreach clipping and EMA: 24 ms of a step where loops over the tensors took 47
        # (cdt-tiny, 2 threads, AMD EPYC Zen 4)
        self.optimizer = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=0.0, fused=True)
        self.generator = torch.Generator().manual_seed(cfg.seed * 1000 + self.rank)
        self.step = 0
        self.started = time.time()
        self.elapsed_before = 0.0  # training seconds of the earlier processes of this run (before each resume)
        self.cpu_started = time.process_time()
        self.cpu_before = 0.0  # CPU seconds (all threads of this process) of the earlier processes
        self._resume()
        where = describe_cpu() if self.device.type == "cpu" else torch.cuda.get_device_name(self.device)
        self._say(f"precision {self.precision} on {where}")

    # -- checkpoints -------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def _resume(self) -> None:
        if not self.checkpoint_path.exists():
            return
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        if state["config"]["model"] != self.cfg.model:
            raise ValueError(f"{self.checkpoint_path} was trained from {state['config']['model']!r}, "
                             f"not {self.cfg.model!r}")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # a checkpoint from before the fused kernel carries its flags
            group.update(fused=True, foreach=None)
        self.step = state["step"]
        self.elapsed_before = state.get("elapsed", 0.0)
        self.cpu_before = state.get("cpu_seconds", 0.0)
        self.generator.set_state(state["generators"][self.rank])
        torch.set_rng_state(state["torch_rng"])
        self._say(f"resumed {self.checkpoint_path} at step {self.step}")

    def fingerprints(self) -> list[float]:
        """A float64 sum of the parameters on every rank (one entry when not distributed)."""
        mine = sum(p.detach().double().sum().item() for p in self.model.parameters())
        if self.world == 1:
            return [mine]
        gathered = [None] * self.world
        dist.all_gather_object(gathered, mine)
        return gathered

    def save_checkpoint(self) -> None:
        states = [self.generator.get_state()]
        if self.world > 1:
            gathered = [None] * self.world
            dist.all_gather_object(gathered, states[0])
            states = gathered
            prints = self.fingerprints()
            if len(set(prints)) != 1:
                raise RuntimeError(f"step {self.step}: ranks diverged, parameter sums {prints}")
            self._log({"step": self.step, "ranks_in_sync": True, "fingerprints": prints})
        if self.rank:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        state = {"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "step": self.step, "generators": states,
                 "torch_rng": torch.get_rng_state(), "config": dataclasses.asdict(self.cfg),
                 "elapsed": self.elapsed, "cpu_seconds": self.cpu_seconds}
        with AtomicOutput(self.checkpoint_path) as tmp:
            torch.save(state, tmp)

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    @property
    def cpu_seconds(self) -> float:
        """CPU time of the training process across its resumes (data-loader workers not included): what
        recipe probes compare, since wall time depends on what else the machine runs."""
        return self.cpu_before + time.process_time() - self.cpu_started

    def export(self, path: str | Path, half: bool = True, extra: dict | None = None) -> None:
        info = {"steps": self.step, "train_seconds": round(self.elapsed), "precision": self.precision,
                "cpu_seconds": round(self.cpu_seconds), "world_size": self.world,
                "train_config": json.dumps(_shareable(dataclasses.asdict(self.cfg)))}
        info.update(extra or {})
        save_model(self.ema.cpu(), path, self.name, half=half, extra=info)
        self.ema.to(self.device)
        if self.cfg.freeze_encoder:
            self._export_rate_files(Path(path))

    def _export_rate_files(self, path: Path) -> None:
        """A decoder-only fine-tune keeps the encoder, so the latents, and with them the starting weights' prior
        and fitted quality scale, hold exactly for the exported weights: both go beside them (the scale stamped
        with the new file's SHA-256, which the codec checks), so the export encodes as the start did."""
        from cdtcodec.rate.coder_choice import prior_path
        from cdtcodec.weights import file_sha256

        prior = prior_path(_starting_file(self.cfg.model))
        if prior.is_file() and prior.resolve() != prior_path(path).resolve():
            shutil.copyfile(prior, prior_path(path))
        if self.scale is not None:
            scale = dataclasses.replace(self.scale, weights_sha256=file_sha256(path), source="fit")
            save_scale(scale, scale_path(path), note={"from": self.scale.weights_sha256,
                                                      "script": "cdtcodec train --freeze-encoder: the starting "
                                                                "weights' scale (their latents are unchanged)"})

    # -- the loop ----------------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self.rank == 0:
            (self.console.print if self.console else print)(text)

    def _log(self, record: dict) -> None:
        if self.rank:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def train_step(self, video: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        lr = _learning_rate(cfg, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            losses = self.objective(video.to(self.device), self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip, foreach=True)
        self.optimizer.step()
        self.step += 1
        _update_ema(self.ema, self.model, min(cfg.ema, (1 + self.step) / (10 + self.step)))
        stats = {k: v.item() for k, v in losses.items()}
        stats.update(lr=lr, grad_norm=grad_norm.item())
        return stats

    def validate(self) -> dict[str, float]:
        # also at the codec's default quality, the point users meet (PSNR only: it is the quantizer's cost)
        result = evaluate(self.ema, self.val_clips, self.lpips, kinds=self.val_kinds,
                          qualities=(1, DEFAULT_QUALITY), scale=self.scale or DEFAULT_SCALE)
        self._log({"step": self.step, **result, "cpu_seconds": round(self.cpu_seconds, 1)})
        return result

    def run(self, progress=None, stop_after: int | None = None) -> None:
        """Train up to cfg.steps (or `stop_after` more steps); checkpoint on the way and at the end, also when
        stopped by Ctrl-C or SIGTERM (what a job scheduler or a shutdown sends)."""
        with interrupt_on(signal.SIGTERM):  # the loop's `finally` writes the checkpoint
            self._run(progress, stop_after)

    def _run(self, progress, stop_after: int | None) -> None:
        cfg = self.cfg
        last = cfg.steps if stop_after is None else min(cfg.steps, self.step + stop_after)
        task = progress.add_task("train", total=cfg.steps, completed=self.step) if progress else None
        window, t0 = [], time.time()
        try:
            for video in self.batches(self.step, self.rank, self.world):
                if self.step >= last:
                    break
                stats = self.train_step(video)
                window.append(stats)
                if self.step % cfg.log_every == 0 or self.step == last:
                    mean = {k: sum(s[k] for s in window) / len(window) for k in window[0]}
                    mean["sec_per_step"] = (time.time() - t0) / len(window)
                    mean["cpu_seconds"] = round(self.cpu_seconds, 1)
                    mean["precision"] = self.precision
                    self._log({"step": self.step, **mean})
                    if task is not None:
                        progress.update(task, completed=self.step,
                                        description=f"train loss {mean['loss']:.4f} mse {mean['mse']:.4f} "
                                                    f"{1 / mean['sec_per_step']:.2f} it/s")
                    elif self.rank == 0:
                        self._say(f"step {self.step} loss {mean['loss']:.4f} mse {mean['mse']:.4f} "
                                  f"kl {mean['kl']:.3f} {mean['sec_per_step']:.2f} s/step")
                    window, t0 = [], time.time()
                if self.step % cfg.ckpt_every == 0:
                    self.save_checkpoint()
                if self.val_clips and self.rank == 0 and self.step % cfg.val_every == 0:
                    result = self.validate()
                    self._say(f"step {self.step} " + " ".join(f"{k} {v:.4f}" for k, v in result.items()
                                                              if "/" not in k))
        finally:
            self.save_checkpoint()
