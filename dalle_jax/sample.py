"""Command line: prompts -> a labelled PNG grid of reranked samples.

  python -m dalle_jax.sample --workdir runs/pipeline \
    --prompt "a red circle above a blue square" --out grid.png
  python -m dalle_jax.sample --dvae runs/dvae --transformer runs/transformer \
    [--clip runs/clip] --prompt "..." [--prompt "..."] --num-candidates 64 \
    --keep 8 [--temperature 1] [--top-k K] [--top-p P] [--seed 0] \
    [--no-rerank] [--scorer auto|clip|likelihood|none] [--out grid.png]

`--workdir ROOT` reads ROOT/dvae, ROOT/transformer and, if present,
ROOT/clip (see `dalle_jax.stages`). The grid has one row per prompt, best
first; under each row its prompt, and under each image its score. Bad
arguments and unusable work directories end with a one-line error and exit
code 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

import numpy as np

from dalle_jax import images as images_lib

# Tiles are enlarged (nearest neighbour) to at least this many pixels, so
# small images stay visible next to their labels.
MIN_TILE_PIXELS = 128
USAGE_ERROR = 2
_SCORERS = ("auto", "clip", "likelihood", "none")


class UsageError(Exception):
  """A bad command line; main() prints it on one line and exits with 2."""


class _Parser(argparse.ArgumentParser):
  def error(self, message):
    raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(
    prog="python -m dalle_jax.sample",
    description="Sample images for prompts, rerank them and write a grid.",
  )
  stages = parser.add_argument_group(
    "trained stages: --workdir ROOT, or --dvae and --transformer [--clip]"
  )
  stages.add_argument(
    "--workdir", help="pipeline root holding dvae/, transformer/, clip/"
  )
  stages.add_argument("--dvae", help="work directory of the dVAE run")
  stages.add_argument("--transformer", help="work directory of the prior")
  stages.add_argument("--clip", help="work directory of a CLIP run")
  parser.add_argument(
    "--prompt", action="append", required=True, help="repeat for more rows"
  )
  parser.add_argument(
    "--num-candidates",
    type=int,
    default=64,
    help="images sampled per prompt, then reranked (default: %(default)s)",
  )
  parser.add_argument(
    "--keep",
    type=int,
    default=8,
    help="best candidates shown per prompt (default: %(default)s)",
  )
  parser.add_argument(
    "--temperature",
    type=float,
    default=1.0,
    help="> 0; 1 (the default) samples the model's distribution; the"
    " Shapes evaluation uses 0.8",
  )
  parser.add_argument(
    "--top-k", type=int, default=None, help=">= 1: sample from the k likeliest"
  )
  parser.add_argument(
    "--top-p",
    type=float,
    default=None,
    help="in (0, 1]: sample from the smallest set holding this probability",
  )
  parser.add_argument(
    "--seed",
    type=int,
    default=0,
    help="the same seed gives the same images, whatever --chunk-size"
    " (default: %(default)s)",
  )
  parser.add_argument(
    "--no-rerank",
    action="store_true",
    help="keep the first candidates in sampling order",
  )
  parser.add_argument(
    "--scorer",
    choices=_SCORERS,
    default="auto",
    help="auto (the default): clip when a CLIP is loaded, else likelihood",
  )
  parser.add_argument(
    "--clip-image-shift",
    type=int,
    default=None,
    help=">= 0: CLIP scores each candidate averaged over its copies moved"
    " by up to this many pixels; 0 scores it once (default: the"
    " Generator's, which the Shapes evaluation also uses)",
  )
  parser.add_argument(
    "--chunk-size",
    type=int,
    default=None,
    help="candidates per compiled call (default: the generator's)",
  )
  parser.add_argument(
    "--out", default="samples.png", help="PNG to write (default: %(default)s)"
  )
  return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  """Parses and cross-checks the command line.

  Raises:
    UsageError: naming the bad argument.
  """
  args = _parser().parse_args(argv)
  if args.workdir and (args.dvae or args.transformer or args.clip):
    raise UsageError(
      "pass either --workdir ROOT or --dvae/--transformer/--clip, not both"
    )
  if not args.workdir and not (args.dvae and args.transformer):
    raise UsageError(
      "pass --workdir ROOT (with dvae/ and transformer/ inside), or both"
      " --dvae and --transformer"
    )
  if args.clip_image_shift is not None and args.clip_image_shift < 0:
    raise UsageError(
      f"--clip-image-shift={args.clip_image_shift} must be >= 0 (pixels;"
      " 0 scores each candidate once)"
    )
  return args


def labelled_grid(samples, scale: int | None = None) -> np.ndarray:
  """One labelled row per prompt: images, the prompt, then each score.

  Args:
    samples: a `generator.Samples` ([P, K, S, S, 3] uint8 images).
    scale: tile enlargement; None enlarges tiles to at least
      MIN_TILE_PIXELS.

  Returns:
    [H, W, 3] uint8.
  """
  side = samples.images.shape[2]
  scale = scale or max(1, math.ceil(MIN_TILE_PIXELS / side))
  rows = []
  for prompt, row_images, row_scores in zip(
    samples.prompts, samples.images, samples.scores, strict=True
  ):
    tiles = row_images.repeat(scale, axis=1).repeat(scale, axis=2)
    row = images_lib.make_grid(tiles[None])
    # The prompt is the same for the whole row: one line, starting left.
    row = images_lib.add_labels(row, [prompt or "(no prompt)"], tiles.shape[2])
    scores = [
      "no score" if np.isnan(score) else f"{samples.scorer} {score:.2f}"
      for score in row_scores
    ]
    rows.append(images_lib.add_labels(row, scores, tiles.shape[2]))
  return np.concatenate(rows, axis=0)


def run(args: argparse.Namespace) -> str:
  """Loads the stages, samples, writes the grid; returns its path."""
  # Imported here: jax and the models load in seconds, and a bad command
  # line should fail without waiting for them.
  from dalle_jax import generator as generator_lib

  options = dict(
    num_candidates=args.num_candidates,
    keep=args.keep,
    temperature=args.temperature,
    top_k=args.top_k,
    top_p=args.top_p,
    seed=args.seed,
    rerank=not args.no_rerank,
    scorer=None if args.scorer == "none" else args.scorer,
  )
  if args.chunk_size is not None:
    options["chunk_size"] = args.chunk_size
  generator_lib.check_options(**options)  # before the slow model loading
  shift = {}
  if args.clip_image_shift is not None:
    shift["clip_image_shift"] = args.clip_image_shift
  if args.workdir:
    generator = generator_lib.Generator.from_workdir(args.workdir, **shift)
  else:
    generator = generator_lib.Generator.from_workdirs(
      args.dvae, args.transformer, args.clip, **shift
    )
  samples = generator(args.prompt, **options)
  path = images_lib.save_png(args.out, labelled_grid(samples))
  print(
    f"wrote {path}: {len(samples.prompts)} prompt(s) x"
    f" {samples.images.shape[1]} image(s), best first, scored by"
    f" {samples.scorer or 'nothing'}"
  )
  return path


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry point; returns the process exit code."""
  prog = "python -m dalle_jax.sample"
  try:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    run(args)
  except (UsageError, ValueError, FileNotFoundError) as error:
    message = " ".join(str(error).split())  # always one line
    print(f"{prog}: error: {message}", file=sys.stderr)
    return USAGE_ERROR
  return 0


if __name__ == "__main__":
  sys.exit(main())
