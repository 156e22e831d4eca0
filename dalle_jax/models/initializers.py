"""Parameter initializers that draw their random numbers as one flat vector.

They return exactly what `jax.nn.initializers` (and so `flax.linen`)
returns for the same key, shape and dtype. Only the draw differs: jax's
partitionable threefry (its default) counts through an N-d array with one
iota per axis, and XLA:CPU's LLVM back end is slow on the fused kernels
that makes for 4-d kernels. Measured on a 2-core AMD EPYC, jax 0.10.2: one
3x3x16x16 `jax.random.bits` compiled in 6.7 s, the same 2,304 numbers drawn
flat in 0.7 s, and the Shapes dVAE's whole `init` in 41.3 s against 12.0 s
(experiments/benchmarks/init_compile.py). A flat draw reshaped is bitwise
the N-d draw (the counter is the flat index), so switching changes no
value. Under sharding, XLA may draw a parameter's whole flat vector on
each device before keeping its shard (a one-off cost at init, not
measured); the parameters' shardings do not change.

Each function builds an `Initializer`: `init(key, shape, dtype=float32)`.
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

Axes = int | Sequence[int]


def _flat_normal(key, shape, dtype) -> jax.Array:
  return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


def _flat_truncated_normal(key, shape, dtype) -> jax.Array:
  flat = jax.random.truncated_normal(key, -2, 2, (math.prod(shape),), dtype)
  return flat.reshape(shape)


def _size(shape: Sequence[int], axes: Axes) -> int:
  axes = (axes,) if isinstance(axes, int) else tuple(axes)
  return math.prod(shape[axis] for axis in axes)


def normal(stddev: float = 1e-2):
  """N(0, stddev**2), as `jax.nn.initializers.normal(stddev)`."""

  def init(key, shape, dtype=jnp.float32) -> jax.Array:
    return _flat_normal(key, shape, dtype) * jnp.array(stddev, dtype)

  return init


def variance_scaling(
  scale: float,
  mode: str,
  distribution: str,
  in_axis: Axes = -2,
  out_axis: Axes = -1,
):
  """As `jax.nn.initializers.variance_scaling` (no batch axes).

  Args:
    scale: the variance is `scale / fan`.
    mode: 'fan_in', 'fan_out' or 'fan_avg'.
    distribution: 'normal' or 'truncated_normal' (to +-2 standard
      deviations, rescaled to the same variance).
    in_axis: the input axis or axes; the axes in neither `in_axis` nor
      `out_axis` are the receptive field (a conv's kernel taps).
    out_axis: the output axis or axes.

  Raises:
    ValueError: for another mode or distribution, naming the allowed ones.
  """
  modes = ("fan_in", "fan_out", "fan_avg")
  distributions = ("normal", "truncated_normal")
  if mode not in modes or distribution not in distributions:
    raise ValueError(
      f"variance_scaling(mode={mode!r}, distribution={distribution!r}): "
      f"use a mode in {modes} and a distribution in {distributions}."
    )

  def init(key, shape, dtype=jnp.float32) -> jax.Array:
    in_size, out_size = _size(shape, in_axis), _size(shape, out_axis)
    receptive_field = math.prod(shape) / in_size / out_size
    fan_in, fan_out = in_size * receptive_field, out_size * receptive_field
    fans = {
      "fan_in": fan_in,
      "fan_out": fan_out,
      "fan_avg": (fan_in + fan_out) / 2,
    }
    variance = jnp.array(scale / fans[mode], dtype)
    if distribution == "normal":
      return _flat_normal(key, shape, dtype) * jnp.sqrt(variance)
    # 0.8796...: the standard deviation of N(0, 1) truncated to (-2, 2).
    stddev = jnp.sqrt(variance) / jnp.array(0.87962566103423978, dtype)
    return _flat_truncated_normal(key, shape, dtype) * stddev

  return init


def lecun_normal(in_axis: Axes = -2, out_axis: Axes = -1):
  """Truncated normal with variance 1 / fan_in: flax's Dense and Conv default."""
  return variance_scaling(1.0, "fan_in", "truncated_normal", in_axis, out_axis)
