"""Runs a pipeline step in a second process while the next steps go on.

Why: on a CPU, XLA's threads leave part of the cores idle in a training
step (a Shapes CLIP step alone keeps about 1.73 of 2 cores busy). Two
stages that train at once fill those gaps: on 2 cores, CLIP and the
transformer together got through their steps 1.27 times as fast as one
after the other (`pipeline.overlap`, which decides when a step runs here).

The second process is a fresh interpreter (`spawn`: a forked process would
inherit jax's threads). Its standard output and error, progress bar and
logs go to a log file, so the terminal keeps the foreground step's bar.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable

# Lines of a failed step's log quoted in the error.
TAIL_LINES = 20


class BackgroundStepError(RuntimeError):
  """A step in a second process ended with an error."""


def configure_logging() -> None:
  """The log format and levels of `python -m dalle_jax.train`."""
  logging.basicConfig(
    level=logging.INFO, format="%(levelname)s %(message)s", force=True
  )
  # orbax and tensorflow-datasets log every file operation at INFO (via absl).
  logging.getLogger("absl").setLevel(logging.WARNING)


def _run_logged(target: Callable, args: tuple, log_path: str) -> None:
  """The second process: `target(*args)` with fds 1 and 2 on the log."""
  descriptor = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
  sys.stdout.flush()
  sys.stderr.flush()
  # At the descriptor level, so XLA's own C++ logs land there too.
  os.dup2(descriptor, 1)
  os.dup2(descriptor, 2)
  os.close(descriptor)
  configure_logging()
  target(*args)


def log_tail(path: str, lines: int = TAIL_LINES) -> str:
  """The last `lines` lines of a log, progress-bar redraws split out."""
  try:
    with open(path, errors="replace") as handle:
      text = handle.read()
  except FileNotFoundError:
    return "(no log was written)"
  shown = [line for line in text.replace("\r", "\n").splitlines() if line]
  return "\n".join(shown[-lines:])


@dataclasses.dataclass
class BackgroundRun:
  """A step running in a second process.

  Attributes:
    name: the step's name.
    process: the process running it.
    log_path: where its output goes.
    started: `time.perf_counter()` when it started.
  """

  name: str
  process: multiprocessing.process.BaseProcess
  log_path: str
  started: float

  def wait(self) -> float:
    """Waits for the step to end; returns its wall time in seconds.

    Raises:
      BackgroundStepError: the step failed; the message quotes its log.
    """
    self.process.join()
    seconds = time.perf_counter() - self.started
    if self.process.exitcode != 0:
      raise BackgroundStepError(
        f"{self.name} failed in its second process (exit code "
        f"{self.process.exitcode}). The end of its log, {self.log_path}:\n"
        f"{log_tail(self.log_path)}\nWhat it wrote before the failure is "
        "kept: the next run of the same command resumes it."
      )
    return seconds

  def stop(self) -> None:
    """Ends the process if it still runs (its checkpoints are kept)."""
    if self.process.is_alive():
      self.process.terminate()
    self.process.join()


def start(name: str, target: Callable, args: tuple, log_path: str):
  """Starts `target(*args)` in a second process; returns a BackgroundRun.

  Args:
    name: the step's name, for messages.
    target: a module-level function (it is pickled by reference).
    args: its arguments (pickled).
    log_path: the file its output is appended to; the folder must exist.
  """
  context = multiprocessing.get_context("spawn")
  process = context.Process(
    target=_run_logged,
    args=(target, args, log_path),
    name=f"dalle_jax {name}",
  )
  started = time.perf_counter()
  process.start()
  return BackgroundRun(name, process, log_path, started)
