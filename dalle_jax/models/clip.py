"""CLIP (Radford et al. 2021): ViT image tower, causal text tower, similarity.

The layout follows OpenAI's ViT CLIP (`clip/model.py`), so released OpenAI
and Hugging Face weights load through `dalle_jax.clip_weights`. DALL-E uses
it to rerank sampled images by caption similarity (paper §2.6); its training
loss is `dalle_jax.losses.clip_contrastive_loss`.

Shapes: B batch, H/W image side (= `image_size`), G patch grid side
(`image_size / patch_size`), N = G*G + 1 image positions (class token
first), L text length, T a tower's sequence length (N or L), W tower
width, E joint embedding size, K heads, D head size (W / K).
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from dalle_jax import sharding
from dalle_jax.models import initializers

# `clip/clip.py` normalisation of RGB pixels in [0, 1].
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)

# How the text tower picks the one position whose hidden state becomes the
# text embedding (the end of the caption).
POOL_ARGMAX_ID = "argmax_id"
POOL_FIRST_EQUAL = "first_equal"
POOL_FIRST_AT_LEAST = "first_at_least"
TEXT_POOLINGS = (POOL_ARGMAX_ID, POOL_FIRST_EQUAL, POOL_FIRST_AT_LEAST)


def quick_gelu(x: jax.Array) -> jax.Array:
  """OpenAI CLIP's GELU approximation `x * sigmoid(1.702 x)`."""
  return x * jax.nn.sigmoid(1.702 * x)


def exact_gelu(x: jax.Array) -> jax.Array:
  """`x * Phi(x)` with the erf-based normal CDF (torch's default GELU)."""
  return jax.nn.gelu(x, approximate=False)


ACTIVATIONS = {"quick_gelu": quick_gelu, "gelu": exact_gelu}

# ln(1 / 0.07): CLIP's initial temperature (model.py).
LOGIT_SCALE_INIT = math.log(1 / 0.07)

_RESIDUAL_AXES = (sharding.ACT_BATCH, sharding.ACT_LENGTH, sharding.ACT_EMBED)


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
  """Hyperparameters; the defaults are OpenAI's ViT-B/32.

  Attributes:
    image_size: H = W of the input images in pixels.
    patch_size: side of the square patches (G = image_size / patch_size).
    stem_widths: channels of a convolutional stem (Xiao et al. 2021, "Early
      convolutions help transformers see better"), one 3x3 stride-2 conv +
      ReLU per entry, run before the patch embedding, whose kernel = stride
      then shrinks to `patch_size / 2**len(stem_widths)` so that G is
      unchanged. Empty (OpenAI's layout): one linear patch embedding.
    vision_width: W of the image tower.
    vision_layers: residual blocks in the image tower.
    vision_heads: attention heads in the image tower.
    text_vocab_size: token ids are in [0, text_vocab_size).
    text_length: longest token sequence (rows of the positional table).
    text_width: W of the text tower.
    text_layers: residual blocks in the text tower.
    text_heads: attention heads in the text tower.
    embed_dim: E, size of the joint image-text embedding.
    mlp_ratio: MLP hidden size / W, in both towers.
    activation: 'quick_gelu' (`x * sigmoid(1.702 x)`, OpenAI's models) or
      'gelu' (exact, erf-based; e.g. Hugging Face `hidden_act='gelu'`).
    layer_norm_eps: epsilon of every LayerNorm.
    text_pooling: which position ends the caption:
      'argmax_id' - the largest id (OpenAI: the end-of-text id 49407 is the
        largest; Hugging Face when its `eos_token_id == 2`, legacy configs);
      'first_equal' - the first id equal to `eos_token` (Hugging Face
        transformers 5 otherwise; as there, a row without it pools at
        position 0);
      'first_at_least' - the first id >= `eos_token`, or the last position
        when there is none (this package's tokenizer: set `eos_token` to
        its `bpe_vocab_size`, so the first padding id ends the caption and
        a caption filling all L tokens pools at L - 1).
    eos_token: the id that `text_pooling` compares with; unused by
      'argmax_id'.
  """

  image_size: int = 224
  patch_size: int = 32
  stem_widths: tuple[int, ...] = ()
  vision_width: int = 768
  vision_layers: int = 12
  vision_heads: int = 12
  text_vocab_size: int = 49408
  text_length: int = 77
  text_width: int = 512
  text_layers: int = 12
  text_heads: int = 8
  embed_dim: int = 512
  mlp_ratio: int = 4
  activation: str = "quick_gelu"
  layer_norm_eps: float = 1e-5
  text_pooling: str = POOL_ARGMAX_ID
  eos_token: int = 49407

  def __post_init__(self):
    # A config read back from JSON brings a list; keep the dataclass hashable.
    object.__setattr__(self, "stem_widths", tuple(self.stem_widths))
    if self.patch_size % 2 ** len(self.stem_widths):
      raise ValueError(
        f"patch_size={self.patch_size} is not a multiple of "
        f"2**len(stem_widths)={2 ** len(self.stem_widths)}: each stem conv "
        "halves the image, and the patch embedding covers what is left of a "
        "patch. Use fewer stem_widths or a larger patch_size."
      )
    if any(width < 1 for width in self.stem_widths):
      raise ValueError(
        f"stem_widths={self.stem_widths} must be positive channel counts."
      )
    if self.image_size % self.patch_size:
      raise ValueError(
        f"image_size={self.image_size} is not a multiple of "
        f"patch_size={self.patch_size}; the patch grid must tile the image."
      )
    for tower in ("vision", "text"):
      width = getattr(self, f"{tower}_width")
      heads = getattr(self, f"{tower}_heads")
      if width % heads:
        raise ValueError(
          f"{tower}_width={width} is not divisible by {tower}_heads={heads};"
          " pick heads that divide the width (OpenAI uses width / 64)."
        )
    if self.activation not in ACTIVATIONS:
      raise ValueError(
        f"activation={self.activation!r} is not one of {tuple(ACTIVATIONS)}."
      )
    if self.text_pooling not in TEXT_POOLINGS:
      raise ValueError(
        f"text_pooling={self.text_pooling!r} is not one of {TEXT_POOLINGS}."
      )

  @property
  def grid_size(self) -> int:
    """G, patches per image side."""
    return self.image_size // self.patch_size

  @property
  def patch_embedding_size(self) -> int:
    """Kernel = stride of the patch embedding, on the stem's output."""
    return self.patch_size // 2 ** len(self.stem_widths)


def preprocess_images(images: jax.Array) -> jax.Array:
  """CLIP's pixel normalisation (resizing and cropping are done before).

  Args:
    images: `[B, H, W, 3] uint8` RGB in [0, 255].

  Returns:
    `[B, H, W, 3] float32`, `(images / 255 - IMAGE_MEAN) / IMAGE_STD`.

  Raises:
    ValueError: if the dtype is not uint8 or the last axis is not RGB.
  """
  if images.dtype != jnp.uint8:
    raise ValueError(
      f"preprocess_images expects uint8 pixels in [0, 255], got "
      f"{images.dtype}. For floats in [0, 1] pass "
      "(images * 255).round().astype(uint8)."
    )
  if images.shape[-1] != 3:
    raise ValueError(
      f"preprocess_images expects RGB images [B, H, W, 3], got shape "
      f"{tuple(images.shape)}."
    )
  unit = jnp.asarray(images, jnp.float32) / 255.0
  return (unit - jnp.array(IMAGE_MEAN)) / jnp.array(IMAGE_STD)


def _boxed(init, *names):
  return nn.with_logical_partitioning(init, names)


def _layer_norm(config: CLIPConfig, name: str) -> nn.LayerNorm:
  # Two-pass variance: the fast `E[x^2] - E[x]^2` form loses digits on the
  # large activations of released checkpoints.
  return nn.LayerNorm(
    epsilon=config.layer_norm_eps,
    use_fast_variance=False,
    scale_init=_boxed(nn.initializers.ones, sharding.NORM),
    bias_init=_boxed(nn.initializers.zeros, sharding.NORM),
    name=name,
  )


class Attention(nn.Module):
  """Dense multi-head self-attention, optionally causal.

  Attributes:
    heads: K.
    layers: blocks in the tower, for the output projection's init scale.
    causal: whether position q may attend only to keys k <= q.
  """

  heads: int
  layers: int
  causal: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """`[B, T, W] float32` -> `[B, T, W] float32`."""
    width = x.shape[-1]
    head_dim = width // self.heads
    in_init = initializers.normal(width**-0.5)
    out_init = initializers.normal(width**-0.5 * (2 * self.layers) ** -0.5)
    in_shape = (width, self.heads, head_dim)
    in_axes = (sharding.EMBED, sharding.HEADS, sharding.HEAD_DIM)
    bias_axes = (sharding.HEADS, sharding.HEAD_DIM)
    zeros = nn.initializers.zeros
    projected = []
    for name in ("query", "key", "value"):
      kernel = self.param(f"{name}_kernel", _boxed(in_init, *in_axes), in_shape)
      bias = self.param(f"{name}_bias", _boxed(zeros, *bias_axes), in_shape[1:])
      projected.append(jnp.einsum("btw,wkd->btkd", x, kernel) + bias)
    query, key, value = projected
    logits = jnp.einsum("bqkd,bskd->bkqs", query, key) * head_dim**-0.5
    if self.causal:
      length = x.shape[1]
      allowed = jnp.tril(jnp.ones((length, length), bool))
      logits = jnp.where(allowed, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)
    mixed = jnp.einsum("bkqs,bskd->bqkd", weights, value)
    out_kernel = self.param(
      "out_kernel",
      _boxed(out_init, sharding.HEADS, sharding.HEAD_DIM, sharding.EMBED),
      (self.heads, head_dim, width),
    )
    out_bias = self.param("out_bias", _boxed(zeros, sharding.EMBED), (width,))
    return jnp.einsum("bqkd,kdw->bqw", mixed, out_kernel) + out_bias


class ResidualBlock(nn.Module):
  """Pre-LN block: `x + attn(ln_1 x)`, then `x + mlp(ln_2 x)`."""

  config: CLIPConfig
  heads: int
  layers: int
  causal: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """`[B, T, W] float32` -> `[B, T, W] float32`."""
    config = self.config
    width = x.shape[-1]
    hidden = config.mlp_ratio * width
    x = x + Attention(self.heads, self.layers, self.causal, name="attn")(
      _layer_norm(config, "ln_1")(x)
    )
    y = _layer_norm(config, "ln_2")(x)
    y = nn.Dense(
      hidden,
      kernel_init=_boxed(
        initializers.normal((2 * width) ** -0.5),
        sharding.EMBED,
        sharding.MLP,
      ),
      bias_init=_boxed(nn.initializers.zeros, sharding.MLP),
      name="fc1",
    )(y)
    y = ACTIVATIONS[config.activation](y)
    y = nn.Dense(
      width,
      kernel_init=_boxed(
        initializers.normal(width**-0.5 * (2 * self.layers) ** -0.5),
        sharding.MLP,
        sharding.EMBED,
      ),
      bias_init=_boxed(nn.initializers.zeros, sharding.EMBED),
      name="fc2",
    )(y)
    return nn.with_logical_constraint(x + y, _RESIDUAL_AXES)


def _tower(config: CLIPConfig, x, heads: int, layers: int, causal: bool):
  for index in range(layers):
    x = ResidualBlock(config, heads, layers, causal, name=f"block_{index}")(x)
  return x


class VisionTower(nn.Module):
  """ViT: [conv stem ->] patches + class token -> `ln_post(class) @ proj`."""

  config: CLIPConfig

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    """`[B, H, W, 3] float32` normalised pixels -> `[B, E]` (not unit)."""
    config = self.config
    width = config.vision_width
    scale = width**-0.5
    x = images
    for index, channels in enumerate(config.stem_widths):
      # He init: each conv feeds a ReLU.
      x = nn.Conv(
        channels,
        (3, 3),
        strides=(2, 2),
        # torch's padding=1: kernels centred on even pixels, sides halved.
        padding=((1, 1), (1, 1)),
        kernel_init=_boxed(
          initializers.variance_scaling(2.0, "fan_in", "normal"),
          sharding.KERNEL_HEIGHT,
          sharding.KERNEL_WIDTH,
          sharding.CHANNELS_IN,
          sharding.CHANNELS_OUT,
        ),
        bias_init=_boxed(nn.initializers.zeros, sharding.CHANNELS_OUT),
        name=f"stem_{index}",
      )(x)
      x = nn.relu(x)
    patch = config.patch_embedding_size
    patches = nn.Conv(
      width,
      (patch, patch),
      strides=(patch, patch),
      padding="VALID",
      use_bias=False,
      kernel_init=_boxed(
        initializers.lecun_normal(),
        sharding.KERNEL_HEIGHT,
        sharding.KERNEL_WIDTH,
        sharding.CHANNELS_IN,
        sharding.EMBED,
      ),
      name="patch_embedding",
    )(x)
    batch = images.shape[0]
    patches = patches.reshape(batch, config.grid_size**2, width)
    class_embedding = self.param(
      "class_embedding",
      _boxed(initializers.normal(scale), sharding.EMBED),
      (width,),
    )
    # Positions are replicated: no parameter axis name exists for them.
    positions = self.param(
      "position_embedding",
      _boxed(initializers.normal(scale), None, sharding.EMBED),
      (config.grid_size**2 + 1, width),
    )
    class_tokens = jnp.broadcast_to(class_embedding, (batch, 1, width))
    x = jnp.concatenate([class_tokens, patches], axis=1) + positions
    x = _layer_norm(config, "ln_pre")(x)
    x = _tower(config, x, config.vision_heads, config.vision_layers, False)
    pooled = _layer_norm(config, "ln_post")(x[:, 0])
    projection = self.param(
      "projection",
      _boxed(initializers.normal(scale), sharding.EMBED, None),
      (width, config.embed_dim),
    )
    return pooled @ projection


def pooled_positions(tokens: jax.Array, config: CLIPConfig) -> jax.Array:
  """Where each caption ends, by `config.text_pooling` (see `CLIPConfig`).

  Args:
    tokens: `[B, L] int32` token ids.
    config: supplies `text_pooling` and `eos_token`.

  Returns:
    `[B] int32` positions in [0, L).
  """
  if config.text_pooling == POOL_ARGMAX_ID:
    return jnp.argmax(tokens, axis=-1).astype(jnp.int32)
  if config.text_pooling == POOL_FIRST_EQUAL:
    return jnp.argmax(tokens == config.eos_token, axis=-1).astype(jnp.int32)
  ended = tokens >= config.eos_token
  last = tokens.shape[-1] - 1
  first = jnp.argmax(ended, axis=-1)
  return jnp.where(ended.any(axis=-1), first, last).astype(jnp.int32)


class TextTower(nn.Module):
  """Causal transformer: `ln_final(state at caption end) @ projection`."""

  config: CLIPConfig

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    """`[B, L] int32` ids (L <= text_length) -> `[B, E]` (not unit)."""
    config = self.config
    width = config.text_width
    length = tokens.shape[1]
    x = nn.Embed(
      config.text_vocab_size,
      width,
      embedding_init=_boxed(
        initializers.normal(0.02), sharding.VOCAB, sharding.EMBED
      ),
      name="token_embedding",
    )(tokens)
    positions = self.param(
      "position_embedding",
      _boxed(initializers.normal(0.01), None, sharding.EMBED),
      (config.text_length, width),
    )
    x = x + positions[:length]
    x = _tower(config, x, config.text_heads, config.text_layers, True)
    ends = pooled_positions(tokens, config)
    pooled = jnp.take_along_axis(x, ends[:, None, None], axis=1)[:, 0]
    pooled = _layer_norm(config, "ln_final")(pooled)
    projection = self.param(
      "projection",
      _boxed(initializers.normal(width**-0.5), sharding.EMBED, None),
      (width, config.embed_dim),
    )
    return pooled @ projection


def _unit(x: jax.Array) -> jax.Array:
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


class CLIP(nn.Module):
  """Image and text towers with a learned temperature.

  Initialise with `CLIP(config).init(rng, images, tokens)`; call the
  embedders with `apply(variables, x, method="embed_image")` etc.
  """

  config: CLIPConfig

  def setup(self):
    self.vision = VisionTower(self.config)
    self.text = TextTower(self.config)
    self.logit_scale = self.param(
      "logit_scale",
      nn.with_logical_partitioning(
        nn.initializers.constant(LOGIT_SCALE_INIT), ()
      ),
      (),
    )

  def embed_image(self, images: jax.Array) -> jax.Array:
    """`[B, H, W, 3] float32` (see `preprocess_images`) -> `[B, E]` unit.

    Raises:
      ValueError: if the images are not `[B, image_size, image_size, 3]`.
    """
    expected = (self.config.image_size, self.config.image_size, 3)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
      raise ValueError(
        f"CLIP expects images [B, {expected[0]}, {expected[1]}, 3], got "
        f"shape {tuple(images.shape)}. Resize to image_size="
        f"{self.config.image_size} before preprocess_images."
      )
    return _unit(self.vision(images))

  def embed_text(self, tokens: jax.Array) -> jax.Array:
    """`[B, L] int32` token ids -> `[B, E]` float32 unit vectors.

    Raises:
      ValueError: if tokens are not `[B, L]` with L <= text_length.
    """
    if tokens.ndim != 2 or tokens.shape[1] > self.config.text_length:
      raise ValueError(
        f"CLIP expects tokens [B, L] with L <= text_length="
        f"{self.config.text_length}, got shape {tuple(tokens.shape)}."
      )
    return _unit(self.text(tokens))

  def __call__(
    self, images: jax.Array, tokens: jax.Array
  ) -> tuple[jax.Array, jax.Array]:
    """Scaled cosine similarities of every image with every caption.

    Args:
      images: `[B, H, W, 3] float32` normalised pixels.
      tokens: `[B, L] int32` token ids.

    Returns:
      `(logits_per_image [B, B], logits_per_text [B, B])` float32, the
      second the transpose of the first; entry `[i, j]` of the first is
      `exp(logit_scale) * cos(image i, text j)`.
    """
    image_embeddings = self.embed_image(images)
    text_embeddings = self.embed_text(tokens)
    logits_per_image = (
      jnp.exp(self.logit_scale) * image_embeddings @ text_embeddings.T
    )
    return logits_per_image, logits_per_image.T
