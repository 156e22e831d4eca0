"""Training stages by name: `config.task` picks one of TASKS."""

from __future__ import annotations

from collections.abc import Callable

from ml_collections import ConfigDict

from dalle_jax.tasks import autoencoder, dvae
from dalle_jax.tasks.base import Task

TASKS: dict[str, Callable[[ConfigDict], Task]] = {
  "autoencoder": autoencoder.make_task,
  "dvae": dvae.make_task,
}


def make_task(config: ConfigDict) -> Task:
  """Builds the Task named by `config.task`."""
  if config.task not in TASKS:
    raise ValueError(
      f"config.task={config.task!r} is not a known stage; known: "
      f"{sorted(TASKS)}."
    )
  return TASKS[config.task](config)
