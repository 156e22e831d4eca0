"""Task for the CLIP reranker (paper §2.6; Radford et al. 2021).

Trains `models.clip.CLIP` from scratch on the run's captioned images with
the symmetric contrastive loss (`losses.clip_contrastive_loss`): in a batch
of B pairs, each image must pick out its own caption among the B and each
caption its own image. The log temperature is learned and clamped to
[0, ln 100] after every update (`losses.clamp_logit_scale`).

With `config.data.hard_negatives` K > 0 (Shapes), each image also meets K
captions of its own with one object's shape swapped (a seen pair still;
`data.pipeline.hard_negative_tokens`; a colour can be swapped too), so
that the image->text side must tell shapes apart for the same colours and
layout, which is what reranking a prompt's candidates asks; random in-batch
captions mostly differ in colour. With `config.data.negative_images`, each
caption also meets its image's twin with one object redrawn as another shape
(`shapes.swapped_shape_image`): the text->image side, the direction in which
the reranker compares one prompt's candidates, must then tell shapes apart
at equal colours and layout too. With `config.data.image_jitter` j > 0,
each training image is moved by up to j pixels each way, at random
(`jittered_images`; off by default, see `dalle_jax/configs/clip.py`).

Evaluation reports the loss and zero-shot retrieval accuracy on each
evaluation batch (see `retrieval_accuracy`); on Shapes the host evaluation
adds the same metrics on the `zero_shot` split, whose (colour, shape) pairs
training never shows. The preview ranks the batch's images for each caption.

`score` is what the reranker calls: the scaled cosine similarity of each
image with its caption.

The text vocabulary is `config.tokenizer.vocab_size + config.data.text_length`
(`tasks.transformer.text_vocab_size`), so the model's shapes follow from the
config alone, as in the transformer stage.

Shape letters: B batch, S image side, L text length.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from dalle_jax import config as config_lib
from dalle_jax import losses, optim
from dalle_jax.data import pipeline
from dalle_jax.models.clip import (
  CLIP,
  POOL_FIRST_AT_LEAST,
  CLIPConfig,
  preprocess_images,
)
from dalle_jax.models.dvae import DVAE
from dalle_jax.tasks import transformer as transformer_task
from dalle_jax.tasks.base import Task, norm_metrics
from dalle_jax.tokenizer import Tokenizer
from dalle_jax.train_state import TrainState

# The Shapes split of held-out (colour, shape) pairs, evaluated on the host.
HELD_OUT_SPLIT = "zero_shot"


def model_config(config: ConfigDict) -> CLIPConfig:
  """The CLIPConfig of a run config (`config.model`, image and text sizes).

  Captions are pooled at the first id >= the BPE bound V =
  `config.tokenizer.vocab_size` (text_pooling 'first_at_least'), or at
  L - 1 when there is none. Runs load their tokenizer with pad base V, so
  position p pads with V + p whatever number of pieces the captions
  supported (Shapes captions support 233 of 256), and the pooled position
  is the first pad: the end of the caption.

  Args:
    config: the run config (see `dalle_jax/configs/clip.py`).

  Returns:
    The model's hyperparameters.
  """
  model = config.model
  return CLIPConfig(
    image_size=config.data.image_size,
    patch_size=model.patch_size,
    # Runs saved before the stem existed have no such field: no stem.
    stem_widths=tuple(model.get("stem_widths", ())),
    vision_width=model.vision_width,
    vision_layers=model.vision_layers,
    vision_heads=model.vision_heads,
    text_vocab_size=transformer_task.text_vocab_size(config),
    text_length=config.data.text_length,
    text_width=model.text_width,
    text_layers=model.text_layers,
    text_heads=model.text_heads,
    embed_dim=model.embed_dim,
    mlp_ratio=model.mlp_ratio,
    activation=model.activation,
    text_pooling=POOL_FIRST_AT_LEAST,
    eos_token=config.tokenizer.vocab_size,
  )


def _edge_padded(images: jax.Array, margin: int) -> jax.Array:
  """`[B, S, S, C] -> [B, S + 2m, S + 2m, C]`: each side's edge pixels
  repeated `margin` times, the rule every moved copy of an image follows."""
  return jnp.pad(
    images, ((0, 0), (margin, margin), (margin, margin), (0, 0)), mode="edge"
  )


def shifted_views(images: jax.Array, shift: int) -> jax.Array:
  """The images moved by every (dy, dx) in {-shift, 0, shift}^2.

  Pixels moved in at an edge repeat that edge (black on Shapes, whose
  objects never touch the border). Pure and jittable with `shift` static.

  Args:
    images: `[B, S, S, 3] uint8`.
    shift: pixels, >= 0; 0 gives the images alone.

  Returns:
    `[V, B, S, S, 3] uint8`, V = 9 (1 for shift 0), the unmoved images
    first.
  """
  if shift == 0:
    return images[None]
  side = images.shape[1]
  padded = _edge_padded(images, shift)
  offsets = [(shift, shift)] + [
    (shift + dy, shift + dx)
    for dy in (-shift, 0, shift)
    for dx in (-shift, 0, shift)
    if (dy, dx) != (0, 0)
  ]
  return jnp.stack([padded[:, r : r + side, c : c + side] for r, c in offsets])


def jittered_images(
  images: jax.Array, jitter: int, rng: jax.Array
) -> jax.Array:
  """Each image moved by its own (dy, dx), drawn uniformly from the
  moves by at most `jitter` pixels along each axis.

  Pixels moved in at an edge repeat that edge, as in `shifted_views`: with
  `jitter` 1, each output is one of the image's 9 views there. Pure and
  jittable with `jitter` static.

  Args:
    images: `[B, S, S, C]`.
    jitter: the largest move in pixels, >= 0; 0 gives the images back.
    rng: a PRNG key; the same key gives the same moves.

  Returns:
    `[B, S, S, C]`, the input's dtype.
  """
  if jitter == 0:
    return images
  batch, side, _, channels = images.shape
  padded = _edge_padded(images, jitter)
  # The top-left corner of each window in the padded image: jitter means
  # no move.
  corners = jax.random.randint(rng, (batch, 2), 0, 2 * jitter + 1)

  def window(image, corner):
    return jax.lax.dynamic_slice(
      image, (corner[0], corner[1], 0), (side, side, channels)
    )

  return jax.vmap(window)(padded, corners)


def _embed(
  model: CLIP, views: jax.Array, text_tokens: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Unit embeddings of both towers and the stored log scale.

  `views` `[V, B, S, S, 3]`: each image is embedded as the renormalised
  mean of its V views' unit embeddings.
  """
  count, batch = views.shape[:2]
  flat = views.reshape(count * batch, *views.shape[2:])
  per_view = model.embed_image(preprocess_images(flat))
  mean = per_view.reshape(count, batch, -1).mean(axis=0)
  return (
    mean / jnp.linalg.norm(mean, axis=-1, keepdims=True),
    model.embed_text(text_tokens),
    model.logit_scale,
  )


def score(
  clip_config: CLIPConfig,
  params,
  images: jax.Array,
  text_tokens: jax.Array,
  image_shift: int = 0,
) -> jax.Array:
  """Scaled cosine similarity of each image with its caption.

  Pure and jittable with `clip_config` and `image_shift` static, e.g.
  `jax.jit(score, static_argnums=(0, 4))`.

  With `image_shift` s > 0 each image is embedded as the mean over its
  copies moved by s pixels (`shifted_views`, 9 views): a test-time average
  over the sub-patch positions at which the patch grid and the stem's
  strided convolutions see an object (see `rerank.DEFAULT_CLIP_IMAGE_SHIFT`
  for what it measured), at 9x the image tower's cost.

  Args:
    clip_config: the model's hyperparameters (`model_config(run_config)`).
    params: the CLIP `params` collection (boxed or not), e.g. the export of
      a CLIP run.
    images: `[B, S, S, 3] uint8` RGB, S = `clip_config.image_size`.
    text_tokens: `[B, L] int32` captions, row b belonging to image b; or
      `[1, L]` to score every image against one caption (embedded once).
    image_shift: pixels, >= 0; 0 embeds each image once.

  Returns:
    `[B] float32`, `exp(logit_scale) * cos(image b, caption b)`; higher
    means a better match.
  """
  image_embeddings, text_embeddings, logit_scale = CLIP(clip_config).apply(
    {"params": params},
    shifted_views(images, image_shift),
    text_tokens,
    method=_embed,
  )
  cosines = jnp.sum(image_embeddings * text_embeddings, axis=-1)
  return jnp.exp(logit_scale) * cosines


def retrieval_accuracy(
  logits_per_image: jax.Array, text_tokens: jax.Array
) -> dict[str, jax.Array]:
  """Top-1 retrieval within one batch, counting equal captions as correct.

  A Shapes evaluation batch can hold several images with the same canonical
  caption (e.g. two "a red circle above a blue square" scenes drawn with
  different jitter), and then no model can tell which of the equal captions
  belongs to which image. So a retrieval counts as correct when the
  retrieved caption's tokens equal the true caption's tokens: for an
  image, the best-scoring caption is token for token its own caption; for
  a caption, the best-scoring image is one whose caption equals it.

  Args:
    logits_per_image: `[B, B] float` similarities, rows images, columns
      captions.
    text_tokens: `[B, L] int32`, caption b belonging to image b.

  Returns:
    float32 scalars: `image_to_text_top1`, `text_to_image_top1` (fractions
    of correct retrievals) and `chance_top1` (the expected accuracy of a
    uniformly random pick, above 1 / B when captions repeat).
  """
  same_caption = jnp.all(
    text_tokens[:, None, :] == text_tokens[None, :, :], axis=-1
  )  # [B, B]: caption i equals caption j
  rows = jnp.arange(logits_per_image.shape[0])
  best_caption = jnp.argmax(logits_per_image, axis=1)  # per image
  best_image = jnp.argmax(logits_per_image, axis=0)  # per caption
  fraction = functools.partial(jnp.mean, dtype=jnp.float32)
  return {
    "image_to_text_top1": fraction(same_caption[rows, best_caption]),
    "text_to_image_top1": fraction(same_caption[best_image, rows]),
    "chance_top1": fraction(same_caption),
  }


def ranked_images(images: jax.Array, logits_per_image: jax.Array) -> jax.Array:
  """For each caption, its own image and then the batch ranked by score.

  Args:
    images: `[B, S, S, 3] uint8`.
    logits_per_image: `[B, B] float`, rows images, columns captions.

  Returns:
    `[B, B + 1, S, S, 3] uint8`: row c is image c (the one caption c came
    with), then all B images from the best to the worst match of caption c.
  """
  order = jnp.argsort(-logits_per_image.T, axis=1)  # [captions, images]
  return jnp.concatenate([images[:, None], images[order]], axis=1)


def reconstructs_images(config: ConfigDict) -> bool:
  """Whether CLIP sees the dVAE's reconstructions (`config.dvae`)."""
  return bool(config.get("dvae") and config.dvae.get("reconstruct", False))


def _image_view(config: ConfigDict):
  """`[B, S, S, 3] uint8 -> [B, S, S, 3] uint8`: the images CLIP sees.

  The identity, or with `config.dvae.reconstruct` the frozen dVAE's
  reconstruction (argmax codes, then their decoding): the domain of the
  candidates CLIP reranks, in which a plus's thin arms blur.
  """
  if not reconstructs_images(config):
    return lambda images: images
  dvae, dvae_params = transformer_task.load_frozen_dvae(
    config, transformer_task.IMAGE_SIZE_FIT
  )
  variables = {"params": dvae_params}

  def reconstruct(images):
    codes = dvae.apply(variables, images, method=DVAE.encode)
    return dvae.apply(variables, codes, method=DVAE.decode)

  return reconstruct


def make_task(config: ConfigDict, tokenizer: Tokenizer | None = None) -> Task:
  """Builds the CLIP task from the run config.

  Args:
    config: the run config (see `dalle_jax/configs/clip.py`).
    tokenizer: the run's tokenizer; checked against the text vocabulary and
      used to encode the held-out captions of the host evaluation. None
      (e.g. to build the model in a benchmark) skips both.

  Returns:
    The Task.
  """
  clip_config = model_config(config)
  if tokenizer is not None:
    transformer_task.check_tokenizer_fits(tokenizer, config)
  model = CLIP(clip_config)
  tx, learning_rate = optim.make_optimizer(config.optim, config.train.num_steps)
  seen_images = _image_view(config)
  jitter = config_lib.check_image_jitter(config.data)

  def init(rng: jax.Array) -> TrainState:
    side = clip_config.image_size
    images = jnp.zeros((1, side, side, 3), jnp.float32)
    tokens = jnp.zeros((1, clip_config.text_length), jnp.int32)
    params = model.init(rng, images, tokens)["params"]
    return TrainState.create(params, tx, config.optim.ema_decay)

  def view_similarities(params, viewed_images, text_tokens):
    """Like `similarities`, for images already in the view CLIP sees."""
    logits_per_image, _ = model.apply(
      {"params": params}, preprocess_images(viewed_images), text_tokens
    )
    return logits_per_image

  def similarities(params, images, text_tokens):
    """`[B, N] float32` scaled similarities of B images and N captions."""
    return view_similarities(params, seen_images(images), text_tokens)

  def loss_fn(params, batch, rng):
    captions = batch["text_tokens"]
    batch_size = captions.shape[0]
    negatives = batch.get("negative_text_tokens")
    negative_images = batch.get("negative_image")
    # One pass of each tower over everything the batch holds: the B images
    # (then their B negative images), the B captions (then their B x K
    # negative captions).
    tokens, images = captions, batch["image"]
    if negatives is not None:
      count, length = negatives.shape[1:]
      tokens = jnp.concatenate(
        [captions, negatives.reshape(batch_size * count, length)]
      )
    if negative_images is not None:
      images = jnp.concatenate([images, negative_images])
    images = jittered_images(images, jitter, rng)
    logits = similarities(params, images, tokens)  # [B (+B), B (+B*K)]
    rows = jnp.arange(batch_size)
    own_negatives = None
    if negatives is not None:
      own_negatives = logits[:batch_size, batch_size:].reshape(
        batch_size, batch_size, count
      )[rows, rows]
    negative_image_logits = None
    if negative_images is not None:
      # Caption i against image i's shape-swapped twin: [B, 1].
      negative_image_logits = logits[batch_size + rows, rows][:, None]
    return losses.clip_contrastive_loss(
      logits[:batch_size, :batch_size], own_negatives, negative_image_logits
    )

  def train_step(state: TrainState, batch, rng):
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, metrics), grads = grad_fn(state.params, batch, rng)
    new_state, updates = state.apply_gradients(grads)
    # The EMA is clamped too, so evaluated and exported scales stay <= 100.
    new_state = new_state.replace(
      params=losses.clamp_logit_scale(new_state.params),
      ema_params=(
        None
        if new_state.ema_params is None
        else losses.clamp_logit_scale(new_state.ema_params)
      ),
    )
    metrics.update(
      logit_scale=new_state.params["logit_scale"],
      learning_rate=learning_rate(state.step),
      **norm_metrics(grads, updates, state.params),
    )
    return new_state, metrics

  def eval_metrics(params, batch):
    logits_per_image = similarities(
      params, batch["image"], batch["text_tokens"]
    )
    _, metrics = losses.clip_contrastive_loss(logits_per_image)
    # In-batch accuracies by index are misleading when captions repeat;
    # retrieval_accuracy replaces them.
    del metrics["image_to_text_accuracy"], metrics["text_to_image_accuracy"]
    metrics.update(retrieval_accuracy(logits_per_image, batch["text_tokens"]))
    metrics["logit_scale"] = params["logit_scale"]
    return metrics

  def eval_step(params, batch, rng):
    del rng  # deterministic
    return eval_metrics(params, batch)

  def preview(params, batch):
    # The ranked images are the ones CLIP saw: viewed (reconstructed) once.
    viewed = seen_images(batch["image"])
    logits = view_similarities(params, viewed, batch["text_tokens"])
    return ranked_images(viewed, logits)

  host_eval = None
  if config.data.name == "shapes" and tokenizer is not None:
    eval_jit = jax.jit(eval_metrics)

    def host_eval(params, sources):
      """Loss and retrieval on held-out (colour, shape) pairs."""
      # Read again at each evaluation: a few PNGs, no state to keep.
      source = sources.extra[HELD_OUT_SPLIT]
      batches = held_out_batches(source, tokenizer, config)
      records = jax.device_get([eval_jit(params, b) for b in batches])
      return {
        f"{HELD_OUT_SPLIT}_{name}": float(np.mean([r[name] for r in records]))
        for name in records[0]
        if name != "logit_scale"
      }

  return Task("clip", init, train_step, eval_step, preview, host_eval)


def held_out_batches(
  source, tokenizer: Tokenizer, config: ConfigDict
) -> list[dict[str, np.ndarray]]:
  """The first evaluation batches of a split, as host numpy arrays.

  Args:
    source: a random-access split with `image` and `caption` fields.
    tokenizer: encodes the captions.
    config: supplies `data.eval_batch_size`, `data.image_size` and
      `train.eval_batches` (at most that many whole batches, at least one).

  Returns:
    Batches `{"image": [B, S, S, 3] uint8, "text_tokens": [B, L] int32}`.
  """
  batch_size = config.data.eval_batch_size
  num_batches = max(
    min(config.train.eval_batches, len(source) // batch_size), 1
  )
  batches = []
  for b in range(num_batches):
    indices = range(b * batch_size, min((b + 1) * batch_size, len(source)))
    examples = pipeline.read_examples(source, indices)
    batches.append(
      pipeline.batch_features(examples, config.data.image_size, tokenizer)
    )
  return batches
