"""step_profile: op events grouped by kind (timing is not a test)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.benchmarks import step_profile


def test_op_seconds_sums_hlo_op_events_per_category():
  events = [
    {"ph": "X", "name": "ynn_fusion.3", "dur": 2_000},
    {"ph": "X", "name": "ynn_fusion.17", "dur": 1_000},
    {"ph": "X", "name": "copy_bitcast_fusion.71", "dur": 500},
    {"ph": "X", "name": "copy", "dur": 250},
    # Not HLO ops: runtime and Python events, instants, 'end:' markers.
    {"ph": "X", "name": "ThunkExecutor::Execute", "dur": 9_000},
    {"ph": "X", "name": "$api.py:2479 block_until_ready", "dur": 9_000},
    {"ph": "X", "name": "end: ynn_fusion", "dur": 9_000},
    {"ph": "i", "name": "dot.1", "dur": 9_000},
  ]
  assert step_profile.op_seconds(events) == {
    "ynn_fusion": (pytest.approx(0.003), 2),
    "copy_bitcast_fusion": (pytest.approx(0.0005), 1),
    "copy": (pytest.approx(0.00025), 1),
  }


@pytest.mark.parametrize(
  "category, kind",
  [
    ("ynn_fusion", "matmul"),
    ("dot", "matmul"),
    ("copy_bitcast_fusion", "copy"),
    ("transpose_copy_fusion", "copy"),
    ("multiply_tanh_fusion", "other"),
    ("wrapped_scatter", "other"),
  ],
)
def test_op_kind(category, kind):
  assert step_profile.op_kind(category) == kind


def test_profile_of_a_matmul_finds_a_matmul_op():
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.normal(size=(256, 256)).astype(np.float32))
  product = jax.jit(lambda x: jnp.tanh(x @ x))

  def run():
    return product(a).block_until_ready()

  wall, ops = step_profile.profile(run, steps=2)
  kinds = {step_profile.op_kind(category) for category in ops}
  assert wall > 0
  assert "matmul" in kinds, ops
  text = step_profile.summary(wall, ops, steps=2)
  assert "matmul" in text and "wall" in text
