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


def judge_images(captions: Sequence[str], images: np.ndarray) -> dict:
  """Judges `[N, S, S, 3] uint8` images against their captions.

  Returns:
    `judged_correct` (share of images where every stated attribute holds)
    and `wrong_<attribute>` (share of images where that attribute fails).
  """
  failures = dict.fromkeys(judge.ATTRIBUTES, 0)
  correct = 0
  for caption, image in zip(captions, images, strict=True):
    verdict = judge.judge(caption, image)
    correct += all(verdict.values())
    for attribute, holds in verdict.items():
      failures[attribute] += not holds
  count = max(len(captions), 1)
  metrics = {"judged_correct": correct / count}
  metrics.update({f"wrong_{k}": v / count for k, v in failures.items()})
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
