"""Runs the whole pipeline in one work directory, resuming what it can.

`python -m dalle_jax.train --config dalle_jax/configs/default.py --workdir
ROOT` comes here (`config.task == 'pipeline'`). Steps, in order: the
tokenizer (after building the data set: Shapes, or a folder of the user's
captioned images with `--config.data.name=folder
--config.data.folder=DIR`), the dVAE, CLIP, the transformer, the
evaluation; then the report. A finished step is skipped; an unfinished one
resumes from its last checkpoint; a step whose config differs from the one
it was trained with is moved aside and trained again, and so is every step
that reads the output of a step that trained in this run (`STEP_INPUTS`):
a new dVAE retrains the transformer, but a new CLIP only re-runs the
evaluation.

Layout of ROOT:
  pipeline.json       the pipeline config of the latest run
  stages.json         per step: what each run did, how long it took and
                      the root it was made in (a copied or moved ROOT
                      reads its records' paths as its own: `relocation`)
  tokenizer.model     the BPE tokenizer every stage reads, and
  tokenizer.json      the settings it was trained with
  dvae/ clip/ transformer/   the stages' work directories (`train.run`)
  evaluation/         the evaluation (`generation_eval.evaluate`): judged
                      zero-shot generation on Shapes, CLIP scores on a
                      folder
  report.md, figures/ the report (`python -m dalle_jax.report`)
  <name>.replaced-<time>   a step's output moved aside, never deleted
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from typing import Any

from ml_collections import ConfigDict

from dalle_jax import checkpoint, generation_eval, relocation, report
from dalle_jax import config as config_lib
from dalle_jax import train as train_lib
from dalle_jax.configs import default as default_config
from dalle_jax.data import pipeline as data_pipeline
from dalle_jax.tasks import clip as clip_task
from dalle_jax.tasks import dvae as dvae_task
from dalle_jax.tasks import transformer as transformer_task

logger = logging.getLogger(__name__)

PIPELINE_FILE = report.PIPELINE_FILE
STAGES_FILE = report.STAGES_FILE
TOKENIZER_RECORD = "tokenizer.json"
TRAINED_STAGES = default_config.STAGES
STEPS = ("tokenizer", *TRAINED_STAGES, report.EVALUATION_STEP)
# The steps whose outputs each step reads. CLIP trains on the data alone
# (and on the dVAE's reconstructions with `clip.dvae.reconstruct`, see
# `step_inputs`); the transformer on the dVAE's codes; the evaluation uses
# every stage.
STEP_INPUTS = {
  "tokenizer": (),
  "dvae": ("tokenizer",),
  "clip": ("tokenizer",),
  "transformer": ("tokenizer", "dvae"),
  "evaluation": ("tokenizer", "dvae", "clip", "transformer"),
}
# The stages whose config names a dVAE (`<stage>.dvae.workdir`); the
# pipeline gives them its own when they read it (`reads_dvae`).
DVAE_READERS = ("clip", "transformer")


def reads_dvae(stage: str, stage_config: ConfigDict) -> bool:
  """Whether a trained stage reads the pipeline's dVAE.

  The transformer always does; CLIP only on reconstructions, and otherwise
  its settings name no dVAE.
  """
  if stage == "clip":
    return clip_task.reconstructs_images(stage_config)
  return stage == "transformer"


def step_inputs(config: ConfigDict) -> dict[str, tuple[str, ...]]:
  """STEP_INPUTS for this config: CLIP on reconstructions reads the dVAE."""
  inputs = dict(STEP_INPUTS)
  if reads_dvae("clip", config.clip):
    inputs["clip"] = (*inputs["clip"], "dvae")
  return inputs


# What a step did in a run (stages.json).
TRAINED, RESUMED, REPLACED, SKIPPED = (
  "trained",
  "resumed",
  "replaced",
  "skipped",
)
_STARTING = {TRAINED: "training", RESUMED: "resuming", REPLACED: "retraining"}
_EVALUATION_STARTING = {**_STARTING, TRAINED: "running", REPLACED: "re-running"}
# Fields that change how a run is shown or read, not what it computes:
# a difference here does not retrain a stage.
COSMETIC_FIELDS = (
  "train.progress_bar",
  "data.num_threads",
  "data.prefetch",
  "data.data_dir",
)
# Fields added after some runs were recorded, each with the value that
# computes what those runs computed: a record without the field reads as
# it, so an older run is not retrained for a field it could not have had.
ADDED_FIELDS = {
  "data.recolour": 0.0,
  "data.image_jitter": 0,
  "clip_image_shift": 0,
}


@dataclasses.dataclass(frozen=True)
class Step:
  """One step of the pipeline and what it owns.

  Attributes:
    name: one of STEPS.
    outputs: the paths the step writes; moved aside together on a retrain.
    record: the JSON file holding the settings the step last ran with.
    settings: the settings it runs with now (a plain dict).
    finished: whether the outputs are complete for `settings`.
    execute: runs (or resumes) the step; returns its final metrics.
  """

  name: str
  outputs: tuple[str, ...]
  record: str
  settings: dict
  finished: Callable[[], bool]
  execute: Callable[[], dict]


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
  """`{"a": {"b": 1}}` -> `{"a.b": 1}`; lists stay values."""
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      flat.update(flatten(value, f"{name}."))
    else:
      flat[name] = value
  return flat


def config_differences(saved: Mapping, current: Mapping) -> list[str]:
  """`field: saved -> current` for every differing non-cosmetic field."""
  before, after = flatten(saved), flatten(current)
  differences = []
  for name in sorted(set(before) | set(after)):
    if name in COSMETIC_FIELDS:
      continue
    absent = ADDED_FIELDS.get(name, "<absent>")
    old, new = before.get(name, absent), after.get(name, absent)
    if old != new:
      differences.append(f"{name}: {old!r} -> {new!r}")
  return differences


def plan(exists: bool, finished: bool, differences, upstream_ran: bool) -> str:
  """What a step does: TRAINED (fresh), RESUMED, REPLACED or SKIPPED.

  Args:
    exists: the step's outputs exist (complete or not).
    finished: they are complete.
    differences: how their recorded settings differ from the current ones.
    upstream_ran: a step whose outputs this one reads trained in this run,
      so these outputs were made from other inputs.
  """
  if not exists:
    return TRAINED
  if differences or upstream_ran:
    return REPLACED
  return SKIPPED if finished else RESUMED


def move_aside(path: str, stamp: str) -> str | None:
  """Renames `path` to `<path>.replaced-<stamp>` (never deletes); new path."""
  if not os.path.lexists(path):
    return None
  target = f"{path}.replaced-{stamp}"
  suffix = 1
  while os.path.lexists(target):
    target = f"{path}.replaced-{stamp}-{suffix}"
    suffix += 1
  shutil.move(path, target)
  return target


def latest_checkpoint_step(workdir: str) -> int | None:
  """The newest complete checkpoint step of a stage work directory."""
  folder = os.path.join(workdir, checkpoint.CHECKPOINT_DIR)
  if not os.path.isdir(folder):
    return None
  steps = [int(name) for name in os.listdir(folder) if name.isdigit()]
  return max(steps, default=None)


def stage_finished(workdir: str, num_steps: int) -> bool:
  """A stage is finished when it checkpointed its last step and exported."""
  return latest_checkpoint_step(workdir) == num_steps and os.path.isdir(
    os.path.join(workdir, checkpoint.PARAMS_DIR)
  )


class StageLog:
  """`stages.json`: what each run did per step, and each output's cost.

  `steps[name]` describes the step's current output: `seconds` spent making
  it (summed over resumed runs), the run that finished it and the `root`
  it was made in (`relocation`: a copied root reads its records with the
  paths rebased). `events` lists every step of every run with its action,
  reason and seconds.
  """

  def __init__(self, root: str):
    self.root = root
    self.path = os.path.join(root, STAGES_FILE)
    self.data = checkpoint.read_json(
      self.path, {"runs": 0, "steps": {}, "events": []}
    )
    self.data["runs"] += 1
    self.run = self.data["runs"]

  def made_in(self, name: str) -> str | None:
    """The root step `name`'s current output was made in (None: unrecorded)."""
    return relocation.recorded_root(self.data, name)

  def record(self, name: str, action: str, seconds: float, reason: str):
    entry = self.data["steps"].get(name, {"seconds": 0.0})
    if action in (TRAINED, REPLACED):
      entry = {"seconds": 0.0}
    if action != SKIPPED:
      entry["seconds"] += seconds
      entry["run"] = self.run
    # A skipped output keeps the root its record's paths name; one made
    # before roots were recorded was skipped because its record matched
    # this root's paths, so they are this root's.
    made_in = None if action != SKIPPED else self.made_in(name)
    entry[relocation.ROOT_KEY] = made_in or self.root
    entry["action"] = action
    self.data["steps"][name] = entry
    self.data["events"].append(
      {
        "run": self.run,
        "step": name,
        "action": action,
        "seconds": round(seconds, 3),
        "reason": reason,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
      }
    )
    checkpoint.write_json_atomically(self.path, self.data)


def data_problems(data: ConfigDict) -> list[str]:
  """What is wrong with the pipeline's `data` section ([] when nothing)."""
  name, folder = data.name, data.folder
  if name not in generation_eval.EVALUATION_KINDS:
    return [
      f"config.data.name={name!r}: the pipeline knows how to evaluate "
      f"{tuple(generation_eval.EVALUATION_KINDS)}; use "
      "data.name='shapes', or data.name='folder' with data.folder=<your "
      "captioned images>."
    ]
  if name == "folder" and not folder:
    return [
      "config.data.name='folder' needs config.data.folder=<a folder of "
      "images with same-name .txt captions, or a captions.tsv>."
    ]
  if name == "folder" and not os.path.isdir(os.path.expanduser(folder)):
    return [
      f"config.data.folder={folder!r} is not a directory; point it at a "
      "folder of images with same-name .txt captions, or a captions.tsv."
    ]
  return []


def validate(config: ConfigDict, root: str | None = None) -> None:
  """Checks a pipeline config and each stage's section.

  Args:
    config: a pipeline config.
    root: the work directory it will run in, if known (the transformer's
      dVAE must be the pipeline's own, `<root>/dvae`).

  Raises:
    ValueError: naming every problem.
  """
  problems = data_problems(config.data)
  if not problems:  # the stages share `data`: each would repeat them
    for stage in TRAINED_STAGES:
      config_lib.validate(config[stage])
    # Checked here too, not only when the transformer loads the trained
    # dVAE: a mismatch would otherwise show after the dVAE's training.
    misfits = transformer_task.dvae_fit_problems(
      dvae_task.model_config(config.dvae),
      config.transformer,
      name="config.transformer",
    )
    if misfits:
      problems.append(
        "The transformer must model the pipeline dVAE's codes: "
        + "; ".join(misfits)
        + ". Set the transformer's fields to the dVAE's (its grid side is"
        " data.image_size / 2**(config.dvae.model.group_count - 1))."
      )
  for stage in TRAINED_STAGES:
    if config[stage].task != stage:
      problems.append(
        f"config.{stage}.task={config[stage].task!r} must be {stage!r}."
      )
  own_dvae = os.path.join(root or "<workdir>", "dvae")
  for stage in DVAE_READERS:
    dvae_workdir = config[stage].dvae.workdir
    if dvae_workdir and os.path.abspath(dvae_workdir) != own_dvae:
      problems.append(
        f"config.{stage}.dvae.workdir={dvae_workdir!r}: the pipeline "
        f"gives the {stage} stage its own dVAE ({own_dvae}); leave it ''."
      )
  evaluation = config.evaluation
  unknown = set(evaluation.splits) - set(generation_eval.SPLITS)
  # A folder is always evaluated on its validation split.
  if config.data.name == "shapes" and (unknown or not evaluation.splits):
    problems.append(
      f"config.evaluation.splits={tuple(evaluation.splits)!r}: use one or "
      f"more of {generation_eval.SPLITS}."
    )
  for field in ("num_prompts", "num_candidates", "chunk_size"):
    if evaluation[field] < 1:
      problems.append(
        f"config.evaluation.{field}={evaluation[field]} must be at least 1."
      )
  if evaluation.clip_image_shift < 0:
    problems.append(
      f"config.evaluation.clip_image_shift={evaluation.clip_image_shift} "
      "must be at least 0 (pixels; 0 scores each candidate once)."
    )
  if problems:
    raise ValueError("Invalid pipeline config:\n  " + "\n  ".join(problems))


def check_evaluation_split(
  num_examples: int, configs: Mapping[str, ConfigDict]
) -> None:
  """Checks that the validation split feeds every stage's evaluation.

  Each stage evaluates `train.eval_batches` batches of
  `data.eval_batch_size` validation examples; checked once the data set is
  built, so a small folder fails before any training, naming every field.

  Args:
    num_examples: the examples in the validation split.
    configs: each stage's run config.

  Raises:
    ValueError: the split is too small for a stage (names the fields).
  """
  short = []
  for stage, stage_config in configs.items():
    size = stage_config.data.eval_batch_size
    batches = stage_config.train.eval_batches
    if num_examples < size * batches:
      short.append(
        f"config.{stage}.data.eval_batch_size={size} x "
        f"config.{stage}.train.eval_batches={batches} = {size * batches}"
      )
  if short:
    raise ValueError(
      f"The validation split has {num_examples} examples, fewer than the "
      "stages evaluate: " + "; ".join(short) + ". Lower those fields "
      "(keeping each eval_batch_size a multiple of the device count) or "
      "add captioned images (a folder puts about 2% of its images in "
      "validation)."
    )


def stage_configs(config: ConfigDict, root: str) -> dict[str, ConfigDict]:
  """Each stage's run config, with the pipeline's tokenizer and dVAE paths."""
  tokenizer = config.tokenizer.path or os.path.join(
    root, data_pipeline.TOKENIZER_FILE
  )
  configs = {}
  for stage in TRAINED_STAGES:
    stage_config = config[stage].copy_and_resolve_references()
    stage_config.tokenizer.path = os.path.abspath(tokenizer)
    if reads_dvae(stage, stage_config):
      stage_config.dvae.workdir = os.path.join(root, "dvae")
    configs[stage] = stage_config
  return configs


def tokenizer_settings(config: ConfigDict) -> dict:
  """What the tokenizer is trained from: the captions and the vocab bound."""
  data = config.data
  return {
    "data": {
      "name": data.name,
      "folder": data.folder,
      "shapes": config_lib.to_dict(data.shapes),
    },
    "tokenizer": {"vocab_size": config.tokenizer.vocab_size},
  }


def _tokenizer_step(config: ConfigDict, configs: dict, root: str) -> Step:
  stage_config = configs["dvae"]
  path = stage_config.tokenizer.path
  record = os.path.join(root, TOKENIZER_RECORD)
  settings = {**tokenizer_settings(config), "path": path}
  # A tokenizer the user points at (config.tokenizer.path) is theirs: it is
  # used (trained there if absent) but never moved aside.
  outputs = (record,) if config.tokenizer.path else (path, record)

  def execute():
    # Builds the data set too: the tokenizer reads its training captions.
    sources = data_pipeline.prepare_sources(stage_config)
    check_evaluation_split(len(sources.eval), configs)
    tokenizer = data_pipeline.ensure_tokenizer(
      stage_config, root, sources.train_captions
    )
    checkpoint.write_json_atomically(record, settings)
    return {"bpe_vocab_size": tokenizer.bpe_vocab_size}

  def finished():
    return os.path.exists(path) and os.path.exists(record)

  return Step("tokenizer", outputs, record, settings, finished, execute)


def _stage_step(name: str, stage_config: ConfigDict, root: str) -> Step:
  workdir = os.path.join(root, name)
  num_steps = stage_config.train.num_steps
  return Step(
    name,
    (workdir,),
    os.path.join(workdir, checkpoint.CONFIG_FILE),
    config_lib.to_dict(stage_config),
    lambda: stage_finished(workdir, num_steps),
    lambda: train_lib.run(stage_config, workdir),
  )


def _evaluation_step(config: ConfigDict, data_config, root: str) -> Step:
  workdir = os.path.join(root, generation_eval.EVALUATION_DIR)
  settings = config_lib.to_dict(config.evaluation)
  return Step(
    report.EVALUATION_STEP,
    (workdir,),
    os.path.join(workdir, checkpoint.CONFIG_FILE),
    settings,
    lambda: os.path.exists(os.path.join(workdir, generation_eval.RESULTS_FILE)),
    lambda: generation_eval.evaluate(root, config.evaluation, data_config),
  )


def make_steps(config: ConfigDict, root: str) -> list[Step]:
  """The pipeline's steps, in order, for a validated config."""
  configs = stage_configs(config, root)
  steps = [_tokenizer_step(config, configs, root)]
  steps += [_stage_step(name, configs[name], root) for name in TRAINED_STAGES]
  steps.append(_evaluation_step(config, configs["dvae"], root))
  return steps


def _reason(action: str, differences: list[str], upstream: str | None) -> str:
  if action == TRAINED:
    return "no previous output"
  if action == RESUMED:
    return "resuming an unfinished run"
  if action == SKIPPED:
    return "finished earlier with the same config"
  if differences:
    shown = "; ".join(differences[:5])
    more = f" (and {len(differences) - 5} more)" if len(differences) > 5 else ""
    return f"config changed: {shown}{more}"
  return f"a step it reads ({upstream}) trained in this run"


def run_step(step: Step, log: StageLog, upstream: str | None, stamp: str):
  """Runs, resumes, replaces or skips one step; returns (action, metrics)."""
  exists = any(os.path.lexists(path) for path in step.outputs)
  # A root copied or moved since the step ran: its record's paths into the
  # old root are this root's (a run killed here mid-step may have written
  # them with this root already; those rebase to themselves).
  saved = relocation.rebase(
    checkpoint.read_json(step.record), log.made_in(step.name), log.root
  )
  differences = (
    [] if not exists else
    ["no record of its settings"] if saved is None else
    config_differences(saved, step.settings)
  )  # fmt: skip
  action = plan(exists, step.finished(), differences, upstream is not None)
  reason = _reason(action, differences, upstream)
  if action == SKIPPED:
    logger.info("pipeline: %s: skipped (%s)", step.name, reason)
    log.record(step.name, action, 0.0, reason)
    return action, {}
  if action == REPLACED:
    moved = [move_aside(path, stamp) for path in step.outputs]
    moved_names = ", ".join(os.path.basename(m) for m in moved if m)
    reason = f"{reason}; the old output is now {moved_names}"
  starting = (
    _EVALUATION_STARTING if step.name == report.EVALUATION_STEP else _STARTING
  )
  logger.info("pipeline: %s: %s (%s)", step.name, starting[action], reason)
  start = time.perf_counter()
  metrics = step.execute()
  seconds = time.perf_counter() - start
  log.record(step.name, action, seconds, reason)
  logger.info(
    "pipeline: %s: %s in %s",
    step.name,
    report.action_text(step.name, action),
    report.format_seconds(seconds),
  )
  return action, metrics


def run(config: ConfigDict, root: str) -> dict[str, float]:
  """Runs every step of the pipeline in `root`, then writes the report.

  Args:
    config: a locked pipeline config (`dalle_jax/configs/default.py`).
    root: the pipeline's work directory.

  Returns:
    The headline figures (see `generation_eval.headline`), plus
    `seconds`, the wall time of this run.
  """
  root = os.path.abspath(root)
  validate(config, root)
  os.makedirs(root, exist_ok=True)
  checkpoint.write_json_atomically(
    os.path.join(root, PIPELINE_FILE), config_lib.to_dict(config)
  )
  log = StageLog(root)
  stamp = time.strftime("%Y%m%d-%H%M%S")
  start = time.perf_counter()
  ran = []  # steps that trained, resumed or were replaced in this run
  inputs = step_inputs(config)
  for step in make_steps(config, root):
    upstream = next((n for n in inputs[step.name] if n in ran), None)
    action, _ = run_step(step, log, upstream, stamp)
    if action != SKIPPED:
      ran.append(step.name)
  report_path = report.write_report(root)
  seconds = time.perf_counter() - start
  summary = generation_eval.headline(root)
  for line in report.summary_lines(root):
    logger.info("pipeline: %s", line)
  logger.info(
    "pipeline: finished in %s; report: %s",
    report.format_seconds(seconds),
    report_path,
  )
  return {**summary, "seconds": seconds}
