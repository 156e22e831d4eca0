"""The init_compile benchmark's set-up (its timing is not a test)."""

import jax
import numpy as np
import pytest

from dalle_jax.models import initializers
from experiments.benchmarks import init_compile


def test_nd_draws_give_the_same_values_and_are_undone():
  init = initializers.lecun_normal()
  key, shape = jax.random.key(0), (3, 3, 4, 8)
  flat = init(key, shape)
  with init_compile.draws("nd"):
    assert initializers._flat_normal is jax.random.normal
    nd = init(key, shape)
  np.testing.assert_array_equal(flat, nd)
  assert initializers._flat_normal is not jax.random.normal
  with pytest.raises(RuntimeError), init_compile.draws("nd"):
    raise RuntimeError("a failed build")
  assert initializers._flat_normal is not jax.random.normal


def test_unknown_stage_is_refused_with_the_choices(capsys):
  with pytest.raises(SystemExit):
    init_compile.parse_args(["--stages", "vqgan"])
  assert "choose from" in capsys.readouterr().err
