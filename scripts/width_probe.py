"""Width probe: train the cdt-tiny topology at several widths with one short, identical recipe and compare.

Each width starts from the same seed's random init and sees the same batches (the data stream depends only on
the seed and the step), so the widths differ in capacity and nothing else. A probe this short measures how
fast each width learns, not where it ends: read it next to benchmarks/speed.py's decode rate per width.

    python scripts/width_probe.py [--widths 8 16 24] [--steps 400] [--out runs/width-probe]

Prints one row per width (validation PSNR / LPIPS at 128x128, the last logged KL and latent std, which show a
collapsed latent, and the median seconds per step) and writes summary.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from cdtcodec.config import PRESETS
from cdtcodec.model import CDT, count_parameters
from cdtcodec.train.loop import TrainConfig
from cdtcodec.train.run import run_training
from cdtcodec.weights import save_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", nargs="+", type=int, default=[8, 16, 24])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--data", default="data")
    ap.add_argument("--out", default="runs/width-probe")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    rows = []
    for width in args.widths:
        run_dir = Path(args.out) / f"w{width}"
        run_dir.mkdir(parents=True, exist_ok=True)
        init = run_dir / "init.safetensors"
        if not init.exists():
            torch.manual_seed(0)
            model = CDT(replace(PRESETS["cdt-tiny"], context_dim=width, unet_dim=width))
            save_model(model, init, f"tiny-w{width}")
        cfg = TrainConfig(model=str(init), data=args.data, out=str(run_dir), steps=args.steps,
                          val_every=10**9, ema=0.99, threads=args.threads)  # EMA to match the short run
        trainer = run_training(cfg)  # ends with a validation of the EMA weights, logged last
        log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
        val = next(r for r in reversed(log) if "val_psnr" in r)
        train = [r for r in log if "sec_per_step" in r]
        rows.append({"width": width, "parameters": count_parameters(trainer.model), "steps": args.steps,
                     "val_psnr": val["val_psnr"], "val_lpips": val["val_lpips"],
                     "final_kl": train[-1]["kl"], "final_latent_std": train[-1]["latent_std"],
                     "median_sec_per_step": statistics.median(r["sec_per_step"] for r in train)})
        print(json.dumps(rows[-1]), flush=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(rows, indent=1))
    print("| width | parameters | val PSNR (dB) | val LPIPS | KL at the end | latent std | median s/step |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['width']} | {r['parameters']:,} | {r['val_psnr']:.2f} | {r['val_lpips']:.3f} "
              f"| {r['final_kl']:.2f} | {r['final_latent_std']:.2f} | {r['median_sec_per_step']:.2f} |")


if __name__ == "__main__":
    main()
