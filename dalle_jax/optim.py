"""Optimizers and schedules built from optax, configured by `config.optim`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

SCHEDULES = ("constant", "cosine", "linear")
DECAY_CHOICES = ("all", "matrices")


def decay_mask(optim: ConfigDict):
  """None (decay all) or a params -> bool-tree mask for `optax.adamw`.

  'matrices' decays parameters of two or more dimensions only: kernels and
  embeddings, not biases, LayerNorm gains or scalars (CLIP's logit scale).
  """
  choice = optim.get("decay", "all")
  if choice not in DECAY_CHOICES:
    raise ValueError(
      f"config.optim.decay={choice!r} is not one of {DECAY_CHOICES}."
    )
  if choice == "all":
    return None
  return lambda params: jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def learning_rate_schedule(optim: ConfigDict, num_steps: int) -> optax.Schedule:
  """Linear warm-up to `optim.lr`, then constant, cosine or linear decay.

  Args:
    optim: the `config.optim` section (lr, warmup_steps, schedule,
      end_lr_factor).
    num_steps: total number of training steps.

  Returns:
    An optax schedule from step to learning rate.
  """
  if optim.schedule not in SCHEDULES:
    raise ValueError(
      f"config.optim.schedule={optim.schedule!r} is not one of {SCHEDULES}."
    )
  warmup = min(int(optim.warmup_steps), max(num_steps - 1, 0))
  decay_steps = max(num_steps - warmup, 1)
  end_value = optim.lr * optim.end_lr_factor
  if optim.schedule == "constant":
    after = optax.constant_schedule(optim.lr)
  elif optim.schedule == "cosine":
    after = optax.cosine_decay_schedule(
      optim.lr, decay_steps, alpha=optim.end_lr_factor
    )
  else:
    after = optax.linear_schedule(optim.lr, end_value, decay_steps)
  if warmup == 0:
    return after
  ramp = optax.linear_schedule(0.0, optim.lr, warmup)
  return optax.join_schedules([ramp, after], [warmup])


def make_optimizer(
  optim: ConfigDict, num_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW with optional global-norm clipping.

  Args:
    optim: the `config.optim` section.
    num_steps: total number of training steps (for the decay).

  Returns:
    `(tx, learning_rate_schedule)`.
  """
  schedule = learning_rate_schedule(optim, num_steps)
  parts = []
  if optim.grad_clip_norm:
    parts.append(optax.clip_by_global_norm(optim.grad_clip_norm))
  parts.append(
    optax.adamw(
      schedule,
      b1=optim.b1,
      b2=optim.b2,
      eps=optim.eps,
      weight_decay=optim.weight_decay,
      mask=decay_mask(optim),
    )
  )
  return optax.chain(*parts), schedule
