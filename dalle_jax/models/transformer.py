"""The DALL-E prior: a decoder-only transformer over [text ; image] tokens.

The sequence is the L text tokens followed by the N = W * W image codes in
raster order, T = L + N positions (PAPER.md 3.1). Position t predicts token
t + 1, and each position feeds exactly one output head:

  position  0 .. L-2    -> text head,  predicts text tokens 1 .. L-1
  position  L-1         -> image head, predicts image code 0
  position  L .. T-2    -> image head, predicts image codes 1 .. N-1
  position  T-1         -> no head (the last code predicts nothing)

so the last text position is scored against the image vocabulary only (not
ru-dalle v3's text-vocabulary quirk, PAPER.md 3.5) and the first text token
is never predicted (there is no BOS). The last position is still run because
the block-sparse layouts are built for the full length T.

One forward pass serves training, prefill and decoding: the same embeddings,
blocks, norms and heads, and the attention of each layer either runs over the
whole sequence with the layer's mask (`make_attention`, block-sparse or
dense) or writes its keys and values into an explicit KV cache and attends
over the cache with the mask rows of its positions (prefill: the L text rows
at once; decoding: one image row with `cached_attention`).

Layer i uses the mask kind `layer_mask_kinds(num_layers)[i]`. Parameters are
float32 whatever the compute dtype; logits are computed in float32.

Shape letters: B batch, L text length, W grid side, N = W * W image tokens,
T = L + N, E embed width, H heads, D head dim, V text vocabulary (BPE ids
plus one pad id per text position), K image vocabulary.
"""

import dataclasses
import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dalle_jax import sharding
from dalle_jax.models import initializers
from dalle_jax.models.attention import (
  ATTENTION_FACTORIES,
  DEFAULT_BLOCK_SIZE,
  cached_attention,
  dense_masked_attention,
  make_attention,
)
from dalle_jax.models.masks import (
  CONV_EDGES,
  PAPER_CONV_KERNEL,
  MaskSpec,
  layer_mask_kinds,
)

COMPUTE_DTYPES = ("float32", "bfloat16")
# Rows of the learned position tables. Not in sharding.DEFAULT_RULES, so the
# tables are replicated (they are small and gathered by every example).
POSITION = "position"
HIDDEN_AXES = (sharding.ACT_BATCH, sharding.ACT_LENGTH, sharding.ACT_EMBED)
# Logical names of every cache array, [B, T, H, D]; head_dim is never split.
CACHE_AXES = (
  sharding.CACHE_BATCH,
  sharding.CACHE_LENGTH,
  sharding.CACHE_HEADS,
  None,
)
_POSITIVE_FIELDS = (
  "text_vocab_size",
  "text_length",
  "image_vocab_size",
  "grid_side",
  "num_layers",
  "num_heads",
  "head_dim",
  "mlp_ratio",
  "block_size",
)


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Hyperparameters; defaults are the paper's 12B model (App. B.1).

  Attributes:
    text_vocab_size: V, BPE ids plus one pad id per text position
      (`Tokenizer.vocab_size`, 16384 + 256 in the paper).
    text_length: L, text positions.
    image_vocab_size: K, dVAE codes.
    grid_side: W, the image code grid side.
    num_layers: transformer blocks.
    num_heads: H.
    head_dim: D.
    embed_dim: E; None means num_heads * head_dim (see `width`).
    mlp_ratio: MLP hidden width over E.
    conv_kernel: kernel side of the last layer's conv mask.
    conv_edge: edge rule of the conv mask, one of masks.CONV_EDGES.
    attention: full-sequence attention implementation, a key of
      attention.ATTENTION_FACTORIES ('block_sparse' or 'dense'); both use the
      per-layer masks. Prefill and decoding always attend densely over the
      cache.
    block_size: tile side of block-sparse attention.
    dropout: rate on the embeddings and on each residual branch (none on
      attention weights). Decoding never drops.
    dtype: compute dtype name, 'float32' or 'bfloat16'; also the cache dtype.
    remat: recompute each block in the backward pass (saves memory).
  """

  text_vocab_size: int = 16384 + 256
  text_length: int = 256
  image_vocab_size: int = 8192
  grid_side: int = 32
  num_layers: int = 64
  num_heads: int = 62
  head_dim: int = 64
  embed_dim: int | None = None
  mlp_ratio: int = 4
  conv_kernel: int = PAPER_CONV_KERNEL
  conv_edge: str = "clamp"
  attention: str = "block_sparse"
  block_size: int = DEFAULT_BLOCK_SIZE
  dropout: float = 0.0
  dtype: str = "float32"
  remat: bool = False

  @property
  def width(self) -> int:
    """E, the residual stream width."""
    if self.embed_dim is None:
      return self.num_heads * self.head_dim
    return self.embed_dim

  @property
  def num_image_tokens(self) -> int:
    """N = W * W."""
    return self.grid_side**2

  @property
  def sequence_length(self) -> int:
    """T = L + N, also the cache length."""
    return self.text_length + self.num_image_tokens

  @property
  def compute_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)

  def mask_specs(self) -> tuple[MaskSpec, ...]:
    """The static mask of each layer, in order."""
    return tuple(
      MaskSpec(
        kind,
        self.text_length,
        self.grid_side,
        self.conv_kernel,
        self.conv_edge,
      )
      for kind in layer_mask_kinds(self.num_layers)
    )

  def validate(self) -> None:
    """Checks the fields.

    Raises:
      ValueError: naming the bad field, the allowed values and the fix.
    """
    for name in _POSITIVE_FIELDS:
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(
          f"TransformerConfig.{name}={value!r} must be a positive integer."
        )
    if self.embed_dim is not None and (
      not isinstance(self.embed_dim, int) or self.embed_dim < 1
    ):
      raise ValueError(
        f"TransformerConfig.embed_dim={self.embed_dim!r} must be a positive"
        " integer, or None for num_heads * head_dim."
      )
    if self.text_vocab_size <= self.text_length:
      raise ValueError(
        f"TransformerConfig.text_vocab_size={self.text_vocab_size} must"
        f" exceed text_length={self.text_length}: it counts the BPE ids plus"
        " one pad id per text position. Use Tokenizer.vocab_size."
      )
    if self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
      raise ValueError(
        f"TransformerConfig.conv_kernel={self.conv_kernel} must be an odd"
        f" integer >= 1 (the paper uses {PAPER_CONV_KERNEL})."
      )
    choices = (
      ("conv_edge", CONV_EDGES),
      ("attention", tuple(sorted(ATTENTION_FACTORIES))),
      ("dtype", COMPUTE_DTYPES),
    )
    for name, allowed in choices:
      if getattr(self, name) not in allowed:
        raise ValueError(
          f"TransformerConfig.{name}={getattr(self, name)!r} is not"
          f" supported; use one of {allowed}."
        )
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(
        f"TransformerConfig.dropout={self.dropout} must be in [0, 1)."
      )


class LayerCache(NamedTuple):
  """Keys and values of one layer for every position, [B, T, H, D] each.

  Slots of positions not yet run hold zeros; the causal mask hides them.
  """

  key: jax.Array
  value: jax.Array


Cache = tuple[LayerCache, ...]


def init_cache(config: TransformerConfig, batch: int) -> Cache:
  """An empty KV cache: one LayerCache of zeros per layer.

  Its arrays have logical names CACHE_AXES, e.g. for shardings:
  `jax.tree.map(lambda _: CACHE_AXES, cache)`.

  Args:
    config: the model's hyperparameters.
    batch: B.

  Returns:
    num_layers LayerCaches of [B, T, H, D] zeros in the compute dtype.
  """
  shape = (
    batch,
    config.sequence_length,
    config.num_heads,
    config.head_dim,
  )
  zeros = jnp.zeros(shape, config.compute_dtype)
  return tuple(LayerCache(zeros, zeros) for _ in range(config.num_layers))


@functools.lru_cache(maxsize=16)
def _static_mask(spec: MaskSpec) -> np.ndarray:
  """The [T, T] bool mask of a layer, built once per kind at trace time."""
  mask = spec.build()
  mask.setflags(write=False)
  return mask


def _partitioned(init, names):
  return nn.with_logical_partitioning(init, names)


def _fan_in_normal(scale: float = 1.0):
  return initializers.variance_scaling(scale, "fan_in", "normal")


def _layer_norm(config: TransformerConfig, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(
    epsilon=1e-5,
    dtype=config.compute_dtype,
    scale_init=_partitioned(nn.initializers.ones_init(), (sharding.NORM,)),
    bias_init=_partitioned(nn.initializers.zeros_init(), (sharding.NORM,)),
    name=name,
  )


def _residual_scale(config: TransformerConfig) -> float:
  # GPT-2's 1 / sqrt(2 * layers) on the std of the projections that write
  # into the residual stream keeps its variance O(1) at initialisation.
  return 1.0 / (2 * config.num_layers)


def _attend_cache(q, k, v, layer_cache: LayerCache, start, spec: MaskSpec):
  """Writes k, v at positions [start, start + S) and attends over the cache.

  Args:
    q, k, v: [B, S, H, D] of positions start .. start + S - 1.
    layer_cache: the layer's cache, [B, T, H, D] each.
    start: int32 scalar (may be traced), first position of the span.
    spec: the layer's mask; its rows of the span are used.

  Returns:
    (updated LayerCache, [B, S, H, D] attention output).
  """
  key, value = (
    nn.with_logical_constraint(
      jax.lax.dynamic_update_slice_in_dim(
        full, new.astype(full.dtype), start, axis=1
      ),
      CACHE_AXES,
    )
    for full, new in ((layer_cache.key, k), (layer_cache.value, v))
  )
  rows = jax.lax.dynamic_slice_in_dim(
    jnp.asarray(_static_mask(spec)), start, q.shape[1], axis=0
  )
  if q.shape[1] == 1:
    out = cached_attention(q, key, value, rows[0])
  else:
    out = dense_masked_attention(q, key, value, rows)
  return LayerCache(key, value), out


class HeadLinear(nn.Module):
  """x @ kernel + bias over several trailing input and output dims.

  Like nn.DenseGeneral, but the kernel is created in its final shape, so its
  logical names also apply at init under a mesh (DenseGeneral initialises a
  flattened 2-D kernel, which a 3-name constraint rejects).

  Attributes:
    features: output dims, e.g. (H, D), or (E,).
    names: logical names of the kernel, input dims then output dims; the
      bias takes the output part.
    dtype: compute dtype (params are float32).
    scale: variance of the fan-in normal initialiser.
  """

  features: tuple[int, ...]
  names: tuple[str, ...]
  dtype: jnp.dtype = jnp.float32
  scale: float = 1.0

  @nn.compact
  def __call__(self, x):
    """[..., *in] -> [..., *features] in `dtype`; in = the contracted dims."""
    num_in = len(self.names) - len(self.features)
    in_axes = tuple(range(num_in))
    init = initializers.variance_scaling(
      self.scale,
      "fan_in",
      "normal",
      in_axis=in_axes,
      out_axis=tuple(range(num_in, len(self.names))),
    )
    kernel = self.param(
      "kernel",
      _partitioned(init, self.names),
      tuple(x.shape[-num_in:]) + tuple(self.features),
      jnp.float32,
    )
    bias = self.param(
      "bias",
      _partitioned(nn.initializers.zeros_init(), self.names[num_in:]),
      tuple(self.features),
      jnp.float32,
    )
    x_axes = tuple(range(x.ndim - num_in, x.ndim))
    out = jax.lax.dot_general(
      x.astype(self.dtype),
      kernel.astype(self.dtype),
      ((x_axes, in_axes), ((), ())),
    )
    return out + bias.astype(self.dtype)


class SelfAttention(nn.Module):
  """Multi-head self-attention under one layer's static mask.

  Attributes:
    config: the model's hyperparameters.
    spec: the layer's mask.
  """

  config: TransformerConfig
  spec: MaskSpec

  @nn.compact
  def __call__(self, x, layer_cache: LayerCache | None, start):
    """Attends over the sequence, or over the cache if one is given.

    Args:
      x: [B, S, E] normalised hidden states of positions start .. start+S-1.
      layer_cache: None for a full-sequence pass (S = T), else the layer's
        cache, which receives this span's keys and values.
      start: first position of x (int32 scalar, may be traced); unused
        without a cache.

    Returns:
      ([B, S, E] output in the compute dtype, the updated cache or None).
    """
    config = self.config

    def project(name):
      return HeadLinear(
        (config.num_heads, config.head_dim),
        (sharding.EMBED, sharding.HEADS, sharding.HEAD_DIM),
        dtype=config.compute_dtype,
        name=name,
      )(x)

    q, k, v = project("query"), project("key"), project("value")
    if layer_cache is None:
      attend = make_attention(
        self.spec, config.attention, block_size=config.block_size
      )
      out = attend(q, k, v)
    else:
      layer_cache, out = _attend_cache(q, k, v, layer_cache, start, self.spec)
    out = HeadLinear(
      (config.width,),
      (sharding.HEADS, sharding.HEAD_DIM, sharding.EMBED),
      dtype=config.compute_dtype,
      scale=_residual_scale(config),
      name="out",
    )(out)
    return out, layer_cache


class MLP(nn.Module):
  """E -> mlp_ratio * E -> E with a tanh-approximated GELU."""

  config: TransformerConfig

  @nn.compact
  def __call__(self, x):
    """[B, S, E] -> [B, S, E] in the compute dtype."""
    config = self.config
    hidden = nn.Dense(
      config.mlp_ratio * config.width,
      dtype=config.compute_dtype,
      kernel_init=_partitioned(
        _fan_in_normal(), (sharding.EMBED, sharding.MLP)
      ),
      bias_init=_partitioned(nn.initializers.zeros_init(), (sharding.MLP,)),
      name="up",
    )(x)
    return nn.Dense(
      config.width,
      dtype=config.compute_dtype,
      kernel_init=_partitioned(
        _fan_in_normal(_residual_scale(config)),
        (sharding.MLP, sharding.EMBED),
      ),
      bias_init=_partitioned(nn.initializers.zeros_init(), (sharding.EMBED,)),
      name="down",
    )(nn.gelu(hidden, approximate=True))


class Block(nn.Module):
  """Pre-LN block: x + attention(LN(x)), then x + MLP(LN(x)).

  Attributes:
    config: the model's hyperparameters.
    spec: the layer's mask.
  """

  config: TransformerConfig
  spec: MaskSpec

  @nn.compact
  def __call__(self, x, layer_cache, start, deterministic: bool):
    """[B, S, E] -> ([B, S, E], updated cache or None); see SelfAttention."""
    config = self.config
    drop = nn.Dropout(config.dropout)
    attended, layer_cache = SelfAttention(config, self.spec, name="attention")(
      _layer_norm(config, "attention_norm")(x), layer_cache, start
    )
    x = x + drop(attended, deterministic=deterministic)
    mixed = MLP(config, name="mlp")(_layer_norm(config, "mlp_norm")(x))
    x = x + drop(mixed, deterministic=deterministic)
    return nn.with_logical_constraint(x, HIDDEN_AXES), layer_cache


def _check_ids(name: str, ids, length: int, vocab: int, fix: str) -> None:
  """Shape, dtype and (for concrete values) range of a [B, length] id array."""
  ids_shape = tuple(np.shape(ids))
  if len(ids_shape) != 2 or ids_shape[1] != length:
    raise ValueError(
      f"{name} has shape {ids_shape}; expected [B, {length}]. {fix}"
    )
  if not jnp.issubdtype(jnp.result_type(ids), jnp.integer):
    raise ValueError(
      f"{name} has dtype {jnp.result_type(ids)}; expected an integer dtype"
      " (int32)."
    )
  if isinstance(ids, jax.core.Tracer) or not ids_shape[0]:
    return  # Traced values cannot be inspected; out-of-range gives NaNs.
  values = np.asarray(ids)
  if values.min() < 0 or values.max() >= vocab:
    raise ValueError(
      f"{name} holds ids in [{values.min()}, {values.max()}], outside the"
      f" vocabulary [0, {vocab}). {fix}"
    )


class Transformer(nn.Module):
  """The text-to-image-token prior.

  Use `__call__` for training and scoring, and `prefill` then `decode_step`
  (through `apply(..., method=...)`, or the module-level functions of the
  same names) for sampling.

  Attributes:
    config: the hyperparameters (validated on first use).
  """

  config: TransformerConfig

  def setup(self):
    config = self.config
    config.validate()
    width, dtype = config.width, config.compute_dtype
    table_init = initializers.normal(stddev=0.02)

    def embed(size):
      return nn.Embed(
        size,
        width,
        dtype=dtype,
        embedding_init=_partitioned(
          table_init, (sharding.VOCAB, sharding.EMBED)
        ),
      )

    def position_table(name, rows):
      return self.param(
        name,
        _partitioned(table_init, (POSITION, sharding.EMBED)),
        (rows, width),
        jnp.float32,
      )

    def head(size):
      return nn.Dense(
        size,
        dtype=jnp.float32,
        kernel_init=_partitioned(
          _fan_in_normal(), (sharding.EMBED, sharding.VOCAB)
        ),
        bias_init=_partitioned(nn.initializers.zeros_init(), (sharding.VOCAB,)),
      )

    self.text_embed = embed(config.text_vocab_size)
    self.text_position = position_table("text_position", config.text_length)
    self.image_embed = embed(config.image_vocab_size)
    self.image_row = position_table("image_row", config.grid_side)
    self.image_column = position_table("image_column", config.grid_side)
    # Argument 4 (counting self) is `deterministic`, a Python bool.
    block = nn.remat(Block, static_argnums=(4,)) if config.remat else Block
    self.blocks = [block(config, spec) for spec in config.mask_specs()]
    self.final_norm = _layer_norm(config, "final_norm")
    self.text_head = head(config.text_vocab_size)
    self.image_head = head(config.image_vocab_size)
    self.embed_dropout = nn.Dropout(config.dropout)

  def _embed_text(self, text_tokens):
    """[B, L] ids -> [B, L, E]: token plus learned position embedding."""
    positions = self.text_position[: text_tokens.shape[1]]
    return self.text_embed(text_tokens) + positions.astype(
      self.config.compute_dtype
    )

  def _embed_image(self, codes, first_cell):
    """[B, S] codes of cells first_cell .. first_cell+S-1 -> [B, S, E].

    Code embedding plus the row and the column embedding of each cell
    (App. B.1); first_cell may be traced.
    """
    cells = first_cell + jnp.arange(codes.shape[1])
    side = self.config.grid_side
    rows = jnp.take(self.image_row, cells // side, axis=0)
    columns = jnp.take(self.image_column, cells % side, axis=0)
    dtype = self.config.compute_dtype
    return self.image_embed(codes) + (rows + columns).astype(dtype)

  def _run_blocks(self, x, cache: Cache | None, start, deterministic: bool):
    """Embeddings [B, S, E] -> final-normed hidden states [B, S, E].

    The one forward pass of all modes; see SelfAttention for the cache.
    """
    x = self.embed_dropout(x, deterministic=deterministic)
    x = nn.with_logical_constraint(x, HIDDEN_AXES)
    new_cache = []
    for index, block in enumerate(self.blocks):
      layer_cache = None if cache is None else cache[index]
      x, layer_cache = block(x, layer_cache, start, deterministic)
      new_cache.append(layer_cache)
    hidden = self.final_norm(x)
    return hidden, None if cache is None else tuple(new_cache)

  def __call__(self, text_tokens, image_codes, deterministic: bool = True):
    """Teacher-forced logits of the whole sequence (training, scoring).

    Args:
      text_tokens: [B, L] int32 in [0, V).
      image_codes: [B, N] int32 in [0, K), raster order.
      deterministic: False applies dropout (needs a 'dropout' rng).

    Returns:
      text_logits: [B, L-1, V] float32; [:, j] predicts text_tokens[:, j+1]
        (from position j).
      image_logits: [B, N, K] float32; [:, i] predicts image_codes[:, i]
        (from position L-1+i).
    """
    config = self.config
    length = config.text_length
    _check_ids(
      "text_tokens",
      text_tokens,
      length,
      config.text_vocab_size,
      "Encode captions with the Tokenizer the config was built for.",
    )
    _check_ids(
      "image_codes",
      image_codes,
      config.num_image_tokens,
      config.image_vocab_size,
      "Pass the dVAE codes of the configured grid, flattened row-major.",
    )
    x = jnp.concatenate(
      [self._embed_text(text_tokens), self._embed_image(image_codes, 0)],
      axis=1,
    )
    hidden, _ = self._run_blocks(x, None, None, deterministic)
    hidden = hidden.astype(jnp.float32)
    text_logits = self.text_head(hidden[:, : length - 1])
    image_logits = self.image_head(hidden[:, length - 1 : -1])
    return text_logits, image_logits

  def prefill(self, text_tokens):
    """Runs the text once and fills the first L slots of a new cache.

    Args:
      text_tokens: [B, L] int32 in [0, V).

    Returns:
      first_logits: [B, K] float32 over image code 0 (from position L-1).
      cache: the filled Cache.
    """
    config = self.config
    _check_ids(
      "text_tokens",
      text_tokens,
      config.text_length,
      config.text_vocab_size,
      "Encode captions with the Tokenizer the config was built for.",
    )
    cache = init_cache(config, text_tokens.shape[0])
    hidden, cache = self._run_blocks(
      self._embed_text(text_tokens), cache, 0, True
    )
    return self.image_head(hidden[:, -1].astype(jnp.float32)), cache

  def decode_step(self, cache: Cache, code, position):
    """Feeds image code `position` and predicts code `position + 1`.

    Args:
      cache: a Cache filled up to sequence position L + position - 1.
      code: [B] int32, the code of image cell `position`.
      position: int32 scalar in [0, N - 1) (may be traced): the image cell
        index of `code` (raster order), so it lands at sequence position
        L + position.

    Returns:
      logits: [B, K] float32 over image code position + 1.
      cache: the cache with slot L + position filled.
    """
    config = self.config
    if not isinstance(position, jax.core.Tracer):
      if not 0 <= int(position) < config.num_image_tokens:
        raise ValueError(
          f"decode_step position={int(position)} is outside the image"
          f" [0, {config.num_image_tokens}). Pass the raster index of the"
          " image cell whose code is fed."
        )
    codes = jnp.reshape(code, (-1, 1))
    _check_ids(
      "code",
      codes,
      1,
      config.image_vocab_size,
      "Feed one image code in [0, K) per example.",
    )
    position = jnp.asarray(position, jnp.int32)
    hidden, cache = self._run_blocks(
      self._embed_image(codes, position),
      cache,
      config.text_length + position,
      True,
    )
    return self.image_head(hidden[:, 0].astype(jnp.float32)), cache


def prefill(config: TransformerConfig, params, text_tokens):
  """`Transformer.prefill` with explicit params; see there.

  Args:
    config: the model's hyperparameters.
    params: the 'params' collection (unboxed).
    text_tokens: [B, L] int32.

  Returns:
    ([B, K] float32 logits of image code 0, Cache).
  """
  return Transformer(config).apply(
    {"params": params}, text_tokens, method=Transformer.prefill
  )


def decode_step(
  config: TransformerConfig, params, cache: Cache, code, position
):
  """`Transformer.decode_step` with explicit params; see there.

  `functools.partial(decode_step, config, params)` is the `step_fn` that
  `sampling.sample_image_codes` expects.

  Args:
    config: the model's hyperparameters.
    params: the 'params' collection (unboxed).
    cache: Cache filled up to sequence position L + position - 1.
    code: [B] int32 code of image cell `position`.
    position: int32 scalar, the image cell index of `code`.

  Returns:
    ([B, K] float32 logits of image code position + 1, updated Cache).
  """
  return Transformer(config).apply(
    {"params": params}, cache, code, position, method=Transformer.decode_step
  )
