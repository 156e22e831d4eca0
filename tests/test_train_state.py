"""TrainState: optimizer updates and the warmed-up parameter EMA."""

import jax.numpy as jnp
import numpy as np
import optax

from dalle_jax.train_state import TrainState


def test_ema_follows_warmed_up_decay():
  params = {"w": jnp.array([1.0, -2.0])}
  state = TrainState.create(params, optax.sgd(0.5), ema_decay=0.999)
  grads = {"w": jnp.array([1.0, 1.0])}
  expected_params = np.array([1.0, -2.0])
  expected_ema = expected_params.copy()
  for step in range(3):
    state, _ = state.apply_gradients(grads)
    expected_params = expected_params - 0.5
    decay = min(0.999, (1 + step) / (10 + step))  # written out plainly
    expected_ema = decay * expected_ema + (1 - decay) * expected_params
  np.testing.assert_allclose(state.params["w"], expected_params, rtol=1e-6)
  np.testing.assert_allclose(state.ema_params["w"], expected_ema, rtol=1e-6)
  assert int(state.step) == 3
  assert state.eval_params is state.ema_params


def test_no_ema_evaluates_the_params():
  state = TrainState.create({"w": jnp.ones(2)}, optax.sgd(0.1))
  assert state.ema_params is None
  assert state.eval_params is state.params
