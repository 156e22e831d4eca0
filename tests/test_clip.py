"""Tests for dalle_jax.models.clip: shapes, pooling, names, loss, errors.

Parity with Hugging Face transformers' CLIPModel is in test_clip_weights.py.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from dalle_jax import losses, sharding
from dalle_jax.models import clip

BPE_VOCAB = 50
TEXT_LENGTH = 12
TINY = clip.CLIPConfig(
  image_size=16,
  patch_size=4,
  vision_width=32,
  vision_layers=2,
  vision_heads=2,
  text_vocab_size=BPE_VOCAB + TEXT_LENGTH,
  text_length=TEXT_LENGTH,
  text_width=32,
  text_layers=1,  # unlike vision: each tower takes its own count
  text_heads=4,
  embed_dim=16,
  text_pooling=clip.POOL_FIRST_AT_LEAST,
  eos_token=BPE_VOCAB,
)


def _inputs(config, batch=3, seed=0):
  rng = np.random.default_rng(seed)
  side = config.image_size
  images = rng.normal(size=(batch, side, side, 3)).astype(np.float32)
  tokens = rng.integers(0, BPE_VOCAB, (batch, config.text_length))
  return images, tokens.astype(np.int32)


@pytest.fixture(scope="module")
def tiny_variables():
  images, tokens = _inputs(TINY)
  return jax.jit(clip.CLIP(TINY).init)(jax.random.key(0), images, tokens)


def _apply(variables, *args, method="__call__", config=TINY):
  return jax.jit(
    lambda variables, *args: clip.CLIP(config).apply(
      variables, *args, method=method
    )
  )(variables, *args)


def test_shapes_and_unit_norms(tiny_variables):
  images, tokens = _inputs(TINY)
  image_embeddings, text_embeddings, (logits_per_image, logits_per_text) = (
    _apply(
      tiny_variables,
      images,
      tokens,
      method=lambda model, images, tokens: (
        model.embed_image(images),
        model.embed_text(tokens),
        model(images, tokens),
      ),
    )
  )
  assert image_embeddings.shape == (3, TINY.embed_dim)
  assert text_embeddings.shape == (3, TINY.embed_dim)
  np.testing.assert_allclose(
    np.linalg.norm(image_embeddings, axis=-1), 1, rtol=1e-5
  )
  np.testing.assert_allclose(
    np.linalg.norm(text_embeddings, axis=-1), 1, rtol=1e-5
  )
  assert logits_per_image.shape == (3, 3)
  np.testing.assert_array_equal(logits_per_text, logits_per_image.T)
  cosines = np.asarray(image_embeddings) @ np.asarray(text_embeddings).T
  np.testing.assert_allclose(
    logits_per_image, cosines / 0.07, rtol=1e-5, atol=1e-6
  )


def test_logit_scale_starts_at_ln_one_over_007(tiny_variables):
  value = nn.unbox(tiny_variables)["params"]["logit_scale"]
  assert value.shape == ()
  assert math.isclose(float(value), math.log(1 / 0.07), rel_tol=1e-6)


def test_every_param_has_distinct_logical_names(tiny_variables):
  leaves = jax.tree_util.tree_leaves_with_path(
    tiny_variables["params"],
    is_leaf=lambda leaf: isinstance(leaf, nn.LogicallyPartitioned),
  )
  assert len(leaves) > 20
  for path, leaf in leaves:
    name = jax.tree_util.keystr(path)
    assert isinstance(leaf, nn.LogicallyPartitioned), name
    assert len(leaf.names) == leaf.value.ndim, name
    named = [axis for axis in leaf.names if axis is not None]
    assert len(named) == len(set(named)), name
    if leaf.value.ndim:
      assert named, name


def test_params_shard_over_eight_devices(tiny_variables):
  mesh = sharding.make_mesh((("data", 2), ("fsdp", 2), ("tensor", 2)))
  abstract = jax.eval_shape(lambda: tiny_variables["params"])
  specs = sharding.tree_shardings(abstract, mesh)
  block = specs["text"]["block_0"]
  assert block["fc1"]["kernel"].spec == PartitionSpec("fsdp", "tensor")
  assert block["attn"]["query_kernel"].spec == PartitionSpec(
    "fsdp", "tensor", None
  )
  assert block["attn"]["out_kernel"].spec == PartitionSpec(
    "tensor", None, "fsdp"
  )
  embedding = specs["text"]["token_embedding"]["embedding"]
  assert embedding.spec == PartitionSpec("tensor", "fsdp")


@pytest.mark.parametrize(
  "pooling, eos, expected",
  [
    # Largest id: first of equal maxima, as numpy/torch argmax.
    (clip.POOL_ARGMAX_ID, 0, [1, 3, 0, 0]),
    # First id equal to 9; none in row 2 -> position 0 (transformers 5).
    (clip.POOL_FIRST_EQUAL, 9, [2, 2, 0, 1]),
    # First id >= 9; none in row 2 -> the last position.
    (clip.POOL_FIRST_AT_LEAST, 9, [1, 2, 3, 0]),
  ],
)
def test_pooled_positions_rules(pooling, eos, expected):
  # Row 3 ends at once: its first token is already >= 9.
  tokens = jnp.array(
    [[3, 12, 9, 12], [1, 2, 9, 11], [5, 4, 3, 2], [10, 9, 9, 0]], jnp.int32
  )
  config = clip.CLIPConfig(text_pooling=pooling, eos_token=eos)
  np.testing.assert_array_equal(clip.pooled_positions(tokens, config), expected)


def _own_tokenizer_row(rng, caption_length):
  """Caption ids < BPE_VOCAB, then pad_p = BPE_VOCAB + p (tokenizer.py)."""
  row = rng.integers(0, BPE_VOCAB - 1, TEXT_LENGTH)
  row[caption_length:] = BPE_VOCAB + np.arange(caption_length, TEXT_LENGTH)
  if caption_length == TEXT_LENGTH:
    row[-1] = BPE_VOCAB - 1  # strict maximum for the reference below
  return row.astype(np.int32)


def test_own_tokenizer_ids_pool_at_the_first_padding(tiny_variables):
  rng = np.random.default_rng(1)
  lengths = [5, TEXT_LENGTH - 1, TEXT_LENGTH]
  tokens = np.stack([_own_tokenizer_row(rng, n) for n in lengths])
  pooled = _apply(tiny_variables, tokens, method="embed_text")
  # Reference: the sequence cut just after the caption's end, pooled at its
  # largest id, which is its last token; the causal mask makes the state
  # there equal to the one in the full row.
  by_largest = dataclasses.replace(TINY, text_pooling=clip.POOL_ARGMAX_ID)
  for index, length in enumerate(lengths):
    cut = tokens[index, : min(length + 1, TEXT_LENGTH)]
    assert cut[-1] > cut[:-1].max(initial=-1)
    expected = _apply(
      tiny_variables, cut[None], method="embed_text", config=by_largest
    )
    np.testing.assert_allclose(pooled[index], expected[0], rtol=1e-5, atol=1e-6)


def test_preprocess_images_normalises_with_clip_statistics():
  pixels = np.array([[[[0, 128, 255]]]], np.uint8)
  expected = (
    np.array([0, 128, 255]) / 255.0 - np.array(clip.IMAGE_MEAN)
  ) / np.array(clip.IMAGE_STD)
  out = clip.preprocess_images(jnp.asarray(pixels))
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-6)


@pytest.mark.parametrize(
  "pixels, message",
  [
    (np.zeros((1, 4, 4, 3), np.float32), "expects uint8"),
    (np.zeros((1, 4, 4, 4), np.uint8), "expects RGB"),
  ],
)
def test_preprocess_images_rejects_bad_input(pixels, message):
  with pytest.raises(ValueError, match=message):
    clip.preprocess_images(jnp.asarray(pixels))


def test_wrong_image_size_names_the_expected_size(tiny_variables):
  images = np.zeros((2, 24, 24, 3), np.float32)
  with pytest.raises(ValueError, match=r"images \[B, 16, 16, 3\].*24, 24"):
    clip.CLIP(TINY).apply(tiny_variables, images, method="embed_image")


def test_too_long_tokens_name_the_text_length(tiny_variables):
  tokens = np.zeros((2, TEXT_LENGTH + 1), np.int32)
  with pytest.raises(ValueError, match="L <= text_length=12"):
    clip.CLIP(TINY).apply(tiny_variables, tokens, method="embed_text")


@pytest.mark.parametrize(
  "changes, message",
  [
    (dict(image_size=30, patch_size=4), "not a multiple of patch_size=4"),
    (dict(vision_width=30, vision_heads=4), "vision_width=30 is not divis"),
    (dict(text_width=30, text_heads=4), "text_width=30 is not divisible"),
    (dict(activation="relu"), "activation='relu' is not one of"),
    (dict(text_pooling="last"), "text_pooling='last' is not one of"),
  ],
)
def test_config_rejects_bad_values(changes, message):
  with pytest.raises(ValueError, match=message):
    clip.CLIPConfig(**changes)


def _numpy_log_softmax(x, axis):
  shifted = x - x.max(axis=axis, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def test_contrastive_loss_matches_numpy():
  logits = np.random.default_rng(0).normal(size=(5, 5)) * 4
  image_to_text = -np.mean(np.diag(_numpy_log_softmax(logits, axis=1)))
  text_to_image = -np.mean(np.diag(_numpy_log_softmax(logits, axis=0)))
  loss, metrics = jax.jit(losses.clip_contrastive_loss)(
    logits.astype(np.float32)
  )
  np.testing.assert_allclose(
    loss, (image_to_text + text_to_image) / 2, rtol=1e-5
  )
  np.testing.assert_allclose(
    metrics["image_to_text_loss"], image_to_text, rtol=1e-5
  )
  np.testing.assert_allclose(
    metrics["text_to_image_loss"], text_to_image, rtol=1e-5
  )


def test_contrastive_loss_with_hard_negatives_matches_numpy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(4, 4)) * 4
  negatives = rng.normal(size=(4, 3)) * 4
  # Image i chooses among the 4 captions and its own 3 negatives.
  rows = np.concatenate([logits, negatives], axis=1)
  image_to_text = -np.mean(np.diag(_numpy_log_softmax(rows, axis=1)[:, :4]))
  text_to_image = -np.mean(np.diag(_numpy_log_softmax(logits, axis=0)))
  loss, metrics = jax.jit(losses.clip_contrastive_loss)(
    logits.astype(np.float32), negatives.astype(np.float32)
  )
  np.testing.assert_allclose(
    loss, (image_to_text + text_to_image) / 2, rtol=1e-5
  )
  np.testing.assert_allclose(
    metrics["text_to_image_loss"], text_to_image, rtol=1e-5
  )
  np.testing.assert_allclose(
    metrics["hard_negative_accuracy"],
    np.mean(np.diag(logits)[:, None] > negatives),
  )


def test_contrastive_accuracies_on_hand_made_logits():
  # Rows (images): 0 -> caption 0 (right), 1 -> 0 (wrong), 2 -> 2 (right).
  # Columns (captions): 0 -> image 1 (wrong), 1 -> 1, 2 -> 2.
  logits = jnp.array([[5.0, 0.0, 1.0], [6.0, 5.0, 0.0], [0.0, 1.0, 3.0]])
  _, metrics = jax.jit(losses.clip_contrastive_loss)(logits)
  np.testing.assert_allclose(metrics["image_to_text_accuracy"], 2 / 3)
  np.testing.assert_allclose(metrics["text_to_image_accuracy"], 2 / 3)


def test_clamp_logit_scale_clips_to_zero_and_ln_100(tiny_variables):
  for stored, expected in ((-1.0, 0.0), (2.0, 2.0), (7.0, math.log(100))):
    params = {"logit_scale": jnp.float32(stored), "text": {"x": 1}}
    clamped = losses.clamp_logit_scale(params)
    np.testing.assert_allclose(clamped["logit_scale"], expected, rtol=1e-6)
    assert clamped["text"] is params["text"]
  boxed = dict(tiny_variables["params"])
  boxed["logit_scale"] = boxed["logit_scale"].replace_boxed(jnp.float32(9.0))
  clamped = losses.clamp_logit_scale(boxed)["logit_scale"]
  assert isinstance(clamped, nn.LogicallyPartitioned)
  np.testing.assert_allclose(clamped.unbox(), math.log(100), rtol=1e-6)


def test_clamp_logit_scale_needs_the_params_collection(tiny_variables):
  with pytest.raises(KeyError, match="got keys \\['params'\\]"):
    losses.clamp_logit_scale(tiny_variables)


def test_activations_match_their_formulas():
  x = np.linspace(-4, 4, 17)
  quick = x / (1 + np.exp(-1.702 * x))
  exact = np.array([v * (1 + math.erf(v / math.sqrt(2))) / 2 for v in x])
  np.testing.assert_allclose(
    clip.ACTIVATIONS["quick_gelu"](jnp.asarray(x)), quick, rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(
    clip.ACTIVATIONS["gelu"](jnp.asarray(x)), exact, rtol=1e-5, atol=1e-6
  )


# One stride-2 stem conv on 16 px images, then 2x2 patches: G stays 4.
STEM = dataclasses.replace(TINY, stem_widths=(5,))


def _numpy_conv(x, kernel, stride, padding):
  """`[B, H, W, C] x [k, k, C, O]` cross-correlation, by explicit sums."""
  x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  size = kernel.shape[0]
  out_side = (x.shape[1] - size) // stride + 1
  out = np.zeros((x.shape[0], out_side, out_side, kernel.shape[-1]))
  for row in range(out_side):
    for col in range(out_side):
      window = x[
        :,
        row * stride : row * stride + size,
        col * stride : col * stride + size,
      ]
      out[:, row, col] = np.einsum("bhwc,hwco->bo", window, kernel)
  return out


def test_conv_stem_feeds_the_patch_embedding_as_written():
  images, tokens = _inputs(STEM)
  variables = jax.jit(clip.CLIP(STEM).init)(jax.random.key(1), images, tokens)
  params = nn.unbox(variables)["params"]["vision"]
  assert params["stem_0"]["kernel"].shape == (3, 3, 3, 5)
  assert params["patch_embedding"]["kernel"].shape == (2, 2, 5, 32)
  _, state = jax.jit(
    lambda variables, images: clip.CLIP(STEM).apply(
      variables,
      images,
      method="embed_image",
      capture_intermediates=lambda module, _: module.name == "patch_embedding",
    )
  )(variables, images)
  captured = state["intermediates"]["vision"]["patch_embedding"]["__call__"][0]

  stem = params["stem_0"]
  hidden = _numpy_conv(images, np.asarray(stem["kernel"]), 2, 1)
  hidden = np.maximum(hidden + np.asarray(stem["bias"]), 0)
  kernel = np.asarray(params["patch_embedding"]["kernel"])
  expected = _numpy_conv(hidden, kernel, 2, 0)
  assert captured.shape == (3, STEM.grid_size, STEM.grid_size, 32)
  np.testing.assert_allclose(captured, expected, rtol=1e-4, atol=1e-5)


def test_conv_stem_params_have_logical_names_and_json_round_trips():
  images, tokens = _inputs(STEM)
  variables = jax.jit(clip.CLIP(STEM).init)(jax.random.key(1), images, tokens)
  stem = variables["params"]["vision"]["stem_0"]
  assert stem["kernel"].names == (
    sharding.KERNEL_HEIGHT,
    sharding.KERNEL_WIDTH,
    sharding.CHANNELS_IN,
    sharding.CHANNELS_OUT,
  )
  assert stem["bias"].names == (sharding.CHANNELS_OUT,)
  # config.json stores the widths as a list; the config reads back equal.
  saved = {**dataclasses.asdict(STEM), "stem_widths": [5]}
  assert clip.CLIPConfig(**saved) == STEM


@pytest.mark.parametrize(
  "changes, message",
  [
    (
      dict(patch_size=4, stem_widths=(8, 8, 8)),
      "2\\*\\*len\\(stem_widths\\)=8",
    ),
    (dict(patch_size=8, image_size=64, stem_widths=(0,)), "positive channel"),
  ],
)
def test_config_rejects_a_stem_that_does_not_fit(changes, message):
  with pytest.raises(ValueError, match=message):
    clip.CLIPConfig(**changes)
