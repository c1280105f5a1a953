"""Training utilities for cdtcodec (data pipeline, losses, loops)."""
