"""Tests for dalle_jax.models.winograd against XLA's direct convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dalle_jax.models import winograd


def _direct(x, kernel):
  """The reference: XLA's 'same' cross-correlation, as nn.Conv computes."""
  return jax.lax.conv_general_dilated(
    x,
    kernel,
    (1, 1),
    "SAME",
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=jax.lax.Precision.HIGHEST,
  )


def _operands(shape, out_channels, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=shape).astype(np.float32)
  kernel = rng.normal(size=(3, 3, shape[-1], out_channels)).astype(np.float32)
  return jnp.asarray(x), jnp.asarray(kernel / np.sqrt(9 * shape[-1]))


@pytest.mark.parametrize(
  "shape, out_channels",
  [
    ((2, 8, 8, 4), 6),
    ((1, 7, 5, 3), 2),  # odd sides: padded tiles, cropped outputs
    ((3, 2, 2, 1), 1),  # one tile
    ((1, 1, 9, 5), 4),  # a single row
    ((2, 16, 16, 64), 32),
  ],
)
def test_equals_the_direct_convolution(shape, out_channels):
  x, kernel = _operands(shape, out_channels)
  ours = jax.jit(winograd.conv3x3)(x, kernel)
  assert ours.shape == (*shape[:3], out_channels) and ours.dtype == x.dtype
  np.testing.assert_allclose(ours, _direct(x, kernel), rtol=1e-5, atol=1e-5)


def test_gradients_equal_the_direct_convolutions():
  x, kernel = _operands((2, 6, 10, 5), 3, seed=1)
  cotangent = jnp.asarray(
    np.random.default_rng(2).normal(size=(2, 6, 10, 3)), jnp.float32
  )

  def grads(conv):
    loss = lambda x, k: jnp.sum(conv(x, k) * cotangent)  # noqa: E731
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(x, kernel)

  for ours, theirs in zip(grads(winograd.conv3x3), grads(_direct), strict=True):
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_one_tile_by_hand():
  """A 2x2 image with one channel: every output written out as a sum."""
  x = np.arange(1.0, 5.0, dtype=np.float32).reshape(1, 2, 2, 1)
  kernel = np.arange(1.0, 10.0, dtype=np.float32).reshape(3, 3, 1, 1)
  padded = np.pad(x[0, :, :, 0], 1)
  expected = np.array(
    [
      [
        np.sum(padded[i : i + 3, j : j + 3] * kernel[:, :, 0, 0])
        for j in (0, 1)
      ]
      for i in (0, 1)
    ]
  )
  ours = winograd.conv3x3(jnp.asarray(x), jnp.asarray(kernel))
  np.testing.assert_allclose(ours[0, :, :, 0], expected, rtol=1e-6)


def test_a_kernel_that_does_not_fit_is_refused():
  x, kernel = _operands((1, 4, 4, 3), 2)
  with pytest.raises(ValueError, match=r"\[3, 3, 3, C_out\] kernel"):
    winograd.conv3x3(x, kernel[:, :, :2])
  with pytest.raises(ValueError, match="got \\(5, 5, 3, 2\\)"):
    winograd.conv3x3(x, jnp.zeros((5, 5, 3, 2)))
