"""Tests for dalle_jax.models.attention.

Every implementation is compared, in value and in gradient, on random inputs
with `reference_attention` and `reference_grads`: plain float64 numpy softmax
attention and its gradient written out by hand here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dalle_jax.models import attention
from dalle_jax.models.masks import MASK_KINDS, MaskSpec

TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def reference_attention(q, k, v, mask):
  """Plain masked softmax attention in float64 numpy.

  Args:
    q, k, v: [B, T, H, D] arrays (q may have fewer positions, S).
    mask: [S, T] bool; a row with no allowed key gives zeros.

  Returns:
    (out [B, S, H, D], weights [B, H, S, T]) float64.
  """
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  scores = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
  scores = np.where(mask, scores, -np.inf)
  row_max = scores.max(axis=-1, keepdims=True)
  weights = np.exp(scores - np.where(np.isfinite(row_max), row_max, 0.0))
  total = weights.sum(axis=-1, keepdims=True)
  weights = weights / np.where(total > 0, total, 1.0)
  return np.einsum("bhqk,bkhd->bqhd", weights, v), weights


def reference_grads(q, k, v, mask, cotangent):
  """Gradients of sum(out * cotangent) w.r.t. q, k, v, by the chain rule.

  Written out by hand (not by autodiff): with P the weights and G the
  cotangent, dV = P^T G, dP = G V^T, dS = P * (dP - rowsum(P * dP)),
  dQ = dS K / sqrt(D), dK = dS^T Q / sqrt(D).
  """
  q, k, v, cotangent = (np.asarray(x, np.float64) for x in (q, k, v, cotangent))
  _, weights = reference_attention(q, k, v, mask)
  grad_v = np.einsum("bhqk,bqhd->bkhd", weights, cotangent)
  grad_weights = np.einsum("bqhd,bkhd->bhqk", cotangent, v)
  grad_scores = weights * (
    grad_weights - (weights * grad_weights).sum(axis=-1, keepdims=True)
  )
  scale = 1 / np.sqrt(q.shape[-1])
  grad_q = np.einsum("bhqk,bkhd->bqhd", grad_scores, k) * scale
  grad_k = np.einsum("bhqk,bqhd->bkhd", grad_scores, q) * scale
  return grad_q, grad_k, grad_v


def random_qkv(length, heads=2, head_dim=16, batch=2, seed=0, dtype=None):
  keys = jax.random.split(jax.random.key(seed), 3)
  shape = (batch, length, heads, head_dim)
  return tuple(
    jax.random.normal(key, shape, dtype or jnp.float32) for key in keys
  )


def value_and_grads(attention_fn, q, k, v, cotangent):
  """Output and d(sum(out * cotangent))/d(q, k, v), in one compilation."""

  def forward_and_backward(q, k, v, cotangent):
    out, pullback = jax.vjp(attention_fn, q, k, v)
    return out, pullback(cotangent)

  return jax.jit(forward_and_backward)(q, k, v, cotangent)


def assert_matches_reference(attention_fn, mask, q, k, v):
  cotangent = jax.random.normal(jax.random.key(7), q.shape)
  out, grads = value_and_grads(attention_fn, q, k, v, cotangent)
  np.testing.assert_allclose(
    out, reference_attention(q, k, v, mask)[0], **TOLERANCE
  )
  expected_grads = reference_grads(q, k, v, mask, cotangent)
  for grad, expected in zip(grads, expected_grads, strict=True):
    np.testing.assert_allclose(grad, expected, **TOLERANCE)


# (text_length, grid_side, block_size): a block size that divides T = 24, and
# two that do not (T = 22 and 80).
SMALL_CASES = [(8, 4, 8), (6, 4, 5), (16, 8, 7)]


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("text_length, side, block_size", SMALL_CASES)
def test_block_sparse_value_and_grad_equal_reference(
  kind, text_length, side, block_size
):
  spec = MaskSpec(kind, text_length, side, conv_kernel=3)
  layout = attention.layout_for(spec, block_size)
  q, k, v = random_qkv(spec.length)
  assert_matches_reference(
    lambda q, k, v: attention.block_sparse_attention(q, k, v, layout),
    spec.build(),
    q,
    k,
    v,
  )


def test_block_sparse_text_only_equals_reference():
  # One block larger than the whole sequence.
  spec = MaskSpec("row", 20, 0)
  q, k, v = random_qkv(20)
  assert_matches_reference(
    lambda q, k, v: attention.block_sparse_attention(
      q, k, v, spec, block_size=32
    ),
    spec.build(),
    q,
    k,
    v,
  )


@pytest.mark.parametrize("implementation", ["dense", "block_sparse"])
def test_make_attention_equals_reference(implementation):
  spec = MaskSpec("conv", 5, 6, conv_kernel=5, conv_edge="torus")
  q, k, v = random_qkv(spec.length)
  assert_matches_reference(
    attention.make_attention(spec, implementation, block_size=8),
    spec.build(),
    q,
    k,
    v,
  )


@pytest.mark.parametrize("kind", ["row", "column"])
def test_block_sparse_forward_at_paper_geometry(kind):
  spec = MaskSpec(kind, 256, 32)
  q, k, v = random_qkv(spec.length, heads=1, batch=1)
  out = jax.jit(
    lambda q, k, v: attention.block_sparse_attention(q, k, v, spec)
  )(q, k, v)
  expected = reference_attention(q, k, v, spec.build())[0]
  np.testing.assert_allclose(out, expected, **TOLERANCE)


def count_non_empty_tiles(mask, block_size):
  """Plain loop over (query block, key block) pairs."""
  blocks = -(-mask.shape[0] // block_size)
  count = 0
  for row in range(blocks):
    for col in range(blocks):
      rows = slice(row * block_size, (row + 1) * block_size)
      cols = slice(col * block_size, (col + 1) * block_size)
      count += bool(mask[rows, cols].any())
  return count


def test_tile_counts_at_paper_geometry():
  # 256 text + 32 x 32 image tokens in 32-wide tiles: 8 text blocks and one
  # block per image row, 40 x 40 = 1600 tiles in the square. Text query
  # blocks need 1 + 2 + ... + 8 = 36 tiles; each of the 32 image query blocks
  # needs the 8 text tiles plus its image tiles:
  #   row:    its own image row and the one above (only its own for row 0);
  #   column: in column-major order a block is one image column, which only
  #           sees itself;
  #   conv:   its row and up to 5 rows above (11 x 11 kernel, clamped).
  expected = {
    "row": 36 + 32 * 8 + 1 + 31 * 2,
    "column": 36 + 32 * 9,
    "conv": 36 + 32 * 8 + sum(min(row, 5) + 1 for row in range(32)),
  }
  for kind, tiles in expected.items():
    spec = MaskSpec(kind, 256, 32)
    layout = attention.layout_for(spec, 32)
    order = spec.block_order()
    mask = spec.build() if order is None else spec.build()[order][:, order]
    assert layout.num_tiles == tiles == count_non_empty_tiles(mask, 32)
    assert layout.num_blocks == 40
    assert layout.tile_fraction == pytest.approx(tiles / 1600)
    assert layout.tile_fraction < 0.3
  # Computed: 40 query blocks x (8 text prefix blocks + the widest band),
  # a quarter to a third of the dense square.
  for kind, computed in {"row": 400, "column": 360, "conv": 560}.items():
    layout = attention.layout_for(MaskSpec(kind, 256, 32), 32)
    assert layout.computed_tiles == computed


def test_column_order_makes_column_mask_as_sparse_as_row():
  spec = MaskSpec("column", 256, 32)
  raster = attention.block_layout(spec.build(), 32)
  column_major = attention.layout_for(spec, 32)
  row = attention.layout_for(MaskSpec("row", 256, 32), 32)
  assert column_major.num_tiles <= row.num_tiles
  # In raster order each image row block sees every image row above it.
  assert raster.num_tiles == 36 + 32 * 8 + 32 * 33 // 2


def test_block_sparse_bfloat16_keeps_dtype_and_is_close():
  spec = MaskSpec("row", 8, 4)
  q, k, v = random_qkv(spec.length)
  out = attention.block_sparse_attention(
    *(x.astype(jnp.bfloat16) for x in (q, k, v)), spec, block_size=8
  )
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(
    out.astype(jnp.float32),
    reference_attention(q, k, v, spec.build())[0],
    atol=5e-2,
  )


def test_rows_without_allowed_keys_give_zeros_and_finite_grads():
  mask = np.tril(np.ones((10, 10), bool))
  mask[3] = False
  q, k, v = random_qkv(10)
  layout = attention.block_layout(mask, 4)
  for attention_fn in (
    lambda q, k, v: attention.dense_masked_attention(q, k, v, mask),
    lambda q, k, v: attention.block_sparse_attention(q, k, v, layout),
  ):
    assert_matches_reference(attention_fn, mask, q, k, v)
    np.testing.assert_array_equal(jax.jit(attention_fn)(q, k, v)[:, 3], 0.0)


def test_cached_step_equals_row_of_full_attention():
  spec = MaskSpec("row", 6, 4)
  mask = spec.build()
  q, k, v = random_qkv(spec.length)
  full, _ = reference_attention(q, k, v, mask)

  @jax.jit
  def step(position):
    # As in decoding: the position is traced, and cache slots after it hold
    # junk.
    junk = (jnp.arange(spec.length) > position)[None, :, None, None]
    q_step = jax.lax.dynamic_slice_in_dim(q, position, 1, axis=1)
    mask_row = jnp.asarray(mask)[position]
    return attention.cached_attention(
      q_step, jnp.where(junk, 1e3, k), jnp.where(junk, -1e3, v), mask_row
    )

  for position in (0, 5, 6, 13, 21):
    out = step(position)
    np.testing.assert_allclose(out[:, 0], full[:, position], **TOLERANCE)


def test_cached_step_accepts_per_example_mask_rows():
  mask = MaskSpec("column", 6, 4).build()
  q, k, v = random_qkv(22)
  rows = jnp.asarray(mask[[9, 20]])  # a different position per example
  out = attention.cached_attention(q[:, :1], k, v, rows)
  for example, position in enumerate((9, 20)):
    expected = reference_attention(
      q[example : example + 1, :1],
      k[example : example + 1],
      v[example : example + 1],
      mask[position][None],
    )[0]
    np.testing.assert_allclose(out[example], expected[0], **TOLERANCE)


def test_block_layout_is_a_value():
  spec = MaskSpec("conv", 4, 4, conv_kernel=3)
  first, second = attention.layout_for(spec, 8), attention.layout_for(spec, 8)
  assert first == second and hash(first) == hash(second)
  assert first is second  # memoised
  assert not first.tile_masks.flags.writeable
  rebuilt = attention.block_layout(spec.build(), 8)
  assert rebuilt is not first and rebuilt == first
  assert first != attention.layout_for(spec, 4)
  assert first != attention.layout_for(MaskSpec("row", 4, 4), 8)
  # Usable as a jit static argument: equal layouts share one trace.
  traces = []

  def traced(q, k, v, layout):
    traces.append(layout)
    return attention.block_sparse_attention(q, k, v, layout)

  jitted = jax.jit(traced, static_argnums=3)
  q, k, v = random_qkv(spec.length)
  np.testing.assert_array_equal(jitted(q, k, v, first), jitted(q, k, v, second))
  assert len(traces) == 1


def test_band_mask_layout_gathers_neighbour_blocks():
  # No text, 4 x 4 grid, row window of 5 keys, 4-wide blocks (one image row
  # each): block i needs key blocks i - 1 and i. A prefix would cost more.
  layout = attention.layout_for(MaskSpec("row", 0, 4), 4)
  assert layout.prefix_blocks == 0
  np.testing.assert_array_equal(
    layout.key_blocks, [[0, 0], [0, 1], [1, 2], [2, 3]]
  )
  assert layout.num_tiles == 7 and layout.computed_tiles == 8
  assert not layout.tile_masks[0, 1].any()  # padding slot
  mask = MaskSpec("row", 0, 4).build()
  np.testing.assert_array_equal(layout.tile_masks[2, 0], mask[8:12, 4:8])
  np.testing.assert_array_equal(layout.tile_masks[2, 1], mask[8:12, 8:12])


def test_causal_layout_is_all_prefix_with_padding_masked():
  mask = np.tril(np.ones((10, 10), bool))
  layout = attention.block_layout(mask, 4)  # 3 blocks, the last one short
  # Gathering would cost as many tiles as the whole square: keep it dense.
  assert layout.prefix_blocks == 3 and layout.key_blocks.shape == (3, 0)
  assert layout.num_tiles == 6 and layout.computed_tiles == 9
  expected = np.zeros((12, 12), bool)  # padded positions 10, 11 never allowed
  expected[:10, :10] = mask
  np.testing.assert_array_equal(layout.prefix_mask, expected.reshape(3, 4, 12))


def test_paper_layouts_share_the_text_prefix():
  # The 8 text key blocks are seen by every image query block, so they form
  # the prefix; only the image band is gathered per query block.
  band_slots = {"row": 2, "column": 1, "conv": 6}
  for kind, slots in band_slots.items():
    layout = attention.layout_for(MaskSpec(kind, 256, 32), 32)
    assert layout.prefix_blocks == 8
    assert layout.key_blocks.shape == (40, slots)
    assert (layout.key_blocks[8:] >= 8).all()
    # Text query blocks see no image keys: their band slots are padding.
    assert not layout.tile_masks[:8].any()


def test_all_false_mask_gives_zeros():
  q, k, v = random_qkv(6)
  out = attention.block_sparse_attention(
    q, k, v, attention.block_layout(np.zeros((6, 6), bool), 4)
  )
  np.testing.assert_array_equal(out, 0.0)


@pytest.mark.parametrize(
  "call, message",
  [
    (
      lambda: attention.block_layout(np.ones((4, 5), bool)),
      r"square \[T, T\] bool array, got shape \(4, 5\)",
    ),
    (
      lambda: attention.block_layout(np.ones((4, 4), int)),
      "dtype int",
    ),
    (
      lambda: attention.block_layout(np.ones((4, 4), bool), block_size=0),
      "block_size=0",
    ),
    (
      lambda: attention.block_layout(np.ones((3, 3), bool), 2, [0, 0, 1]),
      r"not a permutation of range\(3\)",
    ),
    (
      lambda: attention.block_sparse_attention(
        *random_qkv(5), MaskSpec("row", 2, 2)
      ),
      "layout's length 6",
    ),
    (
      lambda: attention.dense_masked_attention(
        *random_qkv(5), np.ones((5, 4), bool)
      ),
      r"Mask shape \(5, 4\)",
    ),
    (
      lambda: attention.cached_attention(*random_qkv(5), np.ones(5, bool)),
      "one query step",
    ),
    (
      lambda: attention.cached_attention(
        *random_qkv(1)[:1], *random_qkv(5)[1:], np.ones(4, bool)
      ),
      r"mask_row shape \(4,\)",
    ),
    (
      lambda: attention.make_attention(MaskSpec("row", 2, 2), "flash"),
      "Unknown attention implementation 'flash'",
    ),
  ],
)
def test_bad_arguments_raise_with_the_bad_value(call, message):
  with pytest.raises(ValueError, match=message):
    call()
