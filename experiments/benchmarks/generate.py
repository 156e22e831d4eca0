"""Times the whole Generator call: keep 8 of 64 candidates for one prompt.

One call samples `num_candidates` code grids with the transformer's KV
cache, scores them with CLIP, and decodes the best `keep` with the dVAE
(`dalle_jax.generator`). The first call compiles the jitted chunk (sample +
score) and the decoder; the script reports it separately, then calls again
with new prompts and seeds (no recompilation: one chunk shape serves all)
and reports the median seconds per prompt.

The models are those of a finished pipeline root (`--workdir`, the default
pipeline writes one), or, without `--workdir`, randomly initialised models
of the stages' configs for `--variant` (shapes64: the CPU Shapes sizes),
written to a temporary directory: the time does not depend on the weights.

Run from the repository root:

  python -m experiments.benchmarks.generate                  # shapes64 sizes
  python -m experiments.benchmarks.generate --workdir runs/default_pipeline
  python -m experiments.benchmarks.generate --variant tiny --repeats 1  # smoke

Issue 5's target: under 10 seconds per prompt for 8 of 64 candidates with
the CPU Shapes models, after compilation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from dalle_jax import checkpoint, sharding
from dalle_jax import config as config_lib
from dalle_jax.data import shapes
from dalle_jax.generator import Generator
from dalle_jax.models.clip import CLIP
from dalle_jax.models.dvae import DVAE
from dalle_jax.models.transformer import Transformer
from dalle_jax.tasks import clip as clip_task
from dalle_jax.tasks import dvae as dvae_task
from dalle_jax.tasks import transformer as transformer_task
from dalle_jax.tokenizer import train_tokenizer

CONFIGS = os.path.join(os.path.dirname(config_lib.__file__), "configs")
TARGET_SECONDS = 10.0
PROMPTS = (
  "a red circle above a blue square",
  "a small green triangle",
  "a large yellow plus to the left of a white star",
  "a purple square",
)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--workdir", default=None, help="a finished pipeline root (dvae/, ...)"
  )
  parser.add_argument(
    "--variant",
    default="shapes64",
    help="without --workdir: the stage configs' variant for random models",
  )
  parser.add_argument("--num_candidates", type=int, default=64)
  parser.add_argument("--keep", type=int, default=8)
  parser.add_argument(
    "--chunk_size", type=int, default=None, help="default: the Generator's"
  )
  parser.add_argument("--repeats", type=int, default=3)
  return parser.parse_args(argv)


def _captions(count: int, image_size: int) -> list[str]:
  return [
    shapes.generate_example("train", i, image_size, 0)["caption"]
    for i in range(count)
  ]


def _export(workdir: str, config, params, captions: list[str] | None) -> None:
  checkpoint.check_or_write_config(workdir, config)
  checkpoint.export_params(workdir, sharding.unbox(params))
  if captions is not None:
    train_tokenizer(
      captions,
      os.path.join(workdir, "tokenizer.model"),
      config.tokenizer.vocab_size,
      text_length=config.data.text_length,
      vocab_size_is_upper_bound=True,
    )


def random_stage_dirs(
  root: str,
  variant: str,
  dvae_overrides: dict | None = None,
  transformer_overrides: dict | None = None,
) -> str:
  """Writes ROOT/{dvae,transformer,clip} as training runs leave them.

  Each stage's config is its config file's `variant` (plus overrides), its
  parameters are the model's random initialisation, and the text stages
  get a BPE tokenizer trained on Shapes captions.

  Returns:
    root, ready for `Generator.from_workdir`.
  """
  rng = jax.random.key(0)
  dvae_config = config_lib.load_config(
    os.path.join(CONFIGS, f"dvae.py:variant={variant}"), dvae_overrides or {}
  )
  size = dvae_config.data.image_size
  captions = _captions(256, size)
  model = DVAE(dvae_task.model_config(dvae_config))
  images = jnp.zeros((1, size, size, 3), jnp.uint8)
  params = jax.jit(model.init)(rng, images, rng, 1.0)["params"]
  _export(os.path.join(root, "dvae"), dvae_config, params, None)

  prior_config = config_lib.load_config(
    os.path.join(CONFIGS, f"transformer.py:variant={variant}"),
    {
      "dvae.workdir": os.path.join(root, "dvae"),
      **(transformer_overrides or {}),
    },
  )
  prior = transformer_task.model_config(prior_config)
  text = jnp.zeros((1, prior.text_length), jnp.int32)
  codes = jnp.zeros((1, prior.num_image_tokens), jnp.int32)
  params = jax.jit(Transformer(prior).init)(rng, text, codes)["params"]
  _export(os.path.join(root, "transformer"), prior_config, params, captions)

  clip_config = config_lib.load_config(
    os.path.join(CONFIGS, f"clip.py:variant={variant}")
  )
  model = CLIP(clip_task.model_config(clip_config))
  pixels = jnp.zeros((1, size, size, 3), jnp.float32)
  text = jnp.zeros((1, clip_config.data.text_length), jnp.int32)
  params = jax.jit(model.init)(rng, pixels, text)["params"]
  _export(os.path.join(root, "clip"), clip_config, params, captions)
  return root


def time_generator(generator: Generator, args) -> dict:
  """Seconds of the first (compiling) call and the median of the others."""
  options = dict(
    num_candidates=args.num_candidates, keep=args.keep, progress=False
  )
  if args.chunk_size is not None:
    options["chunk_size"] = args.chunk_size
  start = time.perf_counter()
  out = generator([PROMPTS[0]], seed=0, **options)
  first = time.perf_counter() - start
  seconds = []
  for repeat in range(args.repeats):
    prompt = PROMPTS[(repeat + 1) % len(PROMPTS)]
    start = time.perf_counter()
    out = generator([prompt], seed=repeat + 1, **options)
    # The outputs are numpy arrays: the call has already waited for them.
    seconds.append(time.perf_counter() - start)
  return {
    "first": first,
    "median": statistics.median(seconds),
    "all": seconds,
    "images_shape": out.images.shape,
    "finite_scores": bool(np.all(np.isfinite(out.scores))),
  }


def main(argv=None) -> dict:
  args = parse_args(argv)
  with tempfile.TemporaryDirectory() as temporary:
    if args.workdir is None:
      root = random_stage_dirs(temporary, args.variant)
      source = f"random {args.variant} models"
    else:
      root, source = args.workdir, args.workdir
    generator = Generator.from_workdir(root)
    result = time_generator(generator, args)
  print(
    f"backend={jax.default_backend()} devices={jax.device_count()}"
    f" models={source} image={generator.image_size}px"
    f" grid={generator.grid_side}x{generator.grid_side}"
    f" scorer={generator.default_scorer}"
  )
  print(
    f"keep {args.keep} of {args.num_candidates} candidates, one prompt:"
    f" first call (compiles) {result['first']:.2f} s;"
    f" after compilation median {result['median']:.2f} s"
    f" over {args.repeats} prompts"
    f" ({', '.join(f'{s:.2f}' for s in result['all'])})"
  )
  verdict = "met" if result["median"] < TARGET_SECONDS else "MISSED"
  print(f"target < {TARGET_SECONDS:.0f} s per prompt: {verdict}")
  return result


if __name__ == "__main__":
  main()
