"""Tests for dalle_jax.models.transformer and dalle_jax.losses (dalle_loss)."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec

from dalle_jax import losses, sampling, sharding
from dalle_jax.models import transformer
from dalle_jax.models.masks import layer_mask_kinds
from dalle_jax.models.transformer import Transformer, TransformerConfig

# 4 layers give row, column, row, conv; kernel 3 keeps the conv mask sparser
# than causal on a 4 x 4 grid (kernel 11 would cover it all).
TINY = TransformerConfig(
  text_vocab_size=20,
  text_length=6,
  image_vocab_size=16,
  grid_side=4,
  num_layers=4,
  num_heads=2,
  head_dim=8,
  conv_kernel=3,
  block_size=8,
)
DENSE = dataclasses.replace(TINY, attention="dense")
# Tests of options rather than masks use one (conv) layer: faster compiles.
ONE_LAYER = dataclasses.replace(TINY, num_layers=1)
BATCH = 2


def _tokens(seed, batch=BATCH, config=TINY):
  rng = np.random.default_rng(seed)
  text = rng.integers(0, config.text_vocab_size, (batch, config.text_length))
  codes = rng.integers(
    0, config.image_vocab_size, (batch, config.num_image_tokens)
  )
  return text.astype(np.int32), codes.astype(np.int32)


@pytest.fixture(scope="module")
def boxed_variables():
  """Abstract `init` output, logical-axis boxes included (nothing compiled)."""
  text, codes = _tokens(0)
  return jax.eval_shape(Transformer(TINY).init, jax.random.key(0), text, codes)


@pytest.fixture(scope="module")
def params(boxed_variables):
  """Random params of the right shapes, drawn in numpy.

  Not the model's own initialisation (compiling the init's RNG alone takes
  seconds on CPU): N(0, 0.5) everywhere, plus 1 on norm scales, so biases
  and norms matter and decoded sequences vary.
  """
  rng = np.random.default_rng(1)

  def draw(path, leaf):
    offset = 1.0 if "scale" in jax.tree_util.keystr(path) else 0.0
    return (offset + rng.normal(0, 0.5, leaf.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(
    draw, nn.unbox(boxed_variables)["params"]
  )


@pytest.fixture(scope="module")
def one_layer_params(params):
  """Params of ONE_LAYER: TINY's without blocks 1..3 (same names)."""
  return {
    name: value
    for name, value in params.items()
    if name not in {"blocks_1", "blocks_2", "blocks_3"}
  }


@functools.cache
def _forward(config):
  return jax.jit(
    lambda p, text, codes: Transformer(config).apply({"params": p}, text, codes)
  )


@functools.cache
def _greedy_generate(config):
  """Jitted prefill + greedy cached decoding."""

  def generate(params, text):
    logits, cache = transformer.prefill(config, params, text)
    rngs = sampling.row_keys(
      0, jnp.arange(text.shape[0]), jnp.zeros_like(text[:, 0])
    )
    step = functools.partial(transformer.decode_step, config, params)
    return sampling.sample_image_codes(
      step, logits, cache, rngs, config.num_image_tokens, greedy=True
    )

  return jax.jit(generate)


def test_tiny_config_covers_every_image_mask_kind():
  assert layer_mask_kinds(TINY.num_layers) == ["row", "column", "row", "conv"]
  masks = [spec.build() for spec in TINY.mask_specs()]
  causal = np.tri(TINY.sequence_length, dtype=bool)
  assert not any(np.array_equal(mask, causal) for mask in masks)


@pytest.mark.parametrize("config", [TINY, DENSE], ids=["block_sparse", "dense"])
def test_greedy_cached_decoding_equals_forward_rollout(config, params):
  text, _ = _tokens(2)
  cached = np.asarray(_greedy_generate(config)(params, text))
  # Reference: the full forward pass over the growing prefix, argmax of the
  # next position; later (still zero) codes cannot leak through causal masks.
  forward = _forward(config)
  rollout = np.zeros_like(cached)
  for index in range(config.num_image_tokens):
    _, image_logits = forward(params, text, rollout)
    rollout[:, index] = np.argmax(image_logits[:, index], axis=-1)
  np.testing.assert_array_equal(cached, rollout)
  # A non-trivial sequence that depends on the prompt was decoded.
  assert len(np.unique(cached)) >= 3
  assert not np.array_equal(cached[0], cached[1])


@pytest.mark.parametrize("config", [TINY, DENSE], ids=["block_sparse", "dense"])
def test_prefill_and_decode_logits_equal_teacher_forced_forward(config, params):
  @jax.jit
  def teacher_forced_decoding(params, text, codes):
    first, cache = transformer.prefill(config, params, text)

    def step(cache, position):
      logits, cache = transformer.decode_step(
        config, params, cache, codes[:, position], position
      )
      return cache, logits

    positions = jnp.arange(config.num_image_tokens - 1)
    _, logits = jax.lax.scan(step, cache, positions)
    return jnp.concatenate([first[:, None], logits.transpose(1, 0, 2)], 1)

  text, codes = _tokens(3)
  _, image_logits = _forward(config)(params, text, codes)
  decoded = teacher_forced_decoding(params, text, codes)
  np.testing.assert_allclose(decoded, image_logits, atol=2e-5, rtol=1e-5)


def test_block_sparse_forward_equals_dense_forward(params):
  text, codes = _tokens(4)
  sparse = _forward(TINY)(params, text, codes)
  dense = _forward(DENSE)(params, text, codes)
  for got, want in zip(sparse, dense, strict=True):
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)


def test_output_shapes_and_dtypes(params):
  text, codes = _tokens(5)
  text_logits, image_logits = _forward(TINY)(params, text, codes)
  assert text_logits.shape == (BATCH, TINY.text_length - 1, 20)
  assert image_logits.shape == (BATCH, TINY.num_image_tokens, 16)
  assert text_logits.dtype == image_logits.dtype == jnp.float32
  cache = transformer.init_cache(TINY, 3)
  assert len(cache) == TINY.num_layers
  assert cache[0].key.shape == (3, 22, 2, 8)


def test_text_logits_see_no_image_and_image_logits_see_the_past(params):
  text, codes = _tokens(6)
  forward = _forward(TINY)
  text_logits, image_logits = forward(params, text, codes)
  changed = codes.copy()
  changed[:, 5] = (changed[:, 5] + 1) % TINY.image_vocab_size
  text_after, image_after = forward(params, text, changed)
  np.testing.assert_array_equal(text_after, text_logits)
  # Codes 0..5 are predicted before code 5 is seen; code 6 depends on it.
  np.testing.assert_array_equal(image_after[:, :6], image_logits[:, :6])
  assert np.abs(image_after[:, 6] - image_logits[:, 6]).max() > 1e-4


def test_every_param_has_logical_axis_names(boxed_variables):
  boxes = jax.tree.leaves(
    boxed_variables, is_leaf=lambda leaf: isinstance(leaf, nn.Partitioned)
  )
  assert boxes and all(isinstance(box, nn.Partitioned) for box in boxes)
  for box in boxes:
    assert len(box.names) == box.value.ndim
    assert all(isinstance(name, str) for name in box.names)
    assert len(set(box.names)) == len(box.names)
    assert box.value.dtype == jnp.float32
  params = boxed_variables["params"]
  attention = params["blocks_0"]["attention"]
  assert attention["query"]["kernel"].names == (
    sharding.EMBED,
    sharding.HEADS,
    sharding.HEAD_DIM,
  )
  assert attention["out"]["kernel"].names == (
    sharding.HEADS,
    sharding.HEAD_DIM,
    sharding.EMBED,
  )
  mlp = params["blocks_0"]["mlp"]
  assert mlp["up"]["kernel"].names == (sharding.EMBED, sharding.MLP)
  assert params["text_embed"]["embedding"].names == (
    sharding.VOCAB,
    sharding.EMBED,
  )
  assert params["image_head"]["kernel"].names == (
    sharding.EMBED,
    sharding.VOCAB,
  )
  assert params["image_row"].names == (transformer.POSITION, sharding.EMBED)
  assert params["final_norm"]["scale"].names == (sharding.NORM,)


def test_init_forward_and_decoding_under_a_mesh(one_layer_params):
  config, params = ONE_LAYER, one_layer_params
  devices = np.asarray(jax.devices()[:8]).reshape(4, 1, 2)
  mesh = Mesh(devices, sharding.MESH_AXES)
  text, codes = _tokens(7, batch=4)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.DEFAULT_RULES):
    abstract = jax.eval_shape(
      Transformer(config).init, jax.random.key(0), text, codes
    )
    sharded = _forward(config)(params, text, codes)
    sharded_codes = _greedy_generate(config)(params, text)
  shardings = sharding.tree_shardings(abstract, mesh)
  query = shardings["params"]["blocks_0"]["attention"]["query"]["kernel"]
  assert query.spec == PartitionSpec(None, "tensor", None)
  reference = _forward(config)(params, text, codes)
  for got, want in zip(sharded, reference, strict=True):
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)
  np.testing.assert_array_equal(
    sharded_codes, _greedy_generate(config)(params, text)
  )


@functools.cache
def _sampler(config):
  """Jitted prefill + sampling at temperature 1 with top-k and top-p."""

  @jax.jit
  def generate(params, text, seed, prompt_indices, candidate_indices):
    logits, cache = transformer.prefill(config, params, text)
    rngs = sampling.row_keys(seed, prompt_indices, candidate_indices)
    step = functools.partial(transformer.decode_step, config, params)
    return sampling.sample_image_codes(
      step, logits, cache, rngs, config.num_image_tokens, 1.0, 5, 0.9
    )

  return generate


def test_second_sampler_call_compiles_nothing(one_layer_params):
  generate = _sampler(ONE_LAYER)
  candidates = np.zeros(BATCH, np.int32)
  first = generate(
    one_layer_params, _tokens(8)[0], 0, np.arange(BATCH), candidates
  )
  events = []

  def listener(name, duration, **kwargs):
    del duration, kwargs
    events.append(name)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    second = generate(
      one_layer_params, _tokens(9)[0], 1, np.arange(BATCH) + 2, candidates
    )
    jax.block_until_ready(second)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert not [name for name in events if "compile" in name], events
  assert not np.array_equal(first, second)


def test_a_seed_gives_a_prompt_the_same_images_in_any_batch(
  one_layer_params,
):
  generate = _sampler(ONE_LAYER)
  texts = _tokens(17)[0]
  prompts, candidates = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
  batch = generate(one_layer_params, texts[prompts], 5, prompts, candidates)
  for row in (1, 2):
    alone = generate(
      one_layer_params,
      texts[prompts[row]][None],
      5,
      prompts[row : row + 1],
      candidates[row : row + 1],
    )
    np.testing.assert_array_equal(alone[0], batch[row])
  assert not np.array_equal(batch[0], batch[1])  # candidates differ


def test_remat_gives_the_same_loss_and_gradients(one_layer_params):
  text, codes = _tokens(10)

  def loss_fn(config):
    def loss(p):
      logits = Transformer(config).apply({"params": p}, text, codes)
      return losses.dalle_loss(*logits, text, codes)[0]

    return jax.value_and_grad(loss)

  # Dense attention: its backward pass compiles faster; remat is the same.
  config = dataclasses.replace(ONE_LAYER, attention="dense")
  remat_config = dataclasses.replace(config, remat=True)
  remat_jaxpr = str(jax.make_jaxpr(loss_fn(remat_config))(one_layer_params))
  assert "remat" in remat_jaxpr
  assert "remat" not in str(jax.make_jaxpr(loss_fn(config))(one_layer_params))
  plain = jax.jit(loss_fn(config))(one_layer_params)
  remat = jax.jit(loss_fn(remat_config))(one_layer_params)
  np.testing.assert_allclose(plain[0], remat[0], rtol=1e-6)
  for got, want in zip(
    jax.tree.leaves(remat[1]), jax.tree.leaves(plain[1]), strict=True
  ):
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-5)


def test_dropout_only_when_not_deterministic(one_layer_params):
  model = Transformer(dataclasses.replace(ONE_LAYER, dropout=0.5))
  text, codes = _tokens(11)

  @functools.partial(jax.jit, static_argnums=0)
  def apply(deterministic, params):
    return model.apply(
      {"params": params},
      text,
      codes,
      deterministic,
      rngs={"dropout": jax.random.key(0)},
    )

  reference = _forward(ONE_LAYER)(one_layer_params, text, codes)
  kept = apply(True, one_layer_params)
  np.testing.assert_allclose(kept[1], reference[1], atol=2e-5, rtol=1e-5)
  dropped = apply(False, one_layer_params)
  assert np.abs(dropped[1] - reference[1]).max() > 1e-2


def test_bfloat16_compute_keeps_float32_logits_close(one_layer_params):
  config = dataclasses.replace(ONE_LAYER, dtype="bfloat16")
  text, codes = _tokens(12)
  text_logits, image_logits = _forward(config)(one_layer_params, text, codes)
  assert text_logits.dtype == image_logits.dtype == jnp.float32
  reference = _forward(ONE_LAYER)(one_layer_params, text, codes)[1]
  error = np.abs(image_logits - reference).max() / np.abs(reference).max()
  assert error < 0.05
  cache = transformer.init_cache(config, 1)
  assert cache[0].value.dtype == jnp.bfloat16


def _numpy_cross_entropy(logits, targets):
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(axis=-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
  picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)
  return -picked[..., 0]


def test_loss_equals_plain_numpy_weighted_cross_entropy():
  rng = np.random.default_rng(13)
  text, codes = _tokens(13, batch=3)
  text_logits = rng.normal(size=(3, 5, 20)).astype(np.float32) * 3
  image_logits = rng.normal(size=(3, 16, 16)).astype(np.float32) * 3
  loss, metrics = jax.jit(losses.dalle_loss)(
    text_logits, image_logits, text, codes
  )
  text_ce = _numpy_cross_entropy(text_logits, text[:, 1:]).mean()
  image_ce = _numpy_cross_entropy(image_logits, codes).mean()
  np.testing.assert_allclose(loss, text_ce / 8 + 7 * image_ce / 8, rtol=1e-5)
  np.testing.assert_allclose(metrics["text_loss"], text_ce, rtol=1e-5)
  np.testing.assert_allclose(metrics["image_loss"], image_ce, rtol=1e-5)
  np.testing.assert_allclose(
    metrics["image_bits_per_token"], image_ce / np.log(2), rtol=1e-5
  )
  np.testing.assert_allclose(
    metrics["image_accuracy"], (image_logits.argmax(-1) == codes).mean()
  )
  np.testing.assert_allclose(
    metrics["text_accuracy"], (text_logits.argmax(-1) == text[:, 1:]).mean()
  )


def test_loss_with_a_single_text_position_has_no_text_term():
  _, codes = _tokens(14)
  image_logits = np.random.default_rng(14).normal(size=(2, 16, 16))
  loss, metrics = losses.dalle_loss(
    np.zeros((2, 0, 20), np.float32),
    image_logits.astype(np.float32),
    np.zeros((2, 1), np.int32),
    codes,
  )
  assert metrics["text_loss"] == 0
  image_ce = _numpy_cross_entropy(image_logits, codes).mean()
  np.testing.assert_allclose(loss, 7 * image_ce / 8, rtol=1e-5)


def test_loss_rejects_logits_that_do_not_fit_the_tokens():
  text, codes = _tokens(15)
  image_logits = np.zeros((2, 16, 16), np.float32)
  with pytest.raises(ValueError, match=r"text_logits .* expected \(2, 5\)"):
    losses.dalle_loss(
      np.zeros((2, 6, 20), np.float32), image_logits, text, codes
    )
  with pytest.raises(ValueError, match=r"image_logits .* expected \(2, 16\)"):
    losses.dalle_loss(
      np.zeros((2, 5, 20), np.float32), image_logits[:, 1:], text, codes
    )


@pytest.mark.parametrize(
  "changes, message",
  [
    (dict(num_layers=0), r"num_layers=0 must be a positive integer"),
    (dict(head_dim=2.5), r"head_dim=2.5 must be a positive integer"),
    (dict(embed_dim=0), r"embed_dim=0 must be a positive integer, or None"),
    (dict(text_vocab_size=6), r"text_vocab_size=6 must exceed text_length"),
    (dict(conv_kernel=4), r"conv_kernel=4 must be an odd integer"),
    (dict(conv_edge="wrap"), r"conv_edge='wrap' is not supported"),
    (dict(attention="flash"), r"attention='flash' is not supported.*dense"),
    (dict(dtype="float16"), r"dtype='float16' is not supported.*bfloat16"),
    (dict(dropout=1.0), r"dropout=1.0 must be in \[0, 1\)"),
  ],
)
def test_config_validate_names_the_problem(changes, message):
  with pytest.raises(ValueError, match=message):
    dataclasses.replace(TINY, **changes).validate()


def test_embed_dim_defaults_to_heads_times_head_dim():
  assert TINY.width == 16
  assert dataclasses.replace(TINY, embed_dim=24).width == 24
  assert TransformerConfig().width == 3968  # the paper's d_model


def test_bad_inputs_are_rejected(params):
  model = Transformer(TINY)
  variables = {"params": params}
  text, codes = _tokens(16)
  bad_codes = codes.copy()
  bad_codes[0, 3] = 16
  with pytest.raises(ValueError, match=r"image_codes holds ids in \[.*, 16\]"):
    model.apply(variables, text, bad_codes)
  with pytest.raises(ValueError, match=r"text_tokens has shape \(2, 5\)"):
    model.apply(variables, text[:, :5], codes)
  with pytest.raises(ValueError, match=r"text_tokens holds ids in \[-1"):
    transformer.prefill(TINY, params, np.full((1, 6), -1, np.int32))
  with pytest.raises(ValueError, match="expected an integer dtype"):
    model.apply(variables, text.astype(np.float32), codes)
  cache = transformer.init_cache(TINY, BATCH)
  with pytest.raises(ValueError, match=r"position=16 is outside the image"):
    transformer.decode_step(TINY, params, cache, codes[:, 0], 16)
  with pytest.raises(ValueError, match=r"code holds ids in \[.*, 99\]"):
    transformer.decode_step(TINY, params, cache, np.array([1, 99]), 0)
