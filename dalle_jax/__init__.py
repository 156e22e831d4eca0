"""dalle_jax: DALL-E (Ramesh et al. 2021) in JAX/Flax.

`dalle_jax.Generator` (prompts -> reranked images from trained stages) and
`dalle_jax.Samples` are imported on first use, so `import dalle_jax` and
its light submodules stay quick.
"""

__version__ = "0.1.0"
__all__ = ["Generator", "Samples"]


def __getattr__(name: str):
  if name in __all__:
    from dalle_jax import generator

    return getattr(generator, name)
  raise AttributeError(f"module 'dalle_jax' has no attribute {name!r}")
