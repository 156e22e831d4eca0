"""Compile time of each stage's parameter init: flat draws against N-d draws.

`dalle_jax.models.initializers` draws every parameter's random numbers as
one flat vector and reshapes it; jax's own initializers draw in the
parameter's shape. The values are bitwise equal (tests/test_initializers.py);
XLA:CPU compiles the flat draws much faster. This compiles each stage's
jitted init (the shapes64 configs; the transformer's model init) both ways
in one process, alternating, with no compilation cache, and prints the
median compile time of each and their ratio, and whether the initialised
parameters are equal.

Measured (2026-12-05, jax 0.10.2, 2-core AMD EPYC with AVX2, quiet
machine, 2 rounds): dVAE 12.0 s flat against 41.3 s N-d (3.4x), CLIP 6.5
against 9.6 s (1.5x), transformer 6.2 against 8.8 s (1.4x); parameters
equal. One `jax.random.bits` of shape 3x3x16x16 compiled in 6.7 s, the same
2,304 numbers drawn flat in 0.7 s: XLA:CPU's LLVM back end is slow on the
fused counter kernels of 4-d draws.

Run from the repository root, on a quiet machine (several minutes; the
N-d dVAE init alone compiles for about a minute):

  python -m experiments.benchmarks.init_compile
  python -m experiments.benchmarks.init_compile --stages clip --rounds 1
"""

import argparse
import contextlib
import statistics
import time

import jax
import numpy as np

from dalle_jax import sharding
from dalle_jax.models import initializers
from experiments.benchmarks.sampling import random_inputs
from experiments.benchmarks.xla_cpu_flags import (
  shapes64_task,
  shapes64_transformer,
)

STAGES = ("dvae", "clip", "transformer")
VARIANTS = ("flat", "nd")


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--stages", nargs="+", choices=STAGES, default=STAGES)
  parser.add_argument("--rounds", type=int, default=2)
  return parser.parse_args(argv)


@contextlib.contextmanager
def draws(variant: str):
  """Initializers built and traced inside draw 'flat' (as shipped) or 'nd'.

  'nd' draws in each parameter's own shape, as jax's initializers do: the
  compile time this module had before it drew flat.
  """
  saved = initializers._flat_normal, initializers._flat_truncated_normal
  if variant == "nd":
    initializers._flat_normal = jax.random.normal
    initializers._flat_truncated_normal = lambda key, shape, dtype: (
      jax.random.truncated_normal(key, -2, 2, shape, dtype)
    )
  try:
    yield
  finally:
    initializers._flat_normal, initializers._flat_truncated_normal = saved


def stage_init(stage: str):
  """`init(key) -> params tree` of the stage at its shapes64 size."""
  if stage == "transformer":
    model = shapes64_transformer()[1]
    text, codes = random_inputs(model.config, 1)
    return lambda key: sharding.unbox(model.init(key, text, codes))
  task = shapes64_task(stage)[1]
  return lambda key: sharding.unbox(task.init(key)).params


def compile_seconds(stage: str, variant: str):
  """(seconds to lower and compile the init, its parameters)."""
  with draws(variant):
    init = jax.jit(stage_init(stage))
    start = time.perf_counter()
    compiled = init.lower(jax.random.key(0)).compile()
    seconds = time.perf_counter() - start
  return seconds, jax.device_get(compiled(jax.random.key(0)))


def main(argv=None):
  args = parse_args(argv)
  jax.config.update("jax_enable_compilation_cache", False)
  for stage in args.stages:
    seconds = {variant: [] for variant in VARIANTS}
    params = {}
    for round_index in range(args.rounds):
      order = VARIANTS if round_index % 2 == 0 else VARIANTS[::-1]
      for variant in order:
        taken, params[variant] = compile_seconds(stage, variant)
        seconds[variant].append(taken)
    leaves = [jax.tree.leaves(params[variant]) for variant in VARIANTS]
    equal = all(np.array_equal(a, b) for a, b in zip(*leaves, strict=True))
    flat, nd = (statistics.median(seconds[v]) for v in VARIANTS)
    print(
      f"{stage:12s} init compile: flat {flat:.1f} s, N-d {nd:.1f} s "
      f"({nd / flat:.1f}x faster flat; medians of {args.rounds}); "
      f"parameters equal: {equal}"
    )


if __name__ == "__main__":
  main()
