"""Evaluators that need the host: images judged against their captions.

The Shapes judge reads an image and says whether it shows what a caption
states; here it scores images that a model produced from dataset examples
(e.g. dVAE reconstructions), split by attribute so a reader sees what fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from dalle_jax.data import judge
from dalle_jax.data.pipeline import caption_text, read_examples

ImageFn = Callable[[np.ndarray], np.ndarray]
ATTRIBUTES = judge.ATTRIBUTES
# verdicts[..., a]: the judge's verdict on attribute a (1 holds, 0 fails),
# or NOT_STATED where the caption does not state it.
NOT_STATED = -1


def captions_by_pair(captions: Sequence[str]) -> dict[str, list[int]]:
  """{'colour shape': indices of the Shapes captions that name the pair}.

  Pairs in order of first mention; a caption naming two pairs is listed
  under both, once under each even if it names one pair twice.
  """
  named: dict[str, list[int]] = {}
  for n, caption in enumerate(captions):
    objects = judge.parse_caption(caption).objects
    for pair in dict.fromkeys(f"{o.colour} {o.shape}" for o in objects):
      named.setdefault(pair, []).append(n)
  return named


def judge_verdicts(captions: Sequence[str], images: np.ndarray) -> np.ndarray:
  """Judges `[N, S, S, 3] uint8` images against their captions.

  Returns:
    `[N, A] int8` verdicts, one column per `ATTRIBUTES` entry: 1 where the
    stated attribute holds, 0 where it fails, NOT_STATED where the caption
    does not state it.
  """
  if len(captions) != len(images):
    raise ValueError(
      f"{len(captions)} captions for {len(images)} images; judge one "
      "caption per image."
    )
  verdicts = np.full((len(images), len(ATTRIBUTES)), NOT_STATED, np.int8)
  for n, (caption, image) in enumerate(zip(captions, images, strict=True)):
    for attribute, holds in judge.judge(caption, image).items():
      verdicts[n, ATTRIBUTES.index(attribute)] = int(holds)
  return verdicts


def judge_images(captions: Sequence[str], images: np.ndarray) -> dict:
  """Judges `[N, S, S, 3] uint8` images against their captions.

  Returns:
    `judged_correct` (share of images where every stated attribute holds)
    and `wrong_<attribute>` (share of images where that attribute fails).
  """
  verdicts = judge_verdicts(captions, images)
  count = max(len(verdicts), 1)
  metrics = {
    "judged_correct": float(np.all(verdicts != 0, axis=-1).sum() / count)
  }
  for a, attribute in enumerate(ATTRIBUTES):
    metrics[f"wrong_{attribute}"] = float((verdicts[:, a] == 0).sum() / count)
  return metrics


def judge_transformed_examples(
  transform: ImageFn,
  source: Sequence[dict],
  num_examples: int,
  batch_size: int,
) -> dict[str, float]:
  """Runs `transform` on the first examples of a split and judges the output.

  Args:
    transform: `[B, S, S, 3] uint8 -> [B, S, S, 3] uint8`, e.g. a jitted
      dVAE encode+decode; called on full batches only (so it compiles once).
    source: a Shapes split with `image` and `canonical_caption` fields.
    num_examples: how many examples, from the start (rounded down to whole
      batches, at least one batch).
    batch_size: images per call.

  Returns:
    The `judge_images` metrics over all judged examples.
  """
  num_batches = max(min(num_examples, len(source)) // batch_size, 1)
  captions, outputs = [], []
  for b in range(num_batches):
    examples = read_examples(
      source, range(b * batch_size, (b + 1) * batch_size)
    )
    images = np.stack([np.asarray(e["image"]) for e in examples])
    outputs.append(np.asarray(transform(images)))
    captions.extend(caption_text(e, "canonical_caption") for e in examples)
  return judge_images(captions, np.concatenate(outputs))
