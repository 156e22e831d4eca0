"""The dvae_conv benchmark's set-up (its timing is not a test)."""

import os

import pytest

from dalle_jax import config as config_lib
from dalle_jax.tasks import dvae as dvae_task
from experiments.benchmarks import dvae_conv


def test_tasks_built_inside_get_the_algorithm_and_it_is_undone():
  path = os.path.join(os.path.dirname(config_lib.__file__), "configs")
  config = config_lib.load_config(f"{path}/dvae.py:variant=shapes64")
  with dvae_conv.conv_algorithm("padded"):
    assert dvae_task.model_config(config).conv_algorithm == "padded"
  assert dvae_task.model_config(config).conv_algorithm == "auto"
  with pytest.raises(RuntimeError), dvae_conv.conv_algorithm("direct"):
    raise RuntimeError("a failed build")
  assert dvae_task.model_config(config).conv_algorithm == "auto"


def test_unknown_algorithm_is_refused_with_the_choices(capsys):
  with pytest.raises(SystemExit):
    dvae_conv.parse_args(["--algorithms", "fft"])
  assert "choose from" in capsys.readouterr().err
