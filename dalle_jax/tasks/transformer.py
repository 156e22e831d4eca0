"""Task for stage 2, the transformer prior over [text ; image codes] (§2.2).

A frozen, already-trained dVAE (`config.dvae.workdir`) turns each batch's
images into their argmax codes inside the jitted step (no Gumbel noise, paper
footnote 6); its parameters are loaded once, replicated over the mesh and
closed over, so they are never trained, checkpointed or exported again. The
loss is `losses.dalle_loss`: 1/8 text plus 7/8 image cross-entropy.

Evaluation scores the same losses without dropout; the preview samples one
image per validation caption with the KV-cache sampler at temperature 1 and
a fixed seed, decoded by the dVAE; on Shapes the host evaluation judges one
sample for each of the first canonical captions of `validation` and
`zero_shot`.

The text vocabulary is `config.tokenizer.vocab_size + config.data.text_length`
(`text_vocab_size`): the tokenizer is trained with `tokenizer.vocab_size` as
an upper bound, so every id it emits fits, and the model's shapes follow from
the config alone.

Shape letters: B batch, S image side, L text length, W grid side,
N = W * W image tokens, T = L + N.
"""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from ml_collections import ConfigDict

from dalle_jax import checkpoint, evaluate, losses, optim, sampling, sharding
from dalle_jax import config as config_lib
from dalle_jax.data.pipeline import caption_text, read_examples
from dalle_jax.models import transformer
from dalle_jax.models.dvae import DVAE, DVAEConfig
from dalle_jax.models.transformer import Transformer, TransformerConfig
from dalle_jax.tasks import dvae as dvae_task
from dalle_jax.tasks.base import Task, norm_metrics
from dalle_jax.tokenizer import Tokenizer
from dalle_jax.train_state import TrainState

# Seed of the samples in previews and judged evaluations: the same images
# for the same captions at every evaluation, so they can be compared.
SAMPLE_SEED = 0
DVAE_TRAIN_COMMAND = (
  "python -m dalle_jax.train --config dalle_jax/configs/dvae.py --workdir {}"
)


def text_vocab_size(config: ConfigDict) -> int:
  """V + L: the BPE vocabulary bound plus one pad id per text position."""
  return config.tokenizer.vocab_size + config.data.text_length


def model_config(config: ConfigDict) -> TransformerConfig:
  """The TransformerConfig of a run config (`config.model`, text sizes)."""
  model = config.model
  model_config = TransformerConfig(
    text_vocab_size=text_vocab_size(config),
    text_length=config.data.text_length,
    image_vocab_size=model.image_vocab_size,
    grid_side=model.grid_side,
    num_layers=model.num_layers,
    num_heads=model.num_heads,
    head_dim=model.head_dim,
    embed_dim=model.embed_dim or None,
    mlp_ratio=model.mlp_ratio,
    conv_kernel=model.conv_kernel,
    conv_edge=model.conv_edge,
    attention=model.attention,
    block_size=model.block_size,
    dropout=model.dropout,
    dtype=model.dtype,
    remat=model.remat,
  )
  model_config.validate()
  return model_config


def train_flops_per_example(model: TransformerConfig) -> int:
  """Model FLOPs of one training example (forward and backward).

  The PaLM (App. B) convention: 2 FLOPs per multiply-add of every matmul,
  the backward pass twice the forward, and attention counted over the full
  T x T score matrix whatever the mask (so block-sparse layers do less work
  than counted). Per example that is

    6 * (P_blocks * T + E * V * (L - 1) + E * K * N)
      + 12 * num_layers * T**2 * H * D,

  with P_blocks the matmul weights of the blocks (4 E H D + 2 mlp_ratio E^2
  per layer) and the text and image heads applied only at the positions
  that feed them. Embedding lookups, norms and softmaxes are not counted.

  Args:
    model: the transformer's hyperparameters.

  Returns:
    FLOPs as a Python int.
  """
  width, inner = model.width, model.num_heads * model.head_dim
  length, text_length = model.sequence_length, model.text_length
  per_layer = 4 * width * inner + 2 * model.mlp_ratio * width**2
  dense = (
    model.num_layers * per_layer * length
    + width * model.text_vocab_size * (text_length - 1)
    + width * model.image_vocab_size * model.num_image_tokens
  )
  attention = model.num_layers * 2 * length**2 * inner
  return 3 * 2 * (dense + attention)


def measure_matmul_tflops(
  size: int = 1024, dtype: str = "float32", repeats: int = 10
) -> float:
  """Measured TFLOP/s of one jitted square matmul on the default device.

  The denominator of model FLOP utilisation: MFU = steps_per_second *
  model_tflops_per_step / this. It runs `repeats` timed products after one
  warm-up, so it costs well under a second at the default size on a CPU.

  Args:
    size: side of the square operands.
    dtype: operand dtype name; the product accumulates in float32.
    repeats: timed products.

  Returns:
    2 * size**3 * repeats / elapsed seconds / 1e12.
  """
  operand = jnp.ones((size, size), dtype)
  product = jax.jit(
    lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32)
  )
  product(operand, operand).block_until_ready()
  start = time.perf_counter()
  for _ in range(repeats):
    result = product(operand, operand)
  result.block_until_ready()
  elapsed = max(time.perf_counter() - start, 1e-9)
  return 2 * size**3 * repeats / elapsed / 1e12


def _missing_dvae_error(workdir: str, missing: str) -> FileNotFoundError:
  return FileNotFoundError(
    f"config.dvae.workdir={workdir!r} is not a finished dVAE run: {missing}. "
    "Train the dVAE first: " + DVAE_TRAIN_COMMAND.format(workdir or "runs/dvae")
  )


def read_dvae_config(workdir: str) -> DVAEConfig:
  """The DVAEConfig of a finished dVAE run (its config.json).

  Raises:
    FileNotFoundError: no such directory, or no config.json or params/ in it
      (names the path and the command that trains the dVAE).
    ValueError: the directory holds another stage's run.
  """
  path = os.path.join(workdir, checkpoint.CONFIG_FILE)
  if not os.path.isdir(workdir):
    raise _missing_dvae_error(workdir, "the directory does not exist")
  if not os.path.isfile(path):
    raise _missing_dvae_error(workdir, f"it has no {checkpoint.CONFIG_FILE}")
  if not os.path.isdir(os.path.join(workdir, checkpoint.PARAMS_DIR)):
    raise _missing_dvae_error(
      workdir, f"it has no exported {checkpoint.PARAMS_DIR}/ (unfinished run?)"
    )
  with open(path) as handle:
    saved = json.load(handle)
  if saved.get("task") != "dvae":
    raise ValueError(
      f"config.dvae.workdir={workdir!r} holds a {saved.get('task')!r} run, "
      "not a 'dvae' run; point it at the work directory of "
      + DVAE_TRAIN_COMMAND.format("...")
    )
  return dvae_task.model_config(ConfigDict(saved))


# What a config must share with the dVAE it reads: (what, DVAEConfig
# attribute, config field). The transformer reads codes, so all three;
# CLIP on reconstructions only sees images (`IMAGE_SIZE_FIT`).
DVAE_FITS = (
  ("image size", "image_size", "data.image_size"),
  ("grid side", "grid_size", "model.grid_side"),
  ("codebook size", "vocab_size", "model.image_vocab_size"),
)
IMAGE_SIZE_FIT = DVAE_FITS[:1]


def dvae_fit_problems(
  dvae_config: DVAEConfig, config: ConfigDict, fits=DVAE_FITS, name="config"
) -> list[str]:
  """Each way the dVAE's images, grid or codebook differ from the config's.

  Args:
    dvae_config: the dVAE's hyperparameters.
    config: the run config that reads the dVAE.
    fits: the (what, DVAEConfig attribute, config field) triples to compare.
    name: how messages name `config` (e.g. 'config.transformer').

  Returns:
    One message per differing value, naming the dVAE's and the config's.
  """
  problems = []
  for what, attribute, field in fits:
    dvae_value = getattr(dvae_config, attribute)
    value = config_lib.get_field(config, field)
    if dvae_value != value:
      problems.append(
        f"the dVAE's {what} is {dvae_value} but {name}.{field}={value}"
      )
  return problems


def check_dvae_fits(
  dvae_config: DVAEConfig, config: ConfigDict, fits=DVAE_FITS
) -> None:
  """Refuses a dVAE whose images, grid or codebook differ from the config's.

  Raises:
    ValueError: naming each differing value (`dvae_fit_problems`).
  """
  problems = dvae_fit_problems(dvae_config, config, fits)
  if problems:
    raise ValueError(
      f"The dVAE in {config.dvae.workdir!r} does not fit this config: "
      + "; ".join(problems)
      + ". Set those config fields to the dVAE's values, or train a dVAE "
      "with the config's."
    )


def load_frozen_dvae(config: ConfigDict, fits=DVAE_FITS) -> tuple[DVAE, dict]:
  """Checks and loads the dVAE of `config.dvae.workdir`, replicated.

  Args:
    config: the run config that reads the dVAE.
    fits: what the config must share with it (see `check_dvae_fits`).

  Returns:
    (the DVAE module, its exported params replicated over the config's mesh).
  """
  workdir = os.path.abspath(config.dvae.workdir) if config.dvae.workdir else ""
  dvae_config = read_dvae_config(workdir)
  check_dvae_fits(dvae_config, config, fits)
  model = DVAE(dvae_config)
  size = dvae_config.image_size
  rng = jax.random.key(0)
  boxed = jax.eval_shape(
    model.init, rng, jnp.zeros((1, size, size, 3), jnp.uint8), rng, 1.0
  )
  # Replicated on the very mesh the loop builds from the same config, so the
  # jitted steps take the params as they are, with no copy per call.
  replicated = NamedSharding(
    sharding.make_mesh(config.mesh.shape), PartitionSpec()
  )
  abstract = jax.tree.map(
    lambda leaf: jax.ShapeDtypeStruct(
      leaf.shape, leaf.dtype, sharding=replicated
    ),
    sharding.unbox(boxed)["params"],
  )
  return model, checkpoint.load_params(workdir, abstract)


def check_tokenizer_fits(tokenizer: Tokenizer, config: ConfigDict) -> None:
  """Refuses a tokenizer with more ids than the model's text vocabulary.

  Raises:
    ValueError: naming both sizes and the fix.
  """
  if tokenizer.text_length != config.data.text_length:
    raise ValueError(
      f"The tokenizer encodes {tokenizer.text_length} text positions but "
      f"config.data.text_length={config.data.text_length}; load it with the "
      "config's text length."
    )
  if tokenizer.vocab_size > text_vocab_size(config):
    raise ValueError(
      f"The tokenizer has {tokenizer.bpe_vocab_size} BPE pieces, more than "
      f"config.tokenizer.vocab_size={config.tokenizer.vocab_size}, so its ids "
      f"reach {tokenizer.vocab_size} > the model's text vocabulary "
      f"{text_vocab_size(config)}. Set config.tokenizer.vocab_size >= "
      f"{tokenizer.bpe_vocab_size}, or use a tokenizer trained with it."
    )


def make_task(config: ConfigDict, tokenizer: Tokenizer | None = None) -> Task:
  """Builds the transformer task from the run config.

  Args:
    config: the run config (see `dalle_jax/configs/transformer.py`).
    tokenizer: the run's tokenizer; checked against the text vocabulary and
      used to encode captions in the host evaluation. None (e.g. to build
      the model in a benchmark) skips both.

  Returns:
    The Task; its train metrics include `tokens_per_step` and
    `model_tflops_per_step` (see `train_flops_per_example`).
  """
  prior_config = model_config(config)
  dvae, dvae_params = load_frozen_dvae(config)
  if tokenizer is not None:
    check_tokenizer_fits(tokenizer, config)
  prior = Transformer(prior_config)
  tx, learning_rate = optim.make_optimizer(config.optim, config.train.num_steps)
  batch_size = config.data.batch_size
  throughput = {
    "tokens_per_step": float(batch_size * prior_config.sequence_length),
    "model_tflops_per_step": batch_size
    * train_flops_per_example(prior_config)
    / 1e12,
  }

  def init(rng: jax.Array) -> TrainState:
    text = jnp.zeros((1, prior_config.text_length), jnp.int32)
    codes = jnp.zeros((1, prior_config.num_image_tokens), jnp.int32)
    params = prior.init(rng, text, codes)["params"]
    return TrainState.create(params, tx, config.optim.ema_decay)

  def encode(images):
    """[B, S, S, 3] uint8 -> [B, N] int32 argmax codes of the frozen dVAE."""
    codes = dvae.apply({"params": dvae_params}, images, method=DVAE.encode)
    return codes.reshape(codes.shape[0], -1)

  def loss_fn(params, text_tokens, image_codes, rng, deterministic):
    text_logits, image_logits = prior.apply(
      {"params": params},
      text_tokens,
      image_codes,
      deterministic=deterministic,
      rngs={"dropout": rng},
    )
    return losses.dalle_loss(
      text_logits, image_logits, text_tokens, image_codes
    )

  def train_step(state: TrainState, batch, rng):
    codes = encode(batch["image"])
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, metrics), grads = grad_fn(
      state.params, batch["text_tokens"], codes, rng, False
    )
    new_state, updates = state.apply_gradients(grads)
    metrics.update(
      learning_rate=learning_rate(state.step),
      **norm_metrics(grads, updates, state.params),
      **{name: jnp.float32(value) for name, value in throughput.items()},
    )
    return new_state, metrics

  def eval_step(params, batch, rng):
    codes = encode(batch["image"])
    _, metrics = loss_fn(params, batch["text_tokens"], codes, rng, True)
    return metrics

  def generate(params, text_tokens, prompt_indices):
    """[B, L] text, [B] prompt ids -> [B, S, S, 3] uint8 sampled images."""
    first_logits, cache = transformer.prefill(prior_config, params, text_tokens)
    codes = sampling.sample_image_codes(
      functools.partial(transformer.decode_step, prior_config, params),
      first_logits,
      cache,
      sampling.row_keys(
        SAMPLE_SEED, prompt_indices, jnp.zeros_like(prompt_indices)
      ),
      prior_config.num_image_tokens,
      temperature=1.0,
    )
    side = prior_config.grid_side
    grid = codes.reshape(codes.shape[0], side, side)
    return dvae.apply({"params": dvae_params}, grid, method=DVAE.decode)

  def preview(params, batch):
    prompts = jnp.arange(batch["text_tokens"].shape[0])
    samples = generate(params, batch["text_tokens"], prompts)
    return jnp.stack([batch["image"], samples])

  host_eval = None
  if (
    config.data.name == "shapes"
    and config.train.judge_examples
    and tokenizer is not None
  ):
    generate_jit = jax.jit(generate)

    def host_eval(params, sources):
      """Judges one sample per canonical caption, seen and held-out pairs."""
      metrics = {}
      for split, source in (
        ("validation", sources.eval),
        ("zero_shot", sources.extra["zero_shot"]),
      ):
        judged = judge_samples(
          lambda text, indices: generate_jit(params, text, indices),
          tokenizer,
          source,
          config.train.judge_examples,
          config.data.eval_batch_size,
        )
        metrics.update({f"{split}_{k}": v for k, v in judged.items()})
      return metrics

  return Task("transformer", init, train_step, eval_step, preview, host_eval)


def judge_samples(
  generate_fn, tokenizer: Tokenizer, source, num_examples: int, batch_size
) -> dict[str, float]:
  """Samples an image for each of the first canonical captions and judges it.

  Args:
    generate_fn: `([B, L] int32 text, [B] int32 prompt ids) -> [B, S, S, 3]
      uint8`; called on full batches only (so it compiles once).
    tokenizer: encodes the captions.
    source: a Shapes split with a `canonical_caption` field.
    num_examples: how many examples, from the start (rounded down to whole
      batches, at least one batch).
    batch_size: captions per call.

  Returns:
    `evaluate.judge_images` metrics over all judged samples.
  """
  num_batches = max(min(num_examples, len(source)) // batch_size, 1)
  captions, images = [], []
  for b in range(num_batches):
    indices = np.arange(b * batch_size, (b + 1) * batch_size, dtype=np.int32)
    examples = read_examples(source, indices)
    batch_captions = [caption_text(e, "canonical_caption") for e in examples]
    text = tokenizer.encode(batch_captions).astype(np.int32)
    images.append(np.asarray(generate_fn(text, indices)))
    captions.extend(batch_captions)
  return evaluate.judge_images(captions, np.concatenate(images))
