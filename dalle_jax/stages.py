"""Trained stages from their work directories: load them, check they fit.

A stage is the work directory of a finished training run (`python -m
dalle_jax.train`): `config.json` (the run's config, `task` naming the
stage), `params/` (the exported parameters: the EMA when the run kept one)
and, for the stages that read text, the run's tokenizer (`tokenizer.model`
unless `config.tokenizer.path` names another file). A pipeline root holds
the stages side by side:

  ROOT/dvae/         the dVAE run (stage 1)
  ROOT/transformer/  the transformer run trained on ROOT/dvae's codes
  ROOT/clip/         optional: a CLIP run on images of the dVAE's size
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import jax
import orbax.checkpoint as ocp
from ml_collections import ConfigDict

from dalle_jax import checkpoint, relocation
from dalle_jax.data import pipeline
from dalle_jax.tasks import clip as clip_task
from dalle_jax.tasks import dvae as dvae_task
from dalle_jax.tasks import transformer as transformer_task
from dalle_jax.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

TRAIN_COMMANDS = {
  "dvae": "python -m dalle_jax.train --config dalle_jax/configs/dvae.py"
  " --workdir {workdir}",
  "transformer": "python -m dalle_jax.train --config"
  " dalle_jax/configs/transformer.py --workdir {workdir}"
  " --config.dvae.workdir=DVAE_WORKDIR",
  "clip": "python -m dalle_jax.train --config dalle_jax/configs/clip.py"
  " --workdir {workdir}",
}
MODEL_CONFIGS = {
  "dvae": dvae_task.model_config,
  "transformer": transformer_task.model_config,
  "clip": clip_task.model_config,
}


@dataclasses.dataclass(frozen=True, eq=False)
class Stage:
  """One trained stage, loaded from its work directory.

  Attributes:
    name: 'dvae', 'transformer' or 'clip' (the run's `config.task`).
    workdir: the run's absolute path.
    run_config: the run's config, read from its config.json.
    model_config: the model's hyperparameters (DVAEConfig,
      TransformerConfig or CLIPConfig).
    params: the exported parameters, on the default device.
    tokenizer: the run's tokenizer; None for the dVAE, which reads no text.
  """

  name: str
  workdir: str
  run_config: ConfigDict
  model_config: object
  params: dict
  tokenizer: Tokenizer | None


def _missing_file(stage: str, workdir: str, path: str) -> FileNotFoundError:
  return FileNotFoundError(
    f"{path} does not exist, so {workdir!r} is not a finished {stage} run."
    f" Train it with: {TRAIN_COMMANDS[stage].format(workdir=workdir)}"
  )


def read_run_config(workdir: str, stage: str) -> ConfigDict:
  """The config of a finished run of `stage` (its config.json).

  In a pipeline root that was copied or moved, the paths into the root it
  was made in are read as paths into the root it is in (`relocation`).

  Args:
    workdir: the run's work directory.
    stage: 'dvae', 'transformer' or 'clip'.

  Returns:
    The saved config.

  Raises:
    FileNotFoundError: no config.json or no params/ (names the missing path
      and the command that trains the stage).
    ValueError: the directory holds a run of another stage.
  """
  for name in (checkpoint.CONFIG_FILE, checkpoint.PARAMS_DIR):
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
      raise _missing_file(stage, workdir, path)
  with open(os.path.join(workdir, checkpoint.CONFIG_FILE)) as handle:
    saved = json.load(handle)
  root, name = os.path.split(os.path.abspath(workdir))
  saved = relocation.rebase(saved, relocation.made_in(root, name), root)
  if saved.get("task") != stage:
    raise ValueError(
      f"{workdir!r} holds a {saved.get('task')!r} run, not a {stage!r} run;"
      " pass the work directory of: "
      + TRAIN_COMMANDS[stage].format(workdir="...")
    )
  return ConfigDict(saved)


def load_params_on_device(workdir: str):
  """The params/ export of a run, restored onto the default device.

  Shapes and dtypes come from the checkpoint's own metadata, and the target
  is one device, so a run trained on a mesh this process does not have
  still loads.
  """
  path = os.path.join(workdir, checkpoint.PARAMS_DIR)
  metadata = ocp.StandardCheckpointer().metadata(path).item_metadata
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
    lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
    metadata,
  )
  return checkpoint.load_params(workdir, abstract)


def _load_tokenizer(stage: str, workdir: str, config: ConfigDict) -> Tokenizer:
  path = pipeline.tokenizer_path(config, workdir)
  if not os.path.isfile(path):
    raise _missing_file(stage, workdir, path)
  tokenizer = Tokenizer.load(
    path,
    text_length=config.data.text_length,
    pad_base=config.tokenizer.vocab_size,
  )
  transformer_task.check_tokenizer_fits(tokenizer, config)
  return tokenizer


def load_stage(workdir: str, stage: str) -> Stage:
  """Loads a finished run of `stage`: config, params and tokenizer.

  Args:
    workdir: the run's work directory.
    stage: 'dvae', 'transformer' or 'clip'.

  Raises:
    FileNotFoundError: see `read_run_config`; also a missing tokenizer for
      the stages that read text.
    ValueError: an unknown stage, or see `read_run_config`.
  """
  if stage not in MODEL_CONFIGS:
    raise ValueError(
      f"stage={stage!r} is not a stage; use one of {tuple(MODEL_CONFIGS)}."
    )
  workdir = os.path.abspath(workdir)
  config = read_run_config(workdir, stage)
  model_config = MODEL_CONFIGS[stage](config)
  tokenizer = (
    None if stage == "dvae" else _load_tokenizer(stage, workdir, config)
  )
  params = load_params_on_device(workdir)
  return Stage(stage, workdir, config, model_config, params, tokenizer)


def check_stages_fit(
  dvae: Stage, transformer: Stage, clip: Stage | None = None
) -> None:
  """Refuses stages trained with settings that do not fit together.

  The transformer must model the dVAE's codes (codebook size, grid side,
  image size), and a CLIP must score images of the dVAE's size.

  Raises:
    ValueError: naming each differing setting with both runs' values.
  """
  dvae_config = dvae.model_config
  # The same comparison as the transformer task's load-time check, on the
  # config the transformer was trained with.
  problems = transformer_task.dvae_fit_problems(
    dvae_config, transformer.run_config, name="the transformer's config"
  )
  if problems:
    raise ValueError(
      f"The dVAE run {dvae.workdir!r} does not fit the transformer run"
      f" {transformer.workdir!r}: " + "; ".join(problems) + ". Pass the dVAE"
      " the transformer was trained on (its config.dvae.workdir is"
      f" {transformer.run_config.dvae.workdir!r})."
    )
  if (
    clip is not None and clip.model_config.image_size != dvae_config.image_size
  ):
    raise ValueError(
      f"The CLIP run {clip.workdir!r} scores"
      f" {clip.model_config.image_size} px images but the dVAE run"
      f" {dvae.workdir!r} makes {dvae_config.image_size} px images. Train a"
      f" CLIP with --config.data.image_size={dvae_config.image_size}."
    )


def warn_if_other_dvae(dvae: Stage, transformer: Stage) -> None:
  """Logs a warning if the transformer was trained on another dVAE path."""
  # Same sizes but other weights give codes the transformer never saw; the
  # directories may have been moved, though, so this only warns.
  recorded = transformer.run_config.dvae.workdir
  if recorded and os.path.realpath(recorded) != os.path.realpath(dvae.workdir):
    logger.warning(
      "The transformer run %s was trained on the dVAE in %s, not %s; its"
      " samples decode correctly only with that dVAE's weights.",
      transformer.workdir,
      recorded,
      dvae.workdir,
    )
