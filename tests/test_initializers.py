"""dalle_jax.models.initializers against jax.nn.initializers: the same values.

The flat draws must change nothing but how XLA compiles them, so every case
compares bitwise with jax's own initializer for the same key and shape.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dalle_jax.models import initializers

SHAPES = [(7, 5), (3, 3, 16, 4), (1, 1, 8, 12), (6, 2, 3)]


def _same(ours, reference, shape, dtype=jnp.float32):
  for seed in range(2):
    key = jax.random.key(seed)
    expected = reference(key, shape, dtype)
    actual = ours(key, shape, dtype)
    assert actual.dtype == expected.dtype and actual.shape == tuple(shape)
    np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected))


@pytest.mark.parametrize("shape", SHAPES)
def test_normal_equals_jax(shape):
  _same(initializers.normal(0.02), jax.nn.initializers.normal(0.02), shape)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["normal", "truncated_normal"])
def test_variance_scaling_equals_jax(shape, mode, distribution):
  _same(
    initializers.variance_scaling(0.5, mode, distribution),
    jax.nn.initializers.variance_scaling(0.5, mode, distribution),
    shape,
  )


def test_axes_given_as_tuples_and_other_dtypes_equal_jax():
  # The transformer's kernels: [E, heads, head_dim] and [heads, head_dim, E].
  for in_axis, out_axis, shape in [
    ((0,), (1, 2), (8, 2, 4)),
    ((0, 1), (2,), (2, 4, 8)),
  ]:
    args = (2.0, "fan_in", "normal")
    _same(
      initializers.variance_scaling(*args, in_axis=in_axis, out_axis=out_axis),
      jax.nn.initializers.variance_scaling(
        *args, in_axis=in_axis, out_axis=out_axis
      ),
      shape,
    )
  _same(
    initializers.lecun_normal(),
    jax.nn.initializers.lecun_normal(),
    (3, 3, 4, 8),
    jnp.bfloat16,
  )


def test_unknown_mode_or_distribution_is_refused():
  with pytest.raises(ValueError, match="use a mode in"):
    initializers.variance_scaling(1.0, "fan_geo", "normal")
  with pytest.raises(ValueError, match="truncated_normal"):
    initializers.variance_scaling(1.0, "fan_in", "uniform")
