"""Input pipeline: a prepared TFDS split -> global, sharded `jax.Array` batches.

Read with grain from TFDS `array_record` files (no TensorFlow): shuffle
(reshuffled every epoch), repeat, take this host's share, preprocess the
image, tokenize the caption, batch, prefetch on reader threads, then place the
host's rows into one global array with the batch sharding. The iterator's
position is a small dict saved with each checkpoint, so a resumed run sees
exactly the batches it would have seen.

Batch: `{"image": [B, S, S, 3] uint8, "text_tokens": [B, L] int32}` where B is
the global batch size, S `config.data.image_size`, L `config.data.text_length`.
With `config.data.hard_negatives` K > 0 (Shapes only; the CLIP stage uses
them), training batches add `"negative_text_tokens": [B, K, L] int32`: K
captions per example, each its own caption with one object's shape or
colour swapped (`shapes.swapped_caption`; which attribute is drawn
uniformly from `config.data.hard_negative_attributes`). With
`config.data.negative_images` (Shapes only), they add `"negative_image":
[B, S, S, 3] uint8`: each image with one object redrawn as another shape
(`shapes.swapped_shape_image`), a picture its caption does not describe.
With `config.data.recolour` p > 0 (Shapes), each training example has,
with probability p, every object repainted in a random colour that still
reads as a seen pair, and its caption's colour words renamed to match
(`shapes.recoloured_example`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import jax
import numpy as np
import tensorflow_datasets as tfds
from ml_collections import ConfigDict

from dalle_jax import config as config_lib
from dalle_jax import sharding
from dalle_jax.data import preprocess, shapes
from dalle_jax.tokenizer import Tokenizer, train_tokenizer

TOKENIZER_FILE = "tokenizer.model"


@dataclasses.dataclass(frozen=True)
class DataSources:
  """Random-access splits of one prepared data set.

  Attributes:
    train: the training split; `source[i]` is a dict with `image` and
      `caption`.
    eval: the evaluation split (`validation`).
    extra: other evaluation splits by name (Shapes: `zero_shot`).
    train_captions: the training split read without decoding images (for
      tokenizer training, about twice as fast).
  """

  train: Sequence[dict]
  eval: Sequence[dict]
  extra: dict[str, Sequence[dict]]
  train_captions: Sequence[dict]


def prepare_sources(config: ConfigDict) -> DataSources:
  """Prepares the configured data set if needed and opens its splits."""
  root = config_lib.data_dir(config)
  if config.data.name == "shapes":
    from dalle_jax.data import shapes_tfds

    shapes = config.data.shapes
    builder = shapes_tfds.prepare_shapes(
      root,
      image_size=config.data.image_size,
      num_train=shapes.num_train,
      num_validation=shapes.num_validation,
      num_zero_shot=shapes.num_zero_shot,
      seed=shapes.seed,
    )
    extra = {"zero_shot": builder.as_data_source("zero_shot")}
  else:
    from dalle_jax.data import folder

    builder = folder.prepare_folder(config.data.folder, root)
    if "validation" not in builder.info.splits:
      raise ValueError(
        f"The folder {config.data.folder!r} has a single usable image, so it "
        "has no validation split; add at least one more captioned image."
      )
    extra = {}
  return DataSources(
    train=builder.as_data_source("train"),
    eval=builder.as_data_source("validation"),
    extra=extra,
    train_captions=builder.as_data_source(
      "train", decoders={"image": tfds.decode.SkipDecoding()}
    ),
  )


def tokenizer_path(config: ConfigDict, workdir: str) -> str:
  """The tokenizer file: `config.tokenizer.path` or `<workdir>/tokenizer.model`."""
  return config.tokenizer.path or os.path.join(workdir, TOKENIZER_FILE)


def caption_text(example: dict, field: str = "caption") -> str:
  """A caption field of a decoded example as str (TFDS gives bytes)."""
  caption = example[field]
  return caption.decode("utf-8") if isinstance(caption, bytes) else caption


def read_examples(source: Sequence[dict], indices: Sequence[int]) -> list[dict]:
  """Reads several records at once (array_record reads batches ~3x faster)."""
  indices = [int(i) for i in indices]
  read_many = getattr(source, "__getitems__", None)
  if read_many is not None:
    return list(read_many(indices))
  return [source[i] for i in indices]


def all_captions(
  source: Sequence[dict], chunk: int = 4096, field: str = "caption"
) -> Iterator[str]:
  """Every caption (record field `field`) of a split, in order.

  Records are read `chunk` at a time, so a consumer that stops early reads
  at most one chunk more than it used.
  """
  for start in range(0, len(source), chunk):
    indices = range(start, min(start + chunk, len(source)))
    yield from (caption_text(r, field) for r in read_examples(source, indices))


def ensure_tokenizer(
  config: ConfigDict, workdir: str, train_source: Sequence[dict]
) -> Tokenizer:
  """Loads the tokenizer, training it on the training captions if absent.

  Args:
    config: the run config.
    workdir: the run's work directory (default tokenizer location).
    train_source: training records with a `caption` field (images are not
      needed: `DataSources.train_captions` reads faster).
  """
  path = tokenizer_path(config, workdir)
  if not os.path.exists(path):
    logging.info("Training a BPE tokenizer on %d captions", len(train_source))
    # The config's vocabulary size is an upper bound: a small caption set
    # (Shapes has a few dozen words) supports fewer BPE pieces.
    train_tokenizer(
      all_captions(train_source),
      path,
      config.tokenizer.vocab_size,
      text_length=config.data.text_length,
      vocab_size_is_upper_bound=True,
    )
  # Pads start at the configured bound whatever number of pieces the
  # captions supported (see the tokenizer module docstring).
  return Tokenizer.load(
    path,
    text_length=config.data.text_length,
    pad_base=config.tokenizer.vocab_size,
  )


def batch_features(
  examples: Sequence[dict],
  image_size: int,
  tokenizer: Tokenizer,
  bpe_dropout: float = 0.0,
  seed: int | None = None,
) -> dict[str, np.ndarray]:
  """Decoded records -> `{image [N,S,S,3] uint8, text_tokens [N,L] int32}`."""
  images = []
  for example in examples:
    image = np.asarray(example["image"])
    if image.shape != (image_size, image_size, 3):
      image = preprocess.resize_and_center_crop(image, image_size)
    images.append(image)
  tokens = tokenizer.encode(
    [caption_text(example) for example in examples],
    bpe_dropout=bpe_dropout,
    rng_seed=seed,
  )
  return {"image": np.stack(images), "text_tokens": tokens.astype(np.int32)}


def hard_negative_tokens(
  captions: Sequence[str],
  count: int,
  tokenizer: Tokenizer,
  rng: np.random.Generator,
  attributes: Sequence[str] = ("shape",),
) -> np.ndarray:
  """`[N, count, L] int32`: swapped captions of N Shapes captions.

  Each negative swaps one object's attribute, drawn from `attributes`.
  """
  negatives = [
    shapes.swapped_caption(
      caption, rng, attributes[int(rng.integers(len(attributes)))]
    )
    for caption in captions
    for _ in range(count)
  ]
  tokens = tokenizer.encode(negatives).astype(np.int32)
  return tokens.reshape(len(captions), count, tokens.shape[-1])


def recoloured(example: dict, rng: np.random.Generator) -> dict:
  """A Shapes example repainted, its caption renamed to match."""
  image, caption = shapes.recoloured_example(
    np.asarray(example["image"]), caption_text(example), rng
  )
  return {**example, "image": image, "caption": caption}


def host_batch_size(global_batch: int, mesh: jax.sharding.Mesh, rules) -> int:
  """This host's rows of a global batch, after checking divisibility."""
  devices = sharding.batch_divisor(mesh, rules)
  hosts = jax.process_count()
  if global_batch % devices or global_batch % hosts:
    raise ValueError(
      f"Batch size {global_batch} must be divisible by the {devices} devices "
      f"that share the batch axis and the {hosts} hosts; pick a multiple of "
      f"{np.lcm(devices, hosts)}."
    )
  return global_batch // hosts


class BatchIterator:
  """Infinite iterator of global training batches with a saveable position."""

  def __init__(self, dataset: grain.IterDataset, global_sharding):
    self._iterator = iter(dataset)
    self._sharding = global_sharding

  def __iter__(self) -> Iterator[dict[str, jax.Array]]:
    return self

  def __next__(self) -> dict[str, jax.Array]:
    return to_global(next(self._iterator), self._sharding)

  def get_state(self) -> dict[str, Any]:
    return self._iterator.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    self._iterator.set_state(state)


def to_global(host_batch: dict[str, np.ndarray], global_sharding) -> dict:
  """Places this host's rows into global arrays with the batch sharding."""
  return {
    name: jax.make_array_from_process_local_data(global_sharding, value)
    for name, value in host_batch.items()
  }


def train_iterator(
  source: Sequence[dict],
  tokenizer: Tokenizer,
  config: ConfigDict,
  mesh: jax.sharding.Mesh,
  rules=sharding.DEFAULT_RULES,
) -> BatchIterator:
  """The shuffled, repeated training stream of global batches.

  Args:
    source: a random-access training split.
    tokenizer: turns captions into `[L] int32` tokens.
    config: the run config (`config.data` fields).
    mesh: the device mesh; batches are sharded over its batch axes.
    rules: the logical-to-mesh rules.

  Returns:
    A BatchIterator; `get_state`/`set_state` checkpoint its position.
  """
  data = config.data
  per_host = host_batch_size(data.batch_size, mesh, rules)
  image_size, dropout = data.image_size, data.bpe_dropout
  negatives, swapped = config_lib.check_hard_negatives(data)
  negative_images = config_lib.check_negative_images(data)
  recolour = config_lib.check_recolour(config)

  def load_batch(indices, rng: np.random.Generator):
    seed = int(rng.integers(2**31)) if dropout else None
    examples = read_examples(source, indices)
    if recolour:
      examples = [
        recoloured(example, rng) if rng.random() < recolour else example
        for example in examples
      ]
    features = batch_features(examples, image_size, tokenizer, dropout, seed)
    if negatives:
      features["negative_text_tokens"] = hard_negative_tokens(
        [caption_text(example) for example in examples],
        negatives,
        tokenizer,
        rng,
        swapped,
      )
    if negative_images:
      features["negative_image"] = np.stack(
        [shapes.swapped_shape_image(image, rng) for image in features["image"]]
      )
    return features

  # Shuffle and batch record indices, then read each batch with one call.
  dataset = (
    grain.MapDataset.range(len(source))
    .seed(data.shuffle_seed)
    .shuffle()
    .repeat(None)
  )
  dataset = dataset[jax.process_index() :: jax.process_count()]
  dataset = dataset.batch(per_host, drop_remainder=True).random_map(load_batch)
  read = grain.ReadOptions(
    num_threads=data.num_threads, prefetch_buffer_size=data.prefetch
  )
  iter_dataset = dataset.to_iter_dataset(read)
  return BatchIterator(iter_dataset, sharding.batch_sharding(mesh, rules))


def eval_batches(
  source: Sequence[dict],
  tokenizer: Tokenizer,
  config: ConfigDict,
  mesh: jax.sharding.Mesh,
  num_batches: int,
  rules=sharding.DEFAULT_RULES,
) -> list[dict[str, jax.Array]]:
  """The first `num_batches` evaluation batches, in order, as global arrays.

  The same examples every time, so evaluations are comparable across steps.
  """
  data = config.data
  per_host = host_batch_size(data.eval_batch_size, mesh, rules)
  needed = num_batches * data.eval_batch_size
  if len(source) < needed:
    raise ValueError(
      f"The evaluation split has {len(source)} examples but "
      f"{num_batches} batches of {data.eval_batch_size} need {needed}; lower "
      "config.train.eval_batches or config.data.eval_batch_size."
    )
  global_sharding = sharding.batch_sharding(mesh, rules)
  host = jax.process_index()
  batches = []
  for b in range(num_batches):
    first = b * data.eval_batch_size + host * per_host
    examples = read_examples(source, range(first, first + per_host))
    features = batch_features(examples, data.image_size, tokenizer)
    batches.append(to_global(features, global_sharding))
  return batches
