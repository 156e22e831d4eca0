"""Generator end to end on tiny stage work directories.

The work directories hold what the training runs leave (config.json from
the tiny configs, params/ exported with checkpoint.export_params, the BPE
tokenizer.model), with randomly initialised parameters: sampling, scoring
and reranking do not care whether the models are good, and this takes a
few seconds instead of the minute three training runs take.
`test_trained_pipeline_root_samples` (slow) builds them with train.run.
"""

import functools
import json
import logging
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

import dalle_jax
from dalle_jax import config as config_lib
from dalle_jax import generator as generator_lib
from dalle_jax import rerank, stages
from dalle_jax.data import shapes
from dalle_jax.models.dvae import DVAE
from dalle_jax.models.transformer import Transformer
from dalle_jax.tasks import clip as clip_task
from experiments.benchmarks import generate as generate_benchmark

CONFIGS = os.path.join(os.path.dirname(config_lib.__file__), "configs")
# 32 px images; three dVAE groups halve them twice: an 8 x 8 grid of 32
# codes (64 sampling steps instead of the tiny config's 256).
DVAE_OVERRIDES = {"model.group_count": 3}
TRANSFORMER_OVERRIDES = {"model.grid_side": 8}
IMAGE_SIZE, GRID_SIDE, CODEBOOK = 32, 8, 32
# A seen caption, no caption, and words (and letters) no caption has.
PROMPTS = ("a red circle above a blue square", "", "zebra quokka jumps")
CHUNK = 4  # small, so that several chunks run and the last is padded


@functools.partial(jax.jit, static_argnums=(0, 1))
def dvae_method(name, config, params, inputs):
  """The dVAE's `encode` or `decode`, as a reference for the generator's."""
  return DVAE(config).apply({"params": params}, inputs, method=name)


def build_stage_dirs(root: str) -> str:
  """ROOT/{dvae,transformer,clip} as tiny runs leave them (random params)."""
  return generate_benchmark.random_stage_dirs(
    root, "tiny", DVAE_OVERRIDES, TRANSFORMER_OVERRIDES
  )


def shared_stage_root(tmp_path_factory) -> str:
  """The stage directories, built once per test session."""
  root = tmp_path_factory.getbasetemp() / "generator_stages"
  done = root / "done"
  if not done.exists():
    build_stage_dirs(str(root))
    done.write_text("")
  return str(root)


@pytest.fixture(scope="session")
def stage_root(tmp_path_factory):
  return shared_stage_root(tmp_path_factory)


@pytest.fixture(scope="module")
def generator(stage_root):
  return dalle_jax.Generator.from_workdir(stage_root)


def likelihood_run(generator, **options):
  settings = dict(
    num_candidates=5,
    keep=5,
    rerank=False,
    scorer="likelihood",
    seed=0,
    chunk_size=CHUNK,
    progress=False,
  )
  settings.update(options)
  return generator(PROMPTS, **settings)


@pytest.fixture(scope="module")
def unranked(generator):
  """All 5 candidates of each prompt, in sampling order, with scores."""
  return likelihood_run(generator)


@pytest.fixture(scope="module")
def reranked(generator):
  return likelihood_run(generator, keep=2, rerank=True)


def test_samples_have_documented_shapes_and_dtypes(generator, reranked):
  assert reranked.images.shape == (3, 2, IMAGE_SIZE, IMAGE_SIZE, 3)
  assert reranked.images.dtype == np.uint8
  assert reranked.scores.shape == (3, 2) and reranked.scores.dtype == np.float32
  assert reranked.tokens.shape == (3, 2, GRID_SIDE, GRID_SIDE)
  assert reranked.tokens.dtype == np.int32
  assert reranked.prompts == PROMPTS and reranked.scorer == "likelihood"
  # The unseen words and the empty prompt sample like any other prompt.
  assert np.all(np.isfinite(reranked.scores))
  assert reranked.tokens.min() >= 0 and reranked.tokens.max() < CODEBOOK
  # The images are the dVAE's decoding of the returned codes.
  decoded = dvae_method(
    "decode",
    generator.dvae.model_config,
    generator.dvae.params,
    reranked.tokens.reshape(-1, GRID_SIDE, GRID_SIDE),
  )
  np.testing.assert_array_equal(
    reranked.images, np.asarray(decoded).reshape(reranked.images.shape)
  )


def test_likelihood_is_log_softmax_sum_of_the_forward_pass(generator, unranked):
  tokenizer = generator.transformer.tokenizer
  text = np.repeat(tokenizer.encode(list(PROMPTS)), 5, axis=0)
  codes = unranked.tokens.reshape(15, -1)
  forward = jax.jit(Transformer(generator.transformer.model_config).apply)
  _, logits = forward({"params": generator.transformer.params}, text, codes)
  logits = np.asarray(logits, np.float64)  # [15, N, K]
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = np.array(
    [
      sum(row[i, code] for i, code in enumerate(c))
      for row, c in zip(log_probs, codes, strict=True)
    ]
  )
  np.testing.assert_allclose(
    unranked.scores.reshape(-1), expected, rtol=1e-5, atol=1e-3
  )
  # The stand-alone scorer (other chunking, own program) agrees.
  scores = rerank.score(
    generator.scorers["likelihood"],
    [p for p in PROMPTS for _ in range(5)],
    codes=codes,
    chunk_size=6,
  )
  np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-3)


def test_rerank_returns_the_best_candidates_best_first(unranked, reranked):
  assert np.all(np.diff(reranked.scores, axis=1) <= 0)
  best = np.argsort(-unranked.scores, axis=1, kind="stable")[:, :2]
  rows = np.arange(3)[:, None]
  np.testing.assert_array_equal(reranked.tokens, unranked.tokens[rows, best])
  np.testing.assert_array_equal(reranked.images, unranked.images[rows, best])
  np.testing.assert_array_equal(reranked.scores, unranked.scores[rows, best])


def test_no_rerank_keeps_candidates_in_sampling_order(generator, unranked):
  compiled = generator_lib._sample_and_score._cache_size()
  # Candidate c of prompt p is the same draw whatever num_candidates is.
  fewer = likelihood_run(generator, num_candidates=3, keep=3)
  # Another number of rows, the same chunks: nothing was compiled again.
  assert generator_lib._sample_and_score._cache_size() == compiled
  np.testing.assert_array_equal(fewer.tokens, unranked.tokens[:, :3])
  first_two = likelihood_run(generator, keep=2)
  np.testing.assert_array_equal(first_two.tokens, unranked.tokens[:, :2])
  np.testing.assert_array_equal(first_two.scores, unranked.scores[:, :2])
  # Candidates differ from one another (each row has its own key).
  assert len({t.tobytes() for t in unranked.tokens[0]}) == 5


def test_same_seed_same_images_for_any_chunk_size(generator, unranked, capsys):
  other_chunks = likelihood_run(generator, chunk_size=3, progress=True)
  # 15 rows in chunks of 3: a progress bar over the 5 chunks.
  assert "sampling" in capsys.readouterr().err
  np.testing.assert_array_equal(other_chunks.tokens, unranked.tokens)
  np.testing.assert_array_equal(other_chunks.images, unranked.images)
  np.testing.assert_allclose(other_chunks.scores, unranked.scores, rtol=1e-5)
  other_seed = likelihood_run(generator, seed=1)
  assert not np.array_equal(other_seed.tokens, unranked.tokens)


def test_no_scorer_gives_nan_scores_and_the_same_samples(generator, unranked):
  out = likelihood_run(generator, scorer=None)
  assert out.scorer is None and np.all(np.isnan(out.scores))
  np.testing.assert_array_equal(out.tokens, unranked.tokens)


def test_clip_is_the_default_scorer_and_scores_the_returned_images(generator):
  prompts = PROMPTS[:2]
  out = generator(prompts, num_candidates=5, keep=3, chunk_size=CHUNK)
  assert out.scorer == "clip" and out.images.shape[:2] == (2, 3)
  assert np.all(np.diff(out.scores, axis=1) <= 0)
  clip = generator.clip
  shift = generator.scorers["clip"].image_shift
  assert shift == rerank.DEFAULT_CLIP_IMAGE_SHIFT > 0
  text = np.repeat(clip.tokenizer.encode(list(prompts)), 3, axis=0)
  score = jax.jit(clip_task.score, static_argnums=(0, 4))
  expected = score(
    clip.model_config,
    clip.params,
    out.images.reshape(6, IMAGE_SIZE, IMAGE_SIZE, 3),
    text,
    shift,
  )
  np.testing.assert_allclose(
    out.scores.reshape(-1), expected, rtol=1e-4, atol=1e-4
  )
  standalone = rerank.score(
    generator.scorers["clip"],
    [p for p in prompts for _ in range(3)],
    images=out.images.reshape(6, IMAGE_SIZE, IMAGE_SIZE, 3),
    chunk_size=CHUNK,
  )
  np.testing.assert_allclose(standalone, expected, rtol=1e-4, atol=1e-4)


def test_clip_image_shift_zero_scores_each_image_once(stage_root, generator):
  once = dalle_jax.Generator.from_workdir(stage_root, clip_image_shift=0)
  assert once.scorers["clip"].image_shift == 0
  settings = dict(num_candidates=3, keep=3, rerank=False, chunk_size=CHUNK)
  out = once(PROMPTS[:1], **settings)
  clip = once.clip
  text = clip.tokenizer.encode(list(PROMPTS[:1]))
  expected = jax.jit(clip_task.score, static_argnums=0)(
    clip.model_config, clip.params, out.images[0], text
  )
  np.testing.assert_allclose(out.scores[0], expected, rtol=1e-4, atol=1e-4)
  # The same candidates (same seed), scored differently by the default.
  shifted = generator(PROMPTS[:1], **settings)
  np.testing.assert_array_equal(shifted.tokens, out.tokens)
  assert not np.allclose(shifted.scores, out.scores)
  with pytest.raises(ValueError, match="image_shift=-1 must be an integer"):
    dalle_jax.Generator.from_workdir(stage_root, clip_image_shift=-1)


def _encode(generator, images):
  config, params = generator.dvae.model_config, generator.dvae.params
  return np.asarray(dvae_method("encode", config, params, images))


@pytest.fixture(scope="module")
def priming_image():
  return shapes.generate_example("validation", 1, IMAGE_SIZE, 0)["image"]


def complete(generator, images, rows=3, **options):
  settings = dict(
    num_candidates=3,
    keep=3,
    rerank=False,
    scorer="likelihood",
    chunk_size=CHUNK,
    progress=False,
  )
  settings.update(options)
  return generator.complete(["a red circle"], images, rows=rows, **settings)


def test_complete_keeps_the_top_code_rows(generator, priming_image):
  out = complete(generator, priming_image[None])
  codes = _encode(generator, priming_image[None])[0]
  for candidate in out.tokens[0]:
    np.testing.assert_array_equal(candidate[:3], codes[:3])
  # The rows below are sampled, so the candidates differ there.
  assert len({t[3:].tobytes() for t in out.tokens[0]}) > 1
  # Grayscale [P, H, W] is repeated to RGB.
  gray = priming_image[None, :, :, 0]
  out = complete(generator, gray)
  rgb_codes = _encode(generator, np.repeat(gray[..., None], 3, axis=-1))[0]
  np.testing.assert_array_equal(out.tokens[0, 0, :3], rgb_codes[:3])


def test_complete_resizes_other_sizes_with_a_warning(generator, priming_image):
  large = np.asarray(Image.fromarray(priming_image).resize((48, 48)))
  with pytest.warns(UserWarning, match=r"48x48 px.*\[1, 32, 32, 3\]"):
    out = complete(generator, large[None])
  resized = Image.fromarray(large).resize((32, 32), Image.BICUBIC)
  codes = _encode(generator, np.asarray(resized)[None])[0]
  np.testing.assert_array_equal(out.tokens[0, 0, :3], codes[:3])


def test_complete_with_no_rows_is_plain_sampling(generator, priming_image):
  out = complete(generator, priming_image[None], rows=0)
  plain = generator(
    ["a red circle"],
    num_candidates=3,
    keep=3,
    rerank=False,
    scorer="likelihood",
    chunk_size=CHUNK,
  )
  np.testing.assert_array_equal(out.tokens, plain.tokens)


@pytest.mark.parametrize(
  "images, rows, message",
  [
    (np.zeros((1, 32, 32, 3), np.float32), 3, "dtype float32"),
    (np.zeros((1, 32, 32, 2), np.uint8), 3, r"expected \[1, 32, 32, 3\]"),
    (np.zeros((2, 32, 32, 3), np.uint8), 3, "one per prompt"),
    (np.zeros((1, 32, 32, 3), np.uint8), -1, r"rows=-1 .* \[0, 8\]"),
    (np.zeros((1, 32, 32, 3), np.uint8), 9, r"rows=9 .* \[0, 8\]"),
  ],
)
def test_complete_refuses_bad_priming(generator, images, rows, message):
  with pytest.raises(ValueError, match=message):
    generator.complete(["a red circle"], images, rows=rows)


@pytest.mark.parametrize(
  "options, message",
  [
    ({"keep": 9, "num_candidates": 8}, r"keep=9 .* \[1, 8\]"),
    ({"keep": 0}, r"keep=0 .* \[1, 64\]"),
    ({"num_candidates": 0}, "num_candidates=0 .* >= 1"),
    ({"chunk_size": 0}, "chunk_size=0 .* >= 1"),
    ({"seed": -1}, "seed=-1 .* >= 0"),
    ({"temperature": 0}, "temperature=0 .* > 0"),
    ({"temperature": -1.0}, "temperature=-1.0 .* > 0"),
    ({"temperature": float("inf")}, "temperature=inf .* finite"),
    ({"top_k": 0}, r"top_k=0 .* >= 1"),
    ({"top_p": 0.0}, r"top_p=0.0 .* \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p=1.5 .* \(0, 1\]"),
    ({"scorer": "bleu"}, r"scorer='bleu' .*'auto', 'clip', 'likelihood'"),
    ({"scorer": None}, "rerank=True needs a scorer"),
  ],
)
def test_bad_settings_raise_naming_the_allowed_range(
  generator, options, message
):
  with pytest.raises(ValueError, match=message):
    generator(["a red circle"], **options)


def test_bad_prompts_raise(generator):
  with pytest.raises(ValueError, match="prompts is empty"):
    generator([])
  with pytest.raises(TypeError, match=r"wrap it: \[prompt\]"):
    generator("a red circle")
  with pytest.raises(TypeError, match="got 3 of type int"):
    generator(["a red circle", 3])
  with pytest.raises(TypeError, match="unexpected keyword argument"):
    generator.complete(["a"], np.zeros((1, 32, 32, 3), np.uint8), 1, kep=2)


def test_clip_scorer_needs_a_clip(generator):
  without_clip = dalle_jax.Generator(
    generator.dvae, generator.transformer, None
  )
  assert without_clip.default_scorer == "likelihood"
  with pytest.raises(ValueError, match="needs a CLIP.*clip=CLIP_WORKDIR"):
    without_clip(["a red circle"], scorer="clip")


def _copy_stage(stage_root, stage, tmp_path):
  target = str(tmp_path / stage)
  shutil.copytree(os.path.join(stage_root, stage), target)
  return target


def _edit_config(workdir, section, field, value):
  path = os.path.join(workdir, "config.json")
  with open(path) as handle:
    saved = json.load(handle)
  saved[section][field] = value
  with open(path, "w") as handle:
    json.dump(saved, handle)


def test_refuses_a_transformer_of_another_codebook(stage_root, tmp_path):
  transformer = _copy_stage(stage_root, "transformer", tmp_path)
  _edit_config(transformer, "model", "image_vocab_size", 64)
  with pytest.raises(ValueError) as error:
    dalle_jax.Generator.from_workdirs(
      os.path.join(stage_root, "dvae"), transformer
    )
  message = str(error.value)
  assert "codebook size is 32" in message
  assert "the transformer's config.model.image_vocab_size=64" in message
  assert transformer in message


def test_refuses_a_clip_of_another_image_size(stage_root, tmp_path):
  clip = _copy_stage(stage_root, "clip", tmp_path)
  _edit_config(clip, "data", "image_size", 64)
  with pytest.raises(ValueError, match="scores 64 px .* makes 32 px"):
    dalle_jax.Generator.from_workdirs(
      os.path.join(stage_root, "dvae"),
      os.path.join(stage_root, "transformer"),
      clip,
    )


@pytest.mark.parametrize(
  "stage, remove, command",
  [
    ("dvae", "config.json", "configs/dvae.py"),
    ("transformer", "params", "configs/transformer.py"),
    ("clip", "tokenizer.model", "configs/clip.py"),
  ],
)
def test_missing_stage_files_name_the_file_and_the_command(
  stage_root, tmp_path, stage, remove, command
):
  workdirs = {
    name: os.path.join(stage_root, name)
    for name in ("dvae", "transformer", "clip")
  }
  workdirs[stage] = _copy_stage(stage_root, stage, tmp_path)
  missing = os.path.join(workdirs[stage], remove)
  shutil.rmtree(missing) if os.path.isdir(missing) else os.remove(missing)
  with pytest.raises(FileNotFoundError) as error:
    dalle_jax.Generator.from_workdirs(**workdirs)
  message = str(error.value)
  assert missing in message and command in message


def test_missing_or_wrong_directories_are_refused(stage_root, tmp_path):
  with pytest.raises(FileNotFoundError, match="not a directory"):
    dalle_jax.Generator.from_workdir(str(tmp_path / "nowhere"))
  with pytest.raises(FileNotFoundError, match="dvae.py"):
    dalle_jax.Generator.from_workdir(str(tmp_path))
  with pytest.raises(
    ValueError, match="holds a 'transformer' run, not a 'dvae'"
  ):
    stages.load_stage(os.path.join(stage_root, "transformer"), "dvae")
  with pytest.raises(ValueError, match="stage='vae' is not a stage"):
    stages.load_stage(os.path.join(stage_root, "dvae"), "vae")


def test_warns_when_the_dvae_is_not_the_one_trained_on(
  stage_root, tmp_path, caplog
):
  moved = _copy_stage(stage_root, "dvae", tmp_path)
  with caplog.at_level(logging.WARNING, logger="dalle_jax.stages"):
    dalle_jax.Generator.from_workdirs(
      moved, os.path.join(stage_root, "transformer")
    )
  assert "was trained on the dVAE in" in caplog.text and moved in caplog.text


@pytest.mark.slow
def test_trained_pipeline_root_samples(tmp_path):
  """The three tiny stages trained by train.run, then sampled."""
  from dalle_jax.train import run

  root, data = str(tmp_path / "root"), str(tmp_path / "data")
  common = {
    "data.data_dir": data,
    "train.progress_bar": False,
    "train.num_steps": 1,
    "train.eval_every": 1,
    "train.checkpoint_every": 1,
    "train.log_every": 1,
    "train.eval_batches": 1,
    "train.judge_examples": 0,
  }
  for stage, overrides in (
    ("dvae", DVAE_OVERRIDES),
    ("transformer", {"dvae.workdir": f"{root}/dvae", **TRANSFORMER_OVERRIDES}),
    ("clip", {}),
  ):
    config = config_lib.load_config(
      os.path.join(CONFIGS, f"{stage}.py:variant=tiny"),
      {**common, **overrides},
    )
    run(config, os.path.join(root, stage))
  generator = dalle_jax.Generator.from_workdir(root)
  out = generator(PROMPTS, num_candidates=3, keep=2, chunk_size=CHUNK)
  assert out.scorer == "clip" and out.images.shape == (3, 2, 32, 32, 3)
  assert np.all(np.diff(out.scores, axis=1) <= 0)


def test_package_exports_the_generator_lazily():
  assert dalle_jax.Generator is generator_lib.Generator
  assert dalle_jax.Samples is generator_lib.Samples
  with pytest.raises(AttributeError, match="no attribute 'Generater'"):
    dalle_jax.Generater  # noqa: B018


def test_generate_benchmark_times_a_generator_call(stage_root, capsys):
  result = generate_benchmark.main(
    [
      "--workdir",
      stage_root,
      "--num_candidates",
      "4",
      "--keep",
      "2",
      "--chunk_size",
      str(CHUNK),
      "--repeats",
      "1",
    ]
  )
  printed = capsys.readouterr().out
  assert result["images_shape"] == (1, 2, IMAGE_SIZE, IMAGE_SIZE, 3)
  assert result["finite_scores"]
  assert result["first"] > 0 and len(result["all"]) == 1
  assert "keep 2 of 4 candidates" in printed
  assert "target < 10 s per prompt:" in printed
