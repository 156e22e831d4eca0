"""Flax linen models: dVAE, block-sparse transformer, CLIP."""
