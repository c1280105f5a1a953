"""The networks of CDT (no diffusion process, no I/O): layers, encoder, context decoder, denoiser, the module."""

from cdtcodec.model.cdt import CDT, count_parameters

__all__ = ["CDT", "count_parameters"]
