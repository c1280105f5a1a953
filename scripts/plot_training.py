"""Learning curve of a training run: training MSE and validation PSNR / LPIPS against steps, as a PNG.

    python scripts/plot_training.py runs/cdt-tiny/log.jsonl -o docs/cdt-tiny-training.png [--since STEP]

Validations per kind of footage (val_psnr/<kind>) are drawn beside the mean; --since drops the validations
before a step (e.g. those of an earlier validation split).
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--since", type=int, default=0, help="first step whose validation is drawn")
    args = ap.parse_args()
    records = [json.loads(line) for line in open(args.log)]
    train = [r for r in records if "mse" in r]
    val = [r for r in records if "val_psnr" in r and r["step"] >= args.since]
    kinds = sorted({k.split("/", 1)[1] for r in val for k in r if k.startswith("val_psnr/")})
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].plot([r["step"] for r in train], [r["mse"] for r in train], lw=0.8)
    axes[0].set(title="training x0 MSE (all timesteps)", xlabel="step", yscale="log")
    axes[1].plot([r["step"] for r in val], [r["val_psnr"] for r in val], marker="o", label="mean", color="k")
    for kind in kinds:
        mine = [r for r in val if f"val_psnr/{kind}" in r]
        axes[1].plot([r["step"] for r in mine], [r[f"val_psnr/{kind}"] for r in mine], lw=1, label=kind)
    if kinds:
        axes[1].legend(fontsize=7)
    axes[1].set(title="validation PSNR, one-step decode (dB)", xlabel="step")
    if any("val_lpips" in r for r in val):
        axes[2].plot([r["step"] for r in val], [r["val_lpips"] for r in val], marker="o", color="C1")
    axes[2].set(title="validation LPIPS-alex", xlabel="step")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.output, dpi=80)
    print(f"{len(train)} training and {len(val)} validation records -> {args.output}")


if __name__ == "__main__":
    main()
