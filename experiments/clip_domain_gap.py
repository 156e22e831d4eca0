"""Does CLIP tell shapes apart on the dVAE's reconstructions as on originals?

CLIP trains on rendered Shapes images, but it reranks candidates that the
dVAE decoded. This measures that gap without sampling anything: for the
first N examples of a split, each image is scored by a pipeline's CLIP
against its canonical caption and against the same caption with one
object's shape swapped (`shapes.swapped_caption`, the hard negative of
CLIP's training), once on the original rendering and once on its dVAE
reconstruction (encode, then decode the argmax codes). The printed pair
accuracy is the share of images whose own caption scores higher, per shape
that the negative replaced. A row "judge-correct reconstructions" keeps
only the reconstructions the Shapes judge finds correct, so a drop there
is CLIP's, not the dVAE's.

  python -m experiments.clip_domain_gap --workdir runs/default

`--clip_workdir runs/NAME` measures another finished CLIP run instead of
the pipeline's (on the same images and the pipeline's dVAE), so a CLIP
variant's reading of decoded shapes is compared without a new pipeline.

Measured (2026-11-22) on the default run `runs/default_s7` (CLIP with one
hard negative, 512 examples per split), pair accuracy on originals /
reconstructions / judge-correct reconstructions: validation, plus swapped
100 / 85.5 / 85.2% (circle, square, triangle 99-100% everywhere);
zero_shot, plus swapped 95.2 / 70.6 / 75.3%, square 91.6 / 84.9 / 87.9%,
all 94.5 / 86.5 / 89.2%. CLIP tells a rendered plus from other shapes but
not a decoded one, even one the judge accepts: the gap is the plus's, and
it is the reranker's error in the default run's evaluation (every wrong
CLIP pick there is a prompt with a plus).

Each split ends with its reconstructions judged correct per colour-shape
pair (an image of two pairs counts for both), hardest first, which shows
where the dVAE itself loses held-out pairs.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from dalle_jax import evaluate, rerank, stages
from dalle_jax.data import shapes
from dalle_jax.generator import Generator
from experiments import rerank_scorers


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, help="a finished pipeline")
  parser.add_argument(
    "--splits", nargs="+", default=["validation", "zero_shot"]
  )
  parser.add_argument("--examples", type=int, default=512)
  parser.add_argument("--chunk_size", type=int, default=64)
  parser.add_argument(
    "--clip_workdir",
    help="a finished CLIP run to measure instead of the pipeline's",
  )
  return parser.parse_args(argv)


def swapped_shape(caption: str, negative: str) -> str:
  """The shape word of `caption` that `negative` replaced."""
  for word, other in zip(caption.split(), negative.split(), strict=True):
    if word != other:
      return word.strip(",")
  raise ValueError(f"{negative!r} swaps nothing in {caption!r}")


def split_examples(split: str, count: int, image_size: int, seed: int):
  """(captions, shape-swapped captions, [N, S, S, 3] uint8 renderings)."""
  captions, negatives, images = [], [], []
  rng = np.random.default_rng(0)
  for index in range(count):
    example = shapes.generate_example(split, index, image_size, seed)
    caption = example["canonical_caption"]
    captions.append(caption)
    negatives.append(shapes.swapped_caption(caption, rng, "shape"))
    images.append(example["image"])
  return captions, negatives, np.stack(images)


def share(wins: np.ndarray) -> str:
  """'93.8%' for the share of True in `wins`; '-' when it is empty."""
  return f"{wins.mean():.1%}" if wins.size else "-"


def pair_wins(scorer, captions, negatives, images, chunk_size) -> np.ndarray:
  """[N] bool: the image's own caption outscores its swapped one."""
  own = rerank.score(scorer, captions, images=images, chunk_size=chunk_size)
  swapped = rerank.score(
    scorer, negatives, images=images, chunk_size=chunk_size
  )
  return own > swapped


def main(argv=None) -> int:
  args = parse_args(argv)
  generator = Generator.from_workdir(args.workdir)
  if args.clip_workdir:
    clip = stages.load_stage(args.clip_workdir, "clip")
    scorer = rerank_scorers.clip_scorer(generator, clip)
  elif generator.clip is not None:
    clip, scorer = generator.clip, generator.scorers[rerank.CLIP]
  else:
    print(
      f"{args.workdir} has no CLIP stage to measure; pass --clip_workdir.",
      file=sys.stderr,
    )
    return 1
  seed = clip.run_config.data.shapes.seed
  for split in args.splits:
    captions, negatives, originals = split_examples(
      split, args.examples, generator.image_size, seed
    )
    codes = generator.encode_images(originals, args.chunk_size)
    reconstructions = generator.decode_codes(codes, args.chunk_size)
    verdicts = evaluate.judge_verdicts(captions, reconstructions)
    judged_correct = np.all(verdicts != 0, axis=1)
    wins = {
      name: pair_wins(scorer, captions, negatives, images, args.chunk_size)
      for name, images in (
        ("originals", originals),
        ("reconstructions", reconstructions),
      )
    }
    replaced = np.array(
      [swapped_shape(c, n) for c, n in zip(captions, negatives, strict=True)]
    )
    print(
      f"\n{split}: {args.examples} examples; reconstructions judged correct"
      f" {judged_correct.mean():.1%}"
    )
    print(
      f"{'swapped shape':14s} {'examples':>8s} {'originals':>10s}"
      f" {'reconstructions':>16s} {'judge-correct reconstructions':>30s}"
    )
    for shape in (*shapes.SHAPES, "all"):
      rows = (
        replaced == shape if shape != "all" else np.ones_like(replaced, bool)
      )
      kept = rows & judged_correct
      print(
        f"{shape:14s} {rows.sum():8d} {share(wins['originals'][rows]):>10s}"
        f" {share(wins['reconstructions'][rows]):>16s}"
        f" {share(wins['reconstructions'][kept]):>23s} of {kept.sum():4d}"
      )
    print_pair_table(captions, judged_correct)
  return 0


def pair_table(captions, judged_correct: np.ndarray) -> dict[str, tuple]:
  """Per colour-shape pair: (images showing it, share judged correct).

  Hardest first; an image of two pairs counts for both.
  """
  table = {
    pair: (len(rows), float(judged_correct[rows].mean()))
    for pair, rows in evaluate.captions_by_pair(captions).items()
  }
  return dict(sorted(table.items(), key=lambda item: (item[1][1], item[0])))


def print_pair_table(captions, judged_correct: np.ndarray) -> None:
  header = "reconstructions judged correct"
  print(f"\n{'colour-shape pair':18s} {'examples':>8s} {header}")
  for pair, (count, correct) in pair_table(captions, judged_correct).items():
    print(f"{pair:18s} {count:8d} {correct:>{len(header)}.1%}")


if __name__ == "__main__":
  sys.exit(main())
