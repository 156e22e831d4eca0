"""Where our transformer train step spends its time, by kind of XLA op.

Issue 4 asks for a train step 1.5x faster than dalle-pytorch's at the
Shapes size; `experiments.benchmarks.dalle_pytorch --case train` measures
the ratio. This profiles our side of that comparison (the same
`jax_train_step` on the same configuration: text 32, 8x8 grid of 512
codes, 6 layers of 4 heads x 64, mlp_ratio 6, batch 16) with
`jax.profiler`, and sums the trace's per-op events into kinds:

- matmul: XLA:CPU's dot kernels (`dot`, and the `ynn_` / `xnn_` /
  `onednn` library fusions that hold a dot in this jaxlib);
- copy: layout copies and transposes (`copy`, `*copy*`, `*transpose*`);
- other: every other fusion (elementwise, reductions, scatters).

XLA:CPU runs independent ops at the same time on the machine's cores, so
the summed op time can exceed the wall time, and an op that shares the
cores looks slower than it is alone: read the shares, not the
milliseconds, and compare them with the wall time per step printed above
them.

Measured (2026-12-06, 2-core AMD EPYC, jax 0.10.2, `--steps 3`): 0.76 s
per step under the profiler (0.60 s untraced in the dalle_pytorch
benchmark); summed op time 0.73 s, of which matmul 0.52 s (71%), copy 0.08
s (11%), other 0.13 s (18%). Fusing q, k and v into one matmul, and the
XLA:CPU flags `--xla_cpu_enable_concurrency_optimized_scheduler`,
`--xla_cpu_use_xnnpack` and an empty `--xla_cpu_experimental_ynn_fusion_type`
each moved the step by less than its noise (0.61-0.67 s, throwaway runs).

Run from the repository root (a quiet machine; about a minute):

  python -m experiments.benchmarks.step_profile
  python -m experiments.benchmarks.step_profile --smoke --steps 1
"""

import argparse
import collections
import gzip
import json
import pathlib
import re
import tempfile
import time

import jax

from experiments.benchmarks import dalle_pytorch
from experiments.benchmarks.sampling import random_inputs

# An HLO instruction's name: lower-case words joined by '_', then '.N'.
HLO_OP_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.\d+)?$")
MATMUL_PREFIXES = ("dot", "ynn_", "xnn_", "onednn")
KINDS = ("matmul", "copy", "other")


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=3, help="traced steps")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument(
    "--smoke", action="store_true", help="tiny model: seconds, no meaning"
  )
  return parser.parse_args(argv)


def op_kind(category: str) -> str:
  """'ynn_fusion' -> 'matmul', 'copy_bitcast_fusion' -> 'copy', ..."""
  if category.startswith(MATMUL_PREFIXES):
    return "matmul"
  if "copy" in category or "transpose" in category:
    return "copy"
  return "other"


def op_seconds(trace_events: list[dict]) -> dict[str, tuple[float, int]]:
  """Summed seconds and count of the HLO-op events per op category.

  Args:
    trace_events: a Chrome trace's `traceEvents`.

  Returns:
    {category: (seconds, events)}, the category being the op name without
    its '.N' suffix ('copy_bitcast_fusion.71' -> 'copy_bitcast_fusion').
  """
  totals = collections.defaultdict(lambda: [0.0, 0])
  for event in trace_events:
    name = event.get("name", "")
    if event.get("ph") != "X" or not HLO_OP_NAME.match(name):
      continue
    category = name.rsplit(".", 1)[0]
    totals[category][0] += event.get("dur", 0) / 1e6
    totals[category][1] += 1
  return {name: (seconds, count) for name, (seconds, count) in totals.items()}


def profile(run, steps: int) -> tuple[float, dict[str, tuple[float, int]]]:
  """Wall seconds per call of `run` and its op seconds over `steps` calls.

  Raises:
    RuntimeError: the trace held no per-op events (a backend or jaxlib
      whose profiler does not record XLA ops).
  """
  run()
  with tempfile.TemporaryDirectory() as trace_dir:
    start = time.perf_counter()
    with jax.profiler.trace(trace_dir):
      for _ in range(steps):
        run()
    wall = (time.perf_counter() - start) / steps
    paths = sorted(pathlib.Path(trace_dir).rglob("*.trace.json.gz"))
    if not paths:
      raise RuntimeError(f"jax.profiler wrote no trace under {trace_dir}.")
    with gzip.open(paths[-1]) as trace_file:
      events = json.load(trace_file)["traceEvents"]
  ops = op_seconds(events)
  if not ops:
    raise RuntimeError(
      "The trace has no XLA op events; this backend's profiler does not "
      "record them, so there is nothing to break down."
    )
  return wall, ops


def summary(wall: float, ops, steps: int) -> str:
  """Lines: wall time, then per kind and per top category, per step."""
  by_kind = collections.Counter()
  for category, (seconds, _) in ops.items():
    by_kind[op_kind(category)] += seconds / steps
  total = sum(by_kind.values())
  lines = [
    f"wall {wall:.3f} s per step; summed op time {total:.3f} s per step"
    " (ops overlap on the cores)"
  ]
  for kind in KINDS:
    lines.append(
      f"  {kind:7s} {by_kind[kind]:.3f} s  {by_kind[kind] / total:5.1%}"
    )
  lines.append("top op categories (seconds per step, ops per step):")
  ranked = sorted(ops.items(), key=lambda item: -item[1][0])
  for category, (seconds, count) in ranked[:12]:
    lines.append(
      f"  {seconds / steps:.4f} s  x{count // steps:4d}  {category}"
      f"  [{op_kind(category)}]"
    )
  return "\n".join(lines)


def main(argv=None):
  args = parse_args(argv)
  options = dalle_pytorch.parse_args(
    ["--case", "train"] + ["--smoke"] * args.smoke
  )
  config = dalle_pytorch.train_config(options)
  text, codes = random_inputs(config, args.batch)
  run = dalle_pytorch.jax_train_step(config, text, codes)
  wall, ops = profile(run, args.steps)
  print(f"train step, batch {args.batch}: {dalle_pytorch.describe(config)}")
  print(summary(wall, ops, args.steps), flush=True)


if __name__ == "__main__":
  main()
