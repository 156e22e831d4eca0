"""What CLIP's convolutional stem costs in the shapes64 train step.

`CLIPConfig.stem_widths` puts 3x3 stride-2 convs before the patch
embedding (Xiao et al. 2021); the shapes64 CLIP uses (32, 64, 128) because
it reads the dVAE's decoded shapes far better than linear 8-px patches
(see `dalle_jax/configs/clip.py`). This builds CLIP's shapes64 train step
(loss, gradients and AdamW update on a random batch; see
`xla_cpu_flags.task_step`) once per stem in one process, compiles and warms
each up, then times them in rounds with the order rotated per round, and
prints each stem's median step time, its cost against the first variant
and its FLOPs per step from XLA's cost analysis.

Variants are comma-separated stem widths; 'none' is the linear patch
embedding (OpenAI's), e.g. `none 16,32 32,64,128`.

Measured by this script (2026-12-05, jax 0.10.2, 2-core AMD EPYC, quiet
machine, 3 rounds of 3 steps, 77 s in all): none 0.646 s, 25.9 GFLOP;
16,32 0.657 s (1.02x the time), 26.4 GFLOP; 32,64,128 0.790 s (1.22x),
29.5 GFLOP. A throwaway script with the same steps on the slower machine
of the day before: 0.76 / 0.80 / 0.98 s (1.00 / 1.06 / 1.29x).

Run from the repository root, on a quiet machine (about 2 minutes):

  python -m experiments.benchmarks.clip_stem
  python -m experiments.benchmarks.clip_stem --rounds 1 --repeats 2  # smoke
"""

import argparse

from experiments.benchmarks.text_length import (
  build_step,
  medians_and_speedups,
  time_in_rounds,
)

DEFAULT_VARIANTS = ("none", "16,32", "32,64,128")


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=3)
  return parser.parse_args(argv)


def parse_variant(variant: str) -> tuple[int, ...]:
  """'32,64,128' -> (32, 64, 128); 'none' -> () (linear patches)."""
  if variant == "none":
    return ()
  try:
    return tuple(int(width) for width in variant.split(","))
  except ValueError:
    raise SystemExit(
      f"Cannot read the variant {variant!r}: write comma-separated stem"
      " widths (e.g. 32,64,128) or 'none'."
    ) from None


def step_gflops(built: dict) -> float:
  """XLA's FLOP count of one compiled step, in GFLOP."""
  compiled = (
    built["step"].lower(built["state"], built["batch"], built["rng"]).compile()
  )
  analysis = compiled.cost_analysis()
  # Older jax returns one dict per device program.
  if isinstance(analysis, list):
    analysis = analysis[0]
  return analysis["flops"] / 1e9


def main(argv=None):
  args = parse_args(argv)
  widths = {variant: parse_variant(variant) for variant in args.variants}
  built = {
    variant: build_step("clip", None, stem_widths=stem)
    for variant, stem in widths.items()
  }
  gflops = {variant: step_gflops(step) for variant, step in built.items()}
  seconds = time_in_rounds(built, args.rounds, args.repeats)
  for variant, (median, speedup) in medians_and_speedups(seconds).items():
    print(
      f"clip stem {variant:12s}: {median:.3f} s a step (median of"
      f" {len(seconds[variant])}), {1 / speedup:.2f}x the time of"
      f" {args.variants[0]}, {gflops[variant]:.1f} GFLOP a step"
    )


if __name__ == "__main__":
  main()
