"""Train one stage: `python -m dalle_jax.train --config FILE.py[:ARG] --workdir DIR`.

`run(config, workdir)` wires mesh, data, task, state and checkpoints, then a
short loop that owns cadence only: log, evaluate, checkpoint. Every field of
the config can be overridden on the command line, e.g.
`--config.optim.lr=3e-4`; a mistyped field is an error that names it.
A killed run started again with the same command resumes from its last
checkpoint and ends with the same parameters as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from ml_collections import ConfigDict
from tqdm import tqdm

from dalle_jax import (
  checkpoint,
  images,
  quiet_logs,
  sharding,
  summaries,
  tasks,
)
from dalle_jax import config as config_lib
from dalle_jax.data import pipeline
from dalle_jax.tasks.base import Task


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or infinite."""


@dataclasses.dataclass
class ShardedState:
  """A task's state creation, resolved for one mesh.

  Attributes:
    init: jitted `rng -> TrainState`, born sharded.
    abstract: the unboxed state as ShapeDtypeStructs with shardings (restore
      target).
    shardings: NamedSharding per state leaf.
  """

  init: object
  abstract: object
  shardings: object


def shard_state(task: Task, mesh, rules, rng) -> ShardedState:
  """Resolves the state's shardings from its logical names, without allocating.

  `eval_shape` gives the boxed abstract state; its logical names become
  shardings; `init` is then jitted with those as `out_shardings`, so the
  state is never materialised on one device.
  """
  boxed = jax.eval_shape(task.init, rng)
  shardings = sharding.tree_shardings(boxed, mesh, rules)
  init = jax.jit(
    lambda key: sharding.unbox(task.init(key)), out_shardings=shardings
  )
  abstract = checkpoint.abstract_with_shardings(
    sharding.unbox(boxed), shardings
  )
  return ShardedState(init, abstract, shardings)


@dataclasses.dataclass(frozen=True)
class Steps:
  """A task's step functions, jitted once with explicit shardings."""

  train: Callable
  eval: Callable
  preview: Callable | None


def compile_steps(task: Task, state_shardings, mesh, rules) -> Steps:
  """Jits the train and eval steps once, with explicit shardings."""
  batch = sharding.batch_sharding(mesh, rules)
  replicated = NamedSharding(mesh, PartitionSpec())
  train_step = jax.jit(
    task.train_step,
    in_shardings=(state_shardings, batch, replicated),
    out_shardings=(state_shardings, replicated),
    donate_argnums=0,
  )
  eval_step = jax.jit(task.eval_step, out_shardings=replicated)
  preview = jax.jit(task.preview) if task.preview else None
  return Steps(train_step, eval_step, preview)


def _mean_metrics(records: list[dict]) -> dict[str, float]:
  return {k: float(np.mean([r[k] for r in records])) for k in records[0]}


@dataclasses.dataclass
class Loop:
  """The impure training loop: cadence (log, evaluate, save), no math.

  Step metrics stay on the device until a flush, so steps are dispatched
  asynchronously; every flush checks each buffered loss, and a flush comes
  before every save, so a non-finite state is never checkpointed.
  """

  config: ConfigDict
  workdir: str
  steps: Steps
  batches: pipeline.BatchIterator
  eval_data: list
  writer: summaries.MetricWriter
  checkpointer: checkpoint.Checkpointer
  step_rng: jax.Array
  eval_rng: jax.Array
  sources: pipeline.DataSources
  host_eval: Callable | None = None
  eval_warnings: Callable | None = None
  pending: list = dataclasses.field(default_factory=list)
  last_flush_time: float = dataclasses.field(default_factory=time.perf_counter)
  last_flush_step: int = 0

  def train(self, state) -> dict[str, float]:
    """Trains from `state.step` to `config.train.num_steps`; returns eval."""
    train = self.config.train
    step = self.last_flush_step = int(jax.device_get(state.step))
    eval_metrics: dict[str, float] = {}
    with tqdm(
      total=train.num_steps,
      initial=step,
      desc=self.config.task,
      disable=not train.progress_bar,
      dynamic_ncols=True,
    ) as bar:
      while step < train.num_steps:
        rng = jax.random.fold_in(self.step_rng, step)
        state, metrics = self.steps.train(state, next(self.batches), rng)
        step += 1
        self.pending.append((step, metrics))
        bar.update(1)
        last = step == train.num_steps
        if step % train.log_every == 0 or last:
          self.flush(step, bar)
        if step % train.eval_every == 0 or last:
          self.flush(step, bar)
          eval_metrics = self.evaluate(step, state.eval_params)
        if step % train.checkpoint_every == 0 or last:
          self.flush(step, bar)
          self.checkpointer.save(step, state, self.batches.get_state())
    if not eval_metrics:  # resumed a finished run: evaluate what it made
      eval_metrics = self.evaluate(step, state.eval_params)
    checkpoint.export_params(self.workdir, state.eval_params)
    logging.info(
      "Finished at step %d: %s", step, summaries.format_metrics(eval_metrics)
    )
    return eval_metrics

  def flush(self, step: int, bar) -> None:
    """Fetches buffered step metrics, checks the loss, writes averages."""
    if not self.pending:
      return
    steps = [s for s, _ in self.pending]
    records = jax.device_get([m for _, m in self.pending])
    self.pending.clear()
    for s, record in zip(steps, records, strict=True):
      if not math.isfinite(float(record["loss"])):
        raise NonFiniteLossError(self._non_finite_message(s, record["loss"]))
    now = time.perf_counter()
    elapsed = max(now - self.last_flush_time, 1e-9)
    steps_done = step - self.last_flush_step
    metrics = _mean_metrics(records)
    metrics["steps_per_second"] = steps_done / elapsed
    metrics["examples_per_second"] = (
      steps_done * self.config.data.batch_size / elapsed
    )
    self.last_flush_time, self.last_flush_step = now, step
    self.writer.write_scalars(step, "train", metrics)
    bar.set_postfix(
      loss=f"{metrics['loss']:.4g}",
      ex_per_s=f"{metrics['examples_per_second']:.0f}",
    )

  def _non_finite_message(self, step: int, loss) -> str:
    latest = self.checkpointer.latest_step
    where = (
      f"step {latest} in {self.workdir}"
      if latest is not None
      else "none (no checkpoint was saved yet)"
    )
    return (
      f"Loss is {float(loss)} at step {step}; training stopped and nothing "
      f"from step {step} on was saved. Last good checkpoint: {where}. Try a "
      "lower config.optim.lr or a stronger config.optim.grad_clip_norm, then "
      "run the same command again."
    )

  def evaluate(self, step: int, params) -> dict[str, float]:
    """Runs the eval step over the fixed eval batches; writes a preview."""
    records = jax.device_get(
      [self.steps.eval(params, b, self.eval_rng) for b in self.eval_data]
    )
    metrics = _mean_metrics(records)
    if self.host_eval is not None:
      metrics.update(self.host_eval(params, self.sources))
    self.writer.write_scalars(step, "eval", metrics)
    for message in self.eval_warnings(metrics) if self.eval_warnings else ():
      logging.warning("Step %d: %s", step, message)
    if self.steps.preview is not None:
      count = self.config.train.preview_images
      first = {k: v[:count] for k, v in self.eval_data[0].items()}
      rows = jax.device_get(self.steps.preview(params, first))
      grid = images.make_grid(np.asarray(rows))
      path = os.path.join(self.workdir, "images", f"step_{step:07d}.png")
      images.save_png(path, grid, scale=2)
      self.writer.write_image(step, "preview", grid)
    return metrics


def run(config: ConfigDict, workdir: str) -> dict[str, float]:
  """Trains the stage `config.task` in `workdir`, resuming if possible.

  Args:
    config: a locked run config (see `dalle_jax/configs/`). Its relative
      dVAE and tokenizer paths are read, and recorded in config.json, as
      absolute paths (`config_lib.with_absolute_paths`).
    workdir: where checkpoints, metrics, images and exports go.

  Returns:
    The final evaluation metrics.
  """
  if config.task == "pipeline":  # every stage, then the evaluation report
    from dalle_jax import pipeline as pipeline_lib

    return pipeline_lib.run(config, workdir)
  config_lib.validate(config)
  config = config_lib.with_absolute_paths(config)
  workdir = os.path.abspath(workdir)
  checkpoint.check_or_write_config(workdir, config)
  rules = sharding.rules_from_config(config.mesh.rules)
  mesh = sharding.make_mesh(config.mesh.shape)
  sources = pipeline.prepare_sources(config)
  tokenizer = pipeline.ensure_tokenizer(config, workdir, sources.train_captions)
  task = tasks.make_task(config, tokenizer)
  init_rng, step_rng, eval_rng = jax.random.split(
    jax.random.key(config.seed), 3
  )

  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    sharded = shard_state(task, mesh, rules, init_rng)
    steps = compile_steps(task, sharded.shardings, mesh, rules)
    batches = pipeline.train_iterator(
      sources.train, tokenizer, config, mesh, rules
    )
    eval_data = pipeline.eval_batches(
      sources.eval, tokenizer, config, mesh, config.train.eval_batches, rules
    )
    checkpointer = checkpoint.Checkpointer(
      workdir, config.train.keep_checkpoints
    )
    restored = checkpointer.restore_latest(sharded.abstract)
    if restored is None:
      state = sharded.init(init_rng)
    else:
      state, data_state = restored
      if data_state:
        batches.set_state(data_state)
    writer = summaries.MetricWriter(workdir)
    loop = Loop(
      config,
      workdir,
      steps,
      batches,
      eval_data,
      writer,
      checkpointer,
      step_rng,
      eval_rng,
      sources,
      task.host_eval,
      task.eval_warnings,
    )
    try:
      return loop.train(state)
    finally:
      checkpointer.close()
      writer.close()


def parse_command_line(argv: list[str]) -> tuple[ConfigDict, str]:
  """Reads `--config FILE[:ARG] --workdir DIR [--config.a.b=VALUE ...]`."""
  parser = argparse.ArgumentParser(
    prog="python -m dalle_jax.train",
    description="Train one dalle_jax stage. Any config field can be "
    "overridden as --config.section.field=VALUE.",
  )
  parser.add_argument(
    "--config",
    required=True,
    help="config file, e.g. dalle_jax/configs/autoencoder.py:variant=tiny",
  )
  parser.add_argument("--workdir", required=True, help="where results go")
  args, rest = parser.parse_known_args(argv)
  overrides = []
  for item in rest:
    key, sep, value = item.partition("=")
    if not key.startswith("--config.") or not sep:
      parser.error(
        f"unrecognised argument {item!r}; overrides look like "
        "--config.optim.lr=3e-4"
      )
    overrides.append((key[len("--config.") :], value))
  config = config_lib.load_config(args.config)
  for key, value in overrides:
    config_lib.override_from_text(config, key, value)
  return config, args.workdir


# Warnings of tensorflow-datasets (through absl) that need no action:
TFDS_NOTICES = quiet_logs.DropMessages(
  # It recommends OpenCV for decoding images. Not worth its install here:
  # loading and decoding a batch of 32 Shapes images costs about 10 ms of
  # CPU, 2-3% of a training step (2026-12-06).
  "OpenCV is not installed",
  # Every Shapes builder has a config made from the run's settings (size,
  # split sizes, seed), which it reports for each stage that reads it.
  "Using custom data configuration",
)


def configure_logging() -> None:
  """INFO lines of our own progress, without third-party chatter."""
  logging.basicConfig(
    level=logging.INFO, format="%(levelname)s %(message)s", force=True
  )
  # orbax and tensorflow-datasets log every file operation at INFO (via absl).
  logging.getLogger("absl").setLevel(logging.WARNING)
  logging.getLogger("absl").addFilter(TFDS_NOTICES)  # added once per process
  # jax reports each accelerator backend it did not find, on every CPU run.
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
  """Command-line entry point; returns the process exit code."""
  configure_logging()
  try:
    config, workdir = parse_command_line(sys.argv[1:] if argv is None else argv)
    metrics = run(config, workdir)
  except (
    NonFiniteLossError,
    checkpoint.ConfigMismatchError,
    ValueError,
    KeyError,
    FileNotFoundError,
  ) as error:
    message = error.args[0] if isinstance(error, KeyError) else error
    print(f"error: {message}", file=sys.stderr)
    return 1
  print(f"Done. Final evaluation: {summaries.format_metrics(metrics)}")
  print(f"Results are in {os.path.abspath(workdir)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
