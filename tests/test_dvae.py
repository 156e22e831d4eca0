"""Tests for dalle_jax.models.dvae (parity with OpenAI's is in test_weights)."""

import dataclasses
import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, PartitionSpec

from dalle_jax import config as config_lib
from dalle_jax import losses, sharding
from dalle_jax.models.dvae import (
  DVAE,
  DVAEConfig,
  PaddedConv,
  PointwiseConv,
  WinogradConv,
  conv_algorithm,
)
from dalle_jax.tasks import dvae as dvae_task

# 64 px with the released model's 4 groups: an 8x8 code grid. One block per
# group keeps compile times short; test_weights covers two.
TINY = DVAEConfig(
  image_size=64, n_hid=16, n_blk_per_group=1, vocab_size=64, n_init=16
)
BATCH = 2
DVAE_CONFIG = os.path.join(
  os.path.dirname(config_lib.__file__), "configs", "dvae.py"
)


def _images(seed=0, batch=BATCH, size=64):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def boxed_variables():
  """`init` output of the tiny model, logical-axis boxes included."""
  rng = jax.random.key(0)
  return jax.jit(DVAE(TINY).init)(rng, _images(), rng, 1.0)


@pytest.fixture(scope="module")
def variables(boxed_variables):
  return nn.unbox(boxed_variables)


@functools.cache
def _jitted(method, config):
  return jax.jit(lambda v, x: DVAE(config).apply(v, x, method=method))


def _apply(variables, inputs, method, config=TINY):
  """`DVAE(config).apply(variables, inputs, method=method)`, jitted once."""
  return _jitted(method, config)(variables, inputs)


@pytest.mark.parametrize(
  "changes, message",
  [
    (dict(image_size=60), r"image_size=60 is not divisible by .* = 8"),
    (dict(group_count=3, image_size=30), r"divisible by .* = 4.*e\.g\. 28"),
    (dict(n_hid=0), r"n_hid=0 must be a positive integer"),
    (dict(vocab_size=2.5), r"vocab_size=2.5 must be a positive integer"),
    (dict(n_hid=18), r"n_hid=18 must be a multiple of 4"),
    (dict(output_channels=3), r"output_channels=3 must be .* = 6"),
    (dict(dtype="float16"), r"dtype='float16' is not supported.*bfloat16"),
    (dict(conv_algorithm="fft"), r"conv_algorithm='fft' .*'winograd'"),
  ],
)
def test_config_validate_names_the_problem(changes, message):
  with pytest.raises(ValueError, match=message):
    dataclasses.replace(TINY, **changes).validate()


def test_invalid_config_is_rejected_when_the_model_is_used():
  with pytest.raises(ValueError, match="image_size=60"):
    DVAE(DVAEConfig(image_size=60)).init(
      jax.random.key(0), _images(size=60), jax.random.key(0), 1.0
    )


def test_config_grid_size():
  assert TINY.grid_size == 8
  assert DVAEConfig().grid_size == 32
  assert DVAEConfig(image_size=64, group_count=3).grid_size == 16


def test_param_shapes_follow_the_official_layout(variables):
  params = variables["params"]
  encoder, decoder = params["encoder"], params["decoder"]
  assert encoder["input"]["kernel"].shape == (7, 7, 3, 16)
  for group, width in enumerate((16, 32, 64, 128), start=1):
    first = encoder[f"group_{group}_block_1"]
    assert first["conv_1"]["kernel"].shape[:2] == (3, 3)
    assert first["conv_4"]["kernel"].shape == (1, 1, width // 4, width)
    # A 1x1 skip conv only where the width changes.
    assert ("id_path" in first) == (group > 1)
  assert encoder["output"]["kernel"].shape == (1, 1, 128, 64)
  assert decoder["input"]["kernel"].shape == (1, 1, 64, 16)
  for group, width in enumerate((128, 64, 32, 16), start=1):
    first = decoder[f"group_{group}_block_1"]
    assert first["conv_1"]["kernel"].shape == (
      1,
      1,
      first_in(group),
      width // 4,
    )
    assert first["conv_4"]["kernel"].shape == (3, 3, width // 4, width)
    assert "id_path" in first
  assert decoder["output"]["kernel"].shape == (1, 1, 16, 6)
  for leaf in jax.tree.leaves(params):
    assert leaf.dtype == jnp.float32


def first_in(group):
  """Input width of the tiny decoder's first block in `group`."""
  return {1: 16, 2: 128, 3: 64, 4: 32}[group]


def test_every_param_has_logical_axis_names(boxed_variables):
  boxes = jax.tree.leaves(
    boxed_variables, is_leaf=lambda leaf: isinstance(leaf, nn.Partitioned)
  )
  assert boxes and all(isinstance(box, nn.Partitioned) for box in boxes)
  for box in boxes:
    assert len(box.names) == box.value.ndim
    assert all(isinstance(name, str) for name in box.names)
  params = boxed_variables["params"]
  conv = params["encoder"]["group_2_block_1"]["conv_2"]["kernel"]
  assert conv.names == (
    sharding.KERNEL_HEIGHT,
    sharding.KERNEL_WIDTH,
    sharding.CHANNELS_IN,
    sharding.CHANNELS_OUT,
  )
  assert params["encoder"]["output"]["kernel"].names[3] == sharding.CODEBOOK
  assert params["encoder"]["output"]["bias"].names == (sharding.CODEBOOK,)
  assert params["decoder"]["input"]["kernel"].names[2] == sharding.CODEBOOK


def test_params_resolve_to_mesh_shardings(boxed_variables):
  devices = np.asarray(jax.devices()[:8]).reshape(2, 2, 2)
  mesh = Mesh(devices, sharding.MESH_AXES)
  shardings = sharding.tree_shardings(boxed_variables, mesh)
  encoder = shardings["params"]["encoder"]
  assert encoder["output"]["kernel"].spec == PartitionSpec(
    None, None, "fsdp", "tensor"
  )


def test_call_returns_training_outputs(variables):
  outputs = jax.jit(DVAE(TINY).apply)(
    variables, _images(), jax.random.key(1), 0.5
  )
  assert set(outputs) == {"logits", "soft_codes", "loc", "log_scale"}
  assert outputs["logits"].shape == (BATCH, 8, 8, 64)
  assert outputs["soft_codes"].shape == (BATCH, 8, 8, 64)
  assert (
    outputs["loc"].shape == outputs["log_scale"].shape == (BATCH, 64, 64, 3)
  )
  for value in outputs.values():
    assert value.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(value)))
  np.testing.assert_allclose(outputs["soft_codes"].sum(-1), 1.0, atol=1e-5)


def test_encode_and_decode_types(variables):
  codes = _apply(variables, _images(), DVAE.encode)
  assert codes.shape == (BATCH, 8, 8) and codes.dtype == jnp.int32
  assert 0 <= int(codes.min()) and int(codes.max()) < 64
  logits = _apply(variables, _images(), DVAE.encode_logits)
  np.testing.assert_array_equal(codes, np.argmax(logits, axis=-1))

  images = _apply(variables, codes, DVAE.decode)
  assert images.shape == (BATCH, 64, 64, 3) and images.dtype == jnp.uint8
  stats = _apply(variables, codes, DVAE.decode_logits)
  assert stats.shape == (BATCH, 64, 64, 6) and stats.dtype == jnp.float32
  expected = np.clip((1 / (1 + np.exp(-stats[..., :3])) - 0.1) / 0.8, 0, 1)
  np.testing.assert_allclose(images, np.round(expected * 255), atol=1)


def test_integer_codes_decode_like_their_one_hot(variables):
  codes = np.random.default_rng(4).integers(0, 64, (BATCH, 8, 8))
  from_codes = _apply(variables, codes.astype(np.int32), DVAE.decode_logits)
  one_hot = np.eye(64, dtype=np.float32)[codes]
  from_one_hot = _apply(variables, one_hot, DVAE.decode_logits)
  np.testing.assert_allclose(from_codes, from_one_hot, rtol=1e-5, atol=1e-5)


def test_out_of_range_codes_decode_to_nan(variables):
  codes = np.zeros((BATCH, 8, 8), np.int32)
  codes[0, 0, 0], codes[0, 7, 7] = 64, -1
  stats = np.asarray(_apply(variables, codes, DVAE.decode_logits))
  assert np.isnan(stats[0, :8, :8]).all() and np.isnan(stats[0, -8:, -8:]).all()
  assert np.isfinite(stats[1]).all()


def test_float_and_uint8_images_encode_alike(variables):
  images = _images(5)
  from_uint8 = _apply(variables, images, DVAE.encode_logits)
  from_float = _apply(variables, images / np.float32(255), DVAE.encode_logits)
  np.testing.assert_allclose(from_uint8, from_float, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(BATCH, 64, 64), (BATCH, 64, 64, 1)])
def test_grayscale_is_repeated_to_rgb(variables, shape):
  gray = _images(6)[..., 0]
  rgb = np.repeat(gray[..., None], 3, axis=-1)
  from_gray = _apply(variables, gray.reshape(shape), DVAE.encode_logits)
  from_rgb = _apply(variables, rgb, DVAE.encode_logits)
  np.testing.assert_allclose(from_gray, from_rgb, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
  "shape", [(BATCH, 32, 32, 3), (BATCH, 64, 64, 4), (64, 64, 3), (1,) * 5]
)
def test_bad_images_name_the_expected_shape(variables, shape):
  with pytest.raises(ValueError, match=r"expected \[B, 64, 64, 3\]"):
    DVAE(TINY).apply(
      variables, np.zeros(shape, np.uint8), method=DVAE.encode_logits
    )


@pytest.mark.parametrize(
  "codes",
  [
    np.zeros((BATCH, 4, 4), np.int32),
    np.zeros((BATCH, 8, 8, 32), np.float32),
    np.zeros((BATCH, 8, 8), np.float32),
  ],
)
def test_bad_codes_name_the_expected_shape(variables, codes):
  with pytest.raises(ValueError, match=r"expected \[B, 8, 8\] integer"):
    DVAE(TINY).apply(variables, codes, method=DVAE.decode)


def test_bfloat16_compute_keeps_float32_params_and_outputs(variables):
  config = dataclasses.replace(TINY, dtype="bfloat16")
  logits = _apply(variables, _images(), DVAE.encode_logits, config)
  reference = _apply(variables, _images(), DVAE.encode_logits)
  assert logits.dtype == jnp.float32
  error = np.abs(logits - reference).max() / np.abs(reference).max()
  assert error < 0.05
  stats = _apply(variables, np.zeros((1, 8, 8), np.int32), DVAE.decode_logits)
  assert stats.dtype == jnp.float32


def test_logical_constraints_under_a_mesh(variables):
  devices = np.asarray(jax.devices()[:8]).reshape(8, 1, 1)
  mesh = Mesh(devices, sharding.MESH_AXES)
  images = _images(7, batch=8)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.DEFAULT_RULES):
    logits = _apply(variables, images, DVAE.encode_logits)
  reference = _apply(variables, images, DVAE.encode_logits)
  np.testing.assert_allclose(logits, reference, rtol=1e-5, atol=1e-5)


def test_loss_decreases_on_a_fixed_batch(variables):
  model = DVAE(TINY)
  images = _images(8)
  optimizer = optax.adam(3e-3)

  @jax.jit
  def step(params, opt_state, rng):
    def loss_fn(params):
      outputs = model.apply({"params": params}, images, rng, 1.0)
      return losses.dvae_loss(outputs, images, kl_weight=0.1)[0]

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  params = variables["params"]
  opt_state = optimizer.init(params)
  history = []
  for index in range(20):
    params, opt_state, loss = step(params, opt_state, jax.random.key(index))
    history.append(float(loss))
  assert np.all(np.isfinite(history))
  assert np.mean(history[-3:]) < 0.8 * np.mean(history[:3])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_pointwise_conv_equals_a_1x1_flax_conv(dtype):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 5, 6)))
  init = nn.initializers.normal(1.0)
  pointwise = PointwiseConv(4, dtype, kernel_init=init, bias_init=init)
  params = pointwise.init(jax.random.key(0), x)
  reference = nn.Conv(4, (1, 1), dtype=dtype, param_dtype=jnp.float32)
  # Same parameter names and shapes, so the reference runs on them as is.
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(
    jnp.shape, reference.init(jax.random.key(1), x)
  )
  ours, theirs = pointwise.apply(params, x), reference.apply(params, x)
  assert ours.dtype == theirs.dtype == dtype
  tolerance = 1e-6 if dtype == jnp.float32 else 2e-2
  np.testing.assert_allclose(
    np.asarray(ours, np.float32),
    np.asarray(theirs, np.float32),
    rtol=tolerance,
    atol=tolerance,
  )


@pytest.mark.parametrize("num_steps", [40, 400])
def test_schedules_scale_with_an_overridden_run_length(num_steps):
  config = config_lib.load_config(
    f"{DVAE_CONFIG}:variant=shapes64", {"train.num_steps": num_steps}
  )
  schedule = config.dvae_schedule
  temperature = dvae_task.temperature_schedule(schedule, num_steps)
  kl_weight = dvae_task.kl_weight_schedule(schedule, num_steps)
  anneal = int(num_steps * schedule.temperature_fraction)
  ramp = num_steps // 20
  # Temperature reaches its end value at the configured share of the run.
  assert float(temperature(anneal - 1)) > schedule.temperature_end
  np.testing.assert_allclose(
    float(temperature(anneal)), schedule.temperature_end
  )
  # The KL weight ramps from 0 over the first 5% of the run.
  assert float(kl_weight(0)) == 0.0
  assert float(kl_weight(ramp - 1)) < schedule.kl_weight
  np.testing.assert_allclose(float(kl_weight(ramp)), schedule.kl_weight)


@pytest.mark.parametrize("fraction", [0.0, 1.5])
def test_temperature_fraction_outside_the_run_is_refused(fraction):
  config = config_lib.load_config(
    f"{DVAE_CONFIG}:variant=shapes64",
    {"dvae_schedule.temperature_fraction": fraction},
  )
  with pytest.raises(ValueError, match="temperature_fraction"):
    dvae_task.schedule_steps(config.dvae_schedule, 1_000)


def test_paper_schedules_keep_their_step_counts():
  config = config_lib.load_config(f"{DVAE_CONFIG}:variant=paper")
  steps = dvae_task.schedule_steps(config.dvae_schedule, 1_000)
  assert steps == (150_000, 5_000)


@pytest.mark.parametrize(
  "module, input_shape, features, gradient_tolerance",
  [
    # Winograd's transforms round differently (up to 3e-5 here); its own
    # gradient test is in test_winograd.py.
    (WinogradConv, (2, 6, 6, 5), 4, 1e-4),
    (PaddedConv, (2, 6, 5, 16), 4, 1e-5),
    (PaddedConv, (2, 6, 5, 4), 4, 1e-5),
    (PaddedConv, (2, 6, 5, 3), 16, 1e-5),
  ],
)
def test_explicit_3x3_conv_equals_a_flax_conv_with_its_gradients(
  module, input_shape, features, gradient_tolerance
):
  x = jnp.asarray(np.random.default_rng(0).normal(size=input_shape))
  init = nn.initializers.normal(1.0)
  ours = module(features, jnp.float32, kernel_init=init, bias_init=init)
  params = ours.init(jax.random.key(0), x)
  reference = nn.Conv(features, (3, 3), padding="SAME")
  # Same parameter names and shapes, so the reference runs on them as is.
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(
    jnp.shape, reference.init(jax.random.key(1), x)
  )
  np.testing.assert_allclose(
    ours.apply(params, x), reference.apply(params, x), rtol=1e-5, atol=1e-5
  )

  def loss(conv, params, x):
    return jnp.sum(jnp.sin(conv.apply(params, x)))

  ours_grads = jax.grad(loss, argnums=(1, 2))(ours, params, x)
  reference_grads = jax.grad(loss, argnums=(1, 2))(reference, params, x)
  for got, want in zip(
    jax.tree.leaves(ours_grads), jax.tree.leaves(reference_grads), strict=True
  ):
    assert got.shape == want.shape
    np.testing.assert_allclose(
      got, want, rtol=gradient_tolerance, atol=gradient_tolerance
    )


@pytest.mark.parametrize(
  "requested, kernel_size, input_shape, features, dtype, expected",
  [
    ("auto", 3, (4, 32, 32, 128), 128, jnp.float32, "winograd"),  # wide
    ("auto", 3, (1, 32, 32, 512), 128, jnp.float32, "winograd"),
    ("auto", 3, (4, 64, 64, 256), 64, jnp.float32, "direct"),  # 51 < 64
    ("auto", 3, (4, 64, 64, 64), 64, jnp.float32, "direct"),
    ("auto", 3, (1, 16, 16, 512), 128, jnp.float32, "direct"),  # 64 tiles
    ("auto", 3, (1, 31, 33, 512), 128, jnp.float32, "winograd"),  # 272
    ("auto", 3, (4, 32, 32, 128), 128, jnp.bfloat16, "direct"),
    ("auto", 1, (4, 32, 32, 512), 512, jnp.float32, "direct"),  # only 3x3
    ("winograd", 3, (1, 4, 4, 4), 4, jnp.bfloat16, "winograd"),
    ("winograd", 7, (1, 4, 4, 3), 16, jnp.float32, "direct"),
    ("direct", 3, (4, 32, 32, 512), 512, jnp.float32, "direct"),
    ("auto", 3, (32, 64, 64, 16), 4, jnp.float32, "padded"),  # 4 < 8
    ("auto", 3, (32, 64, 64, 4), 16, jnp.float32, "padded"),
    ("auto", 3, (32, 32, 32, 8), 8, jnp.float32, "direct"),
    ("auto", 3, (32, 64, 64, 4), 4, jnp.bfloat16, "direct"),
    ("auto", 7, (32, 64, 64, 3), 16, jnp.float32, "direct"),
    ("padded", 3, (4, 32, 32, 128), 128, jnp.float32, "padded"),
    ("padded", 1, (4, 32, 32, 4), 4, jnp.float32, "direct"),
    ("direct", 3, (32, 64, 64, 4), 4, jnp.float32, "direct"),
  ],
)
def test_conv_algorithm_per_layer(
  requested, kernel_size, input_shape, features, dtype, expected
):
  assert jax.default_backend() == "cpu"
  chosen = conv_algorithm(
    requested, kernel_size, input_shape, features, jnp.dtype(dtype)
  )
  assert chosen == expected


@pytest.mark.parametrize(
  "perplexity, usage, expected",
  [
    (1.0, 1 / 512, "use 1 of 512 codes (code perplexity 1.00)"),
    (1.9, 3 / 512, "use 3 of 512 codes (code perplexity 1.90)"),
    (2.0, 3 / 512, None),
    (19.0, 0.24, None),
  ],
)
def test_a_collapsed_codebook_is_named_with_the_fix(
  perplexity, usage, expected
):
  metrics = {"code_perplexity": perplexity, "codebook_usage": usage}
  messages = dvae_task.collapse_warnings(metrics, 512)
  if expected is None:
    assert messages == []
  else:
    (message,) = messages
    assert expected in message
    assert "config.optim.lr" in message and "new --workdir" in message
  assert dvae_task.collapse_warnings({}, 512) == []  # no code statistics
