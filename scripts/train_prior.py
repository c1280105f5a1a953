"""Train the conditional latent prior on latents of the training footage (encoder frozen) and export it.

    PYTHONPATH=. nice -n 19 python scripts/train_prior.py --data data --model cdt-tiny \\
        --cache ~/prior-cache/cdt-tiny-33x256.npz --out weights/cdt-tiny.prior.safetensors

The latent cache (posterior means of random 33-frame 256x256 training clips and of the validation
clips) is built on the first run, ~10 minutes on 2 cores; training takes ~5-15 minutes at nice 19.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitstream.prior import PriorArch, save_prior  # noqa: E402
from bitstream.prior_tables import FAMILY_GAUSS, FAMILY_LAPLACE  # noqa: E402
from cdtcodec.rate.prior_train import PriorTrainConfig, cache_latents, float_bits, load_latents, train_prior  # noqa: E402
from cdtcodec.rate.prior_twin import to_integer  # noqa: E402
from cdtcodec.rate.quantize import QUALITY_STEPS  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data", help="folder holding train/ and val/")
    p.add_argument("--model", default="cdt-tiny", help="tokenizer weights whose latents the prior codes")
    p.add_argument("--cache", required=True, help="latent cache (.npz); built when missing")
    p.add_argument("--clips", type=int, default=200, help="training clips in a new cache")
    p.add_argument("--out", required=True, help="integer prior weights (.safetensors)")
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--groups", type=int, default=4, help="channel groups")
    p.add_argument("--prev-frames", type=int, default=1)
    p.add_argument("--no-checkerboard", action="store_true")
    p.add_argument("--laplace", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cache = Path(args.cache).expanduser()
    if not cache.is_file():
        from cdtcodec.weights import load_model

        net, _, _ = load_model(args.model)
        net.eval()
        print(f"building the latent cache {cache}", flush=True)
        cache_latents(args.data, cache, net, clips=args.clips, seed=args.seed, log=lambda s: print(s, flush=True))
    train, val = load_latents(cache)
    arch = PriorArch(hidden=args.hidden, prev_frames=args.prev_frames, checkerboard=not args.no_checkerboard,
                     channel_groups=args.groups, family=FAMILY_LAPLACE if args.laplace else FAMILY_GAUSS)
    print(f"{train.shape[0]} training clips, {val.shape[0]} validation clips; {arch}", flush=True)
    prior = train_prior(train, val, arch, PriorTrainConfig(iterations=args.iterations, seed=args.seed),
                        log=lambda s: print(s, flush=True))
    sha = save_prior(to_integer(prior), args.out)
    est = float_bits(prior, val, QUALITY_STEPS.values(), fake_quant=True)
    print("validation, estimated bits/symbol: " + ", ".join(f"step {k:g}: {v:.4f}" for k, v in est.items()))
    print(f"wrote {args.out} (sha256 {sha})")


if __name__ == "__main__":
    main()
