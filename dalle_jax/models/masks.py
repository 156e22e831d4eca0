"""Static attention masks of the DALL-E transformer, as boolean numpy arrays.

The sequence is `text_length` text positions followed by a `grid_side` x
`grid_side` grid of image tokens in raster (row-major) order, so image cell
(r, c) sits at position `text_length + r * grid_side + c`. A mask `M` has shape
[T, T] bool with T = text_length + grid_side**2; query q may attend key k
when `M[q, k]` is True. Every mask here is causal (never k > q), text queries
see the text before them, and every image query sees all text keys. The kinds
differ only in which earlier image keys an image query sees (PAPER.md 3.4).

Shape letters: T total positions, W grid side.
"""

import dataclasses

import numpy as np

MASK_KINDS = ("causal", "row", "column", "conv")
CONV_EDGES = ("clamp", "torus", "flat")
PAPER_CONV_KERNEL = 11


def _check_geometry(text_length: int, grid_side: int) -> None:
  if text_length < 0 or grid_side < 0 or text_length + grid_side == 0:
    raise ValueError(
      f"Bad mask geometry text_length={text_length}, grid_side={grid_side}:"
      " both must be >= 0 and at least one > 0. Pass the sequence's text"
      " length and image grid side (32 for the paper)."
    )


def _compose(text_length: int, grid_side: int, image_allowed) -> np.ndarray:
  """Causal text, all text for image queries, `image_allowed` among images.

  Args:
    text_length: number of text positions.
    grid_side: W, the image grid side.
    image_allowed: function of (query row, query col, key row, key col): int32
      arrays of shapes [W*W, 1] (queries) and [1, W*W] (keys), returning
      [W*W, W*W] bool, which image keys an image query may see. Causality is
      applied on top of it.

  Returns:
    [T, T] bool mask.
  """
  _check_geometry(text_length, grid_side)
  length = text_length + grid_side**2
  # Causality alone already gives text queries the earlier text and image
  # queries all the text; only the image-to-image block needs a rule.
  mask = np.tri(length, dtype=bool)
  cells = np.arange(grid_side**2, dtype=np.int32)
  rows, cols = cells // max(grid_side, 1), cells % max(grid_side, 1)
  mask[text_length:, text_length:] &= image_allowed(
    rows[:, None], cols[:, None], rows[None, :], cols[None, :]
  )
  return mask


def causal_mask(text_length: int, grid_side: int) -> np.ndarray:
  """Plain causal mask over the whole sequence (dense attention).

  Returns:
    [T, T] bool, lower triangular including the diagonal.
  """
  return _compose(
    text_length, grid_side, lambda qr, qc, kr, kc: np.ones((1, 1), bool)
  )


def row_mask(text_length: int, grid_side: int) -> np.ndarray:
  """Row attention: each image query sees the previous W+1 image tokens.

  The window is taken in raster order and includes the query itself, so the
  oldest key is the same column of the previous row (image keys g' with
  g - W <= g' <= g). This is the paper's Fig. 11 caption, ru-dalle's
  `get_row_mask` and Sparse Transformer's strided head A(1) (PAPER.md 3.4,
  drawing A); it is not DALLE-pytorch's `axial_row`, which stops at the start
  of the row.

  Returns:
    [T, T] bool.
  """
  side = grid_side

  def window(*unused_cells):
    # g - g' <= W: everything but the triangle more than W positions back.
    return ~np.tri(side**2, k=-(side + 1), dtype=bool)

  return _compose(text_length, grid_side, window)


def column_mask(text_length: int, grid_side: int) -> np.ndarray:
  """Column attention: each image query sees its column at rows <= its row.

  In raster order (PAPER.md 3.4, drawing B). After reordering the image
  positions column-major (`column_major_permutation`) the same mask becomes a
  block-diagonal band (drawing C), which is how block-sparse attention runs it.

  Returns:
    [T, T] bool.
  """
  return _compose(
    text_length, grid_side, lambda qr, qc, kr, kc: (qc == kc) & (kr <= qr)
  )


def conv_mask(
  text_length: int,
  grid_side: int,
  kernel: int = PAPER_CONV_KERNEL,
  edge: str = "clamp",
) -> np.ndarray:
  """Convolutional attention: a causal k x k neighbourhood of the query.

  With h = (kernel - 1) // 2, an image query at cell (r, c) sees the earlier
  image keys (r', c') (and itself) that are within h of it in both axes. What
  "within h" means at the grid edges is `edge`, since the paper only says "with
  wraparound (similar to the row attention)" and its figure is not available
  (PAPER.md 3.4 and 9):

  - "clamp": plain distance, |r - r'| <= h and |c - c'| <= h; the window is
    cut at the grid border. ru-dalle hf_version v3 (drawing D1).
  - "torus": distance measured modulo W in both axes, so the window wraps
    around the left/right and top/bottom borders. ru-dalle v2 (drawing D2).
  - "flat": the kernel is laid on the flattened raster sequence, like the row
    window: key g' is allowed iff g - g' is one of the causal kernel offsets
    dr * W + dc with 0 <= dr <= h, |dc| <= h and (dr > 0 or dc >= 0); a step
    left from column 0 lands on the previous row's last cell. For kernel 3
    the offsets are {0, 1, W - 1, W, W + 1}.

  Causality (g' <= g) always applies on top. None of the three reproduces the
  skipped ru-dalle test drawing D3. The paper uses kernel 11 in the last layer.

  Args:
    text_length: number of text positions.
    grid_side: W, the image grid side.
    kernel: odd kernel side k >= 1.
    edge: one of CONV_EDGES.

  Returns:
    [T, T] bool.
  """
  if kernel < 1 or kernel % 2 == 0:
    raise ValueError(
      f"Bad conv kernel {kernel}: it must be an odd integer >= 1 (the paper"
      f" uses {PAPER_CONV_KERNEL}). Pass an odd kernel side."
    )
  if edge not in CONV_EDGES:
    raise ValueError(
      f"Unknown conv edge rule {edge!r}; allowed: {CONV_EDGES}. Pick one of"
      " them (see the conv_mask docstring for what each means)."
    )
  half = (kernel - 1) // 2
  side = max(grid_side, 1)

  def cyclic_distance(a, b):
    forward = np.mod(a - b, side)
    return np.minimum(forward, side - forward)

  def window(query_row, query_col, key_row, key_col):
    if edge == "clamp":
      return (np.abs(query_row - key_row) <= half) & (
        np.abs(query_col - key_col) <= half
      )
    if edge == "torus":
      return (cyclic_distance(query_row, key_row) <= half) & (
        cyclic_distance(query_col, key_col) <= half
      )
    offset = (query_row - key_row) * side + (query_col - key_col)
    return np.isin(offset, _flat_kernel_offsets(side, half))

  return _compose(text_length, grid_side, window)


def _flat_kernel_offsets(side: int, half: int) -> np.ndarray:
  """Flat raster offsets g - g' of a causal (2h+1)-wide kernel on a W grid."""
  row_steps, col_steps = np.meshgrid(
    np.arange(half + 1), np.arange(-half, half + 1), indexing="ij"
  )
  causal = (row_steps > 0) | (col_steps >= 0)
  # col_steps >= 0 means the key is left of (or at) the query in its row.
  return np.unique((row_steps * side + col_steps)[causal])


@dataclasses.dataclass(frozen=True)
class MaskSpec:
  """Which attention mask a layer uses; hashable, so it can be jit-static.

  Attributes:
    kind: one of MASK_KINDS.
    text_length: number of text positions (256 in the paper).
    grid_side: image grid side W (32 in the paper).
    conv_kernel: kernel side of the "conv" kind (11 in the paper).
    conv_edge: edge rule of the "conv" kind, one of CONV_EDGES.
  """

  kind: str
  text_length: int
  grid_side: int
  conv_kernel: int = PAPER_CONV_KERNEL
  conv_edge: str = "clamp"

  def __post_init__(self):
    if self.kind not in MASK_KINDS:
      raise ValueError(
        f"Unknown mask kind {self.kind!r}; allowed: {MASK_KINDS}. Use"
        " layer_mask_kinds() for the paper's per-layer pattern."
      )
    _check_geometry(self.text_length, self.grid_side)

  @property
  def length(self) -> int:
    """T, the full sequence length."""
    return self.text_length + self.grid_side**2

  def build(self) -> np.ndarray:
    """The mask itself, [T, T] bool."""
    if self.kind == "conv":
      return conv_mask(
        self.text_length, self.grid_side, self.conv_kernel, self.conv_edge
      )
    builders = {"causal": causal_mask, "row": row_mask, "column": column_mask}
    return builders[self.kind](self.text_length, self.grid_side)

  def block_order(self) -> np.ndarray | None:
    """Position order that makes the mask banded, or None for as-is.

    Column masks are banded in column-major image order (PAPER.md 3.4,
    drawing C); the other kinds already are in raster order.

    Returns:
      [T] int64 permutation (new position -> original position), or None.
    """
    if self.kind == "column":
      return column_major_permutation(self.text_length, self.grid_side)
    return None


def column_major_permutation(text_length: int, grid_side: int) -> np.ndarray:
  """Reorder image positions from raster to column-major order.

  Text positions keep their place. `x[..., perm, ...]` is x reordered, and
  `mask[perm][:, perm]` the mask in the new order.

  Returns:
    [T] int64: perm[new position] = original position.
  """
  _check_geometry(text_length, grid_side)
  cells = np.arange(grid_side**2).reshape(grid_side, grid_side)
  image_order = text_length + cells.T.reshape(-1)
  return np.concatenate([np.arange(text_length), image_order])


def layer_mask_kinds(num_layers: int) -> list[str]:
  """The paper's mask kind per layer (App. B.1, Fig. 11 caption).

  With 1-based layer index i: "column" where (i - 2) mod 4 == 0, "row"
  otherwise, and "conv" in the last layer whatever its index. (ru-dalle lets
  the column rule win when the last layer index is 2 mod 4; the paper's
  64-layer model never hits that case.)

  Args:
    num_layers: number of transformer layers, >= 1.

  Returns:
    num_layers kinds, e.g. ["row", "column", "row", "row", ..., "conv"].
  """
  if num_layers < 1:
    raise ValueError(
      f"Bad num_layers={num_layers}: it must be >= 1 (the paper uses 64)."
    )
  kinds = [
    "column" if (layer - 2) % 4 == 0 else "row"
    for layer in range(1, num_layers + 1)
  ]
  kinds[-1] = "conv"
  return kinds
