"""The training state: step, parameters, optimizer state and a parameter EMA.

A flax struct dataclass, so it is a pytree that jit, sharding and orbax
understand; the optimizer itself is a static field (not saved, not traced).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class TrainState:
  """Everything one training step reads and writes.

  Attributes:
    step: [] int32, number of updates applied so far.
    params: the model parameters (a pytree of float32 arrays).
    opt_state: the optax state for `tx`.
    ema_params: exponential moving average of `params` used for evaluation
      and export, or None when `ema_decay` is 0. The decay warms up as
      min(ema_decay, (1 + step) / (10 + step)).
    tx: the optax optimizer (static).
    ema_decay: EMA decay per step; 0 disables the EMA (static).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any
  tx: optax.GradientTransformation = struct.field(pytree_node=False)
  ema_decay: float = struct.field(pytree_node=False, default=0.0)

  @classmethod
  def create(cls, params, tx, ema_decay: float = 0.0) -> TrainState:
    """A fresh state at step 0 (works on boxed, logically named params)."""
    ema = jax.tree.map(jnp.copy, params) if ema_decay else None
    return cls(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      ema_params=ema,
      tx=tx,
      ema_decay=ema_decay,
    )

  def apply_gradients(self, grads) -> tuple[TrainState, Any]:
    """Applies one optimizer update; returns the new state and the updates."""
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    ema = self.ema_params
    if self.ema_decay:
      # Warm-up of the decay, so that a short run's average is not dominated
      # by the initial parameters: min(decay, (1 + t) / (10 + t)).
      step = self.step.astype(jnp.float32)
      decay = jnp.minimum(self.ema_decay, (1.0 + step) / (10.0 + step))
      ema = optax.incremental_update(params, ema, 1.0 - decay)
    new_state = self.replace(
      step=self.step + 1, params=params, opt_state=opt_state, ema_params=ema
    )
    return new_state, updates

  @property
  def eval_params(self):
    """The parameters to evaluate and export: the EMA when there is one."""
    return self.params if self.ema_params is None else self.ema_params
