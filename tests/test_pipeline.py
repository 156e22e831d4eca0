"""Input pipeline: real images of any size and mode -> sharded global batches."""

import os

import jax
import numpy as np
import pytest
from PIL import Image

from dalle_jax import config as config_lib
from dalle_jax import sharding
from dalle_jax.data import pipeline

IMAGE_SIZE = 16


def _write(folder, name, image: Image.Image, caption: str):
  image.save(os.path.join(folder, name))
  stem = os.path.splitext(name)[0]
  with open(os.path.join(folder, f"{stem}.txt"), "w") as handle:
    handle.write(caption)


@pytest.fixture(scope="module")
def folder_config(tmp_path_factory):
  """A folder of 24 captioned images of mixed sizes and modes, one corrupt."""
  folder = str(tmp_path_factory.mktemp("images"))
  rng = np.random.default_rng(0)
  modes = ["RGB", "L", "RGBA", "P"]
  for i in range(24):
    height, width = int(rng.integers(12, 40)), int(rng.integers(12, 40))
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(modes[i % 4])
    _write(folder, f"img{i:02d}.png", image, f"noise {i}")
  with open(os.path.join(folder, "broken.jpg"), "wb") as handle:
    handle.write(b"this is not a jpeg")
  with open(os.path.join(folder, "broken.txt"), "w") as handle:
    handle.write("a broken picture")
  config = config_lib.base_config()
  config.data.name = "folder"
  config.data.folder = folder
  config.data.data_dir = str(tmp_path_factory.mktemp("prepared"))
  config.data.image_size = IMAGE_SIZE
  config.data.text_length = 24
  config.data.batch_size = 8
  config.data.eval_batch_size = 1
  config.tokenizer.vocab_size = 40
  workdir = str(tmp_path_factory.mktemp("work"))
  sources = pipeline.prepare_sources(config)
  tokenizer = pipeline.ensure_tokenizer(config, workdir, sources.train_captions)
  return config, sources, tokenizer


def test_batches_are_global_sharded_and_converted(folder_config):
  config, sources, tokenizer = folder_config
  assert len(sources.train) + len(sources.eval) == 24  # the corrupt one skipped
  mesh = sharding.make_mesh((("data", -1), ("fsdp", 1), ("tensor", 1)))
  batch = next(pipeline.train_iterator(sources.train, tokenizer, config, mesh))
  assert batch["image"].shape == (8, IMAGE_SIZE, IMAGE_SIZE, 3)
  assert batch["image"].dtype == np.uint8
  assert batch["text_tokens"].shape == (8, 24)
  assert batch["text_tokens"].dtype == np.int32
  assert len(batch["image"].sharding.device_set) == jax.device_count()
  # Captions are short; the rest of each row is per-position padding.
  tokens = np.asarray(batch["text_tokens"])
  last = tokens[:, -1]
  assert np.all(last == tokenizer.bpe_vocab_size + 23)


def test_iterator_position_restores_the_same_batches(folder_config):
  config, sources, tokenizer = folder_config
  mesh = sharding.make_mesh((("data", -1),))
  first = pipeline.train_iterator(sources.train, tokenizer, config, mesh)
  for _ in range(3):  # past one epoch of 22-23 images
    next(first)
  state = first.get_state()
  expected = [next(first) for _ in range(3)]
  second = pipeline.train_iterator(sources.train, tokenizer, config, mesh)
  second.set_state(state)
  for want in expected:
    got = next(second)
    np.testing.assert_array_equal(got["image"], want["image"])
    np.testing.assert_array_equal(got["text_tokens"], want["text_tokens"])


def test_batch_size_must_divide_over_devices(folder_config):
  config, sources, tokenizer = folder_config
  mesh = sharding.make_mesh((("data", -1),))
  with config.unlocked():
    config.data.batch_size = 12
  try:
    with pytest.raises(ValueError, match="divisible by the 8 devices"):
      pipeline.train_iterator(sources.train, tokenizer, config, mesh)
  finally:
    with config.unlocked():
      config.data.batch_size = 8


def test_eval_batches_are_fixed_and_checked(folder_config):
  config, sources, tokenizer = folder_config
  mesh = sharding.make_mesh((("data", 1),), devices=jax.devices()[:1])
  first = pipeline.eval_batches(sources.eval, tokenizer, config, mesh, 1)
  again = pipeline.eval_batches(sources.eval, tokenizer, config, mesh, 1)
  np.testing.assert_array_equal(first[0]["image"], again[0]["image"])
  with pytest.raises(ValueError, match="lower config.train.eval_batches"):
    pipeline.eval_batches(sources.eval, tokenizer, config, mesh, 1000)


def test_single_image_folder_is_refused(tmp_path):
  folder = tmp_path / "one"
  folder.mkdir()
  _write(str(folder), "a.png", Image.new("RGB", (8, 8)), "one lonely image")
  config = config_lib.base_config()
  config.data.name = "folder"
  config.data.folder = str(folder)
  config.data.data_dir = str(tmp_path / "prepared")
  with pytest.raises(ValueError, match="no validation split"):
    pipeline.prepare_sources(config)


DVAE_CONFIG = os.path.join(
  os.path.dirname(config_lib.__file__), "configs", "dvae.py"
)
CLIP_CONFIG = os.path.join(
  os.path.dirname(config_lib.__file__), "configs", "clip.py"
)


def test_recolour_repaints_the_chosen_share_of_training_images(tmp_path):
  # The same stream with and without repainting: the same examples in the
  # same order, so each image can be compared with its own rendering.
  def first_batches(share):
    config = config_lib.load_config(
      f"{DVAE_CONFIG}:variant=tiny",
      {"data.data_dir": str(tmp_path / "data"), "data.recolour": share},
    )
    sources = pipeline.prepare_sources(config)
    tokenizer = pipeline.ensure_tokenizer(
      config, str(tmp_path), sources.train_captions
    )
    mesh = sharding.make_mesh((("data", -1),))
    stream = pipeline.train_iterator(sources.train, tokenizer, config, mesh)
    return np.concatenate([np.asarray(next(stream)["image"]) for _ in range(4)])

  plain, half, every = (
    first_batches(0.0),
    first_batches(0.5),
    first_batches(1.0),
  )
  lit = np.any(plain != 0, axis=-1)
  for repainted in (half, every):
    np.testing.assert_array_equal(np.any(repainted != 0, axis=-1), lit)
  changed = lambda images: np.any(images != plain, axis=(1, 2, 3))  # noqa: E731
  assert changed(every).all()
  # 32 images at p = 0.5: all or none repainted would be a 1-in-2^31 event.
  assert 0 < changed(half).sum() < len(plain)


@pytest.mark.parametrize(
  "spec, changes, message",
  [
    (DVAE_CONFIG, {"data.recolour": 1.5}, r"must be in \[0, 1\]"),
    (
      DVAE_CONFIG,
      {"data.recolour": 0.5, "data.name": "folder", "data.folder": "x"},
      "needs Shapes renderings",
    ),
    (
      CLIP_CONFIG,
      {"data.recolour": 0.5, "data.negative_images": True},
      "cannot be combined",
    ),
  ],
)
def test_bad_recolour_is_refused(spec, changes, message):
  config = config_lib.load_config(f"{spec}:variant=tiny")
  with config.unlocked():
    for name, value in changes.items():
      section, field = name.split(".")
      config[section][field] = value
  with pytest.raises(ValueError, match=message):
    config_lib.validate(config)


def test_recolour_default_repaints_shapes_and_leaves_a_folder_alone():
  config = config_lib.load_config(f"{CLIP_CONFIG}:variant=tiny")
  assert config.data.recolour is None  # the data set's default
  assert config_lib.check_recolour(config) == 0.5
  with config.unlocked():
    config.data.name, config.data.folder = "folder", "x"
  assert config_lib.check_recolour(config) == 0.0
  with config.unlocked():
    config.data.name, config.data.negative_images = "shapes", True
  assert config_lib.check_recolour(config) == 0.0  # image negatives win
  dvae = config_lib.load_config(f"{DVAE_CONFIG}:variant=tiny")
  assert config_lib.check_recolour(dvae) == 0.0  # the tokenizer: off
