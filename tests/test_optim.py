"""AdamW's weight-decay choice: every parameter, or matrices only."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import ConfigDict

from dalle_jax import optim


def _optim(decay: str) -> ConfigDict:
  return ConfigDict(
    dict(
      lr=0.1,
      warmup_steps=0,
      schedule="constant",
      end_lr_factor=1.0,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      weight_decay=0.5,
      decay=decay,
      grad_clip_norm=0.0,
    )
  )


PARAMS = {
  "dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones((3,))},
  "norm": {"scale": jnp.ones((3,))},
  "logit_scale": jnp.asarray(2.0),
}


@pytest.mark.parametrize(
  "decay, decayed",
  [
    ("all", {"kernel", "bias", "scale", "logit_scale"}),
    ("matrices", {"kernel"}),
  ],
)
def test_zero_gradients_shrink_only_the_decayed_parameters(decay, decayed):
  tx, _ = optim.make_optimizer(_optim(decay), num_steps=10)
  zeros = {
    "dense": {"kernel": jnp.zeros((2, 3)), "bias": jnp.zeros((3,))},
    "norm": {"scale": jnp.zeros((3,))},
    "logit_scale": jnp.asarray(0.0),
  }
  updates, _ = tx.update(zeros, tx.init(PARAMS), PARAMS)
  new = optax.apply_updates(PARAMS, updates)
  leaves = {
    "kernel": new["dense"]["kernel"],
    "bias": new["dense"]["bias"],
    "scale": new["norm"]["scale"],
    "logit_scale": new["logit_scale"],
  }
  for name, value in leaves.items():
    before = {"logit_scale": 2.0}.get(name, 1.0)
    # Decoupled decay: p <- p - lr * wd * p with zero gradient.
    expected = before * (1 - 0.1 * 0.5) if name in decayed else before
    np.testing.assert_allclose(np.asarray(value), expected, rtol=1e-6)


def test_unknown_decay_choice_is_refused():
  with pytest.raises(ValueError, match="config.optim.decay='bias'"):
    optim.make_optimizer(_optim("bias"), num_steps=10)
