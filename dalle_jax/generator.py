"""Text to images: sample candidates, decode them, keep the best (paper §2.6).

`Generator` holds the trained stages (see `stages.py` for the work
directories they come from). For each prompt the transformer samples
`num_candidates` grids of image codes, a scorer (`rerank.py`: CLIP
similarity when a CLIP is loaded, else the transformer's own likelihood)
rates them, and the best `keep` are decoded by the dVAE, best first.

`Generator.from_workdir(ROOT)` reads the layout the end-to-end pipeline
writes:

  ROOT/dvae/         the dVAE run (stage 1)
  ROOT/transformer/  the transformer run trained on ROOT/dvae's codes
  ROOT/clip/         optional: a CLIP run on images of the dVAE's size

Candidates are folded into the batch: row (p, c) is candidate c of prompt p
and draws from `sampling.row_keys(seed, p, c)`, so a seed gives the same
images whatever the chunk size or the other prompts. Rows are sampled and
scored in jitted chunks of one fixed size (the last chunk padded), so one
compilation serves any number of prompts and candidates and device memory
is bounded by the chunk. Only the codes and scores of all candidates stay
on the host; the kept ones are decoded at the end.

Shape letters: P prompts, C candidates per prompt, K kept candidates,
S image side, W code grid side, N = W * W codes, L text length.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import os
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from dalle_jax import rerank as rerank_lib
from dalle_jax import sampling, stages
from dalle_jax.models import transformer as transformer_model
from dalle_jax.models.dvae import DVAE
from dalle_jax.stages import Stage

# The `scorer` argument: AUTO picks CLIP when one is loaded, else the
# likelihood; None scores nothing (NaN scores, only without reranking).
AUTO = "auto"
DEFAULT_CHUNK_SIZE = rerank_lib.DEFAULT_CHUNK_SIZE
_PRIMING_CHANNELS = (1, 3, 4)


@dataclasses.dataclass(frozen=True, eq=False)
class Samples:
  """What a Generator call returns, best first within each prompt.

  Attributes:
    images: [P, K, S, S, 3] uint8 decoded images.
    scores: [P, K] float32 scores of the images (higher is better), or NaN
      when the call scored nothing (scorer=None).
    tokens: [P, K, W, W] int32 image codes the images were decoded from.
    prompts: the P prompts, in order.
    scorer: the scorer's name ('clip' or 'likelihood'), or None.
  """

  images: np.ndarray
  scores: np.ndarray
  tokens: np.ndarray
  prompts: tuple[str, ...]
  scorer: str | None


@dataclasses.dataclass(frozen=True)
class _Options:
  """The sampling and reranking options of one call; see Generator.__call__.

  Raises:
    ValueError: an option outside its range (names the allowed range).
  """

  num_candidates: int = 64
  keep: int = 8
  temperature: float = 1.0
  top_k: int | None = None
  top_p: float | None = None
  seed: int = 0
  rerank: bool = True
  scorer: str | None = AUTO
  chunk_size: int = DEFAULT_CHUNK_SIZE
  progress: bool = True

  def __post_init__(self):
    _check_int("num_candidates", self.num_candidates, 1, None, "")
    _check_int(
      "keep", self.keep, 1, self.num_candidates, " (num_candidates or fewer)"
    )
    _check_int("chunk_size", self.chunk_size, 1, None, " (rows per call)")
    _check_int("seed", self.seed, 0, None, "")
    sampling.check_settings(self.temperature, self.top_k, self.top_p)


@functools.partial(jax.jit, static_argnums=0)
def _decode(dvae_config, params, grids):
  """[B, W, W] int32 codes -> [B, S, S, 3] uint8 images."""
  return DVAE(dvae_config).apply({"params": params}, grids, method=DVAE.decode)


@functools.partial(jax.jit, static_argnums=0)
def _encode(dvae_config, params, images):
  """[B, S, S, 3] uint8 images -> [B, W, W] int32 argmax codes."""
  return DVAE(dvae_config).apply({"params": params}, images, method=DVAE.encode)


# Configs and settings are static (hashable frozen dataclasses and Python
# numbers), so Generators of equal configs share the compiled programs.
@functools.partial(
  jax.jit,
  static_argnames=(
    "prior_config",
    "dvae_config",
    "scorer_name",
    "scorer_config",
    "scorer_image_shift",
    "temperature",
    "top_k",
    "top_p",
  ),
)
def _sample_and_score(
  prior_params,
  dvae_params,
  scorer_params,
  text_tokens,
  scorer_tokens,
  prompt_ids,
  candidate_ids,
  base_key,
  prime_codes,
  *,
  prior_config,
  dvae_config,
  scorer_name,
  scorer_config,
  scorer_image_shift,
  temperature,
  top_k,
  top_p,
):
  """Samples one chunk of candidate rows and scores them.

  Args:
    prior_params, dvae_params, scorer_params: the models' parameters
      (scorer_params None without a scorer).
    text_tokens: [B, L] int32, each row's prompt for the transformer.
    scorer_tokens: [B, L'] int32, each row's prompt for the scorer.
    prompt_ids, candidate_ids: [B] int32, what each row is (its key).
    base_key: the PRNG key of the seed.
    prime_codes: None, or [B, R * W] int32 codes of the first R grid rows.
    prior_config, dvae_config: the models' hyperparameters.
    scorer_name: a name of rerank.SCORER_NAMES, or None to score nothing.
    scorer_config: the scorer's model hyperparameters (None without one).
    scorer_image_shift: the scorer's `rerank.Scorer.image_shift`.
    temperature, top_k, top_p: sampling settings.

  Returns:
    ([B, N] int32 codes, [B] float32 scores, NaN without a scorer).
  """
  first_logits, cache = transformer_model.prefill(
    prior_config, prior_params, text_tokens
  )
  codes = sampling.sample_image_codes(
    functools.partial(
      transformer_model.decode_step, prior_config, prior_params
    ),
    first_logits,
    cache,
    sampling.row_keys(base_key, prompt_ids, candidate_ids),
    prior_config.num_image_tokens,
    temperature,
    top_k,
    top_p,
    prime_codes=prime_codes,
  )
  if scorer_name is None:
    return codes, jnp.full(codes.shape[:1], jnp.nan, jnp.float32)
  images = None
  if scorer_name == rerank_lib.CLIP:
    side = prior_config.grid_side
    images = _decode(dvae_config, dvae_params, codes.reshape(-1, side, side))
  scores = rerank_lib.score_batch(
    scorer_name,
    scorer_config,
    scorer_params,
    scorer_tokens,
    images,
    codes,
    scorer_image_shift,
  )
  return codes, scores


def check_options(**options) -> None:
  """Checks `Generator.__call__` keyword options without loading a model.

  Raises:
    ValueError: an option outside its range; TypeError: an unknown option.
  """
  _Options(**options)


def _check_int(name: str, value, low: int, high: int | None, hint: str):
  if (
    not isinstance(value, numbers.Integral)
    or isinstance(value, bool)
    or value < low
    or (high is not None and value > high)
  ):
    allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
    raise ValueError(f"{name}={value!r} must be an integer {allowed}{hint}.")


def _checked_prompts(prompts) -> tuple[str, ...]:
  if isinstance(prompts, str):
    raise TypeError(
      f"prompts must be a list of strings, got one string {prompts!r};"
      " wrap it: [prompt]."
    )
  prompts = tuple(prompts)
  if not prompts:
    raise ValueError(
      "prompts is empty; pass at least one prompt string (an empty string"
      " samples without a caption)."
    )
  others = [p for p in prompts if not isinstance(p, str)]
  if others:
    raise TypeError(
      f"prompts must all be strings; got {others[0]!r} of type"
      f" {type(others[0]).__name__}."
    )
  return prompts


class Generator:
  """Prompts -> reranked images, from trained dVAE, transformer and CLIP.

  Build it with `Generator.from_workdirs(dvae=..., transformer=...,
  clip=...)` or `Generator.from_workdir(root)`, then call it:

    out = generator(["a red circle above a blue square"], num_candidates=64,
                    keep=8, temperature=1.0, top_k=None, top_p=None, seed=0)
    out.images  # [P, 8, S, S, 3] uint8, best first

  `clip_image_shift` (pixels, default `rerank.DEFAULT_CLIP_IMAGE_SHIFT`)
  makes CLIP score each candidate averaged over its copies moved by that
  many pixels (`tasks.clip.score`); 0 scores each image once, as the paper.

  Attributes:
    dvae, transformer, clip: the loaded Stages (clip may be None).
    scorers: the available `rerank.Scorer`s by name: 'likelihood' always,
      'clip' when a CLIP is loaded.
  """

  def __init__(
    self,
    dvae: Stage,
    transformer: Stage,
    clip: Stage | None,
    clip_image_shift: int = rerank_lib.DEFAULT_CLIP_IMAGE_SHIFT,
  ):
    stages.check_stages_fit(dvae, transformer, clip)
    stages.warn_if_other_dvae(dvae, transformer)
    self.dvae, self.transformer, self.clip = dvae, transformer, clip
    self.scorers = {
      rerank_lib.LIKELIHOOD: rerank_lib.Scorer(
        rerank_lib.LIKELIHOOD,
        transformer.model_config,
        transformer.params,
        transformer.tokenizer,
      )
    }
    if clip is not None:
      self.scorers[rerank_lib.CLIP] = rerank_lib.Scorer(
        rerank_lib.CLIP,
        clip.model_config,
        clip.params,
        clip.tokenizer,
        clip_image_shift,
      )

  @classmethod
  def from_workdirs(
    cls,
    dvae: str,
    transformer: str,
    clip: str | None = None,
    clip_image_shift: int = rerank_lib.DEFAULT_CLIP_IMAGE_SHIFT,
  ) -> Generator:
    """Loads the stages from their work directories.

    Args:
      dvae: work directory of a finished dVAE run.
      transformer: work directory of a finished transformer run trained on
        that dVAE's codes.
      clip: None, or the work directory of a finished CLIP run.
      clip_image_shift: see the class docstring.

    Raises:
      FileNotFoundError: a stage's config.json, params/ or tokenizer.model
        is missing (names it and the command that trains the stage).
      ValueError: a directory holds another stage's run, or the stages were
        trained with settings that do not fit (see
        `stages.check_stages_fit`).
    """
    return cls(
      stages.load_stage(dvae, "dvae"),
      stages.load_stage(transformer, "transformer"),
      None if clip is None else stages.load_stage(clip, "clip"),
      clip_image_shift,
    )

  @classmethod
  def from_workdir(
    cls,
    root: str,
    clip_image_shift: int = rerank_lib.DEFAULT_CLIP_IMAGE_SHIFT,
  ) -> Generator:
    """Loads `root/dvae`, `root/transformer` and, if present, `root/clip`.

    `clip_image_shift`: see the class docstring.

    Raises:
      FileNotFoundError: `root` is not a directory, or a stage is missing
        (see `from_workdirs`).
    """
    if not os.path.isdir(root):
      raise FileNotFoundError(
        f"{root!r} is not a directory; a pipeline root holds the runs dvae/,"
        " transformer/ and optionally clip/."
      )
    clip = os.path.join(root, "clip")
    return cls.from_workdirs(
      os.path.join(root, "dvae"),
      os.path.join(root, "transformer"),
      clip if os.path.isdir(clip) else None,
      clip_image_shift,
    )

  @property
  def image_size(self) -> int:
    """S, the side of the images in pixels."""
    return self.dvae.model_config.image_size

  @property
  def grid_side(self) -> int:
    """W, the side of the code grid."""
    return self.transformer.model_config.grid_side

  @property
  def default_scorer(self) -> str:
    """'clip' when a CLIP is loaded, else 'likelihood'."""
    if rerank_lib.CLIP in self.scorers:
      return rerank_lib.CLIP
    return rerank_lib.LIKELIHOOD

  def __call__(
    self,
    prompts: Sequence[str],
    num_candidates: int = 64,
    keep: int = 8,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    rerank: bool = True,
    scorer: str | None = AUTO,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
  ) -> Samples:
    """Samples candidates for each prompt and keeps the best.

    Args:
      prompts: P prompt strings. An empty string samples with no caption;
        words the tokenizer never saw are encoded as unknown pieces.
      num_candidates: C >= 1 images sampled per prompt.
      keep: K in [1, C] images returned per prompt.
      temperature: finite number > 0; 1 samples the model's distribution.
      top_k: None, or sample among the k most likely codes (k >= 1).
      top_p: None, or nucleus sampling with mass in (0, 1].
      seed: integer >= 0; candidate c of prompt p always gets the same
        key, so the same seed gives the same images for any chunk_size.
      rerank: True returns the K best by score; False the first K
        candidates in sampling order (still scored, unless scorer=None).
      scorer: 'auto' ('clip' when a CLIP is loaded, else 'likelihood'),
        'clip', 'likelihood', or None to score nothing (scores are then
        NaN; needs rerank=False).
      chunk_size: candidate rows sampled per compiled call; the program
        compiles once per chunk size and sampling settings.
      progress: show a progress bar when there is more than one chunk.

    Returns:
      Samples, best first within each prompt.

    Raises:
      ValueError: a setting outside its range (names the allowed range).
      TypeError: prompts is a single string or holds non-strings.
    """
    options = _Options(
      num_candidates, keep, temperature, top_k, top_p, seed, rerank, scorer,
      chunk_size, progress,
    )  # fmt: skip
    options = self._resolved(options)
    return self._generate(_checked_prompts(prompts), None, options)

  def complete(
    self,
    prompts: Sequence[str],
    images: np.ndarray,
    rows: int,
    **options,
  ) -> Samples:
    """Completes images: keeps their top code rows, samples the rest.

    Each image is encoded by the dVAE; the first `rows` rows of its W x W
    code grid are fed to the transformer unchanged and the others sampled
    (the paper's image-to-image completions, Fig. 14).

    Args:
      prompts: P prompt strings.
      images: [P, H, W', C] uint8, one per prompt. C may be 3 (RGB), 1 or
        missing (grayscale, repeated to RGB) or 4 (RGBA, alpha ignored).
        Images that are not S x S are resized (bicubic) to S x S with a
        warning naming the expected shape.
      rows: code rows to keep, in [0, W]; 0 ignores the images, W keeps
        them whole.
      **options: the keyword arguments of `__call__` (num_candidates,
        keep, temperature, top_k, top_p, seed, rerank, scorer, chunk_size,
        progress), with the same defaults.

    Returns:
      Samples, best first within each prompt.

    Raises:
      ValueError: bad settings (see `__call__`), rows outside [0, W], or
        images that are not uint8 [P, H, W', C] with C in (1, 3, 4).
    """
    options = self._resolved(_Options(**options))
    prompts = _checked_prompts(prompts)
    side = self.grid_side
    _check_int("rows", rows, 0, side, " (code rows of each image to keep)")
    pixels = self._priming_pixels(images, len(prompts))
    codes = self.encode_images(pixels, options.chunk_size)
    prime = codes[:, :rows].reshape(len(prompts), rows * side) if rows else None
    return self._generate(prompts, prime, options)

  def encode_images(
    self, images: np.ndarray, chunk_size: int = DEFAULT_CHUNK_SIZE
  ) -> np.ndarray:
    """[B, S, S, 3] uint8 images -> [B, W, W] int32 dVAE codes."""
    (codes,) = rerank_lib.map_in_chunks(
      lambda chunk: _encode(self.dvae.model_config, self.dvae.params, chunk),
      [images],
      chunk_size,
    )
    return codes

  def decode_codes(
    self, codes: np.ndarray, chunk_size: int = DEFAULT_CHUNK_SIZE
  ) -> np.ndarray:
    """[B, W, W] int32 codes -> [B, S, S, 3] uint8 images."""
    (images,) = rerank_lib.map_in_chunks(
      lambda chunk: _decode(self.dvae.model_config, self.dvae.params, chunk),
      [codes],
      chunk_size,
    )
    return images

  def _resolved(self, options: _Options) -> _Options:
    """The options with `scorer` resolved to a loaded scorer's name."""
    return dataclasses.replace(
      options, scorer=self._scorer_name(options.scorer, options.rerank)
    )

  def _scorer_name(self, scorer, rerank) -> str | None:
    if scorer == AUTO:
      return self.default_scorer
    if scorer is None:
      if rerank:
        raise ValueError(
          "rerank=True needs a scorer, but scorer=None; pass scorer='auto',"
          " 'clip' or 'likelihood', or rerank=False."
        )
      return None
    if scorer not in rerank_lib.SCORER_NAMES:
      raise ValueError(
        f"scorer={scorer!r} is not a known scorer; use one of"
        f" {(AUTO, *rerank_lib.SCORER_NAMES)} or None (no scores)."
      )
    if scorer not in self.scorers:
      raise ValueError(
        f"scorer={scorer!r} needs a CLIP, and none is loaded: pass"
        " clip=CLIP_WORKDIR to Generator.from_workdirs, or use"
        " scorer='likelihood'."
      )
    return scorer

  def _priming_pixels(self, images, count: int) -> np.ndarray:
    """Checks priming images; converts channels and resizes to S x S."""
    images = np.asarray(images)
    if images.ndim == 3:
      images = images[..., None]
    size = self.image_size
    if (
      images.dtype != np.uint8
      or images.ndim != 4
      or images.shape[0] != count
      or images.shape[-1] not in _PRIMING_CHANNELS
    ):
      raise ValueError(
        f"Priming images have shape {images.shape} and dtype {images.dtype};"
        f" expected [{count}, {size}, {size}, 3] uint8, one per prompt"
        " (1-channel and RGBA images are converted to RGB)."
      )
    if images.shape[-1] == 1:
      images = np.repeat(images, 3, axis=-1)
    images = images[..., :3]
    if images.shape[1:3] != (size, size):
      warnings.warn(
        f"Priming images are {images.shape[1]}x{images.shape[2]} px;"
        f" resizing them to the expected [{count}, {size}, {size}, 3].",
        stacklevel=3,
      )
      images = np.stack(
        [
          np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))
          for image in images
        ]
      )
    return images

  def _generate(
    self,
    prompts: tuple[str, ...],
    prime_codes: np.ndarray | None,
    options: _Options,
  ) -> Samples:
    """Samples, scores and keeps; prime_codes is None or [P, R * W]."""
    num_prompts, num_candidates = len(prompts), options.num_candidates
    prompt_ids = np.repeat(
      np.arange(num_prompts, dtype=np.int32), num_candidates
    )
    candidate_ids = np.tile(
      np.arange(num_candidates, dtype=np.int32), num_prompts
    )
    text = self.transformer.tokenizer.encode(prompts).astype(np.int32)
    scorer = self.scorers.get(options.scorer)
    scorer_text = text if scorer is None else scorer.tokenizer.encode(prompts)
    inputs = [text[prompt_ids], scorer_text.astype(np.int32)[prompt_ids]]
    inputs += [prompt_ids, candidate_ids]
    if prime_codes is not None:
      inputs.append(prime_codes[prompt_ids])
    base_key = jax.random.key(options.seed)

    def one_chunk(text, scorer_text, prompt_ids, candidate_ids, prime=None):
      return _sample_and_score(
        self.transformer.params,
        self.dvae.params,
        None if scorer is None else scorer.params,
        text,
        scorer_text,
        prompt_ids,
        candidate_ids,
        base_key,
        prime,
        prior_config=self.transformer.model_config,
        dvae_config=self.dvae.model_config,
        scorer_name=options.scorer,
        scorer_config=None if scorer is None else scorer.model_config,
        scorer_image_shift=0 if scorer is None else scorer.image_shift,
        temperature=options.temperature,
        top_k=options.top_k,
        top_p=options.top_p,
      )

    codes, scores = rerank_lib.map_in_chunks(
      one_chunk,
      inputs,
      options.chunk_size,
      "sampling" if options.progress else None,
    )
    codes = codes.reshape(num_prompts, num_candidates, -1)
    scores = scores.reshape(num_prompts, num_candidates)
    if options.rerank:
      order = rerank_lib.top_k_by_score(scores, options.keep)
    else:
      order = np.broadcast_to(
        np.arange(options.keep), (num_prompts, options.keep)
      )
    kept_codes = np.take_along_axis(codes, order[..., None], axis=1)
    side = self.grid_side
    grids = kept_codes.reshape(-1, side, side).astype(np.int32)
    images = self.decode_codes(grids, options.chunk_size)
    return Samples(
      images=images.reshape(num_prompts, options.keep, *images.shape[1:]),
      scores=np.take_along_axis(scores, order, axis=1).astype(np.float32),
      tokens=grids.reshape(num_prompts, options.keep, side, side),
      prompts=prompts,
      scorer=options.scorer,
    )
