"""Times block-sparse against dense masked attention, side by side.

For each image grid and mask kind it jits forward and forward+backward of
both implementations once, warms them up, then reports the median time per
call, the ratio dense / sparse, and the tile counts (non-empty tiles, tiles
computed including padding slots, and the dense N x N square).

Run from the repository root:

  python -m experiments.benchmarks.attention                 # paper sizes
  python -m experiments.benchmarks.attention --grids 16 --repeats 3  # smoke
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from dalle_jax.models.attention import (
  DEFAULT_BLOCK_SIZE,
  block_sparse_attention,
  dense_masked_attention,
  layout_for,
)
from dalle_jax.models.masks import MaskSpec


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--grids", default="16,32,64", help="grid sides W")
  parser.add_argument("--kinds", default="row,column,conv")
  parser.add_argument("--text_length", type=int, default=256)
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--head_dim", type=int, default=64)
  parser.add_argument(
    "--block_sizes", default=str(DEFAULT_BLOCK_SIZE), help="e.g. 32,64,128"
  )
  parser.add_argument(
    "--dtype", default="float32", choices=["float32", "bfloat16"]
  )
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument(
    "--skip_dense", action="store_true", help="time block-sparse only"
  )
  return parser.parse_args()


def median_seconds(fn, args, repeats: int) -> float:
  """Median wall time of fn(*args) after one warm-up call (compiles)."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def forward_and_train_fns(attention):
  """Jitted forward and forward+backward (grads of q, k, v) of attention."""

  def loss(q, k, v, cotangent):
    out = attention(q, k, v).astype(jnp.float32)
    return jnp.sum(out * cotangent)

  forward = jax.jit(lambda q, k, v, cotangent: attention(q, k, v))
  train = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  return forward, train


def random_inputs(length: int, args):
  keys = jax.random.split(jax.random.key(0), 4)
  shape = (args.batch, length, args.heads, args.head_dim)
  dtype = jnp.dtype(args.dtype)
  q, k, v = (jax.random.normal(key, shape, dtype) for key in keys[:3])
  return q, k, v, jax.random.normal(keys[3], shape, jnp.float32)


def time_pair(spec: MaskSpec, block_size: int, args) -> dict:
  """Times dense and block-sparse attention for one mask; returns a row."""
  layout = layout_for(spec, block_size)
  inputs = random_inputs(spec.length, args)
  row = dict(
    grid=spec.grid_side,
    kind=spec.kind,
    length=spec.length,
    block=block_size,
    tiles=f"{layout.num_tiles}/{layout.computed_tiles}/{layout.num_blocks**2}",
    fraction=layout.tile_fraction,
  )
  implementations = {
    "sparse": lambda q, k, v: block_sparse_attention(q, k, v, layout)
  }
  if not args.skip_dense:
    mask = spec.build()
    implementations["dense"] = lambda q, k, v: dense_masked_attention(
      q, k, v, mask
    )
  for name, attention in implementations.items():
    forward, train = forward_and_train_fns(attention)
    row[f"{name}_fwd"] = median_seconds(forward, inputs, args.repeats)
    row[f"{name}_train"] = median_seconds(train, inputs, args.repeats)
  return row


def format_row(row: dict) -> str:
  def ms(key):
    return f"{row[key] * 1e3:9.2f}" if key in row else f"{'-':>9}"

  def ratio(mode):
    if f"dense_{mode}" not in row:
      return f"{'-':>6}"
    return f"{row[f'dense_{mode}'] / row[f'sparse_{mode}']:6.2f}"

  return (
    f"{row['grid']:>4} {row['kind']:>6} {row['length']:>6} {row['block']:>5}"
    f" {row['tiles']:>16} {row['fraction']:6.3f}"
    f" {ms('dense_fwd')} {ms('sparse_fwd')} {ratio('fwd')}"
    f" {ms('dense_train')} {ms('sparse_train')} {ratio('train')}"
  )


HEADER = (
  f"{'W':>4} {'kind':>6} {'T':>6} {'Z':>5} {'tiles used/comp/N^2':>16}"
  f" {'frac':>6} {'dense_f':>9} {'sparse_f':>9} {'x_f':>6}"
  f" {'dense_fb':>9} {'sparse_fb':>9} {'x_fb':>6}"
)


def main():
  args = parse_args()
  print(
    f"backend={jax.default_backend()} batch={args.batch} heads={args.heads}"
    f" head_dim={args.head_dim} text={args.text_length} dtype={args.dtype}"
    f" repeats={args.repeats}; times in ms per call (median),"
    " _f forward, _fb forward+backward, x = dense/sparse"
  )
  print(HEADER)
  for grid in (int(g) for g in args.grids.split(",")):
    for block_size in (int(b) for b in args.block_sizes.split(",")):
      for kind in args.kinds.split(","):
        spec = MaskSpec(kind, args.text_length, grid)
        print(format_row(time_pair(spec, block_size, args)), flush=True)


if __name__ == "__main__":
  main()
