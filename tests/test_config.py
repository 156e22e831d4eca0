"""Configs: argument parsing, loading, overrides, validation, shipped files."""

import glob
import importlib
import os
import subprocess
import sys

import pytest

from dalle_jax import config as config_lib
from dalle_jax import pipeline, train

CONFIG_DIR = os.path.join(os.path.dirname(config_lib.__file__), "configs")
SHIPPED = sorted(
  path
  for path in glob.glob(os.path.join(CONFIG_DIR, "*.py"))
  if not path.endswith("__init__.py")
)


def _shipped_variants():
  for path in SHIPPED:
    name = os.path.basename(path)[: -len(".py")]
    module = importlib.import_module(f"dalle_jax.configs.{name}")
    for variant in module.VARIANTS:
      yield path, variant


def test_parse_arg_types_and_defaults():
  args = config_lib.parse_arg(
    "variant=tiny,steps=12,lr=0.5,ema=true",
    variant="a",
    steps=1,
    lr=0.1,
    ema=False,
  )
  assert (args.variant, args.steps, args.lr, args.ema) == (
    "tiny",
    12,
    0.5,
    True,
  )
  assert config_lib.parse_arg(None, variant="a").variant == "a"


@pytest.mark.parametrize(
  "arg, message",
  [
    ("colour=red", "Unknown config argument 'colour'"),
    ("variant", "not key=value"),
    ("steps=ten", "not a int"),
    ("ema=maybe", "not a boolean"),
  ],
)
def test_parse_arg_errors(arg, message):
  with pytest.raises(ValueError, match=message):
    config_lib.parse_arg(arg, variant="a", steps=1, ema=False)


@pytest.mark.parametrize("path, variant", list(_shipped_variants()))
def test_every_shipped_config_builds_and_validates(path, variant):
  config = config_lib.load_config(f"{path}:variant={variant}")
  if config.task == "pipeline":  # a section per stage, each validated
    pipeline.validate(config)
  else:
    config_lib.validate(config)
  assert config.task
  module_doc = open(path).read()
  assert "python -m dalle_jax.train --config" in module_doc


def test_unknown_variant_is_refused():
  for path in SHIPPED:
    with pytest.raises(ValueError, match="Unknown variant 'huge'"):
      config_lib.load_config(f"{path}:variant=huge")


def test_override_and_unknown_field():
  path = os.path.join(CONFIG_DIR, "autoencoder.py")
  config = config_lib.load_config(
    f"{path}:variant=tiny", {"optim.lr": 0.25, "train.num_steps": 3}
  )
  assert config.optim.lr == 0.25 and config.train.num_steps == 3
  with pytest.raises(KeyError, match="'optim.lrr'"):
    config_lib.load_config(path, {"optim.lrr": 1.0})
  with pytest.raises(KeyError, match="'optimizer'"):
    config_lib.load_config(path, {"optimizer.lr": 1.0})
  with pytest.raises(AttributeError):
    config.optim.new_field = 1  # locked: no silent new fields


def test_missing_and_malformed_config_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    config_lib.load_config(str(tmp_path / "nope.py"))
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(arg):\n  return {\n")
  with pytest.raises(ValueError, match="could not be executed: SyntaxError"):
    config_lib.load_config(str(broken))
  empty = tmp_path / "empty.py"
  empty.write_text("x = 1\n")
  with pytest.raises(ValueError, match="no get_config"):
    config_lib.load_config(str(empty))


def test_validate_names_every_problem():
  config = config_lib.base_config()
  config.data.name = "imagenet"
  config.train.num_steps = 0
  with pytest.raises(ValueError) as error:
    config_lib.validate(config)
  assert "config.data.name='imagenet'" in str(error.value)
  assert "config.train.num_steps=0" in str(error.value)


def test_structural_differences():
  saved = config_lib.to_dict(config_lib.base_config())
  current = config_lib.base_config()
  current.data.image_size = 128
  current.train.num_steps = 5  # not structural: a longer run may resume
  differences = config_lib.structural_differences(
    saved, config_lib.to_dict(current)
  )
  assert differences == ["data.image_size: 64 (saved) vs 128 (now)"]


def _cli(*args, cwd):
  return subprocess.run(
    [sys.executable, "-m", "dalle_jax.train", *args],
    capture_output=True,
    text=True,
    cwd=cwd,
    timeout=120,
  )


def test_cli_rejects_typo_and_missing_file(tmp_path):
  path = os.path.join(CONFIG_DIR, "autoencoder.py")
  result = _cli(
    f"--config={path}:variant=tiny",
    "--config.optim.lrr=0.1",
    f"--workdir={tmp_path / 'w'}",
    cwd=tmp_path,
  )
  assert result.returncode != 0
  assert "lrr" in result.stderr
  # In this process (a second interpreter start costs about 14 s): the
  # command's error handling is the one the typo above went through.
  missing = str(tmp_path / "missing.py")
  with pytest.raises(FileNotFoundError, match="missing.py"):
    train.parse_command_line([f"--config={missing}", f"--workdir={tmp_path}"])


def test_with_absolute_paths_resolves_only_relative_paths(
  tmp_path, monkeypatch
):
  monkeypatch.chdir(tmp_path)
  spec = os.path.join(CONFIG_DIR, "transformer.py:variant=tiny")
  config = config_lib.load_config(
    spec, {"dvae.workdir": "runs/dvae", "tokenizer.path": ""}
  )
  resolved = config_lib.with_absolute_paths(config)
  assert resolved.dvae.workdir == os.path.join(str(tmp_path), "runs", "dvae")
  assert resolved.tokenizer.path == ""  # the stage's own default place
  assert config.dvae.workdir == "runs/dvae"  # the caller's config is kept
  config = config_lib.load_config(
    spec, {"dvae.workdir": "/abs/dvae", "tokenizer.path": "t.model"}
  )
  resolved = config_lib.with_absolute_paths(config)
  assert resolved.dvae.workdir == "/abs/dvae"
  assert resolved.tokenizer.path == os.path.join(str(tmp_path), "t.model")
  # A config without a dVAE section (the dVAE stage's own) is fine.
  dvae = config_lib.load_config(os.path.join(CONFIG_DIR, "dvae.py"))
  assert config_lib.with_absolute_paths(dvae).to_dict() == dvae.to_dict()
