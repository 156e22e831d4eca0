"""The transformer stage end to end on tiny Shapes, from a frozen tiny dVAE."""

import glob
import json
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from dalle_jax import checkpoint, stages, summaries
from dalle_jax import config as config_lib
from dalle_jax.models.transformer import Transformer, TransformerConfig
from dalle_jax.tasks import transformer as transformer_task
from dalle_jax.tokenizer import Tokenizer, train_tokenizer
from dalle_jax.train import run

CONFIGS = os.path.join(os.path.dirname(config_lib.__file__), "configs")
TRANSFORMER_CONFIG = os.path.join(CONFIGS, "transformer.py")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("datasets"))


def tiny_config(data_dir, dvae_workdir, **overrides):
  values = {
    "data.data_dir": data_dir,
    "dvae.workdir": dvae_workdir,
    "train.progress_bar": False,
  }
  values.update(overrides)
  return config_lib.load_config(f"{TRANSFORMER_CONFIG}:variant=tiny", values)


def test_trains_resumes_and_previews(tmp_path, data_dir, dvae_workdir):
  workdir = str(tmp_path / "run")
  # 10 steps; the Shapes judge (compiled once more) only in the second run.
  first = run(
    tiny_config(data_dir, dvae_workdir, **{"train.judge_examples": 0}), workdir
  )
  assert np.isfinite(first["loss"])
  final = run(
    tiny_config(data_dir, dvae_workdir, **{"train.num_steps": 20}), workdir
  )
  records = summaries.read_metrics(workdir)
  train = [r for r in records if r["split"] == "train"]
  evals = [r for r in records if r["split"] == "eval"]
  # The second run continued from step 10 instead of starting again.
  assert [r["step"] for r in train] == list(range(2, 21, 2))
  assert [r["step"] for r in evals] == [10, 20]
  losses = [r["loss"] for r in train]
  assert all(np.isfinite(losses))
  assert losses[-1] < 0.8 * losses[0]
  assert final["loss"] < first["loss"]
  expected = {
    "text_loss",
    "image_loss",
    "image_bits_per_token",
    "image_accuracy",
    "grad_norm",
    "learning_rate",
    "tokens_per_step",
    "model_tflops_per_step",
  }
  assert expected <= set(train[0])
  # 8 captions of 8 text tokens + 16 x 16 codes each.
  assert train[0]["tokens_per_step"] == 8 * (8 + 256)
  assert "validation_judged_correct" not in evals[0]
  for split in ("validation", "zero_shot"):
    assert 0 <= evals[-1][f"{split}_judged_correct"] <= 1
  pngs = sorted(glob.glob(os.path.join(workdir, "images", "*.png")))
  assert [os.path.basename(p) for p in pngs] == [
    "step_0000010.png",
    "step_0000020.png",
  ]
  # Rows [originals, samples] of 4 captions: 32 px tiles, 2 px gaps, x2.
  with Image.open(pngs[-1]) as grid:
    assert grid.size == ((4 * 34 + 2) * 2, (2 * 34 + 2) * 2)
  params = checkpoint.load_params(workdir)
  assert params["image_head"]["kernel"].shape == (16, 32)
  # The dVAE is frozen: nothing of it is trained or exported with the prior.
  assert "encoder" not in params and "decoder" not in params


def test_missing_dvae_workdir_names_path_and_command(tmp_path, data_dir):
  missing = str(tmp_path / "no_dvae")
  config = tiny_config(data_dir, missing)
  with pytest.raises(FileNotFoundError) as error:
    transformer_task.make_task(config)
  message = str(error.value)
  assert missing in message and "does not exist" in message
  assert "--config dalle_jax/configs/dvae.py --workdir" in message


@pytest.mark.parametrize(
  "remove, missing",
  [("config.json", "no config.json"), ("params", "no exported params/")],
)
def test_unfinished_dvae_run_is_refused(
  tmp_path, data_dir, dvae_workdir, remove, missing
):
  workdir = str(tmp_path / "dvae")
  shutil.copytree(dvae_workdir, workdir)
  target = os.path.join(workdir, remove)
  if os.path.isdir(target):
    shutil.rmtree(target)
  else:
    os.remove(target)
  with pytest.raises(FileNotFoundError, match=missing):
    transformer_task.make_task(tiny_config(data_dir, workdir))


def test_other_stage_run_is_refused(tmp_path, data_dir, dvae_workdir):
  workdir = str(tmp_path / "autoencoder")
  shutil.copytree(dvae_workdir, workdir)
  path = os.path.join(workdir, "config.json")
  with open(path) as handle:
    saved = json.load(handle)
  saved["task"] = "autoencoder"
  with open(path, "w") as handle:
    json.dump(saved, handle)
  with pytest.raises(ValueError, match="holds a 'autoencoder' run"):
    transformer_task.make_task(tiny_config(data_dir, workdir))


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("data.image_size", 64, "image size is 32 but config.data.image_size=64"),
    ("model.grid_side", 8, "grid side is 16 but config.model.grid_side=8"),
    (
      "model.image_vocab_size",
      64,
      "codebook size is 32 but config.model.image_vocab_size=64",
    ),
  ],
)
def test_dvae_that_does_not_fit_is_refused(
  data_dir, dvae_workdir, field, value, message
):
  config = tiny_config(data_dir, dvae_workdir, **{field: value})
  with pytest.raises(ValueError, match=message):
    transformer_task.make_task(config)


def test_tokenizer_larger_than_text_vocabulary_is_refused(
  tmp_path, data_dir, dvae_workdir
):
  path = str(tmp_path / "tokenizer.model")
  captions = ["a red circle above a blue square", "a small green triangle"]
  train_tokenizer(
    captions, path, 64, text_length=8, vocab_size_is_upper_bound=True
  )
  tokenizer = Tokenizer.load(path, text_length=8)
  assert tokenizer.bpe_vocab_size > 4
  config = tiny_config(data_dir, dvae_workdir, **{"tokenizer.vocab_size": 4})
  with pytest.raises(ValueError, match="more than config.tokenizer.vocab"):
    transformer_task.make_task(config, tokenizer)
  other_length = Tokenizer.load(path, text_length=4)
  with pytest.raises(ValueError, match="encodes 4 text positions"):
    transformer_task.make_task(
      tiny_config(data_dir, dvae_workdir), other_length
    )


def test_train_flops_match_a_hand_count():
  model = TransformerConfig(
    text_vocab_size=10,
    text_length=2,
    image_vocab_size=5,
    grid_side=2,
    num_layers=1,
    num_heads=2,
    head_dim=4,
  )
  # E = 8, T = 2 + 4 = 6. Per token of the layer: q, k, v, out 4 * 8 * 8 =
  # 256 and the MLP 2 * 8 * 32 = 512 multiply-adds: 768 * 6 = 4608. Heads:
  # 8 * 10 at 1 text position + 8 * 5 at 4 image positions = 240. Attention:
  # scores and values 2 * 6 * 6 * 8 = 576. Forward 2 * 5424, train x 3.
  assert transformer_task.train_flops_per_example(model) == 6 * 5424


def test_paper_variant_has_twelve_billion_block_parameters():
  config = config_lib.load_config(f"{TRANSFORMER_CONFIG}:variant=paper")
  model = transformer_task.model_config(config)
  assert model.width == 3968 and model.sequence_length == 1280
  assert model.text_vocab_size == 16384 + 256
  # 6 * N per token of the blocks plus attention and heads: the paper's
  # 12B parameters show up as 6 * 12e9 * 1280 FLOPs per example.
  flops = transformer_task.train_flops_per_example(model)
  assert 6 * 12.0e9 * 1280 < flops < 6 * 13.5e9 * 1280


def test_block_flops_count_the_models_matmul_weights():
  # Independent of the formula: sum the real parameter tree's kernels.
  model = TransformerConfig(
    text_vocab_size=12,
    text_length=3,
    image_vocab_size=7,
    grid_side=2,
    num_layers=2,
    num_heads=2,
    head_dim=4,
    embed_dim=6,
  )
  text = np.zeros((1, 3), np.int32)
  codes = np.zeros((1, 4), np.int32)
  variables = jax.eval_shape(
    Transformer(model).init, jax.random.key(0), text, codes
  )
  blocks = [v for k, v in variables["params"].items() if k.startswith("blocks")]
  kernels = sum(
    int(np.prod(leaf.value.shape))
    for block in blocks
    for path, leaf in jax.tree_util.tree_leaves_with_path(
      block, is_leaf=lambda x: hasattr(x, "names")
    )
    if "kernel" in jax.tree_util.keystr(path)
  )
  # Heads (E * V at L - 1 text positions, E * K at N image positions) and
  # attention (2 * T * T * H * D per layer) by hand; the rest is the blocks.
  length = model.sequence_length
  heads = 6 * 12 * 2 + 6 * 7 * 4
  attention = 2 * 2 * length**2 * 8
  flops = transformer_task.train_flops_per_example(model)
  assert flops == 6 * (kernels * length + heads + attention)


def test_measured_matmul_peak_is_positive():
  assert 0 < transformer_task.measure_matmul_tflops(size=128, repeats=2) < 1e3


def test_relative_paths_are_recorded_absolute(
  tmp_path, data_dir, dvae_workdir, monkeypatch
):
  # Started with paths relative to the launch directory, read from another.
  shutil.copytree(dvae_workdir, tmp_path / "dvae")
  monkeypatch.chdir(tmp_path)
  overrides = {
    "tokenizer.path": "tokenizer.model",
    "train.num_steps": 2,
    "train.eval_every": 2,
    "train.checkpoint_every": 2,
    "train.judge_examples": 0,
  }
  run(tiny_config(data_dir, "dvae", **overrides), "run")
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  monkeypatch.chdir(elsewhere)
  saved = stages.read_run_config(str(tmp_path / "run"), "transformer")
  assert saved.dvae.workdir == str(tmp_path / "dvae")
  assert saved.tokenizer.path == str(tmp_path / "tokenizer.model")
  # What a sampler does with the record: load the prior's frozen dVAE
  # (the relative path would raise FileNotFoundError from here).
  transformer_task.make_task(saved)
