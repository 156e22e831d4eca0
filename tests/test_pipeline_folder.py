"""The default pipeline at tiny size on a folder of the user's own images.

One module fixture writes 64 captioned 32 px PNGs (Shapes scenes, but read
as a plain folder: no judge) and runs the tiny pipeline on them through
`dalle_jax.train.run`, as the command line does. The tests check the
CLIP-score evaluation against its saved per-candidate scores, the report and
its grid, and the config checks that refuse what the pipeline cannot run.
"""

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from dalle_jax import config as config_lib
from dalle_jax import generation_eval, pipeline, train
from dalle_jax.data import folder as folder_lib
from dalle_jax.data import shapes

DEFAULT = os.path.join(
  os.path.dirname(config_lib.__file__), "configs", "default.py"
)
STEPS = ("tokenizer", "dvae", "clip", "transformer", "evaluation")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NUM_IMAGES = 64
# Each tiny stage evaluates one batch of 8 validation examples.
NUM_VALIDATION = 8
NUM_PROMPTS = NUM_CANDIDATES = 4  # the tiny variant's evaluation


def folder_config(data_dir, image_folder, **overrides):
  values = {
    "data.data_dir": data_dir,
    "data.name": "folder",
    "data.folder": image_folder,
  }
  for stage in ("dvae", "clip", "transformer"):
    values[f"{stage}.train.progress_bar"] = False
  values.update(overrides)
  return config_lib.load_config(f"{DEFAULT}:variant=tiny", values)


def image_names(count: int, validation: int) -> list[str]:
  """Names of which exactly `validation` hash into the validation split.

  The folder builder sends about 2% of the paths to validation, by hash;
  a plain 64-image folder would hold one or two there, fewer than one
  evaluation batch, so the names are picked for their hashes.
  """
  chosen = {True: [], False: []}
  index = 0
  while (
    len(chosen[True]) < validation or len(chosen[False]) < count - validation
  ):
    name = f"scene_{index:04d}.png"
    score = folder_lib.validation_score(name)
    chosen[score < folder_lib.DEFAULT_VALIDATION_FRACTION].append(name)
    index += 1
  return chosen[True][:validation] + chosen[False][: count - validation]


def write_folder(path, names) -> dict[str, str]:
  """32 px Shapes scenes as PNGs with .txt captions; {name: caption}."""
  path.mkdir(parents=True)
  captions = {}
  for index, name in enumerate(names):
    example = shapes.generate_example("train", index, 32, seed=0)
    Image.fromarray(example["image"]).save(path / name)
    (path / name).with_suffix(".txt").write_text(example["caption"])
    captions[name] = example["caption"]
  return captions


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """One tiny pipeline run on the folder; what it left behind."""
  names = image_names(NUM_IMAGES, NUM_VALIDATION)
  image_folder = tmp_path_factory.mktemp("images") / "my images"
  captions = write_folder(image_folder, names)
  data_dir = str(tmp_path_factory.mktemp("datasets"))
  root = str(tmp_path_factory.mktemp("pipeline") / "root")
  figures = train.run(folder_config(data_dir, str(image_folder)), root)
  validation = [captions[name] for name in names[:NUM_VALIDATION]]
  return {"root": root, "figures": figures, "validation": validation}


def _saved(root):
  with open(os.path.join(root, "evaluation", "results.json")) as handle:
    results = json.load(handle)
  return results, np.load(os.path.join(root, "evaluation", "validation.npz"))


def test_every_step_trains_on_the_folder(run):
  root = run["root"]
  with open(os.path.join(root, "stages.json")) as handle:
    events = {e["step"]: e["action"] for e in json.load(handle)["events"]}
  assert events == dict.fromkeys(STEPS, "trained")
  for stage in ("dvae", "clip", "transformer"):
    with open(os.path.join(root, stage, "config.json")) as handle:
      assert json.load(handle)["data"]["name"] == "folder"


def test_scores_are_finite_for_the_requested_prompts(run):
  results, saved = _saved(run["root"])
  assert results["kind"] == "clip_scores"
  assert list(results["splits"]) == ["validation"]
  scores = saved["scores"]
  assert scores.shape == (NUM_PROMPTS, NUM_CANDIDATES)
  assert np.all(np.isfinite(scores))
  captions = saved["captions"].tolist()
  assert len(set(captions)) == NUM_PROMPTS
  # The prompts are captions of the validation images (TFDS shuffles the
  # records, so which ones is not fixed by the file names).
  assert set(captions) <= set(run["validation"])
  summary = results["splits"]["validation"]
  assert [p["caption"] for p in summary["prompts"]] == captions
  assert saved["top_images"].shape == (NUM_PROMPTS, 4, 32, 32, 3)
  assert saved["top_images"].dtype == np.uint8
  assert saved["tokens"].shape[:2] == (NUM_PROMPTS, NUM_CANDIDATES)


def test_best_scores_beat_every_other_candidate(run):
  # Recomputed plainly from the saved per-candidate scores.
  results, saved = _saved(run["root"])
  summary = results["splits"]["validation"]
  scores = saved["scores"].astype(float).tolist()
  for row, prompt in zip(scores, summary["prompts"], strict=True):
    for score in row:
      assert prompt["best_score"] >= score - 1e-6
    assert prompt["best_score"] == pytest.approx(row[prompt["best"]])
    assert prompt["top"][0] == prompt["best"]
    assert prompt["top_scores"] == pytest.approx(sorted(row, reverse=True))
    assert prompt["mean_score"] == pytest.approx(sum(row) / len(row))
  all_scores = [s for row in scores for s in row]
  best = [max(row) for row in scores]
  assert summary["mean_score"] == pytest.approx(sum(all_scores) / 16)
  assert summary["mean_best_score"] == pytest.approx(sum(best) / 4)
  first = sum(row[0] for row in scores) / 4
  assert summary["curve"]["candidates"] == [1, 2, 4]
  assert summary["curve"]["mean_best_score"][0] == pytest.approx(first)
  figures = run["figures"]
  assert figures["validation_best_clip_score"] == pytest.approx(sum(best) / 4)
  assert math.isfinite(figures["validation_mean_clip_score"])


def test_report_shows_clip_scores_and_no_judged_sections(run):
  root = run["root"]
  with open(os.path.join(root, "report.md")) as handle:
    text = handle.read()
  assert "## Generation from the validation captions, scored by CLIP" in text
  assert "| N | mean CLIP score of the best of N |" in text
  assert "## Stages" in text and "## Config" in text
  for judged in ("judged correct", "### By attribute", "any of N"):
    assert judged not in text
  _, saved = _saved(root)
  for caption in saved["captions"].tolist():
    assert f"| {caption} |" in text
  assert "(figures/samples_validation.png)" in text
  figures = sorted(os.listdir(os.path.join(root, "figures")))
  assert "accuracy_vs_candidates.png" not in figures
  assert "samples_validation.png" in figures
  grid_path = os.path.join(root, "figures", "samples_validation.png")
  with open(grid_path, "rb") as handle:
    assert handle.read(8) == PNG_SIGNATURE
  # Four prompts in one row of labelled tiles of 160 px (5 x 32 px).
  with Image.open(grid_path) as grid:
    assert grid.width == 4 * (160 + 2) + 2 and grid.height > 160


def test_report_command_regenerates_a_folder_report(run, regenerate_report):
  root, text = regenerate_report(run["root"])
  assert "scored by CLIP" in text
  assert os.path.isfile(os.path.join(root, "figures", "samples_validation.png"))


# ---------------------------------------------------------------------------
# Pure parts and refusals.


def test_summarise_scores_on_a_hand_made_example():
  scores = np.array([[0.5, 0.9, 0.9, 0.1], [3.0, 1.0, 2.0, 4.0]])
  summary = generation_eval.summarise_scores(["a", "b"], scores, top=2)
  first, second = summary["prompts"]
  # Equal scores: the earlier candidate wins.
  assert first["best"] == 1 and first["top"] == [1, 2]
  assert first["top_scores"] == [0.9, 0.9]
  assert second["best"] == 3 and second["top"] == [3, 0]
  assert summary["mean_score"] == pytest.approx(12.4 / 8)
  assert summary["mean_best_score"] == pytest.approx((0.9 + 4.0) / 2)
  # Best of the first 1, 2, 4: (0.5, 3), (0.9, 3), (0.9, 4).
  assert summary["curve"]["mean_best_score"] == pytest.approx(
    [1.75, 1.95, 2.45]
  )


def test_folder_captions_takes_what_a_small_split_has(caplog):
  source = [{"caption": c} for c in (b"a cat", b"a dog", b"a cat")]
  assert generation_eval.folder_captions(source, 2) == ["a cat", "a dog"]
  assert generation_eval.folder_captions(source, 5) == ["a cat", "a dog"]
  assert "fewer than config.evaluation.num_prompts=5" in caplog.text


def test_folder_config_validates(tmp_path):
  pipeline.validate(folder_config("", str(tmp_path)), str(tmp_path / "run"))


@pytest.mark.parametrize(
  "overrides, message",
  [
    (
      {"data.name": "imagenet"},
      r"config.data.name='imagenet'.*\('shapes', 'folder'\)",
    ),
    ({"data.folder": ""}, "'folder' needs config.data.folder="),
    ({"data.folder": "/no/such/dir"}, "'/no/such/dir' is not a directory"),
  ],
)
def test_bad_data_section_is_refused(tmp_path, overrides, message):
  config = folder_config("", str(tmp_path), **overrides)
  with pytest.raises(ValueError, match=message):
    pipeline.validate(config, str(tmp_path))


def test_too_small_validation_split_stops_before_training(tmp_path):
  # Four images: the folder puts one in validation; each stage needs 8.
  image_folder = tmp_path / "few"
  write_folder(image_folder, [f"{i}.png" for i in range(4)])
  root = tmp_path / "root"
  config = folder_config(str(tmp_path / "datasets"), str(image_folder))
  with pytest.raises(ValueError) as error:
    pipeline.run(config, str(root))
  message = str(error.value)
  assert message.startswith("The validation split has 1 examples")
  for stage in ("dvae", "clip", "transformer"):
    assert f"config.{stage}.data.eval_batch_size=8 x " in message
  assert not (root / "dvae").exists()
  assert not (root / "tokenizer.model").exists()
