"""What a shorter text length saves in the Shapes train steps.

Shapes captions are at most 12 BPE tokens with the default pipeline's
tokenizer, yet the shapes64 configs give the text 32 positions: at least
20 of them, in the transformer's 96 positions and in CLIP's text tower,
are padding.
This builds the CLIP and transformer shapes64 train steps once per text
length in one process (random batches; see `xla_cpu_flags` for what each
step contains), compiles and warms each up, then times them in rounds with
the order rotated per round, so every length sees the same background
load. It prints per stage the median step time of each length over all
timed steps and its speed-up over the first length (> 1 is faster).

Measured (2026-11-22, jax 0.10.2, 2-core Xeon with AVX-512, quiet machine,
4 rounds of 5 steps): transformer 0.828 s at 32, 0.657 s at 16 (1.26x
faster: 80 instead of 96 positions; the attention tiles of 32 still cover
96); CLIP 0.433 vs 0.432 s (1.00x: its text tower is small next to the
ViT). Whether 16 positions keep the default's accuracy is measured in the
notes of issue 6 (one 2,000-step run, which also shortened the schedule).

Run from the repository root, on a quiet machine (about 2 minutes):

  python -m experiments.benchmarks.text_length
  python -m experiments.benchmarks.text_length --rounds 1 --repeats 2  # smoke
"""

import argparse
import statistics
import time

import jax

from experiments.benchmarks.xla_cpu_flags import task_step, transformer_step

STAGES = ("transformer", "clip")


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--lengths", type=int, nargs="+", default=[32, 16])
  parser.add_argument("--stages", nargs="+", choices=STAGES, default=STAGES)
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=5)
  return parser.parse_args(argv)


def build_step(stage: str, text_length: int, **model_overrides):
  """A jitted step with its state and batch, compiled and warmed up.

  `model_overrides` replace the stage's `config.model` fields. The result
  holds the warm-up step's loss, which variants computing the same
  function must share.
  """
  if stage == "transformer":
    step, state, batch = transformer_step(text_length, **model_overrides)
  else:
    step, state, batch = task_step(stage, text_length, **model_overrides)
  rng = jax.random.key(0)
  state, metrics = step(state, batch, rng)
  jax.block_until_ready((state, metrics))
  loss = float(metrics["loss"])
  return {
    "step": step,
    "state": state,
    "batch": batch,
    "rng": rng,
    "loss": loss,
  }


def time_steps(built: dict, repeats: int) -> list[float]:
  """Seconds of each of `repeats` steps (the state carries over)."""
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    state, metrics = built["step"](built["state"], built["batch"], built["rng"])
    jax.block_until_ready((state, metrics))
    seconds.append(time.perf_counter() - start)
    built["state"] = state
  return seconds


def time_in_rounds(built: dict, rounds: int, repeats: int) -> dict:
  """Seconds per step of each built step, `repeats` at a time per round.

  The order rotates each round so that every variant sees the same
  background load. Returns {key of `built`: [seconds, ...]}.
  """
  keys = list(built)
  seconds = {key: [] for key in keys}
  for round_index in range(rounds):
    shift = round_index % len(keys)
    for key in keys[shift:] + keys[:shift]:
      seconds[key] += time_steps(built[key], repeats)
  return seconds


def medians_and_speedups(seconds: dict) -> dict:
  """{key: (median seconds, speed against the first key)} of `seconds`.

  `seconds` is what `time_in_rounds` returns; > 1 is faster than the first.
  """
  medians = {key: statistics.median(values) for key, values in seconds.items()}
  baseline = next(iter(medians.values()))
  return {key: (median, baseline / median) for key, median in medians.items()}


def main(argv=None):
  args = parse_args(argv)
  for stage in args.stages:
    built = {length: build_step(stage, length) for length in args.lengths}
    seconds = time_in_rounds(built, args.rounds, args.repeats)
    for length, (median, speedup) in medians_and_speedups(seconds).items():
      print(
        f"{stage:12s} text length {length:4d}: {median:.3f} s a step"
        f" (median of {len(seconds[length])}), {speedup:.2f}x"
        f" the speed at {args.lengths[0]}"
      )
    del built


if __name__ == "__main__":
  main()
