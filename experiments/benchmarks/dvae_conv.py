"""The shapes64 dVAE train step under each 3x3 conv algorithm, side by side.

`DVAEConfig.conv_algorithm` chooses how the dVAE's 3x3 convs compute
(`dalle_jax.models.dvae.conv_algorithm`): XLA's convolution ('direct'),
Winograd F(2x2, 3x3) ('winograd'), XLA's convolution on channels
zero-padded to `PAD_CHANNELS_TO` ('padded'), or a per-layer choice
('auto', the default). All compute the same function, which the first
losses confirm. This builds the dVAE stage's own Task train step
(shapes64 config, random batch of 32 images at 64 px) once per algorithm in
one process, compiles and warms each up, then times them in rounds with the
order rotated per round, and prints each one's median step time and its
speed against the first.

Measured (2026-12-05, jax 0.10.2, 2-core AMD EPYC with AVX2, quiet
machine, 4 rounds of 3 steps): direct 1.437 s, auto 1.227 s (1.17x),
padded 1.234 s (1.16x); first losses bitwise equal. ('auto' pads the
same convs as 'padded' here: no layer of this model is wide enough for
Winograd.) An hour earlier, with the padding written into a copy of the
model: direct 1.210 s, padded 1.130 s (1.07x). The shapes64 model's
full-resolution groups are 4 channels wide inside their residual blocks,
which XLA's CPU convolution handles slowly.

Run from the repository root, on a quiet machine (about 3 minutes):

  python -m experiments.benchmarks.dvae_conv
  python -m experiments.benchmarks.dvae_conv --rounds 1 --repeats 2  # smoke
"""

import argparse
import contextlib
import dataclasses

from dalle_jax.models import dvae as dvae_model
from dalle_jax.tasks import dvae as dvae_task
from experiments.benchmarks.text_length import (
  build_step,
  medians_and_speedups,
  time_in_rounds,
)

DEFAULT_ALGORITHMS = ("direct", "auto", "padded")


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--algorithms",
    nargs="+",
    choices=dvae_model.CONV_ALGORITHMS,
    default=DEFAULT_ALGORITHMS,
  )
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=3)
  return parser.parse_args(argv)


@contextlib.contextmanager
def conv_algorithm(algorithm: str):
  """Tasks built inside give their dVAE this `conv_algorithm`.

  The run config has no such field (the algorithm changes the speed, not
  the function), so the dVAE task's `model_config` is wrapped while the
  step is built.
  """
  original = dvae_task.model_config

  def with_algorithm(config):
    return dataclasses.replace(original(config), conv_algorithm=algorithm)

  dvae_task.model_config = with_algorithm
  try:
    yield
  finally:
    dvae_task.model_config = original


def main(argv=None):
  args = parse_args(argv)
  built = {}
  for algorithm in args.algorithms:
    with conv_algorithm(algorithm):
      built[algorithm] = build_step("dvae", None)
  seconds = time_in_rounds(built, args.rounds, args.repeats)
  for algorithm, (median, speedup) in medians_and_speedups(seconds).items():
    print(
      f"{algorithm:10s} {median:.3f} s a step (median of "
      f"{len(seconds[algorithm])}), {speedup:.2f}x the speed of "
      f"{args.algorithms[0]}; first loss {built[algorithm]['loss']:.6f}"
    )


if __name__ == "__main__":
  main()
