"""Fit a model's quality scale: a global step and a per-channel gain vector per quality level, by rate-distortion
measurement on training clips (the encoder and decoder frozen), written beside the weights as
`<stem>.quality.safetensors` (cdtcodec/rate/quantize.py reads it).

Method (gain vectors: Cui et al., "Asymmetric Gained Deep Image Compression with Continuous Rate Adaptation",
CVPR 2021; the allocation is classic high-rate bit allocation):
  1. Importance. Channel c alone is quantized at step PROBE (the others left unquantized); its share of the
     decoded MSE, per unit of quantization noise power (PROBE^2 / 12), is its weight w_c. At high rate
     D = sum_c w_c s_c^2 / 12 and R = sum_c (h_c - log2 s_c); minimising D + lambda R gives s_c ~ w_c^-1/2
     (reverse water-filling: all channels at the same weighted noise).
  2. Gain vectors g_c(alpha) ~ w_c^(-alpha/2) at geometric mean 1; alpha = 1 is that optimum, 0 one step for all.
  3. Quality 1 is the largest global step whose mean PSNR on the clips at alpha = 1 reaches --q1-psnr; quality 8
     is at --q8-step (default the finest step of the former scale, 1/16); the levels between are spaced evenly
     in log step.
  4. Per level, a small search over alpha: every candidate is measured (rate: the prior's estimate through its
     torch twin; distortion: the decoder's PSNR), and compared at equal rate through the local slope of the
     curve (dPSNR / dlog2(rate) between neighbouring levels): score = PSNR - slope * log2(rate / rate_ref).

    .venv/bin/python scripts/fit_gains.py --data data --clips 2 --frames 9 --json fit.json
    .venv/bin/python scripts/fit_gains.py --from-json fit.json --q1-step 2   # re-place the levels, no decoding

The shipped cdt-tiny v6 scale is the second line on the first's measurements: training clips come out about 4 dB
better than the bench's at the same step (step 2.83, one step for all: 24.0 dB on the fit's clips, about 21 on the
bench's, docs/rate.md), so quality 1 is placed at step 2 rather than where the fit's clips reach 23 dB.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitstream.prior import load_prior  # noqa: E402
from cdtcodec.metrics import psnr  # noqa: E402
from cdtcodec.rate.coder_choice import prior_path  # noqa: E402
from cdtcodec.rate.prior_twin import from_integer  # noqa: E402
from cdtcodec.rate.quantize import QUALITY_STEPS, QualityScale, save_scale, scale_path  # noqa: E402
from cdtcodec.stream import StreamDecoder, StreamEncoder  # noqa: E402
from cdtcodec.train.config import TrainConfig  # noqa: E402
from cdtcodec.train.data import ClipDataset  # noqa: E402
from cdtcodec.weights import WEIGHTS_DIR, load_model  # noqa: E402

PROBE = 2.0  # the probe step of the importance measurement (a coarse level's step)
ALPHAS = (0.0, 0.5, 1.0)


def log(msg: str) -> None:
    print(msg, flush=True)


def gains_for(weights: np.ndarray, alpha: float) -> np.ndarray:
    g = np.exp(-alpha / 2 * np.log(weights))
    g = np.clip(g / math.exp(np.mean(np.log(g))), 1 / 32, 32)  # a channel that carries nothing: bounded
    return g / math.exp(np.mean(np.log(g)))


class Fit:
    def __init__(self, model, prior, clips):
        self.model, self.prior = model, prior
        self.videos = [c.unsqueeze(0) for c in clips]
        self.latents = []
        with torch.no_grad():
            for v in self.videos:
                enc = StreamEncoder(model)
                self.latents.append(torch.cat(enc.push(v) + enc.finish(), dim=2)[:, : model.cfg.latent_dim])
        self.decodes = 0

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        self.decodes += 1
        with torch.no_grad():
            return torch.cat(StreamDecoder(self.model, seed=0).push(latent), dim=2).clamp(-1, 1)

    def measure(self, steps: np.ndarray) -> tuple[float, float]:
        """(mean PSNR dB, mean bpp by the prior's estimate) over the clips at per-channel `steps`."""
        s = torch.tensor(steps, dtype=torch.float32).view(1, -1, 1, 1, 1)
        ps, rates = [], []
        for v, z in zip(self.videos, self.latents):
            sym = torch.round(z / s)
            with torch.no_grad():
                bits = float(self.prior.bits(sym, s.view(1, -1)).sum())
            ps.append(psnr(self.decode(sym * s), v))
            rates.append(bits / v[0, 0].numel())
        return float(np.mean(ps)), float(np.mean(rates))

    def importance(self) -> np.ndarray:
        """w_c: the decoded MSE added by quantizing channel c alone at PROBE, per unit of its noise power."""
        c = self.latents[0].shape[1]
        base = [torch.mean(((self.decode(z) - v) / 2) ** 2).item() for v, z in zip(self.videos, self.latents)]
        w = np.zeros(c)
        for ch in range(c):
            added = []
            for v, z, b in zip(self.videos, self.latents, base):
                zq = z.clone()
                zq[:, ch] = torch.round(zq[:, ch] / PROBE) * PROBE
                added.append(torch.mean(((self.decode(zq) - v) / 2) ** 2).item() - b)
            w[ch] = max(float(np.mean(added)), 1e-9) / (PROBE ** 2 / 12)
            log(f"  channel {ch:2d}: +{np.mean(added) * 1e4:.3f}e-4 MSE at step {PROBE:g} -> weight {w[ch]:.3e}")
        return w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(WEIGHTS_DIR / "cdt-tiny.safetensors"))
    ap.add_argument("--data", default="data")
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--q1-psnr", type=float, default=23.0, help="quality 1's mean PSNR on the clips, dB")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help=f"default: beside the weights (<stem>{'.quality.safetensors'})")
    ap.add_argument("--json", help="also write every measurement here")
    ap.add_argument("--from-json", help="reuse this earlier run's importance and per-level alphas (no decoding)")
    ap.add_argument("--q1-step", type=float, help="with --from-json: quality 1's global step")
    ap.add_argument("--q8-step", type=float, default=QUALITY_STEPS[8],
                    help="quality 8's global step (default %(default)g): where finer steps stop paying")
    args = ap.parse_args()
    if args.from_json:
        return replace_levels(args)
    started = time.time()
    torch.manual_seed(args.seed)
    model, name, digest = load_model(args.weights)
    prior = from_integer(load_prior(prior_path(args.weights))).eval()
    data = ClipDataset(args.data, frames=args.frames, size=args.size, split="train", seed=args.seed,
                       min_scale=1.0, flip=0.0, kind_mix=dict(TrainConfig.kind_mix))
    rng = np.random.default_rng(args.seed)
    fit = Fit(model, prior, [data.sample(rng) for _ in range(args.clips)])
    log(f"{name} ({digest[:12]}): {args.clips} training clips of {args.frames}x{args.size}x{args.size}")
    w = fit.importance()
    record = {"weights": name, "sha256": digest, "clips": args.clips, "importance": w.tolist(), "points": []}

    def point(step: float, alpha: float) -> tuple[float, float]:
        p, r = fit.measure(step * gains_for(w, alpha))
        record["points"].append({"step": step, "alpha": alpha, "psnr": p, "bpp": r})
        log(f"  step {step:.4g} alpha {alpha:g}: {p:.2f} dB, {r:.4f} bpp ({fit.decodes} decodes, "
            f"{time.time() - started:.0f} s)")
        return p, r

    # quality 1: the largest step (quarter octaves from 8 down) reaching the PSNR floor at alpha = 1
    s1 = None
    for k in range(0, 17):
        step = 8.0 * 2 ** (-k / 4)
        if point(step, 1.0)[0] >= args.q1_psnr:
            s1 = step
            break
    s1 = s1 or 8.0 * 2 ** (-4)
    s8 = args.q8_step
    steps = [s1 * (s8 / s1) ** (i / 7) for i in range(8)]
    chosen = choose_alphas(steps, point)
    # the chosen alphas kept monotone in the level is not required: each level is its own point
    gains = [tuple(float(v) for v in gains_for(w, a)) for a in chosen]
    scale = QualityScale(tuple(steps), tuple(gains), digest, "fit")
    note = {"script": "scripts/fit_gains.py", "clips": args.clips, "frames": args.frames, "size": args.size,
            "q1_psnr": args.q1_psnr, "q8_step": s8, "alphas": chosen, "importance": [round(v, 6) for v in w.tolist()]}
    out = Path(args.out) if args.out else scale_path(args.weights)
    save_scale(scale, out, note)
    log(f"wrote {out}: steps {', '.join(f'{s:.4g}' for s in steps)}; alphas {chosen} "
        f"({fit.decodes} decodes, {time.time() - started:.0f} s)")
    if args.json:
        record.update(steps=steps, alphas=chosen, gains=gains)
        Path(args.json).write_text(json.dumps(record, indent=2))


def choose_alphas(steps: list[float], point) -> list[float]:
    """Per level, the alpha whose point scores best at equal rate; point(step, alpha) -> (PSNR, bpp).

    The alpha = 0.5 curve gives the local slope at each level. Scores within 0.01 dB count as equal, and then
    the cheaper alpha wins: where the curve is flat the slope no longer charges for bits, and a level that pays
    more for nothing would make the scale worse, not better."""
    ref = {i: point(s, 0.5) for i, s in enumerate(steps)}
    chosen = []
    for i, step in enumerate(steps):
        (p0, r0), (p1, r1) = ref[max(0, i - 1)], ref[min(len(steps) - 1, i + 1)]
        slope = (p1 - p0) / max(math.log2(r1 / r0), 1e-6)
        scores, rates = {}, {}
        for a in ALPHAS:
            p, rates[a] = ref[i] if a == 0.5 else point(step, a)
            scores[a] = p - slope * math.log2(rates[a] / ref[i][1])
        best = max(scores, key=lambda a: (round(scores[a], 2), -rates[a]))
        log(f"quality {i + 1}: step {step:.4g}, slope {slope:.2f} dB/octave of rate, scores "
            + ", ".join(f"{a:g}: {v:.2f}" for a, v in scores.items()) + f" -> alpha {best:g}")
        chosen.append(best)
    return chosen


def replace_levels(args) -> None:
    """The levels re-placed between --q1-step and --q8-step with an earlier run's importance and alphas."""
    from cdtcodec.rate.quantize import sha256_of

    if not args.q1_step:
        raise SystemExit("error: --from-json needs --q1-step")
    fitted = json.loads(Path(args.from_json).read_text())
    if fitted["sha256"] != sha256_of(args.weights):
        raise SystemExit(f"error: {args.from_json} was measured on other weights")
    w = np.array(fitted["importance"])
    measured = {(p["step"], p["alpha"]): (p["psnr"], p["bpp"]) for p in fitted["points"]}
    alphas = choose_alphas(fitted["steps"], lambda step, alpha: measured[(step, alpha)])  # at the fit's levels
    steps = [args.q1_step * (args.q8_step / args.q1_step) ** (i / 7) for i in range(8)]
    gains = [tuple(float(v) for v in gains_for(w, a)) for a in alphas]
    out = Path(args.out) if args.out else scale_path(args.weights)
    note = {"script": "scripts/fit_gains.py --from-json --q1-step", "q1_step": args.q1_step,
            "q8_step": args.q8_step,
            "measured": {"clips": fitted["clips"]}, "alphas": alphas, "importance": [round(v, 6) for v in w]}
    save_scale(QualityScale(tuple(steps), tuple(gains), fitted["sha256"], "fit"), out, note)
    log(f"wrote {out}: steps {', '.join(f'{s:.4g}' for s in steps)}; alphas {alphas}")


if __name__ == "__main__":
    main()
