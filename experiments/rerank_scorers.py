"""Which scorer reranks best? CLIP, the transformer's likelihood, or both.

Reads a finished pipeline's evaluation (`evaluation/<split>.npz`: the judged
candidates in sampling order with their CLIP scores), scores the same
candidates' image codes with the transformer's log-likelihood, and prints,
per split and scorer, the share of prompts whose best-scored of the first N
candidates the judge found correct, next to the single-sample accuracy and
a perfect reranker (any of N correct).

"How much does reranking help" is a paired question: per prompt, the best
candidate's correctness minus the mean correctness of all its candidates.
The script prints that gain's mean over prompts with its standard error, so
"clearly above" can be read against the noise of 64 prompts.

  python -m experiments.rerank_scorers --workdir runs/default

Each scorer's pick is also compared with CLIP's prompt by prompt: on how
many prompts it is right where CLIP is wrong and the reverse, with the
exact McNemar p-value. `--candidates` reranks other judged candidates of
the same pipeline, e.g. a sampling sweep's on held-back prompts:
`--candidates 'runs/default/sampling_sweep/{split}/temperature=0.8.npz'`;
`--prompts START:END` reranks only those prompts of each file.

Scorers:
  clip        CLIP's image-text similarity (the paper's reranker; the
              evaluation's own scores).
  likelihood  log p(codes | caption) under the transformer (nats).
  both        per prompt, each scorer standardised over the prompt's
              candidates (zero mean, unit variance), then summed.
  clip:NAME@S  another CLIP run (`--clip_workdir runs/NAME`, repeatable),
              scoring the same candidates decoded by the pipeline's dVAE:
              compares rerankers without sampling the candidates again.
              Any CLIP trained on images of the pipeline's size will do;
              it reads the captions with its own tokenizer. S is the
              image shift it scores with (0 unless `--image_shift`).
  clip@S      the pipeline's own CLIP rescoring the decoded candidates with
              image shift S (`--image_shift S`, repeatable): each image's
              embedding averaged over its copies moved by up to S pixels
              (`tasks.clip.shifted_views`; 0 scores each image once).

Measured (2026-12-06, the default pipeline's dVAE, transformer and
repainting CLIP; `--image_shift 0 --image_shift 1`, and `--candidates` for
the held-back prompts of `experiments/sampling_sweep.py`), CLIP best of 64,
prompts right out of 64 at image shift 0 / 1:

  candidates                   zero_shot   validation
  report's, temperature 0.8     57 / 59     64 / 64
  held-back, temperature 0.8    56 / 59     64 / 64
  held-back, temperature 1.0    56 / 62     64 / 63
  held-back, temperature 0.6    50 / 54     64 / 63
  fresh held-back, 0.8          56 / 58     60 / 62

On held-out pairs the shift is right on 13 more of the 192 held-back
prompts and never on fewer in a set; on seen pairs it loses 2 of 192.
The last row was measured after the choice, on 64 prompts per split that
no choice had seen: the sampling sweep's prompts 65-128 (`python -m
experiments.sampling_sweep --workdir runs/default_rc --setting
temperature=0.8 --num_prompts 128`, then `--candidates
'runs/default_rc/sampling_sweep/{split}/temperature=0.8.npz' --prompts
64:128`). The shift gains 2 prompts on each split there; these prompts
are harder (one sample 75.9% / 90.7%, against 83.7% / 94.7% on the
report's).
How it was chosen: a throwaway probe (zero fill instead of the edge's
pixels) averaged over 5 views (the image and its moves by s px up, down,
left, right; s = 1, 2, 3) or 9 (the 3 x 3 pattern of `shifted_views`, s =
1, 2; or the moves by 1 and 2 px together) on the held-back sets at 0.8
and 1.0. Held-out prompts gained, in those two sets: 5 views +1 / +2 (s =
1), +1 / +2 (2), -3 / +2 (3); 3 x 3 +3 / +6 (s = 1), 0 / -1 (2); moves by
1 and 2 px 0 / +3. The 3 x 3 pattern at 1 px gained most. The probe also
ran on the report's prompts, where 5 views at 3 px did best (63 of 64,
against 59 at the choice); the choice followed the held-back sets. The
temperature-0.6 set was measured after it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np
from scipy import stats

from dalle_jax import generation_eval, intervals, rerank, stages
from dalle_jax.generator import Generator


def standardised(scores: np.ndarray) -> np.ndarray:
  """[P, C] -> [P, C]: zero mean, unit variance within each prompt's row."""
  centred = scores - scores.mean(axis=1, keepdims=True)
  spread = centred.std(axis=1, keepdims=True)
  return centred / np.where(spread > 0, spread, 1.0)


def reranking_gain(correct: np.ndarray, best_correct: np.ndarray) -> tuple:
  """Per-prompt gain of a scorer's best of all C over a single sample.

  Args:
    correct: [P, C] bool judge verdicts.
    best_correct: [P] bool, whether the scorer's best candidate is correct.

  Returns:
    (mean gain, its standard error over the P prompts), as fractions.
  """
  gain = best_correct - correct.mean(axis=1)
  return float(gain.mean()), intervals.standard_error(gain)


def paired_counts(first: np.ndarray, second: np.ndarray) -> tuple:
  """How two rerankers' picks differ on the same prompts.

  Args:
    first, second: [P] bool, whether each one's best candidate is correct.

  Returns:
    (prompts only `first` gets right, prompts only `second` gets right,
    the two-sided exact McNemar p-value: the binomial test of the first
    count among the discordant prompts, 1.0 when there are none).
  """
  only_first = int(np.sum(first & ~second))
  only_second = int(np.sum(second & ~first))
  discordant = only_first + only_second
  if not discordant:
    return only_first, only_second, 1.0
  p_value = stats.binomtest(only_first, discordant).pvalue
  return only_first, only_second, float(p_value)


def candidate_scores(scorer, captions, candidates, chunk_size, **rows):
  """Scores P x C candidates, each against its prompt's caption.

  Args:
    scorer: a `rerank.Scorer`.
    captions: the P prompts.
    candidates: C.
    chunk_size: rows per compiled call.
    **rows: what the scorer reads (`images=` or `codes=`), P * C rows in
      prompt-major order.

  Returns:
    [P, C] float32 scores.
  """
  flat = rerank.score(
    scorer,
    [caption for caption in captions for _ in range(candidates)],
    chunk_size=chunk_size,
    **rows,
  )
  return flat.reshape(len(captions), candidates)


def likelihood_scores(generator, captions, tokens, chunk_size):
  """[P, C, W, W] codes -> [P, C] log p(codes | caption) in nats."""
  prompts, candidates = tokens.shape[:2]
  return candidate_scores(
    generator.scorers[rerank.LIKELIHOOD],
    captions,
    candidates,
    chunk_size,
    codes=tokens.reshape(prompts * candidates, -1),
  )


def clip_scorer(generator, clip: stages.Stage) -> rerank.Scorer:
  """Another CLIP run as a scorer of `generator`'s candidates.

  Raises:
    ValueError: the CLIP scores images of another size than the dVAE's
      (`stages.check_stages_fit`, through the Generator it builds).
  """
  with_clip = Generator(generator.dvae, generator.transformer, clip)
  return with_clip.scorers[rerank.CLIP]


def decoded_candidates(generator, tokens, chunk_size):
  """[P, C, W, W] codes -> [P, C, S, S, 3] uint8 images (the dVAE's)."""
  prompts, candidates = tokens.shape[:2]
  images = generator.decode_codes(
    tokens.reshape(prompts * candidates, *tokens.shape[2:]), chunk_size
  )
  return images.reshape(prompts, candidates, *images.shape[1:])


def image_scores(scorer, captions, images, chunk_size):
  """[P, C, S, S, 3] decoded candidates -> [P, C] CLIP scores."""
  prompts, candidates = images.shape[:2]
  return candidate_scores(
    scorer,
    captions,
    candidates,
    chunk_size,
    images=images.reshape(prompts * candidates, *images.shape[2:]),
  )


class NoPromptsError(ValueError):
  """A `--prompts` range that holds none of a candidate file's prompts."""


def parse_prompts(text: str) -> slice:
  """'64:128' -> slice(64, 128): the candidate file's prompts to rerank.

  Raises:
    ValueError: not two whole numbers START < END, START >= 0.
  """
  try:
    start, end = (int(part) for part in text.split(":"))
  except ValueError:
    start = end = -1
  if not 0 <= start < end:
    raise ValueError(
      f"--prompts={text!r}: write START:END with 0 <= START < END, e.g."
      " 64:128 for a sweep's prompts after the first 64."
    )
  return slice(start, end)


def compare_split(
  generator,
  path: str,
  chunk_size: int,
  other_clips: dict | None = None,
  prompts: slice = slice(None),
) -> dict:
  """Accuracy curves and reranking gains of every scorer on one split.

  Args:
    generator: the pipeline's stages (its dVAE decodes, its transformer
      gives the likelihood).
    path: the split's `evaluation/<split>.npz`.
    chunk_size: candidate rows per compiled call.
    other_clips: {suffix: rerank.Scorer} more CLIP scorers, scored as
      f'clip{suffix}' (':NAME@S' or '@S', see the module docstring).
    prompts: which of the file's prompts to rerank (all by default).

  Raises:
    NoPromptsError: `prompts` selects none of the file's prompts.
  """
  with np.load(path) as saved:
    captions = [str(caption) for caption in saved["captions"]][prompts]
    tokens, clip_scores, holds = (
      saved["tokens"][prompts],
      saved["scores"][prompts],
      saved["holds"][prompts],
    )
  if not captions:
    raise NoPromptsError(
      f"{path} has no prompts in {prompts.start}:{prompts.stop}."
    )
  correct = generation_eval.correct_from_holds(holds)
  likelihood = likelihood_scores(generator, captions, tokens, chunk_size)
  scorers = {
    "clip": clip_scores,
    "likelihood": likelihood,
    "both": standardised(clip_scores) + standardised(likelihood),
  }
  if other_clips:
    # Decoded once, scored by every other CLIP.
    images = decoded_candidates(generator, tokens, chunk_size)
    for name, scorer in other_clips.items():
      scorers[f"clip{name}"] = image_scores(
        scorer, captions, images, chunk_size
      )
  counts = generation_eval.candidate_counts(correct.shape[1])
  rows = np.arange(len(correct))
  best_correct = {
    name: correct[rows, generation_eval.best_of_first(scores, counts[-1])]
    for name, scores in scorers.items()
  }
  curves = {
    name: generation_eval.accuracy_curve(correct, scores, counts)
    for name, scores in scorers.items()
  }
  # Single-sample accuracy and "any of N" do not depend on the scorer.
  return {
    "prompts": len(captions),
    "counts": counts,
    "single_sample": curves["clip"]["single_sample"],
    "any_correct": curves["clip"]["any_correct"],
    "reranked": {name: curve["reranked"] for name, curve in curves.items()},
    "gain": {
      name: reranking_gain(correct, best) for name, best in best_correct.items()
    },
    # Each scorer's pick against CLIP's, prompt by prompt.
    "against_clip": {
      name: paired_counts(best_correct[name], best_correct["clip"])
      for name in scorers
      if name != "clip"
    },
  }


def print_split(split: str, result: dict) -> None:
  percent = lambda value: f"{100 * value:5.1f}%"  # noqa: E731
  names = list(result["reranked"])
  print(
    f"\n{split}: {result['prompts']} prompts, one sample"
    f" {percent(result['single_sample'])}"
  )
  width = max(12, *(len(name) + 2 for name in names))
  print(
    "    N " + "".join(f"{name:>{width}}" for name in names) + "    any of N"
  )
  for i, count in enumerate(result["counts"]):
    row = "".join(
      f"{percent(result['reranked'][n][i]):>{width}}" for n in names
    )
    print(f"{count:5d} {row}      {percent(result['any_correct'][i])}")
  for name in names:
    mean, error = result["gain"][name]
    print(
      f"  {name}: best of {result['counts'][-1]} minus one sample"
      f" {100 * mean:+.1f} +- {100 * error:.1f} points (standard error)"
    )
  for name, (wins, losses, p_value) in result["against_clip"].items():
    print(
      f"  {name} against clip, best of {result['counts'][-1]}: right where"
      f" clip is wrong on {wins} prompts, the reverse on {losses}"
      f" (exact McNemar p = {p_value:.3f})"
    )


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--chunk_size", type=int, default=64)
  parser.add_argument(
    "--clip_workdir",
    action="append",
    default=[],
    help="a finished CLIP run to compare as scorer 'clip:<its name>'"
    " (repeatable)",
  )
  parser.add_argument(
    "--image_shift",
    type=int,
    action="append",
    default=[],
    help="also score with the pipeline's CLIP (and each --clip_workdir's) at"
    " this image shift in pixels, as 'clip@S' (repeatable)",
  )
  parser.add_argument(
    "--candidates",
    default="",
    help="judged candidates to rerank, a path with {split} (default: the"
    " evaluation's, ROOT/evaluation/{split}.npz; e.g. a sampling sweep's,"
    " ROOT/sampling_sweep/{split}/temperature=0.8.npz: held-back prompts)",
  )
  parser.add_argument(
    "--prompts",
    default="",
    help="START:END, rerank only these prompts of each split's file (e.g."
    " 64:128: a 128-prompt sweep's prompts that a 64-prompt one did not"
    " have)",
  )
  args = parser.parse_args(argv)
  try:
    prompts = parse_prompts(args.prompts) if args.prompts else slice(None)
  except ValueError as error:
    print(error, file=sys.stderr)
    return 2
  pattern = args.candidates or os.path.join(
    args.workdir, generation_eval.EVALUATION_DIR, "{split}.npz"
  )
  if "{split}" not in pattern:
    print(
      f"--candidates={pattern!r} has no {{split}}; write e.g."
      " ROOT/sampling_sweep/{split}/temperature=0.8.npz.",
      file=sys.stderr,
    )
    return 1
  splits = [
    split
    for split in generation_eval.SPLITS
    if os.path.isfile(pattern.format(split=split))
  ]
  if not splits:
    print(
      f"No judged candidates at {pattern}; train and evaluate first: "
      + generation_eval.TRAIN_COMMAND.format(root=args.workdir),
      file=sys.stderr,
    )
    return 1
  generator = Generator.from_workdir(args.workdir)
  clips = {
    os.path.basename(os.path.normpath(workdir)): clip_scorer(
      generator, stages.load_stage(workdir, "clip")
    )
    for workdir in args.clip_workdir
  }
  other_clips = {}
  for shift in args.image_shift:
    other_clips[f"@{shift}"] = dataclasses.replace(
      generator.scorers[rerank.CLIP], image_shift=shift
    )
  for name, scorer in clips.items():
    for shift in args.image_shift or [0]:
      other_clips[f":{name}@{shift}"] = dataclasses.replace(
        scorer, image_shift=shift
      )
  for split in splits:
    path = pattern.format(split=split)
    try:
      result = compare_split(
        generator, path, args.chunk_size, other_clips, prompts
      )
    except NoPromptsError as error:
      print(error, file=sys.stderr)
      return 2
    print_split(split, result)
  return 0


if __name__ == "__main__":
  sys.exit(main())
