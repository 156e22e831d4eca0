"""3x3 'same' convolutions by Winograd's minimal filtering F(2x2, 3x3).

F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural
Networks", 2016) computes each 2x2 tile of outputs from the 4x4 tile of
inputs around it: transform the input tile (`B^T d B`) and the kernel
(`G g G^T`), multiply them elementwise, transform back (`A^T m A`). Summed
over input channels, the elementwise products are 16 matmuls of
`[tiles, C_in] x [C_in, C_out]`, 16 multiplies per 4 outputs where a direct
3x3 conv needs 36: 2.25x fewer.

Why here: XLA:CPU's direct convolution runs the paper-size dVAE's wide 3x3
convs at 50-66 GFLOP/s on a CPU whose matmul peak is about 71 (2-core AMD
EPYC, jax 0.10.2); as F(2x2, 3x3) the same convs take 0.55-0.85x the time
when the channels are wide enough for the matmuls to outweigh the
transforms, which are memory-bound elementwise work (e.g. 512 -> 256
channels at 64x64, batch 4: 583 -> 383 ms; 64 -> 64 at 256x256: 335 -> 439
ms, slower). `dalle_jax.models.dvae` picks the algorithm per layer.

Numerics: the transforms' coefficients are 0, +-1/2 and +-1, so float32
results differ from the direct conv by float rounding only (about 1e-6
relative per layer, measured); the parity tests bound it.

Shape letters: B batch, H, W spatial, C_in / C_out channels, h = ceil(H/2),
w = ceil(W/2) tiles.
"""

import jax
import jax.numpy as jnp
import numpy as np

# B^T: input tile (4) -> transformed tile (4), along each axis.
INPUT_TRANSFORM = np.array(
  [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32
)
# G: kernel taps (3) -> transformed taps (4), along each axis.
KERNEL_TRANSFORM = np.array(
  [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32
)
# A^T: transformed products (4) -> outputs (2), along each axis.
OUTPUT_TRANSFORM = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)


def _combine(coefficients: np.ndarray, terms: list[jax.Array]) -> jax.Array:
  """`sum(c * t)` for the non-zero coefficients, with no multiply for +-1.

  The transforms are small constant matrices; written out as adds of array
  views, XLA fuses each transformed tile into one elementwise loop.
  """
  total = None
  for coefficient, term in zip(coefficients, terms, strict=True):
    if coefficient == 0:
      continue
    if coefficient == -1:
      term = -term
    elif coefficient != 1:
      term = coefficient * term
    total = term if total is None else total + term
  return total


def _two_sided(
  left: np.ndarray, grid: list[list[jax.Array]], right: np.ndarray
) -> list[list[jax.Array]]:
  """`left @ grid @ right.T` for a grid (list of lists) of arrays.

  The matrices are constants, so each output entry is a `_combine` of the
  grid's entries: one fused elementwise loop per entry.
  """
  rows, cols = len(grid), len(grid[0])
  by_rows = [
    [_combine(left[a], [grid[i][j] for i in range(rows)]) for j in range(cols)]
    for a in range(len(left))
  ]
  return [
    [_combine(right[b], by_rows[a]) for b in range(len(right))]
    for a in range(len(left))
  ]


def _flatten(grid: list[list[jax.Array]]) -> jax.Array:
  """A 4x4 grid of equal-shape arrays -> `[16, ...]`, row-major."""
  return jnp.stack([entry for row in grid for entry in row])


def transform_kernel(kernel: jax.Array) -> jax.Array:
  """`G g G^T` for every channel pair.

  Args:
    kernel: `[3, 3, C_in, C_out]` (HWIO, as `flax.linen.Conv`).

  Returns:
    `[16, C_in, C_out]`, the 4x4 transformed taps in row-major order.
  """
  # Written out as `_combine`s of the 9 taps (one fused elementwise pass),
  # not as an einsum, which XLA:CPU ran as transposing dots: at 1024 -> 512
  # channels it cost more than the convolution saved at batch 1.
  taps = [[kernel[i, j] for j in range(3)] for i in range(3)]
  return _flatten(_two_sided(KERNEL_TRANSFORM, taps, KERNEL_TRANSFORM))


def _transformed_input_tiles(x: jax.Array) -> jax.Array:
  """`B^T d B` of every 4x4 input tile (stride 2).

  Args:
    x: `[B, 2h + 2, 2w + 2, C_in]`, the input already zero-padded.

  Returns:
    `[16, B, h, w, C_in]`.
  """
  rows, cols = (x.shape[1] - 2) // 2, (x.shape[2] - 2) // 2
  # Tile (i, j) reads x[2i + u, 2j + v] for u, v in 0..3: the strided
  # view starting at (u, v) holds that entry of every tile at once.
  views = [
    [x[:, u : u + 2 * rows : 2, v : v + 2 * cols : 2, :] for v in range(4)]
    for u in range(4)
  ]
  return _flatten(_two_sided(INPUT_TRANSFORM, views, INPUT_TRANSFORM))


def _output_tiles(products: jax.Array) -> jax.Array:
  """`A^T m A` of every tile, interleaved back into the output grid.

  Args:
    products: `[16, B, h, w, C_out]`.

  Returns:
    `[B, 2h, 2w, C_out]`.
  """
  grid = [[products[4 * a + b] for b in range(4)] for a in range(4)]
  outputs = _two_sided(OUTPUT_TRANSFORM, grid, OUTPUT_TRANSFORM)
  # outputs[r][s] is output pixel (2i + r, 2j + s) of every tile (i, j).
  tiles = jnp.stack([jnp.stack(row, axis=3) for row in outputs], axis=2)
  batch, rows, _, cols, _, channels = tiles.shape
  return tiles.reshape(batch, 2 * rows, 2 * cols, channels)


def conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """A stride-1 3x3 'same' convolution (cross-correlation, as `nn.Conv`).

  Equal to `lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))` up to float rounding, for
  any H and W (an odd side gets one more zero row or column, cropped from
  the output).

  Args:
    x: `[B, H, W, C_in]` float.
    kernel: `[3, 3, C_in, C_out]`, same dtype as `x`.

  Returns:
    `[B, H, W, C_out]`, dtype of `x`.

  Raises:
    ValueError: if the kernel is not 3x3 or its input channels differ
      from `x`'s.
  """
  if kernel.shape[:2] != (3, 3) or kernel.shape[2] != x.shape[-1]:
    raise ValueError(
      f"conv3x3 needs a [3, 3, {x.shape[-1]}, C_out] kernel for inputs "
      f"{x.shape}; got {kernel.shape}."
    )
  _, height, width, _ = x.shape
  # 'same' padding of 1, plus one zero row / column when a side is odd so
  # that the tiles cover it.
  padded = jnp.pad(x, ((0, 0), (1, 1 + height % 2), (1, 1 + width % 2), (0, 0)))
  tiles = _transformed_input_tiles(padded)
  products = jnp.einsum("tbhwc,tcd->tbhwd", tiles, transform_kernel(kernel))
  return _output_tiles(products)[:, :height, :width, :]
