"""Config helpers: shared defaults, the `:key=value` argument, loading, checks.

A config file is a Python module with `get_config(arg: str | None)` returning
a locked `ml_collections.ConfigDict`; locking turns a mistyped field into an
error that names it. Sections: `data`, `tokenizer`, `model`, `optim`,
`train`, `mesh`; stage configs add their own (e.g. `dvae`).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
from collections.abc import Mapping
from typing import Any

from ml_collections import ConfigDict

from dalle_jax import sharding
from dalle_jax.data import shapes

DEFAULT_DATA_DIR = os.path.join("~", ".cache", "dalle_jax", "datasets")
DATA_SETS = ("shapes", "folder")

# Fields whose change makes an existing checkpoint meaningless for this run.
STRUCTURAL_FIELDS = (
  "task",
  "model",
  "data.name",
  "data.image_size",
  "data.text_length",
  "tokenizer.vocab_size",
  "dvae",  # the frozen stage-1 model a transformer run encodes images with
)


def parse_arg(arg: str | None, **defaults: Any) -> ConfigDict:
  """Parses `"variant=tiny,steps=10"` into typed fields.

  Every key must be one of `defaults`; values are converted to the type of
  the default (bools accept true/false/1/0).

  Args:
    arg: the text after the colon in `--config file.py:ARG`, or None.
    **defaults: the allowed keys and their default values.

  Returns:
    A ConfigDict with one field per default.
  """
  result = ConfigDict(defaults)
  if not arg:
    return result
  for item in arg.split(","):
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep:
      raise ValueError(
        f"Config argument {item!r} is not key=value; allowed keys: "
        f"{sorted(defaults)}, e.g. 'variant=tiny'."
      )
    if key not in defaults:
      raise ValueError(
        f"Unknown config argument {key!r}; allowed: {sorted(defaults)}."
      )
    result[key] = _convert(value.strip(), defaults[key], key)
  return result


def parse_variant(
  arg: str | None, variants: tuple[str, ...], default: str = "shapes64"
) -> str:
  """The `variant=...` of a config argument, checked against `variants`."""
  variant = parse_arg(arg, variant=default).variant
  if variant not in variants:
    raise ValueError(f"Unknown variant {variant!r}; use one of {variants}.")
  return variant


def _convert(text: str, default: Any, key: str) -> Any:
  if isinstance(default, bool):
    if text.lower() in ("1", "true", "yes"):
      return True
    if text.lower() in ("0", "false", "no"):
      return False
    raise ValueError(f"Config argument {key}={text!r} is not a boolean.")
  if isinstance(default, int | float):
    try:
      return type(default)(ast.literal_eval(text))
    except (ValueError, SyntaxError) as error:
      raise ValueError(
        f"Config argument {key}={text!r} is not a {type(default).__name__}."
      ) from error
  return text


def base_config() -> ConfigDict:
  """Defaults shared by every stage; stage configs override what they need."""
  config = ConfigDict()
  config.task = ""
  config.seed = 0

  config.data = ConfigDict()
  config.data.name = "shapes"  # one of DATA_SETS
  config.data.data_dir = ""  # '' -> $DALLE_JAX_DATA_DIR or DEFAULT_DATA_DIR
  config.data.folder = ""  # for name='folder': the captioned image folder
  config.data.image_size = 64
  config.data.text_length = 32
  config.data.batch_size = 32  # global, over all hosts and devices
  config.data.eval_batch_size = 64
  config.data.bpe_dropout = 0.0
  config.data.shuffle_seed = 0
  config.data.num_threads = 2  # reader threads per host
  config.data.prefetch = 2  # batches prepared ahead
  config.data.shapes = ConfigDict()
  config.data.shapes.num_train = 100_000
  config.data.shapes.num_validation = 2_000
  config.data.shapes.num_zero_shot = 2_000
  config.data.shapes.seed = 0

  config.tokenizer = ConfigDict()
  config.tokenizer.path = (
    ""  # '' -> <workdir>/tokenizer.model, trained if absent
  )
  config.tokenizer.vocab_size = 256

  config.model = ConfigDict()

  config.optim = ConfigDict()
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 100
  config.optim.schedule = "cosine"
  config.optim.end_lr_factor = 0.01
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-8
  config.optim.weight_decay = 1e-4
  # 'all' decays every parameter; 'matrices' only those with two or more
  # dimensions (kernels, embeddings), exempting biases, LayerNorm gains and
  # scalars such as CLIP's logit scale, as CLIP does.
  config.optim.decay = "all"
  config.optim.grad_clip_norm = 1.0
  config.optim.ema_decay = 0.0

  config.train = ConfigDict()
  config.train.num_steps = 1_000
  config.train.log_every = 50
  config.train.eval_every = 250
  config.train.eval_batches = 4
  config.train.checkpoint_every = 250
  config.train.keep_checkpoints = 3
  config.train.preview_images = 8
  config.train.judge_examples = 0  # Shapes examples judged per split and eval
  config.train.progress_bar = True

  config.mesh = ConfigDict()
  config.mesh.shape = (("data", -1), ("fsdp", 1), ("tensor", 1))
  config.mesh.rules = sharding.DEFAULT_RULES
  return config


def shrink_to_tiny(config: ConfigDict) -> None:
  """Shrinks data and cadence for `variant=tiny`: a few seconds on a CPU.

  32 px Shapes with 64/16/16 examples, batches of 8, 6 steps that log,
  evaluate and checkpoint often enough for tests to see every path.
  """
  config.data.image_size = 32
  config.data.batch_size = 8
  config.data.eval_batch_size = 8
  config.data.shapes.num_train = 64
  config.data.shapes.num_validation = 16
  config.data.shapes.num_zero_shot = 16
  config.tokenizer.vocab_size = 64
  config.optim.warmup_steps = 2
  config.train.num_steps = 6
  config.train.log_every = 2
  config.train.eval_every = 3
  config.train.eval_batches = 2
  config.train.checkpoint_every = 2
  config.train.preview_images = 4


# Run-config fields that name a file or directory the run reads, and that
# later readers (sampling, the evaluation, a Generator) open again from the
# run's config.json: (section, field).
PATH_FIELDS = (("dvae", "workdir"), ("tokenizer", "path"))


def with_absolute_paths(config: ConfigDict) -> ConfigDict:
  """A copy of `config` whose relative PATH_FIELDS are absolute.

  A relative path on the command line means the directory the run was
  started from. Recorded as given, it would mean whatever directory a later
  reader starts from; made absolute at launch, it means the same files to
  every reader. Empty values (a stage's default location) stay empty.
  """
  resolved = config.copy_and_resolve_references()
  for section, field in PATH_FIELDS:
    value = resolved.get(section, {}).get(field, "")
    if value and not os.path.isabs(value):
      resolved[section][field] = os.path.abspath(value)
  return resolved


def load_config(
  spec: str, overrides: Mapping[str, Any] | None = None
) -> ConfigDict:
  """Loads `path/to/config.py[:arg]` and applies dotted-key overrides.

  This is the programmatic twin of `--config file.py:arg --config.a.b=v`,
  for tests and notebooks.

  Args:
    spec: config file path, optionally followed by `:arg`.
    overrides: e.g. `{"optim.lr": 3e-4}`.

  Returns:
    The locked config.
  """
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"Config file {path!r} does not exist. Shipped configs live in "
      "dalle_jax/configs/, e.g. dalle_jax/configs/autoencoder.py."
    )
  module_spec = importlib.util.spec_from_file_location("_dalle_config", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as error:
    raise ValueError(
      f"Config file {path!r} could not be executed: "
      f"{type(error).__name__}: {error}"
    ) from error
  if not hasattr(module, "get_config"):
    raise ValueError(
      f"Config file {path!r} has no get_config(arg) function; every config "
      "file defines one that returns a ConfigDict."
    )
  config = module.get_config(arg or None)
  config.lock()
  for key, value in (overrides or {}).items():
    set_field(config, key, value)
  return config


def set_field(config: ConfigDict, dotted_key: str, value: Any) -> None:
  """Sets `a.b.c` in a locked config; an unknown field is a clear error."""
  parent, _, leaf = dotted_key.rpartition(".")
  get_field(config, dotted_key)  # raises for an unknown field
  node = get_field(config, parent) if parent else config
  node[leaf] = value


def override_from_text(config: ConfigDict, dotted_key: str, text: str) -> None:
  """Sets a field from command-line text, typed like the field's current value.

  Strings are taken as they are; other types are read as Python literals
  (`3e-4`, `(32, 64)`, `true`).
  """
  current = get_field(config, dotted_key)
  if isinstance(current, str):
    value: Any = text
  elif isinstance(current, bool):
    value = _convert(text, current, dotted_key)
  else:
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as error:
      raise ValueError(
        f"--config.{dotted_key}={text!r} is not a valid "
        f"{type(current).__name__} literal."
      ) from error
    if isinstance(current, float) and isinstance(value, int):
      value = float(value)
  set_field(config, dotted_key, value)


def get_field(config: ConfigDict, dotted_key: str) -> Any:
  """Reads `a.b.c`; an unknown field is a clear KeyError."""
  node: Any = config
  names = dotted_key.split(".")
  for depth, name in enumerate(names):
    if not isinstance(node, ConfigDict) or name not in node:
      raise KeyError(_unknown_field(".".join(names[: depth + 1]), node))
    node = node[name]
  return node


def _unknown_field(dotted_key: str, node: ConfigDict) -> str:
  known = sorted(node.keys()) if isinstance(node, ConfigDict) else []
  return f"Unknown config field {dotted_key!r}; fields here are {known}."


def data_dir(config: ConfigDict) -> str:
  """Where prepared data sets live (config, then env var, then default)."""
  path = (
    config.data.data_dir
    or os.environ.get("DALLE_JAX_DATA_DIR")
    or DEFAULT_DATA_DIR
  )
  return os.path.abspath(os.path.expanduser(path))


# Hard negatives per image when `data.hard_negatives` is None (the data
# set's default): Shapes captions have a swap rule, other captions none.
DEFAULT_HARD_NEGATIVES = {"shapes": 1}


def check_hard_negatives(data: ConfigDict) -> tuple[int, tuple[str, ...]]:
  """`data.hard_negatives` and the attributes they swap.

  An absent field reads as 0; None is the data set's default
  (`DEFAULT_HARD_NEGATIVES`, 0 for data sets it does not name), so a config
  that turns them on for Shapes still runs on a folder of images.

  Raises:
    ValueError: for a negative count, hard negatives asked for explicitly on
      other data than Shapes, or an attribute that cannot be swapped.
  """
  count = data.get("hard_negatives", 0)
  if count is None:
    count = DEFAULT_HARD_NEGATIVES.get(data.name, 0)
  attributes = tuple(data.get("hard_negative_attributes", ("shape",)))
  if not isinstance(count, int) or count < 0:
    raise ValueError(
      f"config.data.hard_negatives={count!r} must be an integer >= 0 (0 "
      "turns hard negatives off) or None (the data set's default)."
    )
  if count and data.name != "shapes":
    raise ValueError(
      f"config.data.hard_negatives={count} needs Shapes captions (it swaps "
      "a named object's shape or colour), but "
      f"config.data.name={data.name!r}; set it to 0 (or leave it unset: "
      "None is the data set's default)."
    )
  unknown = set(attributes) - set(shapes.SWAPPABLE_ATTRIBUTES)
  if count and (unknown or not attributes):
    raise ValueError(
      f"config.data.hard_negative_attributes={attributes!r} must be a "
      f"non-empty tuple of {shapes.SWAPPABLE_ATTRIBUTES}."
    )
  return count, attributes


def check_negative_images(data: ConfigDict) -> bool:
  """`data.negative_images`: whether each image brings a shape-swapped twin.

  An absent field reads as False.

  Raises:
    ValueError: if asked for on other data than Shapes (the twin is drawn
      from the rendering's own shapes, `shapes.swapped_shape_image`).
  """
  wanted = data.get("negative_images", False)
  if not isinstance(wanted, bool):
    raise ValueError(
      f"config.data.negative_images={wanted!r} must be True or False."
    )
  if wanted and data.name != "shapes":
    raise ValueError(
      "config.data.negative_images=True needs Shapes renderings (it redraws "
      f"one object as another shape), but config.data.name={data.name!r}; "
      "set it to False."
    )
  return wanted


# The share of training examples repainted when `data.recolour` is None (the
# CLIP stage's default), per data set: only Shapes renderings can be.
DEFAULT_RECOLOUR = {"shapes": 0.5}


def check_recolour(config: ConfigDict) -> float:
  """`data.recolour`: the share of training images repainted.

  Each chosen example has every object repainted in a random colour that
  still reads as a seen (colour, shape) pair, its caption renamed to match
  (`shapes.recoloured_example`). An absent field reads as 0; None as the
  data set's default (`DEFAULT_RECOLOUR`, 0 for data sets it does not
  name, and 0 beside image negatives), so a config that repaints Shapes
  still runs on a folder.

  Raises:
    ValueError: a share outside [0, 1], data other than Shapes, or image
      negatives asked for as well.
  """
  share = config.data.get("recolour", 0.0)
  negative_images = config.data.get("negative_images", False)
  if share is None:
    # Image negatives are drawn from palette renderings: they win.
    share = (
      0.0 if negative_images else DEFAULT_RECOLOUR.get(config.data.name, 0.0)
    )
  if isinstance(share, bool) or not isinstance(share, (int, float)):
    raise ValueError(
      f"config.data.recolour={share!r} must be a number in [0, 1]."
    )
  if not 0.0 <= share <= 1.0:
    raise ValueError(
      f"config.data.recolour={share} must be in [0, 1] (the share of "
      "training images repainted; 0 turns it off)."
    )
  if share and config.data.name != "shapes":
    raise ValueError(
      "config.data.recolour needs Shapes renderings (it repaints each "
      f"object), but config.data.name={config.data.name!r}; set it to 0."
    )
  if share and negative_images:
    raise ValueError(
      "config.data.recolour and config.data.negative_images cannot be "
      "combined (image negatives are drawn from palette renderings); turn "
      "one off."
    )
  return float(share)


def check_image_jitter(data: ConfigDict) -> int:
  """`data.image_jitter`: the largest training move of an image, in pixels.

  CLIP moves each training image by its own random (dy, dx), each at most
  this many pixels (`tasks.clip.jittered_images`). An absent field reads
  as 0 (off).

  Raises:
    ValueError: not a whole number >= 0.
  """
  jitter = data.get("image_jitter", 0)
  if isinstance(jitter, bool) or not isinstance(jitter, int) or jitter < 0:
    raise ValueError(
      f"config.data.image_jitter={jitter!r} must be a whole number of "
      "pixels >= 0 (0 turns it off)."
    )
  return jitter


def validate(config: ConfigDict) -> None:
  """Checks cross-field constraints that a locked config cannot express."""
  problems = []
  if config.data.name not in DATA_SETS:
    problems.append(
      f"config.data.name={config.data.name!r} is not one of {DATA_SETS}."
    )
  if config.data.name == "folder" and not config.data.folder:
    problems.append(
      "config.data.name='folder' needs config.data.folder=<captioned images>."
    )
  for field in ("batch_size", "eval_batch_size", "text_length", "image_size"):
    if config.data[field] <= 0:
      problems.append(f"config.data.{field}={config.data[field]} must be > 0.")
  train = config.train
  for field in ("num_steps", "log_every", "eval_every", "checkpoint_every"):
    if train[field] <= 0:
      problems.append(f"config.train.{field}={train[field]} must be > 0.")
  if train.keep_checkpoints < 1:
    problems.append("config.train.keep_checkpoints must be at least 1.")
  for check, section in (
    (check_hard_negatives, config.data),
    (check_negative_images, config.data),
    (check_recolour, config),
    (check_image_jitter, config.data),
  ):
    try:
      check(section)
    except ValueError as error:
      problems.append(str(error))
  if problems:
    raise ValueError("Invalid config:\n  " + "\n  ".join(problems))


def to_dict(config: ConfigDict) -> dict:
  """A JSON-safe plain dict (tuples become lists)."""
  return json.loads(config.to_json())


def structural_differences(saved: Mapping, current: Mapping) -> list[str]:
  """Lists `field: saved -> current` for the STRUCTURAL_FIELDS that differ.

  Args:
    saved: a config dict as written to a work directory's config.json.
    current: the current config as a plain dict.

  Returns:
    Human-readable lines, empty when the two configs are compatible.
  """
  differences = []
  for dotted in STRUCTURAL_FIELDS:
    before, after = _lookup(saved, dotted), _lookup(current, dotted)
    if before != after:
      differences.append(f"{dotted}: {before!r} (saved) vs {after!r} (now)")
  return differences


def _lookup(tree: Mapping, dotted: str) -> Any:
  node: Any = tree
  for name in dotted.split("."):
    if not isinstance(node, Mapping) or name not in node:
      return None
    node = node[name]
  return node
