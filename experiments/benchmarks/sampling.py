"""Times KV-cached sampling against re-running the full forward per token.

For each image grid it builds a transformer with random params and jits two
samplers once: "cached" (one prefill over the text, then one
`decode_step` per image token inside `sampling.sample_image_codes`) and
"uncached" (a fori_loop that runs the whole teacher-forced forward pass over
[text ; codes so far] for every token and reads the next position's logits).
Both draw with the same per-row keys, so their codes agree up to float noise.
After a warm-up call it reports the median seconds per image of each, the
ratio uncached / cached, and the fraction of codes on which they agree.

Run from the repository root:

  python -m experiments.benchmarks.sampling                      # CPU sizes
  python -m experiments.benchmarks.sampling --grids 4 --layers 2 \
      --heads 2 --head_dim 8 --text_length 8 --repeats 1      # smoke
"""

import argparse
import functools
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dalle_jax import losses, sampling
from dalle_jax.models import transformer
from dalle_jax.models.transformer import Transformer, TransformerConfig


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--grids", default="8,16", help="grid sides W")
  parser.add_argument("--layers", type=int, default=8)
  parser.add_argument("--heads", type=int, default=8)
  parser.add_argument("--head_dim", type=int, default=32)
  parser.add_argument("--text_length", type=int, default=32)
  parser.add_argument("--text_vocab", type=int, default=1024)
  parser.add_argument("--image_vocab", type=int, default=1024)
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument(
    "--attention", default="block_sparse", choices=["block_sparse", "dense"]
  )
  parser.add_argument(
    "--dtype", default="float32", choices=["float32", "bfloat16"]
  )
  parser.add_argument("--temperature", type=float, default=1.0)
  parser.add_argument(
    "--greedy", action="store_true", help="argmax decoding (no sampling)"
  )
  parser.add_argument("--top_k", type=int, default=None)
  parser.add_argument("--top_p", type=float, default=None)
  parser.add_argument("--repeats", type=int, default=3)
  return parser.parse_args()


def random_params(config: TransformerConfig, seed: int = 0):
  """N(0, 0.02) params of the model's shapes, drawn without compiling."""
  text = jnp.zeros((1, config.text_length), jnp.int32)
  codes = jnp.zeros((1, config.num_image_tokens), jnp.int32)
  abstract = jax.eval_shape(
    Transformer(config).init, jax.random.key(0), text, codes
  )
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda leaf: rng.normal(0, 0.02, leaf.shape).astype(np.float32),
    nn.unbox(abstract)["params"],
  )


def random_inputs(config: TransformerConfig, batch: int, seed: int = 0):
  """([B, L], [B, N]) int32 text ids (never pad 0) and image codes."""
  rng = np.random.default_rng(seed)
  bpe_vocab = config.text_vocab_size - config.text_length
  text = rng.integers(1, bpe_vocab, (batch, config.text_length))
  codes = rng.integers(
    0, config.image_vocab_size, (batch, config.num_image_tokens)
  )
  return text.astype(np.int32), codes.astype(np.int32)


def prior_loss(model: Transformer):
  """`(params, text [B, L], codes [B, N]) -> loss`: `losses.dalle_loss`."""

  def loss_fn(params, text_tokens, image_codes):
    text_logits, image_logits = model.apply(
      {"params": params}, text_tokens, image_codes
    )
    loss, _ = losses.dalle_loss(
      text_logits, image_logits, text_tokens, image_codes
    )
    return loss

  return loss_fn


def cached_sampler(config: TransformerConfig, args):
  """jit(params, text, rngs) -> codes: prefill, then one step per token."""

  def sample(params, text, rngs):
    first, cache = transformer.prefill(config, params, text)
    step = functools.partial(transformer.decode_step, config, params)
    return sampling.sample_image_codes(
      step,
      first,
      cache,
      rngs,
      config.num_image_tokens,
      args.temperature,
      args.top_k,
      args.top_p,
      greedy=args.greedy,
    )

  return jax.jit(sample)


def uncached_sampler(config: TransformerConfig, args):
  """jit(params, text, rngs) -> codes: the full forward pass per token."""
  model = Transformer(config)

  def pick(logits, rngs, index):
    if args.greedy:
      return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    filtered = sampling.filter_logits(
      logits, args.temperature, args.top_k, args.top_p
    )
    draw = jax.vmap(
      lambda key, row: jax.random.categorical(
        jax.random.fold_in(key, index), row
      )
    )
    return draw(rngs, filtered).astype(jnp.int32)

  def sample(params, text, rngs):
    def body(index, codes):
      _, image_logits = model.apply({"params": params}, text, codes)
      logits = jax.lax.dynamic_index_in_dim(
        image_logits, index, axis=1, keepdims=False
      )
      return codes.at[:, index].set(pick(logits, rngs, index))

    codes = jnp.zeros((text.shape[0], config.num_image_tokens), jnp.int32)
    return jax.lax.fori_loop(0, config.num_image_tokens, body, codes)

  return jax.jit(sample)


def median_seconds(fn, args, repeats: int):
  """(median wall time of fn(*args), last output), after one warm-up."""
  out = jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times), out


def time_grid(grid: int, args) -> dict:
  config = TransformerConfig(
    text_vocab_size=args.text_vocab + args.text_length,
    text_length=args.text_length,
    image_vocab_size=args.image_vocab,
    grid_side=grid,
    num_layers=args.layers,
    num_heads=args.heads,
    head_dim=args.head_dim,
    attention=args.attention,
    dtype=args.dtype,
  )
  params = random_params(config)
  rng = np.random.default_rng(1)
  text = rng.integers(
    0, config.text_vocab_size, (args.batch, config.text_length)
  ).astype(np.int32)
  rngs = sampling.row_keys(
    0, np.arange(args.batch), np.zeros(args.batch, np.int32)
  )
  inputs = (params, text, rngs)
  cached, cached_codes = median_seconds(
    cached_sampler(config, args), inputs, args.repeats
  )
  uncached, uncached_codes = median_seconds(
    uncached_sampler(config, args), inputs, args.repeats
  )
  return dict(
    grid=grid,
    tokens=config.num_image_tokens,
    cached=cached / args.batch,
    uncached=uncached / args.batch,
    agree=float(np.mean(np.asarray(cached_codes) == uncached_codes)),
  )


def main():
  args = parse_args()
  print(
    f"backend={jax.default_backend()} layers={args.layers}"
    f" heads={args.heads}x{args.head_dim} text={args.text_length}"
    f" batch={args.batch} attention={args.attention} dtype={args.dtype}"
    f" temperature={args.temperature} greedy={args.greedy}"
    f" repeats={args.repeats};"
    " seconds per image (median), x = uncached / cached"
  )
  print(
    f"{'W':>4} {'N':>6} {'cached':>10} {'uncached':>10} {'x':>7} {'agree':>6}"
  )
  for grid in (int(g) for g in args.grids.split(",")):
    row = time_grid(grid, args)
    print(
      f"{row['grid']:>4} {row['tokens']:>6} {row['cached']:10.4f}"
      f" {row['uncached']:10.4f} {row['uncached'] / row['cached']:7.2f}"
      f" {row['agree']:6.3f}",
      flush=True,
    )


if __name__ == "__main__":
  main()
