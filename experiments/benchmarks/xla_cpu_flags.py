"""Times the Shapes training steps under XLA:CPU flag sets (oneDNN, XNNPACK).

XLA reads `XLA_FLAGS` once, when the backend starts, so flag sets cannot
share a process: each (flag set, stage) pair runs in a fresh worker process
that builds the stage's shapes64 train step, compiles it, runs one warm-up
step, then times `--repeats` steps (`block_until_ready`) and prints their
median. The parent runs `--rounds` rounds, each over every flag set in
turn, so all sets see the same background load, and prints per stage the
median over rounds, the ratio to the default (no flags; > 1 is faster) and
the first step's loss, which must agree across flag sets (a flag that
changes the numbers beyond float32 reordering is not a speed-up).

Stages (random batches, the shipped `variant=shapes64` configs):
- dvae: the dVAE stage's own Task train step (batch 32, 64 px);
- clip: the CLIP stage's Task train step;
- transformer: the prior's loss, gradients and AdamW update on random text
  ids and image codes (the stage's Task also runs the frozen dVAE encoder,
  which would need a trained dVAE).

Measured (2026-11-22, jax 0.10.2, 2-core Xeon with AVX-512): the first
losses were bitwise equal under every flag set, for all three stages, and
the step times differed by no more than their order in the round did
(transformer: 0.56-0.73 s under both `default` and `onednn`, the slower
always the first worker of the stage): these flags change nothing in this
jaxlib build. The script stays so that a jaxlib that does route
convolutions or matmuls to oneDNN or XNNPACK can be checked in minutes.

`legacy_fusion` (2026-12-05, 2-core AMD EPYC, one round of 8 steps): step
times within 4% of the default (dVAE 1.12 vs 1.15 s, CLIP 1.26 vs 1.25 s,
transformer 1.91 vs 1.99 s) and first losses equal to float32 rounding,
but the first call, which compiles with XLA's optimisations on, took
longer (dVAE 37 vs 30 s, CLIP 50 vs 23 s, transformer 37 vs 21 s). So it
is no gain for training; the tests use it because, with the optimisation
passes off, it halves their compile time (`tests/conftest.py`).

Run from the repository root (a quiet machine; about 20 s per worker):

  python -m experiments.benchmarks.xla_cpu_flags
  python -m experiments.benchmarks.xla_cpu_flags --stages dvae --rounds 1 \
      --repeats 2                                             # smoke
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FLAG_SETS = {
  "default": "",
  "onednn": "--xla_cpu_use_onednn=true",
  "onednn_custom_call": (
    "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true"
  ),
  "xnnpack": "--xla_cpu_use_xnnpack=true",
  # XLA:CPU's fusion emitters before its MLIR-based ones (the tests compile
  # with it: about half the compile time).
  "legacy_fusion": "--xla_cpu_use_fusion_emitters=false",
}
STAGES = ("dvae", "clip", "transformer")


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--stages", default=",".join(STAGES))
  parser.add_argument("--flag_sets", default=",".join(FLAG_SETS))
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
  return parser.parse_args(argv)


def shapes64_task(
  stage: str, text_length: int | None = None, **model_overrides
):
  """(config, Task) of the dVAE or CLIP stage's shipped shapes64 config.

  `text_length` replaces the config's `data.text_length` (None keeps it);
  `model_overrides` replace `config.model` fields (e.g. stem_widths=()).
  """
  from dalle_jax import tasks
  from dalle_jax.configs import clip, dvae

  config = {"dvae": dvae, "clip": clip}[stage].get_config("variant=shapes64")
  if text_length is not None:
    config.data.text_length = text_length
  config.model.update(model_overrides)
  return config, tasks.make_task(config)


def shapes64_transformer(text_length: int | None = None, **model_overrides):
  """(config, Transformer) of the prior's shipped shapes64 config.

  `text_length` replaces the config's `data.text_length` (None keeps it);
  `model_overrides` replace `config.model` fields (e.g. attention='dense').
  """
  from dalle_jax.configs import transformer as transformer_configs
  from dalle_jax.models.transformer import Transformer
  from dalle_jax.tasks.transformer import model_config

  config = transformer_configs.get_config("variant=shapes64")
  if text_length is not None:
    config.data.text_length = text_length
  config.model.update(model_overrides)
  return config, Transformer(model_config(config))


def task_step(stage: str, text_length: int | None = None, **model_overrides):
  """The stage's jitted Task train step and a random batch for it.

  Arguments as in `shapes64_task`.
  """
  import jax
  import numpy as np

  from dalle_jax import sharding

  config, task = shapes64_task(stage, text_length, **model_overrides)
  state = jax.jit(lambda key: sharding.unbox(task.init(key)))(jax.random.key(0))
  rng = np.random.default_rng(0)
  size, batch_size = config.data.image_size, config.data.batch_size
  batch = {
    "image": rng.integers(0, 256, (batch_size, size, size, 3), np.uint8),
    "text_tokens": rng.integers(
      1, config.tokenizer.vocab_size, (batch_size, config.data.text_length)
    ).astype(np.int32),
  }
  step = jax.jit(task.train_step, donate_argnums=0)
  return step, state, batch


def transformer_step(text_length: int | None = None, **model_overrides):
  """The prior's loss + grads + update (its shapes64 optimiser), jitted.

  Arguments as in `shapes64_transformer`.
  """
  import jax
  import optax

  from dalle_jax import optim
  from experiments.benchmarks.sampling import (
    prior_loss,
    random_inputs,
    random_params,
  )

  config, model = shapes64_transformer(text_length, **model_overrides)
  loss_fn = prior_loss(model)
  tx, _ = optim.make_optimizer(config.optim, config.train.num_steps)
  text, codes = random_inputs(model.config, config.data.batch_size)
  batch = {"text": text, "codes": codes}
  params = jax.tree.map(jax.numpy.asarray, random_params(model.config))
  state = (params, tx.init(params))

  def train_step(state, batch, rng):
    del rng
    params, opt_state = state
    loss, grads = jax.value_and_grad(loss_fn)(
      params, batch["text"], batch["codes"]
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), {"loss": loss}

  return jax.jit(train_step, donate_argnums=0), state, batch


def worker(stage: str, repeats: int) -> dict:
  """Times one stage's step in this process (under its XLA_FLAGS)."""
  import jax

  if stage == "transformer":
    step, state, batch = transformer_step()
  else:
    step, state, batch = task_step(stage)
  rng = jax.random.key(1)
  started = time.perf_counter()
  state, metrics = jax.block_until_ready(step(state, batch, rng))
  first_call = time.perf_counter() - started
  first_loss = float(metrics["loss"])
  times = []
  for _ in range(repeats):
    started = time.perf_counter()
    state, metrics = jax.block_until_ready(step(state, batch, rng))
    times.append(time.perf_counter() - started)
  return {
    "median_s": statistics.median(times),
    "first_call_s": first_call,
    "first_loss": first_loss,
  }


def run_worker(stage: str, flags: str, repeats: int) -> dict:
  """Runs `worker` in a fresh process with XLA_FLAGS=flags."""
  env = dict(os.environ)
  inherited = env.get("XLA_FLAGS", "")
  env["XLA_FLAGS"] = f"{inherited} {flags}".strip()
  command = [
    sys.executable,
    "-m",
    "experiments.benchmarks.xla_cpu_flags",
    "--worker",
    stage,
    "--repeats",
    str(repeats),
  ]
  result = subprocess.run(command, env=env, capture_output=True, text=True)
  if result.returncode:
    tail = result.stderr.strip().splitlines()[-3:]
    return {"error": " | ".join(tail)}
  return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
  args = parse_args(argv)
  if args.worker:
    print(json.dumps(worker(args.worker, args.repeats)))
    return
  stages = args.stages.split(",")
  flag_sets = args.flag_sets.split(",")
  unknown = [name for name in flag_sets if name not in FLAG_SETS]
  if unknown or "default" not in flag_sets:
    raise SystemExit(
      f"--flag_sets must include 'default' and name only {sorted(FLAG_SETS)}"
      f"; got {flag_sets}."
    )
  results = {(s, f): [] for s in stages for f in flag_sets}
  for round_index in range(args.rounds):
    for stage in stages:
      # Rotated each round: the first worker after a change of stage was
      # measured up to 25% slower whatever its flags (see the docstring).
      shift = round_index % len(flag_sets)
      for name in flag_sets[shift:] + flag_sets[:shift]:
        outcome = run_worker(stage, FLAG_SETS[name], args.repeats)
        results[stage, name].append(outcome)
        print(f"round {round_index + 1} {stage:11s} {name:18s} {outcome}")
  print()
  print("| stage | flag set | median step (s) | vs default | first loss |")
  print("| --- | --- | --- | --- | --- |")
  for stage in stages:
    base = _median(results[stage, "default"])
    for name in flag_sets:
      outcomes = results[stage, name]
      median = _median(outcomes)
      errors = [o["error"] for o in outcomes if "error" in o]
      if median is None:
        print(f"| {stage} | {name} | failed: {errors[0][:120]} | | |")
        continue
      ratio = f"{base / median:.2f}x" if base else ""
      loss = next(o["first_loss"] for o in outcomes if "first_loss" in o)
      print(f"| {stage} | {name} | {median:.3f} | {ratio} | {loss:.6f} |")


def _median(outcomes: list[dict]) -> float | None:
  times = [o["median_s"] for o in outcomes if "median_s" in o]
  return statistics.median(times) if times else None


if __name__ == "__main__":
  main()
