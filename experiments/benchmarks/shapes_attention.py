"""Which attention the Shapes prior's train step should use, side by side.

At the shapes64 geometry (32 text + 8x8 image positions, T = 96) the
attention scores are a small share of a step's FLOPs (T / (6 E) = 8% at
width 192), and block-sparse attention's tiles of 32 cover the whole
lower triangle of a 3 x 3 tile square: its gathers and the column layers'
permutations may cost more than the few tiles it skips. This builds the
transformer's shapes64 train step (loss, gradients and AdamW update on
random ids; see `xla_cpu_flags.transformer_step`) once per variant in one
process, compiles and warms each up, then times them in rounds with the
order rotated per round, and prints each variant's median step time and
its speed against the first. All variants compute the same function (the
masks are equal), which the first losses confirm.

Measured (2026-11-22, jax 0.10.2, 2-core Xeon with AVX-512, quiet machine,
4 rounds of 5 steps; first losses equal within each text length):
block_sparse:32:32 0.745 s, dense:32:32 0.728 s (1.02x), block_sparse:16:32
0.816 s (0.91x: more, smaller tiles), block_sparse:32:16 0.632 s (1.18x),
dense:32:16 0.597 s (1.25x). At 96 positions the two attentions are within
noise of each other: a step is its matmuls, so the shapes64 config keeps
the paper's block-sparse layers, and a shorter text is the lever.

Variants are `attention:block_size:text_length`, e.g. `dense:32:32`
(block_size is ignored by dense attention).

Run from the repository root, on a quiet machine (about 3 minutes):

  python -m experiments.benchmarks.shapes_attention
  python -m experiments.benchmarks.shapes_attention --rounds 1 --repeats 2
"""

import argparse

from experiments.benchmarks.text_length import (
  build_step,
  medians_and_speedups,
  time_in_rounds,
)

DEFAULT_VARIANTS = (
  "block_sparse:32:32",
  "dense:32:32",
  "block_sparse:16:32",
  "block_sparse:32:16",
  "dense:32:16",
)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=5)
  return parser.parse_args(argv)


def parse_variant(variant: str) -> dict:
  """`'dense:32:16'` -> the model and data overrides it names."""
  try:
    attention, block_size, text_length = variant.split(":")
    return {
      "attention": attention,
      "block_size": int(block_size),
      "text_length": int(text_length),
    }
  except ValueError as error:
    raise SystemExit(
      f"variant {variant!r} is not attention:block_size:text_length "
      f"(e.g. dense:32:32): {error}"
    ) from error


def main(argv=None):
  args = parse_args(argv)
  built = {}
  for variant in args.variants:
    overrides = parse_variant(variant)
    built[variant] = build_step(
      "transformer", overrides.pop("text_length"), **overrides
    )
  seconds = time_in_rounds(built, args.rounds, args.repeats)
  for variant, (median, speedup) in medians_and_speedups(seconds).items():
    print(
      f"{variant:20s} {median:.3f} s a step (median of "
      f"{len(seconds[variant])}), {speedup:.2f}x the speed of "
      f"{args.variants[0]}; first loss {built[variant]['loss']:.6f}"
    )


if __name__ == "__main__":
  main()
