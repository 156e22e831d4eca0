"""Checkpoints of a work directory: resume, save, params-only export.

Layout of a work directory:
  config.json          the run's config (written once; guards against reuse
                       of the directory by an incompatible config)
  checkpoints/<step>/  orbax items `state` (the TrainState) and `data` (the
                       input iterator position, JSON)
  checkpoints_corrupt/ unreadable checkpoints moved aside, never deleted
  params/              params-only export for inference (EMA when present)

Restore order: the newest readable checkpoint of this work directory, else a
fresh state. Orbax writes each step to a temporary folder and renames it when
complete, so a run killed mid-save leaves the previous step as the newest.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp
from ml_collections import ConfigDict

from dalle_jax import config as config_lib
from dalle_jax import quiet_logs

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "checkpoints_corrupt"
PARAMS_DIR = "params"
# Replicated arrays are written cooperatively by their replicas (orbax's
# replica-parallel saving) only when each replica's slice is at least this
# big. Slicing compiles one small program per array shape: on 8 devices the
# first save of the tiny dVAE's 187 arrays (71 KiB) took 9.5 s that way and
# under 1 s with this floor, while arrays whose slice per replica is a MiB
# or more (8 MiB on 8 replicas), where splitting the writes pays, are still
# split.
MIN_REPLICA_SLICE_BYTES = 1 << 20


def _register_array_handler() -> None:
  """Replaces orbax's jax.Array handler by one with MIN_REPLICA_SLICE_BYTES.

  Everything else stays orbax's default, including the array metadata store
  (it records typed PRNG keys); orbax exports no public path to that store,
  so without it saving still works, only without that metadata.
  """
  try:
    from orbax.checkpoint._src.metadata import array_metadata_store

    store = array_metadata_store.Store()
  except ImportError:  # moved in another orbax release
    store = None
  # orbax logs a warning for every override, which every command that
  # imports this module would print; this override is the intended one.
  quiet = quiet_logs.DropMessages("overriding")
  absl_logger = logging.getLogger("absl")
  absl_logger.addFilter(quiet)
  try:
    ocp.type_handlers.register_type_handler(
      jax.Array,
      ocp.type_handlers.ArrayHandler(
        array_metadata_store=store,
        min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES,
      ),
      override=True,
    )
  finally:
    absl_logger.removeFilter(quiet)


_register_array_handler()


class ConfigMismatchError(ValueError):
  """The work directory holds checkpoints of an incompatible config."""


def read_json(path: str, default: Any = None) -> Any:
  """The JSON in `path`, or `default` when the file does not exist."""
  if not os.path.exists(path):
    return default
  with open(path) as handle:
    return json.load(handle)


def write_json_atomically(path: str, payload: Any) -> None:
  """Writes JSON to a temporary file and renames it over `path`."""
  temporary = f"{path}.tmp-{os.getpid()}"
  with open(temporary, "w") as handle:
    json.dump(payload, handle, indent=2, sort_keys=True)
  os.replace(temporary, path)


def check_or_write_config(workdir: str, config: ConfigDict) -> None:
  """Refuses a work directory whose checkpoints come from another config.

  The first run writes `config.json`; later runs compare the structural
  fields (`config_lib.STRUCTURAL_FIELDS`) and then rewrite it with the
  current values (e.g. a longer `train.num_steps`).

  Raises:
    ConfigMismatchError: naming each differing field with both values.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  current = config_lib.to_dict(config)
  has_checkpoints = bool(_finished_steps(workdir))
  if os.path.exists(path) and has_checkpoints:
    with open(path) as handle:
      saved = json.load(handle)
    differences = config_lib.structural_differences(saved, current)
    if differences:
      raise ConfigMismatchError(
        f"Work directory {workdir!r} holds checkpoints of another config:\n  "
        + "\n  ".join(differences)
        + "\nUse a new --workdir, or restore the saved values."
      )
  write_json_atomically(path, current)


def _finished_steps(workdir: str) -> list[int]:
  folder = os.path.join(workdir, CHECKPOINT_DIR)
  if not os.path.isdir(folder):
    return []
  return sorted(int(name) for name in os.listdir(folder) if name.isdigit())


class Checkpointer:
  """Saves and restores `(TrainState, data iterator state)` in a work dir.

  Args:
    workdir: the run's work directory.
    keep: how many of the newest checkpoints to keep.
  """

  def __init__(self, workdir: str, keep: int):
    self.workdir = workdir
    self.keep = keep
    self._manager = self._open()

  def _open(self) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
      os.path.join(os.path.abspath(self.workdir), CHECKPOINT_DIR),
      item_names=("state", "data"),
      options=ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True),
    )

  @property
  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore_latest(self, abstract_state) -> tuple[Any, dict | None] | None:
    """Restores the newest readable checkpoint, or returns None if none.

    An unreadable checkpoint (corrupt or truncated files) is moved to
    `checkpoints_corrupt/` with a warning naming it, and the next older one
    is tried, so no file is deleted and the run resumes from the last good
    state.

    Args:
      abstract_state: the TrainState as `jax.ShapeDtypeStruct`s carrying
        the target shardings, so restored arrays land sharded.

    Returns:
      `(state, data_state)` or None when no checkpoint exists.
    """
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        restored = self._manager.restore(
          step,
          args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=ocp.args.JsonRestore(),
          ),
        )
      except Exception as error:  # orbax raises many types for bad files
        self._quarantine(step, error)
        continue
      logging.info(
        "Resumed from checkpoint at step %d in %s", step, self.workdir
      )
      return restored.state, restored.data
    return None

  def _quarantine(self, step: int, error: Exception) -> None:
    source = os.path.join(self.workdir, CHECKPOINT_DIR, str(step))
    target_root = os.path.join(self.workdir, CORRUPT_DIR)
    os.makedirs(target_root, exist_ok=True)
    target = os.path.join(target_root, str(step))
    suffix = 1
    while os.path.exists(target):
      target = os.path.join(target_root, f"{step}.{suffix}")
      suffix += 1
    logging.warning(
      "Checkpoint at step %d is unreadable (%s: %s); moved it to %s and "
      "trying the previous one.",
      step,
      type(error).__name__,
      str(error)[:200],
      target,
    )
    self._manager.close()
    shutil.move(source, target)
    self._manager = self._open()

  def save(self, step: int, state, data_state: dict | None) -> None:
    """Saves asynchronously; a step that is already saved is skipped."""
    if step in self._manager.all_steps():
      return
    self._manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state or {}),
      ),
      force=True,
    )

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


def export_params(workdir: str, params) -> str:
  """Writes a params-only checkpoint (for inference) to `<workdir>/params`."""
  path = os.path.join(os.path.abspath(workdir), PARAMS_DIR)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, params, force=True)
  checkpointer.wait_until_finished()
  return path


def export_model(out_dir: str, task: str, model_fields: dict, params) -> str:
  """Writes converted weights: `<out_dir>/params` and a `config.json`.

  `config.json` holds `{"task": task, "model": model_fields}`, so the
  model's config dataclass can be rebuilt from it and the params loaded
  with `load_params(out_dir)`.

  Returns:
    The path of the params checkpoint.
  """
  out_dir = os.path.abspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  path = export_params(out_dir, params)
  write_json_atomically(
    os.path.join(out_dir, CONFIG_FILE), {"task": task, "model": model_fields}
  )
  return path


def load_params(workdir: str, abstract_params=None):
  """Loads the params-only export of a work directory.

  Args:
    workdir: a finished run's work directory.
    abstract_params: optional target tree of `jax.ShapeDtypeStruct` (with
      shardings) to restore into; host numpy-backed arrays otherwise.

  Returns:
    The parameter pytree.
  """
  path = os.path.join(os.path.abspath(workdir), PARAMS_DIR)
  if not os.path.isdir(path):
    raise FileNotFoundError(
      f"No exported params in {workdir!r} (expected {path}). Train the "
      "stage first: python -m dalle_jax.train --config ... --workdir "
      f"{workdir}"
    )
  checkpointer = ocp.StandardCheckpointer()
  if abstract_params is None:
    return checkpointer.restore(path)
  return checkpointer.restore(path, abstract_params)


def abstract_with_shardings(tree, shardings):
  """`ShapeDtypeStruct`s of `tree` carrying `shardings` (restore targets)."""
  return jax.tree.map(
    lambda leaf, sharding: jax.ShapeDtypeStruct(
      leaf.shape, leaf.dtype, sharding=sharding
    ),
    tree,
    shardings,
  )
