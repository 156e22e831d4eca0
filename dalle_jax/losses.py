"""Pure loss functions and the pixel maps they rely on.

The dVAE objective (paper §2.1, App. A.2, A.3), the transformer prior's
weighted text/image cross-entropy (§2.2) and CLIP's symmetric contrastive
loss with its temperature clamp (the reranker, §2.6).

Shape letters: B batch, H/W image height/width in pixels, C image channels,
h/w code-grid height/width, K codebook size (image vocabulary), L text
length, V text vocabulary, N image tokens.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

LOGIT_LAPLACE_EPS = 0.1  # App. A.3; also `dall_e/utils.py`.


def pixels_to_unit(images: jax.Array) -> jax.Array:
  """Brings pixels to float32 in [0, 1].

  Args:
    images: `[...]` uint8 in [0, 255] (divided by 255), or any float dtype
      already in [0, 1] (only cast to float32).

  Returns:
    `[...]` float32 in [0, 1].
  """
  if jnp.issubdtype(images.dtype, jnp.integer):
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def map_pixels(x: jax.Array, eps: float = LOGIT_LAPLACE_EPS) -> jax.Array:
  """Squeezes [0, 1] into [eps, 1 - eps], where the logit is finite.

  Args:
    x: `[...]` float in [0, 1].
    eps: margin kept from 0 and 1.

  Returns:
    `[...]` same dtype, `(1 - 2 eps) x + eps`.
  """
  return (1 - 2 * eps) * x + eps


def unmap_pixels(x: jax.Array, eps: float = LOGIT_LAPLACE_EPS) -> jax.Array:
  """Inverse of `map_pixels`, clipped to [0, 1].

  Args:
    x: `[...]` float, e.g. the sigmoid of the decoder's location channels.
    eps: the margin `map_pixels` used.

  Returns:
    `[...]` same dtype, in [0, 1].
  """
  return jnp.clip((x - eps) / (1 - 2 * eps), 0.0, 1.0)


def logit_laplace_nll(
  x_mapped: jax.Array, loc: jax.Array, log_scale: jax.Array
) -> jax.Array:
  """Negative log density of the logit-Laplace distribution (App. A.3).

  The density on (0, 1) is
  `f(x | mu, b) = exp(-|logit(x) - mu| / b) / (2 b x (1 - x))`:
  a Laplace density in logit space times the Jacobian `1 / (x (1 - x))` of
  the logit, so it integrates to 1 over (0, 1).

  Args:
    x_mapped: `[B, H, W, C]` float, pixels already passed through
      `map_pixels` (so strictly inside (0, 1)).
    loc: `[B, H, W, C]` float, `mu`, the location in logit space.
    log_scale: `[B, H, W, C]` float, `ln b`.

  Returns:
    `[B, H, W, C]` float32, `-ln f(x_mapped | loc, exp(log_scale))` per
    sub-pixel.
  """
  x = x_mapped.astype(jnp.float32)
  loc = loc.astype(jnp.float32)
  log_scale = log_scale.astype(jnp.float32)
  log_x = jnp.log(x)
  log_one_minus_x = jnp.log1p(-x)
  logit_x = log_x - log_one_minus_x
  return (
    jnp.abs(logit_x - loc) * jnp.exp(-log_scale)
    + jnp.log(2.0)
    + log_scale
    + log_x
    + log_one_minus_x
  )


def gaussian_nll(
  x_mapped: jax.Array, loc: jax.Array, scale: float
) -> jax.Array:
  """Negative log density of N(sigmoid(loc), scale**2) at the mapped pixels.

  The alternative likelihood (`likelihood='gaussian'`): a fixed-scale
  Gaussian on the mapped pixels, i.e. a scaled squared error between
  `sigmoid(loc)` and `map_pixels(x)`. It predicts a mean, where the
  logit-Laplace predicts a median; see `dvae_loss` for why that matters.

  Args:
    x_mapped: `[B, H, W, C]` float, pixels passed through `map_pixels`.
    loc: `[B, H, W, C]` float, the decoder's location channels (logits).
    scale: the fixed standard deviation, in mapped-pixel units.

  Returns:
    `[B, H, W, C]` float32 nats per sub-pixel.
  """
  mean = jax.nn.sigmoid(loc.astype(jnp.float32))
  error = (x_mapped.astype(jnp.float32) - mean) / scale
  return 0.5 * jnp.square(error) + math.log(scale) + 0.5 * math.log(2 * math.pi)


LIKELIHOODS = ("logit_laplace", "gaussian")


def gumbel_softmax(
  logits: jax.Array, rng: jax.Array, temperature: float | jax.Array
) -> jax.Array:
  """Relaxed one-hot sample: `softmax((logits + g) / temperature)`.

  Used in both the forward and the backward pass (no straight-through), as
  the paper's authors describe (openai/DALL-E#1).

  Args:
    logits: `[..., K]` float.
    rng: a PRNG key for the Gumbel(0, 1) noise `g`.
    temperature: positive scalar (may be traced, e.g. from a schedule).

  Returns:
    `[..., K]` float32 whose last axis sums to 1.
  """
  logits = logits.astype(jnp.float32)
  noise = jax.random.gumbel(rng, logits.shape, jnp.float32)
  return jax.nn.softmax((logits + noise) / temperature, axis=-1)


def kl_to_uniform(logits: jax.Array) -> jax.Array:
  """KL(softmax(logits) || uniform over K), per position.

  Equals `ln K - entropy(softmax(logits))`; the paper computes it from the
  encoder logits even while the relaxation is in use (openai/DALL-E#26).

  Args:
    logits: `[..., K]` float.

  Returns:
    `[...]` float32, non-negative.
  """
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  num_codes = logits.shape[-1]
  return jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1) + jnp.log(num_codes)


def dvae_loss(
  outputs: dict[str, jax.Array],
  images: jax.Array,
  kl_weight: float | jax.Array,
  likelihood: str = "logit_laplace",
  gaussian_scale: float = 0.05,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The dVAE objective, per image divided by the number of sub-pixels.

  Per image: `[sum of pixel NLL + kl_weight * sum of per-cell KL] /
  (H * W * C)` (App. A.2: the paper divides by 256 * 256 * 3), then averaged
  over the batch. So with the paper's beta = 6.6 at 256 px the KL weight per
  cell is effectively 6.6 / 192.

  The pixel likelihood is the paper's logit-Laplace by default. On images
  that are mostly one flat background (Shapes), we measured it collapse the
  code on the CPU budget (KL 0.01 nats per cell, 33 of 512 codes, PSNR 14 dB
  after 400 steps, learned or fixed scale): a Laplace predicts the median,
  which for any pixel the code does not yet pin down is the background, so
  the decoder never learns to use the code. `likelihood='gaussian'` (a
  fixed-scale Gaussian on the mapped pixels, a mean predictor) trains there.

  Args:
    outputs: the dict returned by `DVAE.__call__`; reads `logits`
      `[B, h, w, K]`, `loc` and `log_scale` `[B, H, W, C]` float32.
    images: `[B, H, W, C]` uint8 in [0, 255] or float in [0, 1]: the images
      the model was called on (after any grayscale-to-RGB conversion).
    kl_weight: scalar beta (may be traced, e.g. from a schedule).
    likelihood: one of LIKELIHOODS; 'gaussian' ignores `log_scale`.
    gaussian_scale: the Gaussian's standard deviation in mapped-pixel
      units (only for 'gaussian').

  Returns:
    `(loss, metrics)`: `loss` a float32 scalar; `metrics` float32 scalars
    `loss`, `nll_per_subpixel` (nats), `kl_per_cell` (nats), `mse` of the
    reconstruction in [0, 1] pixel units, and `codebook_perplexity` (exp of
    the entropy of the batch-averaged code distribution; K means every code
    is used equally).

  Raises:
    ValueError: if `images` does not have the shape of `outputs['loc']`, or
      `likelihood` is not one of LIKELIHOODS.
  """
  if likelihood not in LIKELIHOODS:
    raise ValueError(
      f"likelihood={likelihood!r} is not known; use one of {LIKELIHOODS}."
    )
  loc, log_scale = outputs["loc"], outputs["log_scale"]
  if images.shape != loc.shape:
    raise ValueError(
      f"images have shape {images.shape} but the decoder produced "
      f"{loc.shape}; pass the [B, H, W, C] images the model was called on "
      "(repeat grayscale images to C channels first)."
    )
  pixels = pixels_to_unit(images)
  if likelihood == "gaussian":
    nll = gaussian_nll(map_pixels(pixels), loc, gaussian_scale)
  else:
    nll = logit_laplace_nll(map_pixels(pixels), loc, log_scale)
  kl = kl_to_uniform(outputs["logits"])
  subpixels_per_image = nll[0].size
  nll_per_image = jnp.sum(nll, axis=(1, 2, 3))
  kl_per_image = jnp.sum(kl, axis=(1, 2))
  loss = jnp.mean(nll_per_image + kl_weight * kl_per_image)
  loss = loss / subpixels_per_image
  reconstruction = unmap_pixels(jax.nn.sigmoid(loc))
  metrics = {
    "loss": loss,
    "nll_per_subpixel": jnp.mean(nll),
    "kl_per_cell": jnp.mean(kl),
    "mse": jnp.mean(jnp.square(reconstruction - pixels)),
    "codebook_perplexity": _codebook_perplexity(outputs["logits"]),
  }
  return loss, metrics


def _codebook_perplexity(logits: jax.Array) -> jax.Array:
  """exp(entropy) of the code distribution averaged over batch and grid.

  Args:
    logits: `[B, h, w, K]` float.

  Returns:
    float32 scalar in [1, K].
  """
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  mean_probs = jnp.mean(probs.reshape(-1, probs.shape[-1]), axis=0)
  entropy = -jnp.sum(mean_probs * jnp.log(jnp.maximum(mean_probs, 1e-30)))
  return jnp.exp(entropy)


# The transformer prior's loss (paper §2.2): text_logits[:, j] predicts
# text_tokens[:, j + 1] and image_logits[:, i] predicts image_codes[:, i].

TEXT_WEIGHT = 1 / 8  # paper §2.2
IMAGE_WEIGHT = 7 / 8


def _token_cross_entropy(logits: jax.Array, targets: jax.Array):
  """Per-token cross-entropy in nats and whether the argmax was right.

  Args:
    logits: [B, S, C] float.
    targets: [B, S] int in [0, C).

  Returns:
    ([B, S] float32 nats, [B, S] bool argmax == target).
  """
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  target_log_probs = jnp.take_along_axis(
    log_probs, targets[..., None].astype(jnp.int32), axis=-1
  )[..., 0]
  correct = jnp.argmax(logits, axis=-1) == targets
  return -target_log_probs, correct


def _check_shapes(text_logits, image_logits, text_tokens, image_codes):
  batch, length = text_tokens.shape
  expected = {
    "text_logits": (text_logits.shape[:2], (batch, length - 1)),
    "image_logits": (image_logits.shape[:2], tuple(image_codes.shape)),
  }
  for name, (got, want) in expected.items():
    if tuple(got) != want:
      raise ValueError(
        f"{name} has leading shape {tuple(got)}; expected {want} for"
        f" text_tokens {tuple(text_tokens.shape)} and image_codes"
        f" {tuple(image_codes.shape)}. Pass the outputs of"
        " Transformer.__call__ on these tokens."
      )


def dalle_loss(
  text_logits: jax.Array,
  image_logits: jax.Array,
  text_tokens: jax.Array,
  image_codes: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(1/8) text cross-entropy + (7/8) image cross-entropy.

  Each cross-entropy is the mean over the tokens of its kind in the batch
  (the paper normalises each by its token count). Pad tokens are real text
  tokens (one per position) and are scored like any other.

  Args:
    text_logits: [B, L-1, V] float; [:, j] predicts text_tokens[:, j+1].
    image_logits: [B, N, K] float; [:, i] predicts image_codes[:, i].
    text_tokens: [B, L] int32.
    image_codes: [B, N] int32.

  Returns:
    loss: float32 scalar, the training objective.
    metrics: float32 scalars
      - text_loss: mean text cross-entropy, nats per text token (0 when
        L = 1: no text token is predicted).
      - image_loss: mean image cross-entropy, nats per image token.
      - image_bits_per_token: image_loss / ln 2, bits per image token. An
        image token is one dimension of the discrete latent, so this is the
        prior's bits per (latent) dimension; times N it is the bits of a
        whole image's codes.
      - text_accuracy, image_accuracy: fraction of argmax hits.
      - loss: the objective again.

  Raises:
    ValueError: if the logits do not fit the tokens' shapes.
  """
  _check_shapes(text_logits, image_logits, text_tokens, image_codes)
  image_nats, image_hits = _token_cross_entropy(image_logits, image_codes)
  image_loss = jnp.mean(image_nats)
  image_accuracy = jnp.mean(image_hits.astype(jnp.float32))
  if text_logits.shape[1]:
    text_nats, text_hits = _token_cross_entropy(text_logits, text_tokens[:, 1:])
    text_loss = jnp.mean(text_nats)
    text_accuracy = jnp.mean(text_hits.astype(jnp.float32))
  else:
    text_loss = text_accuracy = jnp.zeros((), jnp.float32)
  loss = TEXT_WEIGHT * text_loss + IMAGE_WEIGHT * image_loss
  metrics = {
    "loss": loss,
    "text_loss": text_loss,
    "image_loss": image_loss,
    "image_bits_per_token": image_loss / math.log(2),
    "text_accuracy": text_accuracy,
    "image_accuracy": image_accuracy,
  }
  return loss, metrics


# CLIP (Radford et al. 2021): image i's caption is caption i in the batch.

# open_clip clamps the stored log scale to [0, ln 100] after each step.
LOGIT_SCALE_MAX = math.log(100.0)


def clip_contrastive_loss(
  logits_per_image: jax.Array,
  negative_logits: jax.Array | None = None,
  negative_image_logits: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Symmetric InfoNCE: image i's caption is caption i, and vice versa.

  Args:
    logits_per_image: `[B, B] float` scaled similarities, rows images,
      columns captions (the first output of `CLIP.__call__`).
    negative_logits: optional `[B, K] float`, image i's similarities with K
      hard-negative captions of its own (captions that differ from its
      scene in one detail). They join the candidates of image i's
      image->text cross-entropy only: a negative caption has no image, so
      text->image is unchanged.
    negative_image_logits: optional `[B, M] float`, caption i's
      similarities with M hard-negative images of its own (its image with
      one detail changed). They join the candidates of caption i's
      text->image cross-entropy only, symmetrically.

  Returns:
    `(loss, metrics)`: `loss` a float32 scalar, the mean of the
    image->text and text->image cross-entropies with labels `arange(B)`;
    `metrics` float32 scalars `loss`, `image_to_text_loss`,
    `text_to_image_loss`, `image_to_text_accuracy` (fraction of images
    whose most similar caption is their own) and `text_to_image_accuracy`;
    with negatives also `hard_negative_accuracy`, the fraction of (image,
    negative) pairs where the image's own caption scores higher; with
    negative images `negative_image_accuracy`, the same for (caption,
    negative image) pairs.
  """
  logits = logits_per_image.astype(jnp.float32)
  diagonal = jnp.diagonal(logits)
  image_rows = logits
  if negative_logits is not None:
    image_rows = jnp.concatenate(
      [logits, negative_logits.astype(jnp.float32)], axis=1
    )
  text_rows = logits.T  # [captions, images]
  if negative_image_logits is not None:
    text_rows = jnp.concatenate(
      [text_rows, negative_image_logits.astype(jnp.float32)], axis=1
    )
  image_to_text = jnp.mean(jax.nn.logsumexp(image_rows, axis=1) - diagonal)
  text_to_image = jnp.mean(jax.nn.logsumexp(text_rows, axis=1) - diagonal)
  loss = (image_to_text + text_to_image) / 2
  labels = jnp.arange(logits.shape[0])
  metrics = {
    "loss": loss,
    "image_to_text_loss": image_to_text,
    "text_to_image_loss": text_to_image,
    "image_to_text_accuracy": jnp.mean(
      jnp.argmax(image_rows, axis=1) == labels
    ),
    "text_to_image_accuracy": jnp.mean(jnp.argmax(text_rows, axis=1) == labels),
  }
  if negative_logits is not None:
    metrics["hard_negative_accuracy"] = jnp.mean(
      diagonal[:, None] > negative_logits, dtype=jnp.float32
    )
  if negative_image_logits is not None:
    metrics["negative_image_accuracy"] = jnp.mean(
      diagonal[:, None] > negative_image_logits, dtype=jnp.float32
    )
  return loss, metrics


def clamp_logit_scale(params: dict, maximum: float = LOGIT_SCALE_MAX) -> dict:
  """Clips `params['logit_scale']` to [0, maximum] (call after each update).

  Args:
    params: the `params` collection of `CLIP`, boxed or unboxed.
    maximum: upper bound of the log scale; ln 100 caps the scale at 100.

  Returns:
    A shallow copy of `params` with the clipped `logit_scale`.

  Raises:
    KeyError: if `params` has no top-level 'logit_scale'.
  """
  if "logit_scale" not in params:
    raise KeyError(
      f"clamp_logit_scale needs the CLIP params collection with a top-level "
      f"'logit_scale'; got keys {sorted(params)}. Pass variables['params']."
    )
  value = params["logit_scale"]
  if isinstance(value, nn.LogicallyPartitioned):
    value = value.replace_boxed(jnp.clip(value.unbox(), 0.0, maximum))
  else:
    value = jnp.clip(value, 0.0, maximum)
  return {**params, "logit_scale": value}
