"""Glue for `cdtcodec train`: the data stream, validation clips, progress display and the final export."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cdtcodec.train.data import ClipDataset, validation_set
from cdtcodec.train.loop import TrainConfig, Trainer


class StepBatches(torch.utils.data.Dataset):
    """Item `step` is the batch of that optimizer step on this rank, drawn from a generator seeded with
    (seed, step, rank) alone: a run resumed at step s replays exactly the data an unbroken run would see."""

    def __init__(self, clips: ClipDataset, batch: int, seed: int, rank: int):
        self.clips, self.batch, self.seed, self.rank = clips, batch, seed, rank

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, step, self.rank])
        return torch.stack([self.clips.sample(rng) for _ in range(self.batch)])


def _leave_signals_to_the_trainer(_worker: int) -> None:
    """A Ctrl-C or SIGTERM sent to the whole process group reaches the data workers too; the trainer checkpoints
    and shuts them down, so a worker that died first would only add a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_batches(cfg: TrainConfig):
    clips = ClipDataset(cfg.data, frames=cfg.frames, size=cfg.crop, split="train", seed=cfg.seed, min_scale=0.5,
                        kind_mix=dict(cfg.kind_mix))

    def batches(start: int, rank: int, world: int):
        data = StepBatches(clips, cfg.batch, cfg.seed, rank)
        loader = torch.utils.data.DataLoader(data, batch_size=None, sampler=range(start, len(data)),
                                             num_workers=cfg.workers, prefetch_factor=2 if cfg.workers else None,
                                             worker_init_fn=_leave_signals_to_the_trainer)
        yield from loader

    return batches


def run_training(cfg: TrainConfig, export: Path | None = None, console: Console | None = None) -> Trainer:
    console = console or Console(stderr=True)
    if not (Path(cfg.data) / "train").is_dir():
        raise ValueError(f"{cfg.data}/train not found: build the data set first (python scripts/build_dataset.py)")
    try:
        val = validation_set(cfg.data, frames=cfg.val_frames, size=cfg.val_size, count=cfg.val_clips)
    except ValueError as e:
        console.print(f"no validation clips ({e}); training without validation", markup=False)
        val = []
    trainer = Trainer(cfg, make_batches(cfg), [c.video for c in val], console=console,
                      val_kinds=[c.kind for c in val])
    if trainer.rank == 0 and console.is_terminal:
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=console) as progress:
            trainer.run(progress)
    else:
        trainer.run()
    if trainer.rank == 0:
        if val:
            result = trainer.validate()
            console.print("final " + " ".join(f"{k} {v:.4f}" for k, v in result.items() if "/" not in k))
        if export:
            trainer.export(export)
            console.print(f"EMA weights -> {export}", markup=False)
    return trainer
