"""Scores candidate images against their prompts, for reranking (paper §2.6).

A `Scorer` rates how well each candidate fits its prompt, higher is better:

  'clip'        CLIP's similarity of the candidate image with the prompt,
                encoded with CLIP's own tokenizer (what the paper reranks by);
                with `Scorer.image_shift` s > 0, the image's embedding is
                averaged over its copies moved by up to s pixels
                (`tasks.clip.shifted_views`).
  'likelihood'  the transformer's own log-likelihood, in nats, of the
                candidate's image codes given the prompt: the sum over the N
                codes of log p(code_i | text, codes_<i) from one
                teacher-forced forward pass. Needs no extra model.

Scoring runs jit-compiled in chunks of a fixed number of rows; the last
chunk is padded with copies of its own rows, so memory is bounded by the
chunk whatever the number of candidates, and every chunk has one shape (one
compilation). `top_k_by_score` turns scores into best-first indices.

Shape letters: R candidate rows (each with its own prompt), B rows of one
chunk, P prompts, C candidates per prompt, L text length of the scorer's
tokenizer, S image side, N image codes.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from dalle_jax.models import transformer
from dalle_jax.tasks import clip as clip_task
from dalle_jax.tokenizer import Tokenizer

CLIP = "clip"
LIKELIHOOD = "likelihood"
SCORER_NAMES = (CLIP, LIKELIHOOD)
DEFAULT_CHUNK_SIZE = 16
# CLIP scores each candidate as the mean embedding of its 9 copies moved by
# (dy, dx) in {-1, 0, 1}^2 pixels. A likely reason it helps (not shown):
# the stem's strided convolutions and the patch grid see a small shape
# differently one pixel over, and the average evens that out between one
# prompt's candidates. Chosen on held-back prompts with
# experiments/rerank_scorers.py (--image_shift), whose docstring has the
# figures.
DEFAULT_CLIP_IMAGE_SHIFT = 1


@dataclasses.dataclass(frozen=True, eq=False)
class Scorer:
  """One way of scoring candidates, with the model it needs.

  Attributes:
    name: one of SCORER_NAMES.
    model_config: the scoring model's hyperparameters: a TransformerConfig
      for 'likelihood', a CLIPConfig for 'clip'.
    params: the scoring model's parameters.
    tokenizer: encodes prompts for this scorer (its model's own tokenizer).
    image_shift: 'clip' only: pixels, >= 0, by which copies of each image
      are moved and averaged over (`tasks.clip.score`); 0 scores the
      image alone.
  """

  name: str
  model_config: Any
  params: Any
  tokenizer: Tokenizer
  image_shift: int = 0

  def __post_init__(self):
    check_scorer_name(self.name)
    check_image_shift(self.image_shift)

  @property
  def uses_images(self) -> bool:
    """True if the scorer reads decoded images, False if image codes."""
    return self.name == CLIP


def check_scorer_name(name) -> None:
  """Raises ValueError unless `name` is one of SCORER_NAMES."""
  if name not in SCORER_NAMES:
    raise ValueError(
      f"scorer={name!r} is not a known scorer; use one of {SCORER_NAMES}."
    )


def _check_integer(name: str, value, low: int, meaning: str) -> None:
  """Raises ValueError unless `value` is an integer (not a bool) >= low."""
  if (
    not isinstance(value, numbers.Integral)
    or isinstance(value, bool)
    or value < low
  ):
    raise ValueError(
      f"{name}={value!r} must be an integer >= {low} ({meaning})."
    )


def check_image_shift(shift) -> None:
  """Raises ValueError unless `shift` is an integer >= 0."""
  _check_integer(
    "image_shift",
    shift,
    0,
    "pixels by which CLIP averages each image over moved copies; 0 is off,"
    f" the default is {DEFAULT_CLIP_IMAGE_SHIFT}",
  )


def image_log_likelihood(
  config: transformer.TransformerConfig,
  params,
  text_tokens: jax.Array,
  codes: jax.Array,
) -> jax.Array:
  """log p(codes | text) under the transformer, from one forward pass.

  Args:
    config: the transformer's hyperparameters.
    params: its 'params' collection.
    text_tokens: [B, L] int32 prompts (the transformer's tokenizer).
    codes: [B, N] int32 image codes in raster order.

  Returns:
    [B] float32: the sum over the N codes of their log-probabilities, in
    nats (<= 0).
  """
  _, image_logits = transformer.Transformer(config).apply(
    {"params": params}, text_tokens, codes
  )
  log_probs = jax.nn.log_softmax(image_logits, axis=-1)
  picked = jnp.take_along_axis(log_probs, codes[..., None], axis=-1)
  return jnp.sum(picked[..., 0], axis=-1)


def score_batch(
  name: str,
  model_config,
  params,
  text_tokens: jax.Array,
  images: jax.Array | None,
  codes: jax.Array | None,
  image_shift: int = 0,
) -> jax.Array:
  """Scores one batch of candidates; pure, jittable with static name, config
  and image_shift.

  Args:
    name: the scorer, one of SCORER_NAMES.
    model_config: its model's hyperparameters (see `Scorer`).
    params: its model's parameters.
    text_tokens: [B, L] int32, each candidate's prompt encoded with the
      scorer's tokenizer.
    images: [B, S, S, 3] uint8 candidates; read by 'clip' (else None).
    codes: [B, N] int32 candidates' image codes; read by 'likelihood'
      (else None).
    image_shift: 'clip' only, see `Scorer`.

  Returns:
    [B] float32 scores, higher is better.
  """
  check_scorer_name(name)
  if name == CLIP:
    scores = clip_task.score(
      model_config, params, images, text_tokens, image_shift
    )
  else:
    scores = image_log_likelihood(model_config, params, text_tokens, codes)
  return scores.astype(jnp.float32)


# Static name and config: Generators of equal configs share the programs.
_score_batch_jit = jax.jit(score_batch, static_argnums=(0, 1, 6))


def _check_chunk_size(chunk_size) -> None:
  _check_integer(
    "chunk_size",
    chunk_size,
    1,
    f"rows per compiled call; e.g. {DEFAULT_CHUNK_SIZE}",
  )


def map_in_chunks(
  fn: Callable[..., Any],
  inputs: Sequence[np.ndarray],
  chunk_size: int,
  progress: str | None = None,
) -> tuple[np.ndarray, ...]:
  """Applies `fn` to consecutive chunks of exactly `chunk_size` rows.

  The last chunk is padded with repeats of its own rows (valid inputs, so
  the padding cannot produce errors or NaNs) and their outputs dropped.
  Every call has the same shapes, so a jitted `fn` compiles once.

  Args:
    fn: (*chunk inputs [B, ...]) -> an array or tuple of arrays [B, ...].
    inputs: arrays of R rows each (R >= 1).
    chunk_size: B.
    progress: a tqdm description, shown when there is more than one chunk;
      None shows nothing.

  Returns:
    A tuple of host arrays [R, ...], one per output of `fn`.
  """
  _check_chunk_size(chunk_size)
  inputs = [np.asarray(array) for array in inputs]
  total = inputs[0].shape[0]
  starts = range(0, total, chunk_size)
  outputs = []
  with tqdm(
    total=len(starts),
    desc=progress,
    disable=progress is None or len(starts) <= 1,
    leave=False,
  ) as bar:
    for start in starts:
      stop = min(start + chunk_size, total)
      # Cycle through the chunk's own rows to fill it up.
      rows = start + np.arange(chunk_size) % (stop - start)
      result = fn(*(array[rows] for array in inputs))
      result = result if isinstance(result, tuple) else (result,)
      outputs.append([np.asarray(out)[: stop - start] for out in result])
      bar.update(1)
  return tuple(np.concatenate(parts) for parts in zip(*outputs, strict=True))


def _text_rows(scorer: Scorer, prompts: Sequence[str]) -> np.ndarray:
  """[R] prompts -> [R, L] int32, encoding each distinct prompt once."""
  distinct = list(dict.fromkeys(prompts))
  tokens = scorer.tokenizer.encode(distinct).astype(np.int32)
  row_of = {prompt: row for row, prompt in enumerate(distinct)}
  return tokens[[row_of[prompt] for prompt in prompts]]


def score(
  scorer: Scorer,
  prompts: Sequence[str],
  *,
  images: np.ndarray | None = None,
  codes: np.ndarray | None = None,
  chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
  """Scores R candidates, each against its own prompt, in chunks.

  Args:
    scorer: what to score with.
    prompts: R prompt strings, prompts[r] for candidate r.
    images: [R, S, S, 3] uint8; required by image scorers ('clip').
    codes: [R, N] or [R, W, W] int32; required by code scorers
      ('likelihood').
    chunk_size: rows per compiled call.

  Returns:
    [R] float32 scores, higher is better.

  Raises:
    ValueError: the input the scorer reads is missing, or its row count
      differs from the number of prompts.
  """
  needed, array = ("images", images) if scorer.uses_images else ("codes", codes)
  if array is None:
    raise ValueError(
      f"The {scorer.name!r} scorer reads {needed}; pass {needed}=..."
    )
  array = np.asarray(array)
  if isinstance(prompts, str) or array.shape[0] != len(prompts):
    raise ValueError(
      f"Got {len(prompts)} prompts for {array.shape[0]} rows of {needed};"
      " pass one prompt string per candidate row."
    )
  if not scorer.uses_images:
    array = array.reshape(array.shape[0], -1).astype(np.int32)

  def one_chunk(text_tokens, rows):
    return _score_batch_jit(
      scorer.name,
      scorer.model_config,
      scorer.params,
      text_tokens,
      rows if scorer.uses_images else None,
      None if scorer.uses_images else rows,
      scorer.image_shift,
    )

  (scores,) = map_in_chunks(
    one_chunk, (_text_rows(scorer, prompts), array), chunk_size, "scoring"
  )
  return scores.astype(np.float32)


def top_k_by_score(scores: np.ndarray, k: int) -> np.ndarray:
  """Indices of the k best scores along the last axis, best first.

  Equal scores keep their original order (the lower index first), and NaN
  scores rank below every number.

  Args:
    scores: [..., C] float.
    k: how many to keep, 1 <= k <= C.

  Returns:
    [..., k] int64 indices into the last axis.

  Raises:
    ValueError: k outside [1, C].
  """
  scores = np.asarray(scores, np.float64)
  count = scores.shape[-1]
  if (
    not isinstance(k, numbers.Integral)
    or isinstance(k, bool)
    or not 1 <= k <= count
  ):
    raise ValueError(
      f"k={k!r} must be an integer in [1, {count}] (the number of scores)."
    )
  # lexsort's last key is the primary one: non-NaN first, then high scores;
  # it is stable, so ties keep their order.
  missing = np.isnan(scores)
  order = np.lexsort((-np.where(missing, 0.0, scores), missing), axis=-1)
  return order[..., :k]
