"""Task for the tiny convolutional autoencoder (harness proof, MSE loss)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from dalle_jax import optim
from dalle_jax.models.autoencoder import Autoencoder, AutoencoderConfig
from dalle_jax.tasks.base import Task, norm_metrics, psnr
from dalle_jax.train_state import TrainState


def _to_float(images: jax.Array) -> jax.Array:
  """`[B, H, W, 3] uint8` -> float32 in [0, 1]."""
  return images.astype(jnp.float32) / 255.0


def make_task(config: ConfigDict) -> Task:
  """Builds the autoencoder task from the run config."""
  model = Autoencoder(AutoencoderConfig(widths=tuple(config.model.widths)))
  tx, schedule = optim.make_optimizer(config.optim, config.train.num_steps)
  image_shape = (1, config.data.image_size, config.data.image_size, 3)

  def init(rng: jax.Array) -> TrainState:
    params = model.init(rng, jnp.zeros(image_shape, jnp.float32))["params"]
    return TrainState.create(params, tx, config.optim.ema_decay)

  def loss_fn(params, images):
    reconstructions = model.apply({"params": params}, images)
    return jnp.mean((reconstructions - images) ** 2)

  def train_step(state: TrainState, batch, rng):
    del rng  # deterministic model
    images = _to_float(batch["image"])
    mse, grads = jax.value_and_grad(loss_fn)(state.params, images)
    new_state, updates = state.apply_gradients(grads)
    metrics = {
      "loss": mse,
      "psnr": psnr(mse),
      "learning_rate": schedule(state.step),
      **norm_metrics(grads, updates, state.params),
    }
    return new_state, metrics

  def eval_step(params, batch, rng):
    del rng
    mse = loss_fn(params, _to_float(batch["image"]))
    return {"loss": mse, "psnr": psnr(mse)}

  def preview(params, batch):
    images = _to_float(batch["image"])
    reconstructions = model.apply({"params": params}, images)
    reconstructions = jnp.round(reconstructions * 255.0).astype(jnp.uint8)
    return jnp.stack([batch["image"], reconstructions])

  return Task("autoencoder", init, train_step, eval_step, preview)
