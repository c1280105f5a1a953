"""Neural-network building blocks shared by the encoder, the context decoder and the denoiser."""
