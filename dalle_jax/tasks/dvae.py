"""Task for stage 1, the discrete VAE (paper §2.1, App. A.2).

Training relaxes the codes with Gumbel-softmax at a temperature that follows
a cosine schedule from 1 to 1/16; the KL to the uniform prior is weighted by
a cosine ramp from 0 to 6.6; the likelihood is logit-Laplace. Evaluation
decodes hard argmax codes (what the transformer will see), never relaxed
ones. Both schedules are optax schedules, indexed by the optimizer step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from dalle_jax import evaluate, losses, optim
from dalle_jax.models.dvae import DVAE, DVAEConfig
from dalle_jax.tasks.base import Task, norm_metrics, psnr
from dalle_jax.train_state import TrainState


def model_config(config: ConfigDict) -> DVAEConfig:
  """The DVAEConfig of a run config (`config.model` plus the image size)."""
  model = config.model
  dvae_config = DVAEConfig(
    image_size=config.data.image_size,
    group_count=model.group_count,
    n_hid=model.n_hid,
    n_blk_per_group=model.n_blk_per_group,
    vocab_size=model.vocab_size,
    n_init=model.n_init,
    dtype=model.dtype,
  )
  dvae_config.validate()
  return dvae_config


def schedule_steps(schedule: ConfigDict, num_steps: int) -> tuple[int, int]:
  """`(temperature_steps, kl_warmup_steps)`, resolving 0 from the run length.

  0 means "scaled to the run": the temperature anneals over the first
  `temperature_fraction` of `num_steps` (half when the config predates the
  field) and the KL weight ramps over the first 5%, so a run shortened on
  the command line keeps the same shape of schedule.

  Raises:
    ValueError: if `temperature_fraction` is outside (0, 1].
  """
  fraction = schedule.get("temperature_fraction", 0.5)
  if not 0.0 < fraction <= 1.0:
    raise ValueError(
      f"dvae_schedule.temperature_fraction={fraction!r} must be in (0, 1]: "
      "the share of the run over which the temperature anneals (1.0: the "
      "whole run)."
    )
  temperature_steps = schedule.temperature_steps or int(num_steps * fraction)
  kl_warmup_steps = schedule.kl_warmup_steps or num_steps // 20
  return max(temperature_steps, 1), max(kl_warmup_steps, 1)


def temperature_schedule(
  schedule: ConfigDict, num_steps: int
) -> optax.Schedule:
  """Cosine decay of the Gumbel-softmax temperature, e.g. 1 -> 1/16."""
  return optax.cosine_decay_schedule(
    init_value=schedule.temperature_start,
    decay_steps=schedule_steps(schedule, num_steps)[0],
    alpha=schedule.temperature_end / schedule.temperature_start,
  )


def kl_weight_schedule(schedule: ConfigDict, num_steps: int) -> optax.Schedule:
  """Cosine ramp of the KL weight from 0 to `kl_weight`, then constant."""
  decay = optax.cosine_decay_schedule(
    init_value=schedule.kl_weight,
    decay_steps=schedule_steps(schedule, num_steps)[1],
  )
  return lambda step: schedule.kl_weight - decay(step)


def code_statistics(codes: jax.Array, vocab_size: int) -> dict[str, jax.Array]:
  """Codebook use of hard codes.

  Args:
    codes: `[B, h, w]` int32.
    vocab_size: K.

  Returns:
    `codebook_usage` (share of the K codes that occur), `dead_codes` (count
    of codes that do not occur) and `code_perplexity` (exp of the entropy of
    the code histogram).
  """
  counts = jnp.bincount(codes.reshape(-1), length=vocab_size)
  used = jnp.sum(counts > 0)
  probs = counts / jnp.sum(counts)
  entropy = -jnp.sum(jnp.where(counts > 0, probs * jnp.log(probs), 0.0))
  return {
    "codebook_usage": used / vocab_size,
    "dead_codes": (vocab_size - used).astype(jnp.float32),
    "code_perplexity": jnp.exp(entropy),
  }


# Below this code perplexity on the validation batches, every image is
# coded with (nearly) one code: the codebook has collapsed.
COLLAPSED_PERPLEXITY = 2.0


def collapse_warnings(metrics, vocab_size: int) -> list[str]:
  """A warning when the evaluation's codes show a collapsed codebook.

  Args:
    metrics: evaluation metrics with `code_perplexity` and
      `codebook_usage` (`code_statistics` of hard codes).
    vocab_size: K.

  Returns:
    One message naming the figures and what to change, or none.
  """
  perplexity = metrics.get("code_perplexity")
  if perplexity is None or perplexity >= COLLAPSED_PERPLEXITY:
    return []
  used = round(float(metrics["codebook_usage"]) * vocab_size)
  return [
    f"the dVAE's codebook has collapsed: the validation images use {used} "
    f"of {vocab_size} codes (code perplexity {float(perplexity):.2f}), so "
    "the codes say next to nothing about the images. A collapsed run "
    "rarely recovers: stop it and train again in a new --workdir with a "
    "lower config.optim.lr or config.dvae_schedule.kl_weight (the comments "
    "of dalle_jax/configs/dvae.py list settings that collapsed)."
  ]


def make_task(config: ConfigDict) -> Task:
  """Builds the dVAE task from the run config."""
  dvae_config = model_config(config)
  model = DVAE(dvae_config)
  num_steps = config.train.num_steps
  tx, learning_rate = optim.make_optimizer(config.optim, num_steps)
  temperature = temperature_schedule(config.dvae_schedule, num_steps)
  kl_weight = kl_weight_schedule(config.dvae_schedule, num_steps)
  size = config.data.image_size

  def init(rng: jax.Array) -> TrainState:
    images = jnp.zeros((1, size, size, 3), jnp.uint8)
    variables = model.init(rng, images, rng, 1.0)
    return TrainState.create(variables["params"], tx, config.optim.ema_decay)

  def loss_fn(params, images, rng, step):
    outputs = model.apply({"params": params}, images, rng, temperature(step))
    return losses.dvae_loss(
      outputs,
      images,
      kl_weight(step),
      likelihood=config.dvae_loss.likelihood,
      gaussian_scale=config.dvae_loss.gaussian_scale,
    )

  def train_step(state: TrainState, batch, rng):
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, metrics), grads = grad_fn(state.params, batch["image"], rng, state.step)
    new_state, updates = state.apply_gradients(grads)
    metrics.update(
      temperature=temperature(state.step),
      kl_weight=kl_weight(state.step),
      learning_rate=learning_rate(state.step),
      **norm_metrics(grads, updates, state.params),
    )
    return new_state, metrics

  def reconstruct(params, images):
    """Hard-code round trip: `(logits, codes [B,h,w], decoded uint8)`."""
    logits = model.apply({"params": params}, images, method=DVAE.encode_logits)
    codes = jnp.argmax(logits, axis=-1).astype(jnp.int32)  # as DVAE.encode
    decoded = model.apply({"params": params}, codes, method=DVAE.decode)
    return logits, codes, decoded

  def eval_step(params, batch, rng):
    del rng  # hard codes: no noise
    images = batch["image"]
    logits, codes, decoded = reconstruct(params, images)
    error = decoded.astype(jnp.float32) / 255.0 - images / 255.0
    mse = jnp.mean(jnp.square(error))
    metrics = {
      "mse": mse,
      "psnr": psnr(mse),
      "kl_per_cell": jnp.mean(losses.kl_to_uniform(logits)),
    }
    metrics.update(code_statistics(codes, dvae_config.vocab_size))
    return metrics

  def preview(params, batch):
    _, _, decoded = reconstruct(params, batch["image"])
    return jnp.stack([batch["image"], decoded])

  host_eval = None
  if config.data.name == "shapes" and config.train.judge_examples:
    decode_jit = jax.jit(lambda params, images: reconstruct(params, images)[2])

    def host_eval(params, sources):
      """Shapes judge on hard-code reconstructions of seen and held-out pairs."""
      metrics = {}
      for split, source in (
        ("validation", sources.eval),
        ("zero_shot", sources.extra["zero_shot"]),
      ):
        judged = evaluate.judge_transformed_examples(
          lambda images: decode_jit(params, images),
          source,
          config.train.judge_examples,
          config.data.eval_batch_size,
        )
        metrics.update({f"{split}_{k}": v for k, v in judged.items()})
      return metrics

  def eval_warnings(metrics):
    return collapse_warnings(metrics, dvae_config.vocab_size)

  return Task(
    "dvae", init, train_step, eval_step, preview, host_eval, eval_warnings
  )
