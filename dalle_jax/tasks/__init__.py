"""Training stages by name: `config.task` picks one of TASKS."""

from __future__ import annotations

from collections.abc import Callable

from ml_collections import ConfigDict

from dalle_jax.tasks import autoencoder, clip, dvae, transformer
from dalle_jax.tasks.base import Task
from dalle_jax.tokenizer import Tokenizer

TaskFactory = Callable[[ConfigDict, Tokenizer | None], Task]


def _image_only(factory: Callable[[ConfigDict], Task]) -> TaskFactory:
  """A factory of a stage that reads no text, so ignores the tokenizer."""
  return lambda config, tokenizer: factory(config)


# Each factory gets the run config and the run's tokenizer (stages that read
# text check their vocabulary against it and encode captions with it).
TASKS: dict[str, TaskFactory] = {
  "autoencoder": _image_only(autoencoder.make_task),
  "dvae": _image_only(dvae.make_task),
  "transformer": transformer.make_task,
  "clip": clip.make_task,
}


def make_task(config: ConfigDict, tokenizer: Tokenizer | None = None) -> Task:
  """Builds the Task named by `config.task`.

  Args:
    config: the run config.
    tokenizer: the run's tokenizer, or None where no text is read (e.g. a
      benchmark that only builds the model).
  """
  if config.task not in TASKS:
    raise ValueError(
      f"config.task={config.task!r} is not a known stage; known: "
      f"{sorted(TASKS)}."
    )
  return TASKS[config.task](config, tokenizer)
