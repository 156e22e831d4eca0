"""dalle_jax: DALL-E (Ramesh et al. 2021) in JAX/Flax."""

__version__ = "0.1.0"
