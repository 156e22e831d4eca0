"""Masked attention kernels: dense reference, block-sparse, and a cached step.

All functions take queries, keys and values as [B, T, H, D] (the layout a
dense projection produces, so no transpose is needed in the layer) and return
[B, T, H, D] in the query dtype. Scores and softmax are computed in float32
whatever the input dtype. Masks are static boolean numpy arrays from
`dalle_jax.models.masks`; query q attends key k when mask[q, k] is True. A
query row with no allowed key gets a zero output instead of NaN.

Shape letters: B batch, T sequence length (S for a shorter query length), H
heads, D head dim, Z block size, N number of blocks, P prefix key blocks
shared by all query blocks, K band key blocks gathered per query block.

Swapping in an accelerator kernel: `make_attention(spec, implementation)`
looks the implementation up in `ATTENTION_FACTORIES`; a factory takes the
static `MaskSpec` and a block size and returns `fn(q, k, v) -> out`. A TPU
splash-attention entry only needs to add a factory there.
"""

import dataclasses
import functools
import hashlib
import types
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dalle_jax.models.masks import MaskSpec

# 32 is the paper's blocksparse tile (PAPER.md 1). With 256 text positions
# and a 32-wide grid, tiles align with image rows, so a row-mask query block
# needs only 2 image key tiles, and the computed area is the smallest of
# 32/64/128 (paper geometry: 25%, 30%, 40% of the square for row masks). On
# CPU, 32 was also the fastest of the three in a 16 x 16 grid check
# (experiments/benchmarks/attention.py). MXU-sized 128 may suit TPU better.
DEFAULT_BLOCK_SIZE = 32

AttentionFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def _masked_softmax(scores: jax.Array, mask) -> jax.Array:
  """Softmax over the last axis restricted to allowed entries.

  Args:
    scores: [..., K] float32.
    mask: bool, broadcastable to scores.

  Returns:
    [..., K] float32 weights; rows with no allowed entry are all zero.
  """
  scores = jnp.where(mask, scores, -jnp.inf)
  row_max = jnp.max(scores, axis=-1, keepdims=True)
  # An all-masked row has max -inf; -inf - -inf would be NaN.
  row_max = jax.lax.stop_gradient(
    jnp.where(jnp.isfinite(row_max), row_max, 0.0)
  )
  weights = jnp.exp(scores - row_max)
  total = jnp.sum(weights, axis=-1, keepdims=True)
  return weights / jnp.where(total > 0, total, 1.0)


def _scale(head_dim: int, scale: float | None) -> float:
  return head_dim**-0.5 if scale is None else scale


def dense_masked_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  mask,
  *,
  scale: float | None = None,
) -> jax.Array:
  """Plain softmax attention over every (query, key) pair, then masked.

  The reference the other implementations are tested against; it costs the
  full S x T square.

  Args:
    q: [B, S, H, D] queries.
    k: [B, T, H, D] keys.
    v: [B, T, H, D] values.
    mask: [S, T] or [B, S, T] bool (numpy or jax), True where allowed.
    scale: score multiplier; default 1 / sqrt(D).

  Returns:
    [B, S, H, D] in q's dtype.
  """
  mask = jnp.asarray(mask)
  expected = (q.shape[1], k.shape[1])
  if mask.shape[-2:] != expected or mask.ndim not in (2, 3):
    raise ValueError(
      f"Mask shape {mask.shape} does not fit queries of length {q.shape[1]}"
      f" and keys of length {k.shape[1]}: expected [S, T] = {expected} or"
      " [B, S, T]. Slice the static mask to the query and key positions."
    )
  if mask.ndim == 3:
    mask = mask[:, None]
  scores = jnp.einsum(
    "bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32
  )
  weights = _masked_softmax(scores * _scale(q.shape[-1], scale), mask)
  out = jnp.einsum(
    "bhqk,bkhd->bqhd",
    weights.astype(v.dtype),
    v,
    preferred_element_type=jnp.float32,
  )
  return out.astype(q.dtype)


def cached_attention(
  q_step: jax.Array,
  k_cache: jax.Array,
  v_cache: jax.Array,
  mask_row,
  *,
  scale: float | None = None,
) -> jax.Array:
  """One decoding step: a single query against the whole KV cache.

  Cache slots after the current position may hold anything; the causal mask
  row hides them.

  Args:
    q_step: [B, 1, H, D] query of the current position.
    k_cache: [B, T, H, D] keys of every position (filled up to the current).
    v_cache: [B, T, H, D] values, same.
    mask_row: [T] bool (or [B, T] if rows differ per example): the static
      mask's row of the current position, e.g. `mask[position]` with a traced
      position.
    scale: score multiplier; default 1 / sqrt(D).

  Returns:
    [B, 1, H, D] in q_step's dtype.
  """
  if q_step.shape[1] != 1:
    raise ValueError(
      "cached_attention takes one query step, got q_step of shape"
      f" {q_step.shape} (length {q_step.shape[1]}). For several positions"
      " call dense_masked_attention with those rows of the mask."
    )
  mask_row = jnp.asarray(mask_row)
  if mask_row.shape[-1] != k_cache.shape[1] or mask_row.ndim not in (1, 2):
    raise ValueError(
      f"mask_row shape {mask_row.shape} does not fit a cache of length"
      f" {k_cache.shape[1]}: expected [T] or [B, T]. Pass the static mask's"
      " row of the current position."
    )
  return dense_masked_attention(
    q_step, k_cache, v_cache, mask_row[..., None, :], scale=scale
  )


@dataclasses.dataclass(frozen=True, eq=False)
class BlockLayout:
  """Static tile layout of a mask for block-sparse attention.

  Built once per (mask, block size, order) by `block_layout`; compared and
  hashed by content, so it can be a jit static argument. Positions are first
  reordered by `permutation` (if any), padded to N * Z, and cut into N blocks.
  Keys then come in two parts:

  - a prefix of P key blocks that (nearly) every query block sees, such as
    the text keys seen by every image query: scored for all query blocks at
    once against the prefix keys themselves, with no per-block copies;
  - per query block i, the K other key blocks `key_blocks[i]` that hold an
    allowed entry (the band near the diagonal), gathered per query block.

  Element masks apply inside both parts, so padding and partial tiles are
  exact. P is chosen to minimise the computed tiles N * (P + K).

  Attributes:
    block_size: Z, the tile side.
    length: T, the unpadded sequence length.
    permutation: [T] int64 (new position -> original position) or None.
    prefix_blocks: P, the number of leading key blocks in the prefix.
    prefix_mask: [N, Z, P * Z] bool element mask of the prefix part.
    key_blocks: [N, K] int32 band key blocks (all >= P) per query block, in
      increasing order, padded by repeating the last one.
    tile_masks: [N, K, Z, Z] bool element masks of the band tiles (all False
      on padding slots).
    num_tiles: number of non-empty tiles of the whole (reordered) mask.
    fingerprint: content hash used for equality.
  """

  block_size: int
  length: int
  permutation: np.ndarray | None
  prefix_blocks: int
  prefix_mask: np.ndarray
  key_blocks: np.ndarray
  tile_masks: np.ndarray
  num_tiles: int
  fingerprint: str

  def __eq__(self, other):
    if not isinstance(other, BlockLayout):
      return NotImplemented
    return self.fingerprint == other.fingerprint

  def __hash__(self):
    return hash(self.fingerprint)

  @property
  def num_blocks(self) -> int:
    """N, blocks per axis after padding."""
    return self.key_blocks.shape[0]

  @property
  def computed_tiles(self) -> int:
    """Tiles actually computed, N * (P + K), including empty ones."""
    return self.num_blocks * (self.prefix_blocks + self.key_blocks.shape[1])

  @property
  def tile_fraction(self) -> float:
    """Non-empty tiles over the dense N x N square."""
    return self.num_tiles / self.num_blocks**2


def _check_permutation(permutation, length: int) -> np.ndarray:
  permutation = np.array(permutation, dtype=np.int64)  # own, frozen copy
  if not np.array_equal(np.sort(permutation), np.arange(length)):
    raise ValueError(
      f"permutation of shape {permutation.shape} is not a permutation of"
      f" range({length}). Pass MaskSpec.block_order() or None."
    )
  return permutation


def _choose_prefix(non_empty: np.ndarray) -> int:
  """P minimising P + (most band tiles of a query block); ties: largest P.

  Args:
    non_empty: [N, N] bool, which (query block, key block) tiles are used.
  """
  # band_tiles[i, p]: non-empty key blocks >= p of query block i.
  band_tiles = np.cumsum(non_empty[:, ::-1], axis=1)[:, ::-1]
  widest_band = np.append(band_tiles.max(axis=0), 0)  # p = 0 .. N
  cost = np.arange(widest_band.size) + widest_band
  # Prefix tiles need no gathered copies, so prefer them on ties.
  return int(np.flatnonzero(cost == cost.min())[-1])


def _tile_view(mask: np.ndarray, block_size: int) -> np.ndarray:
  """[T, T] -> [N, N, Z, Z] tiles (query block, key block), zero-padded."""
  num_blocks = -(-mask.shape[0] // block_size)
  padded = np.zeros((num_blocks * block_size,) * 2, bool)
  padded[: mask.shape[0], : mask.shape[0]] = mask
  tiles = padded.reshape(num_blocks, block_size, num_blocks, block_size)
  return tiles.transpose(0, 2, 1, 3)


def _fingerprint(*parts) -> str:
  digest = hashlib.sha256()
  for part in parts:
    if isinstance(part, np.ndarray):
      digest.update(str(part.shape).encode())
      digest.update(np.ascontiguousarray(part).data)
    else:
      digest.update(repr(part).encode())
  return digest.hexdigest()


def block_layout(
  mask: np.ndarray,
  block_size: int = DEFAULT_BLOCK_SIZE,
  permutation: np.ndarray | None = None,
) -> BlockLayout:
  """Finds the tiles of a static mask that block-sparse attention computes.

  Args:
    mask: [T, T] bool numpy mask in the original position order.
    block_size: Z >= 1; T need not be a multiple of it (padding is masked).
    permutation: optional [T] int reorder (new -> original) applied to
      queries and keys before tiling, e.g. column-major image order for
      column masks, so the allowed entries sit in few tiles.

  Returns:
    The BlockLayout.
  """
  mask = np.asarray(mask)
  if mask.ndim != 2 or mask.shape[0] != mask.shape[1] or mask.dtype != bool:
    raise ValueError(
      f"mask must be a square [T, T] bool array, got shape {mask.shape} and"
      f" dtype {mask.dtype}. Build it with MaskSpec(...).build()."
    )
  if block_size < 1:
    raise ValueError(
      f"Bad block_size={block_size}: it must be >= 1 (typical: 32, 64, 128)."
    )
  length = mask.shape[0]
  if permutation is not None:
    permutation = _check_permutation(permutation, length)
    mask = mask[permutation][:, permutation]
  tiles = _tile_view(mask, block_size)
  num_blocks = tiles.shape[0]
  non_empty = tiles.any(axis=(2, 3))
  prefix = _choose_prefix(non_empty)
  band = non_empty[:, prefix:]
  # An all-False mask still needs one (empty) part to produce zeros.
  slots = max(int(band.sum(axis=1).max()), int(prefix == 0))
  key_blocks = np.zeros((num_blocks, slots), np.int32)
  tile_masks = np.zeros((num_blocks, slots, block_size, block_size), bool)
  for query_block in range(num_blocks):
    kept = prefix + np.flatnonzero(band[query_block])
    key_blocks[query_block, : kept.size] = kept
    if kept.size:
      # Repeat the last block so padding slots read memory already in cache.
      key_blocks[query_block, kept.size :] = kept[-1]
    tile_masks[query_block, : kept.size] = tiles[query_block, kept]
  prefix_mask = tiles[:, :prefix].transpose(0, 2, 1, 3)
  prefix_mask = prefix_mask.reshape(num_blocks, block_size, prefix * block_size)
  for array in (permutation, prefix_mask, key_blocks, tile_masks):
    if array is not None:
      array.setflags(write=False)  # the layout is a hashed value
  return BlockLayout(
    block_size=block_size,
    length=length,
    permutation=permutation,
    prefix_blocks=prefix,
    prefix_mask=prefix_mask,
    key_blocks=key_blocks,
    tile_masks=tile_masks,
    num_tiles=int(non_empty.sum()),
    fingerprint=_fingerprint(
      block_size, length, permutation, prefix_mask, key_blocks, tile_masks
    ),
  )


# Memoised because every layer of a deep model asks for one of the same three
# layouts at trace time; layouts are immutable values, so sharing is safe.
@functools.lru_cache(maxsize=16)
def layout_for(
  spec: MaskSpec, block_size: int = DEFAULT_BLOCK_SIZE
) -> BlockLayout:
  """The BlockLayout of a mask kind, in its banded order (see MaskSpec)."""
  return block_layout(spec.build(), block_size, spec.block_order())


def _to_blocks(x: jax.Array, num_blocks: int, block_size: int) -> jax.Array:
  """[B, T, H, D] -> [B, H, N, Z, D], zero-padding T up to N * Z."""
  batch, length, heads, head_dim = x.shape
  x = jnp.pad(
    x, ((0, 0), (0, num_blocks * block_size - length), (0, 0), (0, 0))
  )
  x = x.reshape(batch, num_blocks, block_size, heads, head_dim)
  return x.transpose(0, 3, 1, 2, 4)


def _key_parts(q_blocks, k_blocks, v_blocks, layout: BlockLayout):
  """Scores, values, value equation and mask of the prefix and band parts.

  Args:
    q_blocks, k_blocks, v_blocks: [B, H, N, Z, D].
    layout: the BlockLayout.

  Returns:
    List of (scores [B, H, N, Z, keys] float32, values, einsum equation
    combining weights with values into [B, H, N, Z, D], mask [N, Z, keys]).
  """
  batch, heads, blocks, size, head_dim = k_blocks.shape
  parts = []
  prefix = layout.prefix_blocks
  if prefix:
    k_prefix, v_prefix = (
      x[:, :, :prefix].reshape(batch, heads, prefix * size, head_dim)
      for x in (k_blocks, v_blocks)
    )
    scores = jnp.einsum(
      "bhnqd,bhkd->bhnqk",
      q_blocks,
      k_prefix,
      preferred_element_type=jnp.float32,
    )
    parts.append((scores, v_prefix, "bhnqk,bhkd->bhnqd", layout.prefix_mask))
  slots = layout.key_blocks.shape[1]
  if slots:
    k_band, v_band = (
      jnp.take(x, layout.key_blocks, axis=2, mode="clip").reshape(
        batch, heads, blocks, slots * size, head_dim
      )
      for x in (k_blocks, v_blocks)
    )
    scores = jnp.einsum(
      "bhnqd,bhnkd->bhnqk", q_blocks, k_band, preferred_element_type=jnp.float32
    )
    # [N, K, Zq, Zk] -> [N, Zq, K * Zk], matching the key axis of scores.
    mask = layout.tile_masks.transpose(0, 2, 1, 3)
    mask = mask.reshape(blocks, size, slots * size)
    parts.append((scores, v_band, "bhnqk,bhnkd->bhnqd", mask))
  return parts


def _tiled_attention(q, k, v, layout: BlockLayout, scale: float) -> jax.Array:
  """Attention over the layout's tiles; q, k, v [B, T, H, D] in tile order.

  One softmax runs across the prefix and band parts; it is normalised after
  the value product, so the weights are never concatenated.
  """
  batch, length, heads, head_dim = q.shape
  blocks, size = layout.num_blocks, layout.block_size
  q_blocks, k_blocks, v_blocks = (
    _to_blocks(x, blocks, size) for x in (q, k, v)
  )
  parts = _key_parts(q_blocks, k_blocks, v_blocks, layout)
  scores = [
    jnp.where(mask, part_scores * scale, -jnp.inf)
    for part_scores, _, _, mask in parts
  ]
  row_max = jnp.max(
    jnp.stack([s.max(axis=-1, keepdims=True) for s in scores]), axis=0
  )
  # An all-masked row has max -inf; -inf - -inf would be NaN.
  row_max = jax.lax.stop_gradient(
    jnp.where(jnp.isfinite(row_max), row_max, 0.0)
  )
  exps = [jnp.exp(s - row_max) for s in scores]
  total = sum(e.sum(axis=-1, keepdims=True) for e in exps)
  out = sum(
    jnp.einsum(
      equation,
      e.astype(v.dtype),
      values,
      preferred_element_type=jnp.float32,
    )
    for e, (_, values, equation, _) in zip(exps, parts, strict=True)
  )
  out = out / jnp.where(total > 0, total, 1.0)  # [B, H, N, Z, D]
  out = out.transpose(0, 2, 3, 1, 4).reshape(
    batch, blocks * size, heads, head_dim
  )
  return out[:, :length].astype(q.dtype)


def block_sparse_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  layout: BlockLayout | MaskSpec,
  *,
  block_size: int = DEFAULT_BLOCK_SIZE,
  scale: float | None = None,
) -> jax.Array:
  """Masked attention computing only the tiles that hold an allowed entry.

  Equal to `dense_masked_attention(q, k, v, mask)` up to float rounding, in
  value and gradient. Cost grows with `layout.computed_tiles`, not with the
  square. Pure JAX: runs on CPU, GPU and TPU.

  Args:
    q: [B, T, H, D] queries.
    k: [B, T, H, D] keys.
    v: [B, T, H, D] values.
    layout: a BlockLayout, or a MaskSpec whose layout is built here with
      `block_size` (at trace time; pass a BlockLayout to build it once).
    block_size: Z, used only when `layout` is a MaskSpec.
    scale: score multiplier; default 1 / sqrt(D).

  Returns:
    [B, T, H, D] in q's dtype.
  """
  if isinstance(layout, MaskSpec):
    layout = layout_for(layout, block_size)
  if not q.shape[1] == k.shape[1] == v.shape[1] == layout.length:
    raise ValueError(
      f"Sequence lengths q {q.shape[1]}, k {k.shape[1]}, v {v.shape[1]} must"
      f" all equal the layout's length {layout.length}. Build the layout"
      " for this sequence (MaskSpec text_length + grid_side**2)."
    )
  scale = _scale(q.shape[-1], scale)
  if layout.permutation is None:
    return _tiled_attention(q, k, v, layout, scale)
  order = layout.permutation
  q, k, v = (jnp.take(x, order, axis=1) for x in (q, k, v))
  out = _tiled_attention(q, k, v, layout, scale)
  return jnp.take(out, np.argsort(order), axis=1)


def _dense_factory(spec: MaskSpec, block_size: int) -> AttentionFn:
  del block_size  # Dense attention has no tiles.
  mask = spec.build()
  return lambda q, k, v: dense_masked_attention(q, k, v, mask)


def _block_sparse_factory(spec: MaskSpec, block_size: int) -> AttentionFn:
  layout = layout_for(spec, block_size)
  return lambda q, k, v: block_sparse_attention(q, k, v, layout)


# Name -> factory(spec, block_size) -> fn(q, k, v). Add accelerator kernels
# (e.g. "splash" on TPU) here; callers pick one by config string.
ATTENTION_FACTORIES = types.MappingProxyType(
  {"dense": _dense_factory, "block_sparse": _block_sparse_factory}
)


def make_attention(
  spec: MaskSpec,
  implementation: str = "block_sparse",
  *,
  block_size: int = DEFAULT_BLOCK_SIZE,
) -> AttentionFn:
  """Builds the attention function of one layer, with its mask baked in.

  Call it once per layer at trace time (the mask and tile layout are numpy
  work); the returned fn(q, k, v) maps [B, T, H, D] inputs to [B, T, H, D].

  Args:
    spec: the layer's static mask.
    implementation: a key of ATTENTION_FACTORIES.
    block_size: tile side for tiled implementations.

  Returns:
    fn(q, k, v) -> [B, T, H, D] attention output.
  """
  if implementation not in ATTENTION_FACTORIES:
    raise ValueError(
      f"Unknown attention implementation {implementation!r}; allowed:"
      f" {sorted(ATTENTION_FACTORIES)}. Set the model's attention"
      " implementation to one of them."
    )
  return ATTENTION_FACTORIES[implementation](spec, block_size)
