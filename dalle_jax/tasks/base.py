"""The Task protocol: the pure math of one training stage.

A Task bundles pure, jittable functions; the train loop (`dalle_jax.train`)
owns cadence and I/O and never looks inside them.

Batch: `{"image": [B, H, W, 3] uint8, "text_tokens": [B, L] int32}`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from optax import global_norm

from dalle_jax.train_state import TrainState

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Task:
  """One stage's pure functions.

  Attributes:
    name: the stage name, e.g. "autoencoder" or "dvae".
    init: `rng -> TrainState` with logically boxed params (traceable, so the
      loop can `eval_shape` it and create the state already sharded).
    train_step: `(state, batch, rng) -> (state, metrics)`; metrics are
      scalars, `loss` among them.
    eval_step: `(params, batch, rng) -> metrics` on evaluation data.
    preview: `(params, batch) -> [R, C, H, W, 3] uint8` rows of images to
      look at (e.g. originals over reconstructions), or None.
    host_eval: `(params, sources) -> metrics` computed on the host at each
      evaluation (e.g. the Shapes judge on reconstructions), or None.
    eval_warnings: `eval metrics -> messages` that the loop logs as
      warnings after each evaluation (e.g. a collapsed codebook), or None.
  """

  name: str
  init: Callable[[jax.Array], TrainState]
  train_step: Callable[
    [TrainState, Batch, jax.Array], tuple[TrainState, Metrics]
  ]
  eval_step: Callable[[Any, Batch, jax.Array], Metrics]
  preview: Callable[[Any, Batch], jax.Array] | None = None
  host_eval: Callable[[Any, Any], dict[str, float]] | None = None
  eval_warnings: Callable[[Mapping[str, float]], list[str]] | None = None


def norm_metrics(grads, updates, params) -> Metrics:
  """Global L2 norms of gradients, updates and parameters (for logging)."""
  return {
    "grad_norm": global_norm(grads),
    "update_norm": global_norm(updates),
    "param_norm": global_norm(params),
  }


def psnr(mse: jax.Array) -> jax.Array:
  """PSNR in dB of images in [0, 1] from their mean squared error."""
  return -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))
