"""Tests for dalle_jax.models.masks.

Expected masks come from two independent places: the toy drawings of
PAPER.md 3.4 (6 text positions, 4 x 4 grid), transcribed below, and plain
loops written here from the definitions in words.
"""

import numpy as np
import pytest

from dalle_jax.models import masks

# PAPER.md 3.4: rows are queries, columns keys, "|" splits text | image keys.
# Text rows are the same in every drawing (plain causal text).
TEXT_ROWS = """
 t0 100000|0000000000000000
 t1 110000|0000000000000000
 t2 111000|0000000000000000
 t3 111100|0000000000000000
 t4 111110|0000000000000000
 t5 111111|0000000000000000
"""

ROW_A = """
 i0 111111|1000000000000000
 i1 111111|1100000000000000
 i2 111111|1110000000000000
 i3 111111|1111000000000000
 i4 111111|1111100000000000
 i5 111111|0111110000000000
 i6 111111|0011111000000000
 i7 111111|0001111100000000
 i8 111111|0000111110000000
 i9 111111|0000011111000000
i10 111111|0000001111100000
i11 111111|0000000111110000
i12 111111|0000000011111000
i13 111111|0000000001111100
i14 111111|0000000000111110
i15 111111|0000000000011111
"""

COLUMN_B = """
 i0 111111|1000000000000000
 i1 111111|0100000000000000
 i2 111111|0010000000000000
 i3 111111|0001000000000000
 i4 111111|1000100000000000
 i5 111111|0100010000000000
 i6 111111|0010001000000000
 i7 111111|0001000100000000
 i8 111111|1000100010000000
 i9 111111|0100010001000000
i10 111111|0010001000100000
i11 111111|0001000100010000
i12 111111|1000100010001000
i13 111111|0100010001000100
i14 111111|0010001000100010
i15 111111|0001000100010001
"""

COLUMN_TRANSPOSED_C = """
 i0 111111|1000000000000000
 i1 111111|1100000000000000
 i2 111111|1110000000000000
 i3 111111|1111000000000000
 i4 111111|0000100000000000
 i5 111111|0000110000000000
 i6 111111|0000111000000000
 i7 111111|0000111100000000
 i8 111111|0000000010000000
 i9 111111|0000000011000000
i10 111111|0000000011100000
i11 111111|0000000011110000
i12 111111|0000000000001000
i13 111111|0000000000001100
i14 111111|0000000000001110
i15 111111|0000000000001111
"""

CONV_CLAMP_D1 = """
 i0 111111|1000000000000000
 i1 111111|1100000000000000
 i2 111111|0110000000000000
 i3 111111|0011000000000000
 i4 111111|1100100000000000
 i5 111111|1110110000000000
 i6 111111|0111011000000000
 i7 111111|0011001100000000
 i8 111111|0000110010000000
 i9 111111|0000111011000000
i10 111111|0000011101100000
i11 111111|0000001100110000
i12 111111|0000000011001000
i13 111111|0000000011101100
i14 111111|0000000001110110
i15 111111|0000000000110011
"""

CONV_TORUS_D2 = """
 i0 111111|1000000000000000
 i1 111111|1100000000000000
 i2 111111|0110000000000000
 i3 111111|1011000000000000
 i4 111111|1101100000000000
 i5 111111|1110110000000000
 i6 111111|0111011000000000
 i7 111111|1011101100000000
 i8 111111|0000110110000000
 i9 111111|0000111011000000
i10 111111|0000011101100000
i11 111111|0000101110110000
i12 111111|1101000011011000
i13 111111|1110000011101100
i14 111111|0111000001110110
i15 111111|1011000010111011
"""


def parse_drawing(image_rows: str) -> np.ndarray:
  """[22, 22] bool from the text rows plus one drawing's image rows."""
  lines = (TEXT_ROWS + image_rows).split()
  bits = [token.replace("|", "") for token in lines if "|" in token]
  return np.array([[bit == "1" for bit in row] for row in bits])


def test_row_mask_equals_paper_drawing_a():
  np.testing.assert_array_equal(masks.row_mask(6, 4), parse_drawing(ROW_A))


def test_column_mask_equals_paper_drawing_b():
  np.testing.assert_array_equal(
    masks.column_mask(6, 4), parse_drawing(COLUMN_B)
  )


def test_column_mask_in_column_major_order_equals_paper_drawing_c():
  order = masks.column_major_permutation(6, 4)
  reordered = masks.column_mask(6, 4)[order][:, order]
  np.testing.assert_array_equal(reordered, parse_drawing(COLUMN_TRANSPOSED_C))


def test_conv_clamp_equals_paper_drawing_d1():
  np.testing.assert_array_equal(
    masks.conv_mask(6, 4, kernel=3, edge="clamp"),
    parse_drawing(CONV_CLAMP_D1),
  )


def test_conv_torus_equals_paper_drawing_d2():
  np.testing.assert_array_equal(
    masks.conv_mask(6, 4, kernel=3, edge="torus"),
    parse_drawing(CONV_TORUS_D2),
  )


def test_conv_flat_kernel3_uses_offsets_from_paper_note():
  # PAPER.md 3.4 notes: flat-raster wraparound of a causal 3x3 kernel allows
  # the flat offsets {0, 1, W - 1, W, W + 1}.
  side, text = 4, 6
  expected = loop_mask(text, side, lambda q, k: q - k in {0, 1, 3, 4, 5})
  np.testing.assert_array_equal(
    masks.conv_mask(text, side, kernel=3, edge="flat"), expected
  )


def test_conv_kernel_11_on_4x4_grid_is_full_causal():
  # PAPER.md 3.4: with clamped coordinates a kernel wider than the grid
  # covers every earlier cell.
  np.testing.assert_array_equal(
    masks.conv_mask(6, 4, kernel=11), np.tril(np.ones((22, 22), bool))
  )


def loop_mask(text_length, side, image_rule):
  """Plain-loop mask: causal text, all text for images, image_rule(q, k).

  image_rule gets image indices g (query) and g' (key) with g' <= g.
  """
  length = text_length + side * side
  mask = np.zeros((length, length), bool)
  for query in range(length):
    for key in range(query + 1):
      if key < text_length:
        mask[query, key] = True
      elif query >= text_length:
        mask[query, key] = image_rule(query - text_length, key - text_length)
  return mask


def row_rule(side):
  return lambda q, k: q - k <= side


def column_rule(side):
  return lambda q, k: q % side == k % side


def conv_rule(side, kernel, edge):
  half = kernel // 2

  def near(a, b):
    if edge == "torus":
      return min((a - b) % side, (b - a) % side) <= half
    return abs(a - b) <= half

  def rule(q, k):
    (query_row, query_col), (key_row, key_col) = (
      divmod(q, side),
      divmod(k, side),
    )
    if edge == "flat":
      for row_step in range(half + 1):
        for col_step in range(-half, half + 1):
          if row_step == 0 and col_step < 0:
            continue  # would be a later cell of the same row
          if q - k == row_step * side + col_step:
            return True
      return False
    return near(query_row, key_row) and near(query_col, key_col)

  return rule


GEOMETRIES = [(0, 5), (3, 6), (7, 5), (5, 8)]


@pytest.mark.parametrize("text_length, side", GEOMETRIES)
def test_row_and_column_equal_plain_loops(text_length, side):
  np.testing.assert_array_equal(
    masks.row_mask(text_length, side),
    loop_mask(text_length, side, row_rule(side)),
  )
  np.testing.assert_array_equal(
    masks.column_mask(text_length, side),
    loop_mask(text_length, side, column_rule(side)),
  )


@pytest.mark.parametrize("edge", masks.CONV_EDGES)
@pytest.mark.parametrize("kernel", [1, 3, 5, 11])
@pytest.mark.parametrize("text_length, side", GEOMETRIES)
def test_conv_equals_plain_loop(text_length, side, kernel, edge):
  np.testing.assert_array_equal(
    masks.conv_mask(text_length, side, kernel, edge),
    loop_mask(text_length, side, conv_rule(side, kernel, edge)),
  )


def test_causal_mask_is_lower_triangle():
  np.testing.assert_array_equal(
    masks.causal_mask(3, 2), np.tril(np.ones((7, 7), bool))
  )


def test_text_only_masks_are_causal():
  for kind in masks.MASK_KINDS:
    np.testing.assert_array_equal(
      masks.MaskSpec(kind, 5, 0).build(), np.tril(np.ones((5, 5), bool))
    )


def test_paper_geometry_key_counts():
  # PAPER.md 3.4: with W = 32 an image query sees 1..33 image keys under the
  # row mask, 1..32 under the column mask, at most 5 * 11 + 6 = 61 under the
  # clamped 11 x 11 conv mask; plus all 256 text keys in every case.
  expected = {"row": (1, 33), "column": (1, 32), "conv": (1, 61)}
  for kind, (fewest, most) in expected.items():
    image_rows = masks.MaskSpec(kind, 256, 32).build()[256:]
    assert image_rows[:, :256].all()
    image_keys = image_rows[:, 256:].sum(axis=1)
    assert (image_keys.min(), image_keys.max()) == (fewest, most)


def test_mask_spec_builds_each_kind():
  conv = masks.MaskSpec("conv", 2, 5, conv_kernel=3, conv_edge="torus")
  np.testing.assert_array_equal(conv.build(), masks.conv_mask(2, 5, 3, "torus"))
  np.testing.assert_array_equal(
    masks.MaskSpec("row", 2, 5).build(), masks.row_mask(2, 5)
  )
  np.testing.assert_array_equal(
    masks.MaskSpec("column", 2, 5).build(), masks.column_mask(2, 5)
  )
  assert masks.MaskSpec("row", 2, 5).length == 27
  assert hash(masks.MaskSpec("row", 2, 5)) == hash(masks.MaskSpec("row", 2, 5))


def test_block_order_is_column_major_for_column_masks_only():
  np.testing.assert_array_equal(
    masks.MaskSpec("column", 2, 2).block_order(), [0, 1, 2, 4, 3, 5]
  )
  for kind in ("causal", "row", "conv"):
    assert masks.MaskSpec(kind, 2, 2).block_order() is None


def test_layer_mask_kinds_follow_paper_pattern():
  assert masks.layer_mask_kinds(8) == [
    "row", "column", "row", "row", "row", "column", "row", "conv"
  ]  # fmt: skip
  paper = masks.layer_mask_kinds(64)
  assert paper[:4] == ["row", "column", "row", "row"]
  assert paper[-1] == "conv"
  assert paper.count("column") == 16  # layers 2, 6, ..., 62
  assert paper.count("conv") == 1
  assert masks.layer_mask_kinds(1) == ["conv"]
  # Layer 6 would be a column layer; as the last layer it is conv.
  assert masks.layer_mask_kinds(6)[-1] == "conv"


@pytest.mark.parametrize(
  "call, message",
  [
    (lambda: masks.MaskSpec("axial", 4, 4), "Unknown mask kind 'axial'"),
    (lambda: masks.MaskSpec("row", -1, 4), "text_length=-1"),
    (lambda: masks.row_mask(0, 0), "at least one > 0"),
    (lambda: masks.conv_mask(4, 4, kernel=4), "Bad conv kernel 4"),
    (lambda: masks.conv_mask(4, 4, kernel=0), "Bad conv kernel 0"),
    (lambda: masks.conv_mask(4, 4, edge="wrap"), "edge rule 'wrap'"),
    (lambda: masks.column_major_permutation(2, -3), "grid_side=-3"),
    (lambda: masks.layer_mask_kinds(0), "num_layers=0"),
  ],
)
def test_bad_arguments_raise_with_the_bad_value(call, message):
  with pytest.raises(ValueError, match=message):
    call()
