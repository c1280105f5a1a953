"""Rate: how many bits a video gets, and how they are spent.

    quantize.py      latents <-> integer symbols: step sizes, the quality scale (global step x per-channel gains)
    control.py       rate control: the step at which a whole file meets a target rate (--target-kbps / -bpp)
    coder_choice.py  which entropy coder a file is written with (auto: the model's prior, else range)
    prior_twin.py    the prior's torch twin: the differentiable rate term (rate_bits), the integer export
    prior_train.py   training the prior on cached latents (scripts/train_prior.py)

The integer prior itself, the one the files are coded with, is part of the format: bitstream/prior.py.
Importing this package loads nothing; quantize.py imports torch only where it is used.
"""
