"""A tiny convolutional autoencoder: the harness's smallest real model.

It proves the training harness end to end (data, sharding, loop,
checkpoints, image grids) before the dVAE replaces it as stage 1.
Shapes: B batch, H/W image side, C channels.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from dalle_jax import sharding
from dalle_jax.models import initializers

CONV_KERNEL_AXES = (
  sharding.KERNEL_HEIGHT,
  sharding.KERNEL_WIDTH,
  sharding.CHANNELS_IN,
  sharding.CHANNELS_OUT,
)


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
  """Hyperparameters.

  Attributes:
    widths: channels after each stride-2 stage; the code is
      `H / 2**len(widths)` on a side with `widths[-1]` channels.
  """

  widths: tuple[int, ...] = (32, 64)


def _conv(features: int, kernel: int, stride: int = 1, name: str | None = None):
  return nn.Conv(
    features,
    (kernel, kernel),
    strides=(stride, stride),
    padding="SAME",
    kernel_init=nn.with_logical_partitioning(
      initializers.lecun_normal(), CONV_KERNEL_AXES
    ),
    bias_init=nn.with_logical_partitioning(
      nn.initializers.zeros, (sharding.CHANNELS_OUT,)
    ),
    name=name,
  )


class Autoencoder(nn.Module):
  """Images in [0, 1] -> reconstructions in [0, 1]."""

  config: AutoencoderConfig

  @nn.compact
  def __call__(self, images: jnp.ndarray) -> jnp.ndarray:
    """Reconstructs `[B, H, W, 3] float32` images, returns the same shape."""
    x = images * 2.0 - 1.0
    for i, width in enumerate(self.config.widths):
      x = nn.relu(_conv(width, 4, stride=2, name=f"down_{i}")(x))
    for i, width in enumerate(reversed(self.config.widths)):
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
      x = nn.relu(_conv(width, 3, name=f"up_{i}")(x))
    return nn.sigmoid(_conv(3, 3, name="to_rgb")(x))
