"""cdtcodec: a video codec built on CDT, the Conditioned Diffusion-based video Tokenizer."""

__version__ = "0.1.0"
