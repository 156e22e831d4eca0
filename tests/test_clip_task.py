"""The CLIP stage: config, score, retrieval, clamp, and a tiny run end to end."""

import glob
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict
from PIL import Image

from dalle_jax import checkpoint, sharding, summaries
from dalle_jax import config as config_lib
from dalle_jax.data import pipeline, shapes
from dalle_jax.models.clip import (
  CLIP,
  POOL_FIRST_AT_LEAST,
  pooled_positions,
  preprocess_images,
)
from dalle_jax.models.dvae import DVAE
from dalle_jax.tasks import clip as clip_task
from dalle_jax.tasks import transformer as transformer_task
from dalle_jax.tokenizer import Tokenizer, train_tokenizer
from dalle_jax.train import run

CLIP_CONFIG = os.path.join(
  os.path.dirname(config_lib.__file__), "configs", "clip.py"
)
LN_100 = math.log(100.0)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("datasets"))


def tiny_config(data_dir="", **overrides):
  values = {"data.data_dir": data_dir, "train.progress_bar": False}
  values.update(overrides)
  return config_lib.load_config(f"{CLIP_CONFIG}:variant=tiny", values)


def _random_batch(config, seed=0):
  rng = np.random.default_rng(seed)
  size, length = config.data.image_size, config.data.text_length
  batch = config.data.batch_size
  return {
    "image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
    "text_tokens": rng.integers(
      0, config.tokenizer.vocab_size, (batch, length)
    ).astype(np.int32),
  }


def test_model_config_follows_the_run_config():
  config = config_lib.load_config(f"{CLIP_CONFIG}:variant=shapes64")
  model = clip_task.model_config(config)
  assert (model.image_size, model.patch_size, model.grid_size) == (64, 8, 8)
  # Three stride-2 stem convs take 64 px to 8x8: a 1x1 patch embedding.
  assert (model.stem_widths, model.patch_embedding_size) == ((32, 64, 128), 1)
  assert (model.vision_width, model.vision_layers, model.vision_heads) == (
    config.model.vision_width,
    config.model.vision_layers,
    config.model.vision_heads,
  )
  assert (model.text_width, model.text_layers, model.text_heads) == (
    config.model.text_width,
    config.model.text_layers,
    config.model.text_heads,
  )
  assert model.embed_dim == config.model.embed_dim
  # BPE ids below 256, then one pad id per text position (tokenizer.py).
  assert model.text_length == 16
  assert model.text_vocab_size == 256 + 16
  assert model.text_pooling == POOL_FIRST_AT_LEAST
  assert model.eos_token == 256


def test_model_config_takes_a_conv_stem_from_the_command_line():
  config = config_lib.load_config(f"{CLIP_CONFIG}:variant=shapes64")
  config_lib.override_from_text(config, "model.stem_widths", "(16, 32)")
  model = clip_task.model_config(config)
  assert model.stem_widths == (16, 32)
  # Two halvings: the patch embedding covers 2x2 of the stem's output.
  assert (model.patch_embedding_size, model.grid_size) == (2, 8)


def test_model_config_of_a_run_saved_before_the_stem_has_none():
  config = config_lib.load_config(f"{CLIP_CONFIG}:variant=shapes64")
  saved = config_lib.to_dict(config)
  del saved["model"]["stem_widths"]
  model = clip_task.model_config(ConfigDict(saved))
  assert (model.stem_widths, model.patch_embedding_size) == ((), 8)


def test_paper_variant_is_vit_b_32_on_256_pixels():
  config = config_lib.load_config(f"{CLIP_CONFIG}:variant=paper")
  model = clip_task.model_config(config)
  assert (model.image_size, model.patch_size, model.grid_size) == (256, 32, 8)
  assert (model.vision_width, model.vision_layers, model.vision_heads) == (
    768,
    12,
    12,
  )
  assert (model.text_width, model.text_layers, model.text_heads) == (512, 12, 8)
  assert model.embed_dim == 512
  assert model.text_vocab_size == 16384 + 77


@pytest.fixture(scope="module")
def ema_task():
  return clip_task.make_task(
    tiny_config(**{"optim.ema_decay": 0.5, "train.num_steps": 30})
  )


@pytest.fixture(scope="module")
def ema_steps(ema_task):
  """The task's init (unboxed) and train step, each jitted once."""
  init = jax.jit(lambda rng: sharding.unbox(ema_task.init(rng)))
  return init, jax.jit(ema_task.train_step)


def test_score_is_the_scaled_cosine_of_the_embeddings(ema_steps):
  clip_config = clip_task.model_config(tiny_config())
  init, _ = ema_steps
  params = dict(init(jax.random.key(0)).params, logit_scale=jnp.float32(2.0))
  batch = _random_batch(tiny_config(), seed=1)
  images, tokens = batch["image"], batch["text_tokens"]

  model = CLIP(clip_config)
  embed_image = jax.jit(
    lambda images: model.apply(
      {"params": params}, preprocess_images(images), method="embed_image"
    )
  )
  embed_text = jax.jit(
    lambda tokens: model.apply({"params": params}, tokens, method="embed_text")
  )
  image_embeddings = np.asarray(embed_image(images), np.float64)
  text_embeddings = np.asarray(embed_text(tokens), np.float64)

  def cosine(a, b):
    return np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b)

  expected = np.exp(2.0) * np.array(
    [
      cosine(i, t)
      for i, t in zip(image_embeddings, text_embeddings, strict=True)
    ]
  )
  score = jax.jit(clip_task.score, static_argnums=0)
  scores = score(clip_config, params, images, tokens)
  assert scores.shape == (8,) and scores.dtype == jnp.float32
  np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
  # One caption against every image.
  against_first = score(clip_config, params, images, tokens[:1])
  expected_first = np.exp(2.0) * np.array(
    [cosine(i, text_embeddings[0]) for i in image_embeddings]
  )
  np.testing.assert_allclose(against_first, expected_first, atol=1e-5)


def _moved(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
  """Each image moved by (dy, dx) pixels, the edge rows and columns
  repeated into the gap: a loop over output pixels, independent of
  `shifted_views`' padding and slicing."""
  batch, side = images.shape[:2]
  out = np.empty_like(images)
  for y in range(side):
    for x in range(side):
      source_y = min(max(y - dy, 0), side - 1)
      source_x = min(max(x - dx, 0), side - 1)
      out[:, y, x] = images[:, source_y, source_x]
  return out


def test_shifted_views_are_every_move_by_up_to_the_shift():
  images = np.random.default_rng(0).integers(0, 256, (2, 6, 6, 3), np.uint8)
  alone = clip_task.shifted_views(jnp.asarray(images), 0)
  np.testing.assert_array_equal(alone, images[None])
  views = np.asarray(clip_task.shifted_views(jnp.asarray(images), 2))
  assert views.shape == (9, 2, 6, 6, 3) and views.dtype == np.uint8
  np.testing.assert_array_equal(views[0], images)  # the unmoved first
  expected = [_moved(images, dy, dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2)]
  # Each expected move appears exactly once among the views.
  matches = [
    [np.array_equal(view, move) for view in views] for move in expected
  ]
  assert all(sum(row) == 1 for row in matches)
  assert sorted(row.index(True) for row in matches) == list(range(9))


def test_jittered_images_move_each_image_within_the_jitter():
  # Enough tiny images that every one of the 25 moves is drawn.
  images = np.random.default_rng(1).integers(0, 256, (400, 5, 5, 3), np.uint8)
  key = jax.random.key(7)
  np.testing.assert_array_equal(
    clip_task.jittered_images(jnp.asarray(images), 0, key), images
  )
  moved = np.asarray(clip_task.jittered_images(jnp.asarray(images), 2, key))
  assert moved.shape == images.shape and moved.dtype == np.uint8
  moves = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
  drawn = set()
  for image, out in zip(images, moved, strict=True):
    matching = [
      move
      for move in moves
      if np.array_equal(_moved(image[None], *move)[0], out)
    ]
    assert matching, "an image moved by more than the jitter"
    drawn.update(matching)
  assert drawn == set(moves)
  again = clip_task.jittered_images(jnp.asarray(images), 2, key)
  np.testing.assert_array_equal(again, moved)  # the key fixes the moves
  other = clip_task.jittered_images(jnp.asarray(images), 2, jax.random.key(8))
  assert not np.array_equal(other, moved)


def test_train_step_sees_the_jittered_images():
  config = tiny_config(**{"data.image_jitter": 1})
  jittered_task = clip_task.make_task(config)
  plain_task = clip_task.make_task(tiny_config())
  state = jax.jit(lambda rng: sharding.unbox(plain_task.init(rng)))(
    jax.random.key(0)
  )
  batch = _random_batch(config, seed=9)
  key = jax.random.key(3)
  _, jittered = jax.jit(jittered_task.train_step)(state, batch, key)
  # The plain task on the images the jittered one drew with the same key.
  moved = dict(
    batch, image=clip_task.jittered_images(jnp.asarray(batch["image"]), 1, key)
  )
  _, expected = jax.jit(plain_task.train_step)(state, moved, key)
  _, unmoved = jax.jit(plain_task.train_step)(state, batch, key)
  np.testing.assert_allclose(jittered["loss"], expected["loss"], rtol=1e-6)
  assert abs(float(jittered["loss"]) - float(unmoved["loss"])) > 1e-6


@pytest.mark.parametrize("jitter", [-1, 1.5, True, "1"])
def test_bad_image_jitter_is_refused(jitter):
  with pytest.raises(ValueError, match="image_jitter.*whole number"):
    config_lib.check_image_jitter(ConfigDict({"image_jitter": jitter}))


def test_image_jitter_is_checked_before_training():
  assert config_lib.check_image_jitter(ConfigDict()) == 0  # older runs
  config = tiny_config(**{"data.image_jitter": -1})
  with pytest.raises(ValueError, match="image_jitter=-1 must be a whole"):
    config_lib.validate(config)


def test_score_with_image_shift_averages_the_moved_embeddings(ema_steps):
  clip_config = clip_task.model_config(tiny_config())
  init, _ = ema_steps
  params = dict(init(jax.random.key(1)).params, logit_scale=jnp.float32(1.5))
  batch = _random_batch(tiny_config(), seed=2)
  images, tokens = np.asarray(batch["image"]), batch["text_tokens"]
  model = CLIP(clip_config)
  embed_image = jax.jit(
    lambda images: model.apply(
      {"params": params}, preprocess_images(images), method="embed_image"
    )
  )
  text = np.asarray(
    model.apply({"params": params}, tokens, method="embed_text"), np.float64
  )
  moved = [
    np.asarray(embed_image(_moved(images, dy, dx)), np.float64)
    for dy in (-1, 0, 1)
    for dx in (-1, 0, 1)
  ]
  mean = np.mean(moved, axis=0)
  mean /= np.linalg.norm(mean, axis=-1, keepdims=True)
  expected = np.exp(1.5) * np.sum(mean * text, axis=-1)
  score = jax.jit(clip_task.score, static_argnums=(0, 4))
  scores = score(clip_config, params, images, tokens, 1)
  assert scores.shape == (len(images),) and scores.dtype == jnp.float32
  np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
  # The shift changes the scores: the test would pass vacuously otherwise.
  assert not np.allclose(scores, score(clip_config, params, images, tokens, 0))


def test_retrieval_counts_an_equal_caption_as_correct():
  # Captions 0 and 1 are equal; 2 and 3 differ from everything.
  tokens = jnp.array([[5, 6, 9], [5, 6, 9], [5, 7, 9], [1, 2, 3]], jnp.int32)
  logits = jnp.array(
    [
      # Image 0 picks caption 1 (equal to its own: right).
      [1.0, 2.0, 0.0, 0.0],
      # Image 1 picks caption 2 (wrong).
      [0.0, 1.0, 3.0, 0.0],
      # Image 2 picks caption 2 (right); image 3 picks caption 0 (wrong).
      [0.0, 0.0, 3.0, 0.0],
      [4.0, 0.0, 0.0, 1.0],
    ]
  )
  metrics = jax.jit(clip_task.retrieval_accuracy)(logits, tokens)
  np.testing.assert_allclose(metrics["image_to_text_top1"], 2 / 4)
  # Best image per caption: 0 -> 3 (wrong), 1 -> 0 (right: equal caption),
  # 2 -> 1 (wrong: 2 != 0, 1's caption), 3 -> 3 (right).
  np.testing.assert_allclose(metrics["text_to_image_top1"], 2 / 4)
  # Equal pairs: 4 on the diagonal + (0, 1) and (1, 0), of 16.
  np.testing.assert_allclose(metrics["chance_top1"], 6 / 16)


def test_ranked_images_put_the_own_image_first_then_best_matches():
  images = jnp.arange(3, dtype=jnp.uint8)[:, None, None, None] * jnp.ones(
    (3, 2, 2, 3), jnp.uint8
  )
  # Column c scores the images for caption c.
  logits = jnp.array([[0.0, 5.0, 1.0], [2.0, 0.0, 3.0], [1.0, 4.0, 2.0]])
  rows = clip_task.ranked_images(images, logits)
  assert rows.shape == (3, 4, 2, 2, 3)
  np.testing.assert_array_equal(
    rows[:, :, 0, 0, 0], [[0, 1, 2, 0], [1, 0, 2, 1], [2, 1, 2, 0]]
  )


@pytest.mark.parametrize("stored, expected", [(9.0, LN_100), (-1.0, 0.0)])
def test_train_step_clamps_the_log_scale(ema_steps, stored, expected):
  init, train_step = ema_steps
  state = init(jax.random.key(0))
  params = dict(state.params, logit_scale=jnp.float32(stored))
  state = state.replace(params=params, ema_params=params)
  batch = _random_batch(tiny_config())
  new_state, metrics = train_step(state, batch, jax.random.key(1))
  np.testing.assert_allclose(new_state.params["logit_scale"], expected)
  np.testing.assert_allclose(new_state.ema_params["logit_scale"], expected)
  np.testing.assert_allclose(metrics["logit_scale"], expected)


def test_loss_falls_on_a_fixed_batch(ema_steps):
  init, train_step = ema_steps
  state = init(jax.random.key(0))
  batch = _random_batch(tiny_config(), seed=2)
  losses = []
  for _ in range(15):
    state, metrics = train_step(state, batch, jax.random.key(0))
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.5 * losses[0]
  assert {"grad_norm", "update_norm", "param_norm", "learning_rate"} <= set(
    metrics
  )


def test_hard_negatives_join_each_image_s_caption_choice(ema_steps):
  init, train_step = ema_steps
  config = tiny_config()
  state = init(jax.random.key(0))
  batch = _random_batch(config, seed=3)
  size, length = config.data.batch_size, config.data.text_length
  batch["negative_text_tokens"] = (
    np.random.default_rng(4)
    .integers(0, config.tokenizer.vocab_size, (size, 2, length))
    .astype(np.int32)
  )
  _, metrics = train_step(state, batch, jax.random.key(0))
  # Independently: embed images, captions and negatives one by one.
  model = CLIP(clip_task.model_config(config))
  variables = {"params": state.params}
  images = model.apply(
    variables, preprocess_images(batch["image"]), method="embed_image"
  )
  texts = model.apply(variables, batch["text_tokens"], method="embed_text")
  negatives = model.apply(
    variables,
    batch["negative_text_tokens"].reshape(size * 2, length),
    method="embed_text",
  ).reshape(size, 2, -1)
  scale = np.exp(float(state.params["logit_scale"]))
  logits = scale * np.asarray(images @ texts.T, np.float64)
  own = scale * np.einsum("be,bke->bk", images, negatives)
  rows = np.concatenate([logits, own], axis=1)
  image_to_text = np.mean(np.log(np.exp(rows).sum(axis=1)) - np.diag(logits))
  text_to_image = np.mean(np.log(np.exp(logits).sum(axis=0)) - np.diag(logits))
  np.testing.assert_allclose(
    metrics["loss"], (image_to_text + text_to_image) / 2, rtol=1e-4
  )
  np.testing.assert_allclose(
    metrics["hard_negative_accuracy"],
    np.mean(np.diag(logits)[:, None] > own),
  )


def test_negative_images_join_each_caption_s_image_choice(ema_steps):
  init, train_step = ema_steps
  config = tiny_config()
  state = init(jax.random.key(0))
  batch = _random_batch(config, seed=5)
  batch["negative_image"] = np.random.default_rng(6).integers(
    0, 256, batch["image"].shape, dtype=np.uint8
  )
  _, metrics = train_step(state, batch, jax.random.key(0))
  # Independently: embed images, negative images and captions one by one.
  model = CLIP(clip_task.model_config(config))
  variables = {"params": state.params}

  def embed(images):
    return np.asarray(
      model.apply(variables, preprocess_images(images), method="embed_image"),
      np.float64,
    )

  images, twins = embed(batch["image"]), embed(batch["negative_image"])
  texts = np.asarray(
    model.apply(variables, batch["text_tokens"], method="embed_text"),
    np.float64,
  )
  scale = np.exp(float(state.params["logit_scale"]))
  logits = scale * images @ texts.T
  own = scale * np.sum(twins * texts, axis=1)  # caption i vs its twin
  columns = np.concatenate([logits.T, own[:, None]], axis=1)
  image_to_text = np.mean(np.log(np.exp(logits).sum(axis=1)) - np.diag(logits))
  text_to_image = np.mean(np.log(np.exp(columns).sum(axis=1)) - np.diag(logits))
  np.testing.assert_allclose(
    metrics["loss"], (image_to_text + text_to_image) / 2, rtol=1e-4
  )
  np.testing.assert_allclose(
    metrics["negative_image_accuracy"], np.mean(np.diag(logits) > own)
  )


def test_shapes_batches_carry_shape_swapped_negatives(tmp_path, data_dir):
  # Whole captions: the tiny variant's 8 tokens would cut some shapes off.
  overrides = {
    "data.hard_negatives": 3,
    "data.hard_negative_attributes": ("shape", "colour"),
    "data.negative_images": True,
    "data.text_length": 32,
  }
  config = tiny_config(data_dir, **overrides)
  sources = pipeline.prepare_sources(config)
  tokenizer = pipeline.ensure_tokenizer(
    config, str(tmp_path), sources.train_captions
  )
  mesh = sharding.make_mesh((("data", -1),))
  batch = next(pipeline.train_iterator(sources.train, tokenizer, config, mesh))
  size, length = config.data.batch_size, config.data.text_length
  negatives = np.asarray(batch["negative_text_tokens"])
  assert negatives.shape == (size, 3, length)
  assert negatives.dtype == np.int32
  # Each negative is its caption with one word swapped: other tokens.
  captions = np.asarray(batch["text_tokens"])
  assert np.all(np.any(negatives != captions[:, None], axis=-1))
  # Each image's twin is itself with one object's shape redrawn.
  images, twins = (
    np.asarray(batch["image"]),
    np.asarray(batch["negative_image"]),
  )
  assert twins.shape == images.shape and twins.dtype == np.uint8
  for image, twin in zip(images, twins, strict=True):
    before, after = shapes.find_objects(image), shapes.find_objects(twin)
    assert [o[0] for o in before] == [o[0] for o in after]  # colours
    assert sum(b[1] != a[1] for b, a in zip(before, after, strict=True)) == 1


@pytest.mark.parametrize(
  "changes, message",
  [
    ({"data.hard_negatives": -1}, "must be an integer >= 0"),
    (
      {"data.hard_negatives": 1, "data.name": "folder", "data.folder": "x"},
      "needs Shapes captions",
    ),
    (
      {"data.hard_negatives": 1, "data.hard_negative_attributes": ("size",)},
      "must be a non-empty tuple",
    ),
  ],
)
def test_bad_hard_negatives_are_refused(changes, message):
  with pytest.raises(ValueError, match=message):
    config_lib.check_hard_negatives(tiny_config(**changes).data)


def test_negative_images_need_shapes():
  changes = {"data.negative_images": True, "data.name": "folder"}
  with pytest.raises(ValueError, match="needs Shapes renderings"):
    config_lib.check_negative_images(tiny_config(**changes).data)
  assert not config_lib.check_negative_images(tiny_config().data)


@pytest.mark.parametrize(
  "changes, expected",
  [
    ({}, 1),  # Shapes captions have a swap rule: one negative by default
    ({"data.name": "folder", "data.folder": "x"}, 0),  # no rule: none
    ({"data.hard_negatives": 0}, 0),
    ({"data.hard_negatives": 4}, 4),
  ],
)
def test_hard_negatives_default_to_what_the_data_set_allows(changes, expected):
  config = tiny_config(**changes)
  count, _ = config_lib.check_hard_negatives(config.data)
  assert count == expected
  config_lib.validate(config)  # the folder default is not refused


def test_with_reconstruct_clip_sees_the_dvae_s_reconstructions(dvae_workdir):
  config = tiny_config(
    **{"dvae.workdir": dvae_workdir, "dvae.reconstruct": True}
  )
  task = clip_task.make_task(config)
  params = jax.jit(lambda key: sharding.unbox(task.init(key)))(
    jax.random.key(0)
  ).params
  batch = _random_batch(config, seed=5)
  metrics = jax.jit(task.eval_step)(params, batch, jax.random.key(0))
  # Independently: the dVAE's saved params, applied by hand, then the plain
  # task (on whatever images it is given) with the same CLIP params.
  dvae_config = transformer_task.read_dvae_config(dvae_workdir)
  dvae = DVAE(dvae_config)
  dvae_params = checkpoint.load_params(dvae_workdir)
  codes = dvae.apply({"params": dvae_params}, batch["image"], method="encode")
  reconstructions = dvae.apply({"params": dvae_params}, codes, method="decode")
  assert not np.array_equal(reconstructions, batch["image"])
  plain = clip_task.make_task(tiny_config())
  expected = jax.jit(plain.eval_step)(
    params, dict(batch, image=np.asarray(reconstructions)), jax.random.key(0)
  )
  np.testing.assert_allclose(metrics["loss"], expected["loss"], rtol=1e-6)


def test_reconstruct_with_a_dvae_of_another_size_is_refused(dvae_workdir):
  config = tiny_config(
    **{
      "dvae.workdir": dvae_workdir,
      "dvae.reconstruct": True,
      "data.image_size": 64,
    }
  )
  with pytest.raises(ValueError, match="image size is 32 but"):
    clip_task.make_task(config)


def test_tokenizer_larger_than_text_vocabulary_is_refused(tmp_path):
  path = str(tmp_path / "tokenizer.model")
  captions = ["a red circle above a blue square", "a small green triangle"]
  train_tokenizer(
    captions, path, 64, text_length=8, vocab_size_is_upper_bound=True
  )
  tokenizer = Tokenizer.load(path, text_length=8)
  config = tiny_config(**{"tokenizer.vocab_size": 4})
  with pytest.raises(ValueError, match="more than config.tokenizer.vocab"):
    clip_task.make_task(config, tokenizer)


def test_tiny_run_end_to_end(tmp_path, data_dir):
  workdir = str(tmp_path / "run")
  # One evaluation and one checkpoint: saving costs more than the steps.
  cadence = {"train.eval_every": 6, "train.checkpoint_every": 6}
  final = run(tiny_config(data_dir, **cadence), workdir)
  records = summaries.read_metrics(workdir)
  train = [r for r in records if r["split"] == "train"]
  evals = [r for r in records if r["split"] == "eval"]
  assert [r["step"] for r in train] == [2, 4, 6]
  assert [r["step"] for r in evals] == [6]
  expected_train = {
    "loss",
    "image_to_text_loss",
    "text_to_image_loss",
    "image_to_text_accuracy",
    "text_to_image_accuracy",
    "logit_scale",
    "learning_rate",
    "grad_norm",
    "update_norm",
    "param_norm",
  }
  assert expected_train <= set(train[0])
  assert all(np.isfinite(r["loss"]) for r in train)
  assert all(0 <= r["logit_scale"] <= LN_100 + 1e-6 for r in train)
  retrieval = [
    f"{prefix}{name}"
    for prefix in ("", "zero_shot_")
    for name in ("image_to_text_top1", "text_to_image_top1", "chance_top1")
  ]
  for record in evals:
    assert np.isfinite(record["loss"])
    for name in retrieval:
      assert 0 <= record[name] <= 1, name
    # Never below the chance of a random pick being an equal caption's.
    assert record["chance_top1"] >= 1 / 8
  assert final["image_to_text_top1"] == evals[-1]["image_to_text_top1"]
  # Rows: 4 captions, each its own image then the 4 ranked; 32 px tiles,
  # 2 px gaps, saved at x2.
  pngs = sorted(glob.glob(os.path.join(workdir, "images", "*.png")))
  assert len(pngs) == 1
  with Image.open(pngs[-1]) as grid:
    assert grid.size == ((5 * 34 + 2) * 2, (4 * 34 + 2) * 2)
  params = checkpoint.load_params(workdir)
  assert 0 <= float(params["logit_scale"]) <= LN_100
  assert params["vision"]["projection"].shape == (16, 8)


def test_text_is_pooled_at_the_caption_end_when_pieces_are_fewer(tmp_path):
  # Two captions support far fewer than the configured 200 BPE pieces; the
  # run loads its tokenizer with pad base 200, so the first pad ends the text.
  path = str(tmp_path / "tokenizer.model")
  captions = ["a red circle above a blue square", "a small green triangle"]
  train_tokenizer(
    captions, path, 200, text_length=8, vocab_size_is_upper_bound=True
  )
  config = tiny_config(**{"tokenizer.vocab_size": 200, "tokenizer.path": path})
  tokenizer = pipeline.ensure_tokenizer(config, str(tmp_path), [])
  assert tokenizer.bpe_vocab_size < 200 and tokenizer.pad_start == 200
  rows = tokenizer.encode(["a small green triangle", "a red circle", ""])
  lengths = [
    len(tokenizer._processor.encode(text))
    for text in ("a small green triangle", "a red circle")
  ]
  model = clip_task.model_config(config)
  positions = np.asarray(pooled_positions(jnp.asarray(rows), model))
  np.testing.assert_array_equal(positions, [*lengths, 0])
