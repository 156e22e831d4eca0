"""Sharding: mesh building, logical rules, sharded == single-device training,
and checkpoints of arrays on the mesh."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from dalle_jax import checkpoint, sharding
from dalle_jax.configs import autoencoder as autoencoder_config
from dalle_jax.tasks import autoencoder
from dalle_jax.train import compile_steps, shard_state


def test_eight_simulated_devices():
  assert jax.device_count() == 8


def test_make_mesh_fills_minus_one():
  mesh = sharding.make_mesh((("data", -1), ("fsdp", 2), ("tensor", 1)))
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1}


@pytest.mark.parametrize(
  "shape, message",
  [
    ((("data", 3), ("fsdp", 1), ("tensor", 1)), "needs 3 devices"),
    ((("data", -1), ("fsdp", 3), ("tensor", 1)), "not divisible by 3"),
    ((("data", -1), ("fsdp", -1)), "more than one -1"),
    ((("batch", -1),), "Unknown mesh axis"),
  ],
)
def test_make_mesh_errors(shape, message):
  with pytest.raises(ValueError, match=message):
    sharding.make_mesh(shape)


def test_logical_to_spec_rules_and_fallbacks():
  mesh = sharding.make_mesh((("data", 2), ("fsdp", 2), ("tensor", 2)))
  spec = sharding.logical_to_spec(
    (sharding.EMBED, sharding.MLP), (16, 32), mesh
  )
  assert spec == PartitionSpec("fsdp", "tensor")
  # 3 RGB channels cannot split over 2 devices: replicated, not an error.
  spec = sharding.logical_to_spec(
    (sharding.CHANNELS_IN, sharding.CHANNELS_OUT), (3, 8), mesh
  )
  assert spec == PartitionSpec(None, "tensor")
  # A mesh axis is used at most once per array.
  spec = sharding.logical_to_spec((sharding.MLP, sharding.HEADS), (4, 4), mesh)
  assert spec == PartitionSpec("tensor", None)
  spec = sharding.logical_to_spec((sharding.ACT_BATCH, None), (8, 5), mesh)
  assert spec == PartitionSpec(("data", "fsdp"), None)


def test_logical_to_spec_rank_mismatch():
  mesh = sharding.make_mesh((("data", -1),))
  with pytest.raises(ValueError, match="one name per dimension"):
    sharding.logical_to_spec((sharding.EMBED,), (4, 4), mesh)


def _train_two_steps(mesh_shape):
  """Init and two updates of the tiny autoencoder on a fixed batch."""
  config = autoencoder_config.get_config("variant=tiny")
  devices = jax.devices()[:1] if mesh_shape is None else None
  shape = (("data", 1),) if mesh_shape is None else mesh_shape
  mesh = sharding.make_mesh(shape, devices=devices)
  rules = sharding.DEFAULT_RULES
  task = autoencoder.make_task(config)
  rng = jax.random.key(0)
  with jax.set_mesh(mesh):
    sharded = shard_state(task, mesh, rules, rng)
    train_step = compile_steps(task, sharded.shardings, mesh, rules).train
    state = sharded.init(rng)
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3))
    batch = {
      "image": jax.device_put(
        images.astype(np.uint8), sharding.batch_sharding(mesh)
      ),
      "text_tokens": jax.device_put(
        np.zeros((8, 4), np.int32), sharding.batch_sharding(mesh)
      ),
    }
    losses = []
    for step in range(2):
      state, metrics = train_step(state, batch, jax.random.key(step))
      losses.append(float(metrics["loss"]))
  return state, losses


def test_sharded_training_equals_single_device():
  reference, reference_losses = _train_two_steps(None)
  for shape in [
    (("data", 8), ("fsdp", 1), ("tensor", 1)),
    (("data", 2), ("fsdp", 2), ("tensor", 2)),
  ]:
    state, losses = _train_two_steps(shape)
    np.testing.assert_allclose(losses, reference_losses, rtol=1e-5)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(
        np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6
      ),
      state.params,
      reference.params,
    )
    if dict(state.step.sharding.mesh.shape)["tensor"] == 2:
      # The state really is split: some kernel is sharded over `tensor`.
      specs = [p.sharding.spec for p in jax.tree.leaves(state.params)]
      assert any("tensor" in tuple(s) for s in specs)
      # Optimizer step counters are replicated over the whole mesh, not
      # left on one device.
      counts = [
        leaf for leaf in jax.tree.leaves(state.opt_state) if leaf.ndim == 0
      ]
      assert counts and all(
        len(leaf.sharding.device_set) == 8 for leaf in counts
      )


def test_checkpoint_round_trip_of_replicated_sharded_and_key_arrays(tmp_path):
  # Replicated arrays below and at checkpoint.MIN_REPLICA_SLICE_BYTES
  # (whole vs split across replicas), an array sharded over the mesh, and a
  # typed PRNG key, whose type only orbax's array metadata restores.
  mesh = jax.make_mesh((8,), ("data",))
  replicated = NamedSharding(mesh, PartitionSpec())
  sharded = NamedSharding(mesh, PartitionSpec("data"))
  # 8 MiB of float32 on 8 replicas: each replica's slice is exactly the
  # floor (half as many elements, 4 MiB, would be written whole).
  big = 2 * checkpoint.MIN_REPLICA_SLICE_BYTES
  state = {
    "small": jax.device_put(jnp.arange(12.0).reshape(3, 4), replicated),
    "big": jax.device_put(jnp.linspace(0.0, 1.0, big), replicated),
    "sharded": jax.device_put(jnp.arange(64.0).reshape(16, 4), sharded),
    "key": jax.random.key(7),
  }
  saver = checkpoint.Checkpointer(str(tmp_path), keep=1)
  saver.save(3, state, {"position": 5})
  saver.close()
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  restored, data = checkpoint.Checkpointer(str(tmp_path), 1).restore_latest(
    abstract
  )
  assert data == {"position": 5}
  for name in ("small", "big", "sharded"):
    np.testing.assert_array_equal(restored[name], state[name])
    assert restored[name].sharding.is_equivalent_to(state[name].sharding, 2)
  assert jax.dtypes.issubdtype(restored["key"].dtype, jax.dtypes.prng_key)
  np.testing.assert_array_equal(
    jax.random.key_data(restored["key"]), jax.random.key_data(state["key"])
  )


def test_array_handler_is_ours_and_registered_without_a_warning(caplog):
  # Orbax warns on every override of a type handler; ours is intended and
  # would otherwise print on every command that imports dalle_jax.
  with caplog.at_level(logging.WARNING):
    checkpoint._register_array_handler()
  assert not [r for r in caplog.records if "overriding" in r.getMessage()]
  handler = ocp.type_handlers.get_type_handler(jax.Array)
  assert isinstance(handler, ocp.type_handlers.ArrayHandler)
  # Other absl warnings still get through once registration is done.
  with caplog.at_level(logging.WARNING):
    logging.getLogger("absl").warning("Type handler overriding test")
  assert "overriding test" in caplog.text
