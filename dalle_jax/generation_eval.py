"""Evaluates a pipeline's generations: samples, judges or scores, sums up.

`evaluate` samples `num_candidates` images per prompt through the
`Generator`, once, in sampling order, and scores each with CLIP. What
follows depends on the data set (`EVALUATION_KINDS`; results.json says
which in its `kind` field):

- Shapes (`judged`): the prompts are the first distinct canonical captions
  of the splits `zero_shot` (held-out colour-shape pairs) and `validation`
  (seen pairs), and the Shapes judge checks every candidate. For N = 1, 2,
  4, ... candidates: the share of prompts whose CLIP-best of the first N is
  correct (reranked), and the share with at least one correct among the
  first N (what a perfect reranker would reach); the single-sample accuracy
  is the mean over all candidates. Attributes (count, colour, shape, size,
  position, relation) are scored separately over the captions that state
  them.
- A folder of the user's captioned images (`clip_scores`): no judge exists,
  so the prompts are the first distinct captions of `validation` and the
  figures are CLIP's own: each prompt's best candidates and their scores,
  and the mean score of the best of the first N against that of all
  candidates.

Layout of ROOT/evaluation/ (`EVALUATION_DIR`):
  config.json    the pipeline config's `evaluation` section
  results.json   `kind`, and per split its figures (`summarise_split` when
                 judged, `summarise_scores` for CLIP scores)
  <split>.npz    per split: `captions` [P], `tokens` [P, C, W, W] int32 and
                 `scores` [P, C] float32 in sampling order; judged, also
                 `holds` [P, C, A] int8 and `best_images` [P, S, S, 3]
                 uint8; CLIP scores, also `top_images` [P, K, S, S, 3] uint8

`dalle_jax.report` turns these files into ROOT/report.md.

Shape letters: P prompts, C candidates per prompt, K best candidates kept,
A judged attributes, S image side, W code grid side.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import numpy as np
from ml_collections import ConfigDict

from dalle_jax import checkpoint
from dalle_jax import config as config_lib
from dalle_jax.data import pipeline as data_pipeline

# Imported by name: this module's own `evaluate` function would shadow the
# module.
from dalle_jax.evaluate import (
  ATTRIBUTES,
  NOT_STATED,
  captions_by_pair,
  judge_verdicts,
)

logger = logging.getLogger(__name__)

SPLITS = ("zero_shot", "validation")
# results.json `kind`: what the evaluation could measure on the data set.
JUDGED, CLIP_SCORES = "judged", "clip_scores"
EVALUATION_KINDS = {"shapes": JUDGED, "folder": CLIP_SCORES}
# The split of a folder's captions that the evaluation prompts come from.
SCORED_SPLIT = "validation"
# Best candidates kept per prompt (images and scores) in clip_scores runs.
TOP_IMAGES = 4
EVALUATION_DIR = "evaluation"
RESULTS_FILE = "results.json"
# The command that makes a work directory's evaluation, for error messages.
TRAIN_COMMAND = (
  "python -m dalle_jax.train --config dalle_jax/configs/default.py "
  "--workdir {root}"
)


# ---------------------------------------------------------------------------
# Evaluation math: pure functions of judged, scored candidates.


def candidate_counts(num_candidates: int) -> list[int]:
  """N = 1, 2, 4, ... below `num_candidates`, then `num_candidates` itself."""
  counts = [2**i for i in range(num_candidates.bit_length())]
  counts = [n for n in counts if n < num_candidates]
  return [*counts, num_candidates]


def best_of_first(scores: np.ndarray, count: int) -> np.ndarray:
  """[P] int: each prompt's highest-scoring candidate among the first `count`.

  Ties go to the earlier candidate.
  """
  return np.argmax(scores[:, :count], axis=1)


def accuracy_curve(
  correct: np.ndarray, scores: np.ndarray, counts: Sequence[int]
) -> dict:
  """Accuracy against the number of candidates, with and without reranking.

  Args:
    correct: [P, C] bool, the judge's verdict on each candidate.
    scores: [P, C] float, CLIP's score of each candidate.
    counts: the numbers of candidates N to evaluate, each in [1, C].

  Returns:
    `single_sample` (mean correctness of all candidates: no reranking),
    and per N in `candidates`: `reranked` (share of prompts whose best-scored
    of the first N is correct) and `any_correct` (share with at least one
    correct among the first N: a perfect reranker).
  """
  rows = np.arange(correct.shape[0])
  return {
    "single_sample": float(np.mean(correct)),
    "candidates": [int(n) for n in counts],
    "reranked": [
      float(np.mean(correct[rows, best_of_first(scores, n)])) for n in counts
    ],
    "any_correct": [float(np.mean(correct[:, :n].any(axis=1))) for n in counts],
  }


def judge_candidates(
  captions: Sequence[str], samples: np.ndarray
) -> np.ndarray:
  """Judges every candidate: [P, C, S, S, 3] uint8 -> [P, C, A] int8.

  Returns:
    1 where the attribute the caption states holds, 0 where it fails,
    NOT_STATED where the caption does not state it.
  """
  prompts, candidates = samples.shape[:2]
  flat = judge_verdicts(
    np.repeat(np.asarray(captions, dtype=object), candidates),
    samples.reshape((prompts * candidates,) + samples.shape[2:]),
  )
  return flat.reshape(prompts, candidates, len(ATTRIBUTES))


def correct_from_holds(holds: np.ndarray) -> np.ndarray:
  """[P, C, A] verdicts -> [P, C] bool: every stated attribute holds."""
  return np.all(holds != 0, axis=-1)


def attribute_accuracy(holds: np.ndarray, best: np.ndarray) -> dict:
  """Per attribute, accuracy over the captions that state it.

  Args:
    holds: [P, C, A] int8 verdicts (see `judge_candidates`).
    best: [P] int, the reranked candidate of each prompt.

  Returns:
    {attribute: {stated (prompts stating it), single_sample (share of all
    their candidates where it holds), reranked (share of their reranked
    candidates where it holds)}}; accuracies are None when no caption
    states the attribute.
  """
  chosen = holds[np.arange(holds.shape[0]), best]  # [P, A]
  table = {}
  for a, attribute in enumerate(ATTRIBUTES):
    stated = holds[:, 0, a] != NOT_STATED
    count = int(stated.sum())
    table[attribute] = {
      "stated": count,
      "single_sample": float(np.mean(holds[stated, :, a])) if count else None,
      "reranked": float(np.mean(chosen[stated, a])) if count else None,
    }
  return table


def pair_accuracy(
  captions: Sequence[str], holds: np.ndarray, best: np.ndarray
) -> dict:
  """Per colour-shape pair, accuracy over the captions that name it.

  Held-out pairs differ in how hard they are to draw (and to tokenize), so
  a split's accuracy depends on its prompts' mix of pairs; this shows each.

  Args:
    captions: the P Shapes captions.
    holds: [P, C, A] int8 verdicts (see `judge_candidates`).
    best: [P] int, the reranked candidate of each prompt.

  Returns:
    {"colour shape": {prompts (naming the pair), single_sample (share of
    their candidates judged correct), reranked (share of their reranked
    candidates judged correct)}}. A caption naming two pairs counts for
    both.
  """
  correct = correct_from_holds(holds)
  chosen = correct[np.arange(len(captions)), best]
  return {
    pair: {
      "prompts": len(rows),
      "single_sample": float(np.mean(correct[rows])),
      "reranked": float(np.mean(chosen[rows])),
    }
    for pair, rows in captions_by_pair(captions).items()
  }


def summarise_split(
  captions: Sequence[str], holds: np.ndarray, scores: np.ndarray
) -> dict:
  """The figures of one split (see `accuracy_curve`, `attribute_accuracy`)."""
  correct = correct_from_holds(holds)
  best = best_of_first(scores, scores.shape[1])
  rows = np.arange(len(captions))
  return {
    "num_prompts": len(captions),
    "num_candidates": int(scores.shape[1]),
    "curve": accuracy_curve(correct, scores, candidate_counts(scores.shape[1])),
    "attributes": attribute_accuracy(holds, best),
    "pairs": pair_accuracy(captions, holds, best),
    "prompts": [
      {
        "caption": caption,
        "best": int(best[p]),
        "best_score": float(scores[p, best[p]]),
        "best_correct": bool(correct[p, best[p]]),
        "correct_candidates": int(correct[p].sum()),
      }
      for p, caption in zip(rows, captions, strict=True)
    ],
  }


def summarise_scores(
  captions: Sequence[str], scores: np.ndarray, top: int = TOP_IMAGES
) -> dict:
  """The figures of a split without a judge: CLIP's scores alone.

  Args:
    captions: the P prompts.
    scores: [P, C] float, CLIP's score of each candidate, in sampling order.
    top: how many best candidates to list per prompt (at most C).

  Returns:
    `mean_score` (over all candidates: no reranking), `mean_best_score`
    (over each prompt's best of C), `curve` (`mean_best_score` of the best
    of the first N for N in `candidates`), and per prompt its `best`
    candidate, `best_score`, `mean_score`, and its `top` candidates with
    their `top_scores`, best first. Ties go to the earlier candidate.
  """
  count = scores.shape[1]
  ranking = np.argsort(-scores, axis=1, kind="stable")[:, : min(top, count)]
  counts = candidate_counts(count)
  return {
    "num_prompts": len(captions),
    "num_candidates": int(count),
    "mean_score": float(np.mean(scores)),
    "mean_best_score": float(np.mean(np.max(scores, axis=1))),
    "curve": {
      "candidates": counts,
      "mean_best_score": [
        float(np.mean(np.max(scores[:, :n], axis=1))) for n in counts
      ],
    },
    "prompts": [
      {
        "caption": caption,
        "best": int(order[0]),
        "best_score": float(row[order[0]]),
        "mean_score": float(np.mean(row)),
        "top": [int(c) for c in order],
        "top_scores": [float(row[c]) for c in order],
      }
      for caption, row, order in zip(captions, scores, ranking, strict=True)
    ],
  }


# ---------------------------------------------------------------------------
# Running the evaluation.


def first_distinct_captions(
  source, count: int, field: str = "caption"
) -> list[str]:
  """Up to `count` distinct captions of a split, in record order.

  Args:
    source: a random-access split whose records hold `field`.
    count: how many to return at most.
    field: the caption field (Shapes: `canonical_caption`).
  """
  captions: list[str] = []
  for caption in data_pipeline.all_captions(source, chunk=256, field=field):
    if caption not in captions:
      captions.append(caption)
    if len(captions) == count:
      break
  return captions


def evaluation_captions(source, count: int) -> list[str]:
  """The first `count` distinct canonical captions of a Shapes split.

  Raises:
    ValueError: the split has fewer distinct captions (names both counts).
  """
  captions = first_distinct_captions(source, count, "canonical_caption")
  if len(captions) < count:
    raise ValueError(
      f"The split has {len(captions)} distinct canonical captions but "
      f"config.evaluation.num_prompts={count}; lower num_prompts or raise "
      "the split's size (config.data.shapes.num_validation / "
      "num_zero_shot)."
    )
  return captions


def folder_captions(source, count: int) -> list[str]:
  """The first `count` distinct captions of a folder's split, or all it has.

  A folder's validation split is small (about 2% of the images), so fewer
  prompts than asked is a warning, not an error.
  """
  captions = first_distinct_captions(source, count)
  if len(captions) < count:
    logger.warning(
      "The %s split has %d distinct captions, fewer than "
      "config.evaluation.num_prompts=%d; evaluating those %d.",
      SCORED_SPLIT, len(captions), count, len(captions),
    )  # fmt: skip
  return captions


def split_source(sources: data_pipeline.DataSources, split: str):
  """The random-access source of a Shapes evaluation split."""
  return sources.eval if split == "validation" else sources.extra[split]


def sample_candidates(generator, captions: Sequence[str], evaluation):
  """All `num_candidates` candidates per caption, in sampling order.

  Args:
    generator: a `generator.Generator` with a CLIP loaded.
    captions: the P prompts.
    evaluation: the pipeline config's `evaluation` section.

  Returns:
    `generator.Samples` with images [P, C, S, S, 3] uint8, CLIP scores
    [P, C] float32 and tokens [P, C, W, W] int32.
  """
  return generator(
    list(captions),
    num_candidates=evaluation.num_candidates,
    keep=evaluation.num_candidates,
    temperature=evaluation.temperature,
    top_k=evaluation.top_k or None,
    top_p=evaluation.top_p or None,
    seed=evaluation.seed,
    rerank=False,
    scorer="clip",
    chunk_size=evaluation.chunk_size,
  )


def judge_split(generator, captions, evaluation, path: str) -> dict:
  """Samples and judges one Shapes split; writes `path` (.npz).

  The file holds `captions` [P], `tokens` [P, C, W, W] int32, `scores`
  [P, C] float32, `holds` [P, C, A] int8 and `best_images` [P, S, S, 3]
  uint8. Returns the split's figures (see `summarise_split`).
  """
  samples = sample_candidates(generator, captions, evaluation)
  holds = judge_candidates(captions, samples.images)
  summary = summarise_split(captions, holds, samples.scores)
  best = [prompt["best"] for prompt in summary["prompts"]]
  np.savez_compressed(
    path,
    captions=np.array(captions),
    tokens=samples.tokens,
    scores=samples.scores,
    holds=holds,
    best_images=samples.images[np.arange(len(captions)), best],
  )
  return summary


def score_split(generator, captions, evaluation, path: str) -> dict:
  """Samples and CLIP-scores one split without a judge; writes `path`.

  The .npz holds `captions` [P], `tokens` [P, C, W, W] int32, `scores`
  [P, C] float32 (sampling order) and `top_images` [P, K, S, S, 3] uint8,
  each prompt's K best candidates, best first. Returns the split's figures
  (see `summarise_scores`).
  """
  samples = sample_candidates(generator, captions, evaluation)
  summary = summarise_scores(captions, samples.scores)
  top = np.array([prompt["top"] for prompt in summary["prompts"]])
  np.savez_compressed(
    path,
    captions=np.array(captions),
    tokens=samples.tokens,
    scores=samples.scores,
    top_images=np.take_along_axis(
      samples.images, top[:, :, None, None, None], axis=1
    ),
  )
  return summary


def evaluate(
  root: str, evaluation: ConfigDict, data_config: ConfigDict
) -> dict[str, float]:
  """Samples and scores candidates (Shapes: judges them); writes evaluation/.

  Writes `results.json` (`kind`, one of EVALUATION_KINDS' values, and the
  figures of each split) and one `<split>.npz` per split (see `judge_split`
  and `score_split`), from which `dalle_jax.report.write_report` draws
  everything. Shapes evaluates `evaluation.splits`; a folder its
  validation split.

  Args:
    root: the pipeline's work directory (dvae/, transformer/, clip/).
    evaluation: the pipeline config's `evaluation` section.
    data_config: a stage's run config (its `data` section names the data
      set and its split files).

  Returns:
    The headline figures (see `headline`).
  """
  from dalle_jax.generator import Generator  # loads jax models: on use only

  kind = EVALUATION_KINDS[data_config.data.name]
  workdir = os.path.join(root, EVALUATION_DIR)
  os.makedirs(workdir, exist_ok=True)
  checkpoint.write_json_atomically(
    os.path.join(workdir, checkpoint.CONFIG_FILE),
    config_lib.to_dict(evaluation),
  )
  generator = Generator.from_workdir(
    root, clip_image_shift=evaluation.clip_image_shift
  )
  sources = data_pipeline.prepare_sources(data_config)
  results = {"kind": kind, "splits": {}}
  if kind == JUDGED:
    for split in evaluation.splits:
      source = split_source(sources, split)
      captions = evaluation_captions(source, evaluation.num_prompts)
      path = os.path.join(workdir, f"{split}.npz")
      results["splits"][split] = judge_split(
        generator, captions, evaluation, path
      )
  else:
    captions = folder_captions(sources.eval, evaluation.num_prompts)
    path = os.path.join(workdir, f"{SCORED_SPLIT}.npz")
    results["splits"][SCORED_SPLIT] = score_split(
      generator, captions, evaluation, path
    )
  checkpoint.write_json_atomically(os.path.join(workdir, RESULTS_FILE), results)
  return headline(root)


# ---------------------------------------------------------------------------
# Reading an evaluation.


def read_results(root: str) -> dict:
  """ROOT/evaluation/results.json.

  Raises:
    FileNotFoundError: no evaluation yet (names the command that makes it).
  """
  path = os.path.join(root, EVALUATION_DIR, RESULTS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{path} does not exist, so {root!r} is not a finished pipeline run. "
      "Run the pipeline (finished stages are not trained again): "
      + TRAIN_COMMAND.format(root=root)
    )
  with open(path) as handle:
    results = json.load(handle)
  # Evaluations written before folder data had a kind were all judged.
  results.setdefault("kind", JUDGED)
  # JSON files are written with sorted keys; show splits in SPLITS order.
  results["splits"] = {
    split: results["splits"][split]
    for split in SPLITS
    if split in results["splits"]
  }
  if results["kind"] == JUDGED:
    for split, summary in results["splits"].items():
      if "pairs" not in summary:  # written before pairs were summarised
        summary["pairs"] = _pairs_from_saved(root, split, summary)
  return results


def _pairs_from_saved(root: str, split: str, summary: dict) -> dict:
  """`pair_accuracy` of a split from its saved verdicts and CLIP's picks."""
  path = os.path.join(root, EVALUATION_DIR, f"{split}.npz")
  with np.load(path) as saved:
    captions = [str(caption) for caption in saved["captions"]]
    holds = saved["holds"]
  best = np.array([prompt["best"] for prompt in summary["prompts"]])
  return pair_accuracy(captions, holds, best)


def headline(root: str) -> dict[str, float]:
  """The evaluation's main figures per split.

  Judged: single-sample, reranked and any-correct accuracy at C. CLIP
  scores: the mean CLIP score of all candidates and of each prompt's best.
  """
  results = read_results(root)
  figures = {}
  for split, summary in results["splits"].items():
    if results["kind"] == CLIP_SCORES:
      figures[f"{split}_mean_clip_score"] = summary["mean_score"]
      figures[f"{split}_best_clip_score"] = summary["mean_best_score"]
      continue
    curve = summary["curve"]
    figures[f"{split}_single_sample"] = curve["single_sample"]
    figures[f"{split}_reranked"] = curve["reranked"][-1]
    figures[f"{split}_any_correct"] = curve["any_correct"][-1]
  return figures
