"""The default pipeline end to end at tiny size: train, skip, retrain, report.

One module fixture runs the tiny pipeline three times in one work
directory, through `dalle_jax.train.run` as the command line does: a fresh
run, the same config again (every step must be skipped), and changed
transformer and CLIP learning rates (only those two stages and the
evaluation may train again). Each test checks one part of what those runs
left. Which stage a change retrains, one change at a time, is checked
without training (`test_each_change_retrains_only_what_reads_it`), where it
costs nothing, and so is a root moved elsewhere; a copy of the fixture's
root must skip every step and load its own files. The quick start and
zero-shot notebooks run on the finished root too.
"""

import dataclasses
import json
import math
import os
import re
import shutil
import time

import notebook_kernels
import numpy as np
import pytest
from PIL import Image

from dalle_jax import (
  checkpoint,
  generation_eval,
  pipeline,
  report,
  rerank,
  stages,
  summaries,
  train,
)
from dalle_jax import config as config_lib
from dalle_jax.configs import default as default_config
from dalle_jax.data import shapes
from dalle_jax.generator import Generator

DEFAULT = os.path.join(
  os.path.dirname(config_lib.__file__), "configs", "default.py"
)
STEPS = ("tokenizer", "dvae", "clip", "transformer", "evaluation")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny_config(data_dir, **overrides):
  values = {"data.data_dir": data_dir}
  for stage in ("dvae", "clip", "transformer"):
    values[f"{stage}.train.progress_bar"] = False
  values.update(overrides)
  return config_lib.load_config(f"{DEFAULT}:variant=tiny", values)


def _run_events(root, run):
  """The stages.json events of pipeline run `run`, in step order."""
  with open(os.path.join(root, "stages.json")) as handle:
    stages = json.load(handle)
  return [event for event in stages["events"] if event["run"] == run]


def _events(root, run):
  return {e["step"]: e["action"] for e in _run_events(root, run)}


def _line_counts(root):
  return {
    stage: len(summaries.read_metrics(os.path.join(root, stage)))
    for stage in ("dvae", "clip", "transformer")
  }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Three pipeline runs in one root; what each left behind."""
  data_dir = str(tmp_path_factory.mktemp("datasets"))
  root = str(tmp_path_factory.mktemp("pipeline") / "root")
  first = train.run(tiny_config(data_dir), root)
  after_first = _line_counts(root)
  start = time.perf_counter()
  second = train.run(tiny_config(data_dir), root)
  second_seconds = time.perf_counter() - start
  after_second = _line_counts(root)
  # Two stages that do not read each other change in one run (one run
  # less to pay for; each change alone is tested without training).
  changed = tiny_config(
    data_dir, **{"transformer.optim.lr": 1e-3, "clip.optim.lr": 1e-3}
  )
  train.run(changed, root)
  return {
    "root": root,
    "data_dir": data_dir,
    "first": first,
    "second": second,
    "second_seconds": second_seconds,
    "lines": (after_first, after_second, _line_counts(root)),
  }


def test_first_run_trains_every_step_and_reports(runs):
  root = runs["root"]
  assert _events(root, 1) == dict.fromkeys(STEPS, "trained")
  for name in ("dvae", "clip", "transformer"):
    assert os.path.isdir(os.path.join(root, name, "params"))
  assert os.path.isfile(os.path.join(root, "tokenizer.model"))
  for split in ("zero_shot", "validation"):
    for kind in ("single_sample", "reranked", "any_correct"):
      assert 0 <= runs["first"][f"{split}_{kind}"] <= 1
  # Every stage read the one tokenizer the pipeline trained.
  for stage in ("dvae", "clip", "transformer"):
    with open(os.path.join(root, stage, "config.json")) as handle:
      saved = json.load(handle)
    assert saved["tokenizer"]["path"] == os.path.join(root, "tokenizer.model")
  with open(os.path.join(root, "transformer", "config.json")) as handle:
    assert json.load(handle)["dvae"]["workdir"] == os.path.join(root, "dvae")


def test_report_has_tables_plots_and_grids(runs):
  root = runs["root"]
  with open(os.path.join(root, "report.md")) as handle:
    text = handle.read()
  for heading in (
    "## Zero-shot generation, judged",
    "### Accuracy against the number of candidates",
    "### By attribute",
    "## Stages",
    "## Config",
  ):
    assert heading in text
  assert "| N | zero_shot: CLIP best of N" in text
  for attribute in ("colour", "shape", "size", "position", "relation"):
    assert f"| {attribute} |" in text
  for step in STEPS:
    assert f"| {step} |" in text
  assert '"task": "pipeline"' in text
  figures = [
    "training_dvae",
    "training_clip",
    "training_transformer",
    "accuracy_vs_candidates",
    "samples_zero_shot",
    "samples_validation",
  ]
  for name in figures:
    relative = f"figures/{name}.png"
    assert f"({relative})" in text
    path = os.path.join(root, relative)
    with open(path, "rb") as handle:
      assert handle.read(8) == PNG_SIGNATURE
    with Image.open(path) as image:
      image.verify()
  # Four tiny prompts in one row of labelled tiles of 160 px (5 x 32 px).
  with Image.open(os.path.join(root, "figures/samples_zero_shot.png")) as grid:
    assert grid.width == 4 * (160 + 2) + 2 and grid.height > 160


def test_results_match_the_saved_candidates(runs):
  # Recomputed plainly from the saved per-candidate verdicts and scores.
  root = runs["root"]
  with open(os.path.join(root, "evaluation", "results.json")) as handle:
    results = json.load(handle)
  for split in ("zero_shot", "validation"):
    saved = np.load(os.path.join(root, "evaluation", f"{split}.npz"))
    holds, scores = saved["holds"], saved["scores"]
    assert holds.shape == (4, 4, 6) and scores.shape == (4, 4)
    assert saved["best_images"].shape == (4, 32, 32, 3)
    assert len(set(saved["captions"].tolist())) == 4
    correct = [[all(h != 0) for h in row] for row in holds]
    curve = results["splits"][split]["curve"]
    assert curve["single_sample"] == pytest.approx(np.mean(correct))
    best = [int(np.argmax(row)) for row in scores]
    expected = np.mean([correct[p][best[p]] for p in range(4)])
    assert curve["reranked"][-1] == pytest.approx(expected)
  zero_shot = results["splits"]["zero_shot"]["prompts"]
  held_out = (
    "red triangle", "green circle", "blue plus", "yellow square",
    "purple triangle", "orange circle", "cyan square", "white plus",
  )  # fmt: skip
  for prompt in zero_shot:
    assert any(pair in prompt["caption"] for pair in held_out)


def test_second_run_skips_every_finished_step(runs):
  root = runs["root"]
  assert _events(root, 2) == dict.fromkeys(STEPS, "skipped")
  after_first, after_second, _ = runs["lines"]
  assert after_second == after_first  # no stage logged a single step
  assert (
    runs["second"]["zero_shot_reranked"]
    == (runs["first"]["zero_shot_reranked"])
  )
  assert runs["second_seconds"] < 60


def test_changed_stages_retrain_and_the_rest_is_skipped(runs):
  root = runs["root"]
  assert _events(root, 3) == {
    "tokenizer": "skipped",
    "dvae": "skipped",
    "clip": "replaced",
    "transformer": "replaced",
    "evaluation": "replaced",
  }
  _, after_second, after_third = runs["lines"]
  assert after_third["dvae"] == after_second["dvae"]
  events = {e["step"]: e for e in _run_events(root, 3)}
  for stage in ("clip", "transformer"):
    old_runs = [n for n in os.listdir(root) if n.startswith(f"{stage}.")]
    assert len(old_runs) == 1
    assert old_runs[0].startswith(f"{stage}.replaced-")
    with open(os.path.join(root, old_runs[0], "config.json")) as handle:
      assert json.load(handle)["optim"]["lr"] == 3e-3
    with open(os.path.join(root, stage, "config.json")) as handle:
      assert json.load(handle)["optim"]["lr"] == 1e-3
    assert os.path.isdir(os.path.join(root, old_runs[0], "params"))
    assert "optim.lr: 0.003 -> 0.001" in events[stage]["reason"]
    assert after_third[stage] > 0
  assert any(n.startswith("evaluation.replaced-") for n in os.listdir(root))
  assert "a step it reads (clip) trained" in events["evaluation"]["reason"]


def test_a_copied_root_skips_every_step_and_reads_its_own_files(
  runs, tmp_path, caplog
):
  copy = str(tmp_path / "copy")
  shutil.copytree(runs["root"], copy)
  # The fixture's last run, now in the copy.
  config = tiny_config(
    runs["data_dir"], **{"transformer.optim.lr": 1e-3, "clip.optim.lr": 1e-3}
  )
  train.run(config, copy)
  assert _events(copy, 4) == dict.fromkeys(STEPS, "skipped")
  # The records still name the original root; what loads is the copy's.
  with open(os.path.join(copy, "transformer", "config.json")) as handle:
    assert json.load(handle)["dvae"]["workdir"].startswith(runs["root"])
  transformer = stages.load_stage(
    os.path.join(copy, "transformer"), "transformer"
  )
  assert transformer.run_config.tokenizer.path == os.path.join(
    copy, "tokenizer.model"
  )
  assert transformer.run_config.dvae.workdir == os.path.join(copy, "dvae")
  with caplog.at_level("WARNING"):
    Generator.from_workdir(copy)
  assert "was trained on the dVAE in" not in caplog.text


@pytest.fixture(scope="module")
def notebooks(runs, tmp_path_factory):
  """The quick start and zero-shot notebooks, run on the fixture's root.

  Both are given the finished root (DALLE_JAX_NOTEBOOK_ROOT), so neither
  trains: their training cell calls the same `train.run` the fixture does,
  and training the tiny pipeline once more in a kernel cost about 100 s of
  the suite. Each gets a WORKDIR that must stay unwritten.
  """
  make_notebooks = notebook_kernels.make_notebooks()
  unused = tmp_path_factory.mktemp("notebooks")
  data_dir = runs["data_dir"]
  shared = {
    "DALLE_JAX_NOTEBOOK_ROOT": runs["root"],
    "DALLE_JAX_DATA_DIR": data_dir,
  }
  names = (make_notebooks.QUICK_START, make_notebooks.ZERO_SHOT)
  workdirs = {name: str(unused / name) for name in names}
  results = notebook_kernels.execute_all(
    {
      name: {**shared, "DALLE_JAX_NOTEBOOK_WORKDIR": workdirs[name]}
      for name in names
    }
  )
  return {"results": results, "workdirs": workdirs, "module": make_notebooks}


def _notebook(notebooks, name):
  notebook = notebook_kernels.notebook_run(notebooks["results"], name)
  # It read the finished pipeline and wrote nothing of its own.
  assert not os.path.exists(notebooks["workdirs"][name])
  return notebook


def test_quick_start_notebook_samples_and_shows_grids(runs, notebooks):
  name = notebooks["module"].QUICK_START
  notebook = _notebook(notebooks, name)
  text = notebook_kernels.printed(notebook)
  assert "zero_shot: one sample" in text  # the pipeline's summary
  # TINY: 2 prompts, the best 2 of 4 candidates each, scored by CLIP.
  assert "scored by clip; images (2, 2, 32, 32, 3) uint8" in text
  assert notebook_kernels.image_count(notebook) == 2  # one grid per prompt
  # No pipeline run was added to the root's record.
  assert _run_events(runs["root"], 4) == []


def test_zero_shot_notebook_judges_with_and_without_reranking(notebooks):
  notebook = _notebook(notebooks, notebooks["module"].ZERO_SHOT)
  text = notebook_kernels.printed(notebook)
  number = notebook_kernels.NUMBER
  accuracies = {
    name: float(value)
    for name, value in re.findall(rf"accuracy ([^:\n]+): {number}", text)
  }
  assert set(accuracies) == {
    "real images",
    "without reranking",
    "CLIP best of 4",
  }
  # The judge finds every real zero-shot image correct; samples of 4
  # prompts score a multiple of 1/4.
  assert accuracies["real images"] == 1.0
  for name in ("without reranking", "CLIP best of 4"):
    assert accuracies[name] * 4 == pytest.approx(round(accuracies[name] * 4))
  assert "('red', 'triangle')" in text  # the held-out pairs
  assert notebook_kernels.image_count(notebook) == 4  # real, first, reranked


def test_report_command_regenerates_the_report(runs, regenerate_report):
  root, text = regenerate_report(runs["root"])
  assert "### By attribute" in text
  assert len(os.listdir(os.path.join(root, "figures"))) == 6


def test_report_states_the_settings_its_evaluation_was_sampled_with(
  runs, tmp_path
):
  # pipeline.json is the latest run's config, written when the run starts:
  # after a run that changed the temperature and stopped before evaluating,
  # it no longer describes the evaluation on disk. The report must state
  # the evaluation's own settings.
  root = str(tmp_path / "copy")
  shutil.copytree(runs["root"], root)
  own = checkpoint.read_json(os.path.join(root, "evaluation", "config.json"))
  latest = checkpoint.read_json(os.path.join(root, pipeline.PIPELINE_FILE))
  latest["evaluation"]["temperature"] = 0.123
  with open(os.path.join(root, pipeline.PIPELINE_FILE), "w") as handle:
    json.dump(latest, handle)
  assert report.main(["--workdir", root]) == 0
  with open(os.path.join(root, "report.md")) as handle:
    text = handle.read()
  assert f"(temperature {own['temperature']}, seed {own['seed']})" in text
  assert "(temperature 0.123," not in text
  assert f"moved by up to {own['clip_image_shift']} px" in text
  # An evaluation recorded before the shift existed scored images once.
  del own["clip_image_shift"]
  with open(os.path.join(root, "evaluation", "config.json"), "w") as handle:
    json.dump(own, handle)
  assert report.main(["--workdir", root]) == 0
  with open(os.path.join(root, "report.md")) as handle:
    text = handle.read()
  assert "scored by CLIP and judged by the Shapes judge" in text


def test_report_command_without_evaluation_names_the_train_command(
  tmp_path, capsys
):
  assert report.main(["--workdir", str(tmp_path)]) == 1
  message = capsys.readouterr().err
  assert "results.json does not exist" in message
  assert "--config dalle_jax/configs/default.py" in message


# ---------------------------------------------------------------------------
# Pure parts, on hand-made inputs.


def test_accuracy_curve_on_a_hand_made_example():
  # Two prompts, four candidates each.
  correct = np.array([[0, 1, 0, 1], [0, 0, 0, 1]], bool)
  scores = np.array([[0.5, 0.9, 0.1, 0.2], [0.3, 0.8, 0.1, 0.7]])
  curve = generation_eval.accuracy_curve(correct, scores, [1, 2, 4])
  # N=1: candidate 0 of each, both wrong. N=2: prompt 0 picks candidate 1
  # (0.9, correct), prompt 1 picks candidate 1 (0.8, wrong). N=4: prompt 0
  # still 1, prompt 1 still 1 (0.8 beats the correct 0.7).
  assert curve["reranked"] == [0.0, 0.5, 0.5]
  # At least one correct among the first N: none; prompt 0; both.
  assert curve["any_correct"] == [0.0, 0.5, 1.0]
  assert curve["single_sample"] == 3 / 8
  assert curve["candidates"] == [1, 2, 4]


@pytest.mark.parametrize(
  "count, expected",
  [(1, [1]), (4, [1, 2, 4]), (5, [1, 2, 4, 5]), (64, [1, 2, 4, 8, 16, 32, 64])],
)
def test_candidate_counts(count, expected):
  assert generation_eval.candidate_counts(count) == expected


def test_pair_accuracy_counts_each_named_pair():
  a = generation_eval.ATTRIBUTES.index
  captions = [
    "a white plus above a blue plus",
    "a small white plus in the center",
    "a red triangle",
  ]
  holds = np.ones((3, 2, len(generation_eval.ATTRIBUTES)), np.int8)
  holds[0, 0, a("shape")] = 0  # prompt 0: candidate 0 wrong, 1 right
  holds[1, :, a("colour")] = 0  # prompt 1: both wrong
  table = generation_eval.pair_accuracy(captions, holds, np.array([0, 1, 1]))
  # white plus: prompts 0 and 1, candidates right 1 of 4; picks 0 and 0.
  assert table == {
    "white plus": {"prompts": 2, "single_sample": 0.25, "reranked": 0.0},
    "blue plus": {"prompts": 1, "single_sample": 0.5, "reranked": 0.0},
    "red triangle": {"prompts": 1, "single_sample": 1.0, "reranked": 1.0},
  }


def test_report_shows_held_out_pairs_also_for_older_results(
  runs, regenerate_report
):
  root = runs["root"]
  results = generation_eval.read_results(root)
  zero_shot = results["splits"]["zero_shot"]
  with np.load(os.path.join(root, "evaluation", "zero_shot.npz")) as saved:
    captions = [str(caption) for caption in saved["captions"]]
    correct = np.all(saved["holds"] != 0, axis=-1)
  best = [prompt["best"] for prompt in zero_shot["prompts"]]
  # Every pair the prompts name is a held-out one, with its own figures.
  pair_pattern = r"(\w+) (circle|square|triangle|plus)"
  named = {
    " ".join(pair)
    for caption in captions
    for pair in re.findall(pair_pattern, caption)
  }
  assert set(zero_shot["pairs"]) == named
  assert named <= {f"{c} {s}" for c, s in shapes.HELD_OUT_PAIRS}
  for pair, entry in zero_shot["pairs"].items():
    rows = [p for p, caption in enumerate(captions) if pair in caption]
    assert entry["prompts"] == len(rows)
    assert entry["single_sample"] == pytest.approx(correct[rows].mean())
    assert entry["reranked"] == pytest.approx(
      np.mean([correct[p, best[p]] for p in rows])
    )

  # A results.json from before pairs were summarised: read_results fills
  # them in from the saved verdicts, so the regenerated report has them.
  path = os.path.join(root, "evaluation", "results.json")
  written = checkpoint.read_json(path)
  for summary in written["splits"].values():
    del summary["pairs"]
  copy, text = regenerate_report(root)
  checkpoint.write_json_atomically(
    os.path.join(copy, "evaluation", "results.json"), written
  )
  assert generation_eval.read_results(copy)["splits"] == results["splits"]
  assert report.main(["--workdir", copy]) == 0
  with open(os.path.join(copy, "report.md")) as handle:
    older = handle.read()
  assert older == text
  assert "### By held-out pair" in older
  for pair in named:
    assert f"| {pair} | {zero_shot['pairs'][pair]['prompts']} prompts |" in (
      older
    )


def test_attribute_accuracy_counts_only_stated_attributes():
  n = generation_eval.NOT_STATED
  a = generation_eval.ATTRIBUTES.index
  holds = np.full((2, 2, len(generation_eval.ATTRIBUTES)), n, np.int8)
  holds[:, :, a("count")] = [[1, 1], [1, 0]]
  holds[:, :, a("colour")] = [[0, 1], [1, 1]]
  holds[1, :, a("relation")] = [0, 1]  # only prompt 1 states a relation
  table = generation_eval.attribute_accuracy(holds, best=np.array([1, 0]))
  assert table["count"] == {"stated": 2, "single_sample": 0.75, "reranked": 1}
  assert table["colour"] == {"stated": 2, "single_sample": 0.75, "reranked": 1}
  assert table["relation"] == {
    "stated": 1,
    "single_sample": 0.5,
    "reranked": 0.0,
  }
  assert table["size"] == {
    "stated": 0,
    "single_sample": None,
    "reranked": None,
  }


def test_evaluation_captions_are_distinct_and_too_few_is_an_error():
  source = [{"canonical_caption": c} for c in (b"a", b"b", b"a", b"c")]
  assert generation_eval.evaluation_captions(source, 3) == ["a", "b", "c"]
  with pytest.raises(ValueError, match="has 3 distinct canonical captions"):
    generation_eval.evaluation_captions(source, 4)


def test_plan_and_config_differences():
  assert pipeline.plan(False, False, [], True) == pipeline.TRAINED
  assert pipeline.plan(True, True, [], False) == pipeline.SKIPPED
  assert pipeline.plan(True, False, [], False) == pipeline.RESUMED
  assert pipeline.plan(True, True, ["x"], False) == pipeline.REPLACED
  assert pipeline.plan(True, True, [], True) == pipeline.REPLACED
  saved = {"optim": {"lr": 1.0}, "train": {"progress_bar": True}, "a": [1]}
  current = {"optim": {"lr": 2.0}, "train": {"progress_bar": False}, "b": 0}
  assert pipeline.config_differences(saved, current) == [
    "a: [1] -> '<absent>'",
    "b: '<absent>' -> 0",
    "optim.lr: 1.0 -> 2.0",
  ]
  # A field added later reads, in records made before it, as the value
  # that computes what they computed; any other value is a difference.
  before_recolour = {"data": {"batch_size": 8}}
  for share, expected in ((0.0, []), (0.5, ["data.recolour: 0.0 -> 0.5"])):
    current = {"data": {"batch_size": 8, "recolour": share}}
    assert pipeline.config_differences(before_recolour, current) == expected
  # CLIP records made before the jitter trained on unmoved images.
  for jitter, expected in ((0, []), (1, ["data.image_jitter: 0 -> 1"])):
    current = {"data": {"batch_size": 8, "image_jitter": jitter}}
    assert pipeline.config_differences(before_recolour, current) == expected
  # Evaluations recorded before the shift scored each candidate once.
  before_shift = {"num_candidates": 64}
  for shift, expected in ((0, []), (1, ["clip_image_shift: 0 -> 1"])):
    current = {"num_candidates": 64, "clip_image_shift": shift}
    assert pipeline.config_differences(before_shift, current) == expected


REAL_MAKE_STEPS = pipeline.make_steps


def _stand_in_steps(trained):
  """`make_steps` whose steps write only their outputs and settings record.

  The real steps (names, outputs, records, settings) with `execute`
  replaced: it appends the step's name to `trained` and leaves what a
  finished step leaves, so `pipeline.run`'s planning runs for real.
  """

  def make_steps(config, root):
    steps = []
    for step in REAL_MAKE_STEPS(config, root):

      def execute(step=step):
        trained.append(step.name)
        for path in step.outputs:
          if path != step.record:
            os.makedirs(path, exist_ok=True)
        os.makedirs(os.path.dirname(step.record), exist_ok=True)
        with open(step.record, "w") as handle:
          json.dump(step.settings, handle)
        return {}

      def finished(step=step):
        return os.path.exists(step.record)

      steps.append(
        dataclasses.replace(step, execute=execute, finished=finished)
      )
    return steps

  return make_steps


def _stand_in_run(config, root, monkeypatch):
  """`pipeline.run` with stand-in steps; the names of the steps it ran."""
  trained = []
  monkeypatch.setattr(pipeline, "make_steps", _stand_in_steps(trained))
  monkeypatch.setattr(pipeline.report, "write_report", lambda root: "")
  monkeypatch.setattr(pipeline.report, "summary_lines", lambda root: [])
  monkeypatch.setattr(pipeline.generation_eval, "headline", lambda root: {})
  pipeline.run(config, root)
  return trained


# CLIP on the dVAE's reconstructions reads the dVAE (`pipeline.step_inputs`).
ON_RECONSTRUCTIONS = {"clip.dvae.reconstruct": True}


@pytest.mark.parametrize(
  "base, change, retrained",
  [
    ({}, {}, []),
    ({}, {"transformer.optim.lr": 5e-4}, ["transformer", "evaluation"]),
    ({}, {"clip.optim.lr": 5e-4}, ["clip", "evaluation"]),
    ({}, {"dvae.optim.lr": 5e-4}, ["dvae", "transformer", "evaluation"]),
    ({}, {"evaluation.num_candidates": 2}, ["evaluation"]),
    (
      ON_RECONSTRUCTIONS,
      {"dvae.optim.lr": 5e-4},
      ["dvae", "clip", "transformer", "evaluation"],
    ),
  ],
  ids=[
    "nothing",
    "transformer",
    "clip",
    "dvae",
    "evaluation",
    "dvae-with-clip-on-reconstructions",
  ],
)
def test_each_change_retrains_only_what_reads_it(
  base, change, retrained, tmp_path, monkeypatch
):
  data_dir = str(tmp_path / "data")
  root = str(tmp_path / "root")
  first = _stand_in_run(tiny_config(data_dir, **base), root, monkeypatch)
  assert first == list(STEPS)
  second = tiny_config(data_dir, **base, **change)
  assert _stand_in_run(second, root, monkeypatch) == retrained
  assert _events(root, 2) == {
    step: "replaced" if step in retrained else "skipped" for step in STEPS
  }
  for step in retrained:
    assert any(n.startswith(f"{step}.replaced-") for n in os.listdir(root))


def test_the_evaluation_runs_where_the_stages_train(
  tmp_path, monkeypatch, caplog
):
  data_dir = str(tmp_path / "data")
  root = str(tmp_path / "root")
  with caplog.at_level("INFO", logger="dalle_jax.pipeline"):
    _stand_in_run(tiny_config(data_dir), root, monkeypatch)
  assert "pipeline: dvae: training (no previous output)" in caplog.text
  assert "pipeline: evaluation: running (no previous output)" in caplog.text
  assert "pipeline: evaluation: ran in" in caplog.text
  caplog.clear()
  changed = tiny_config(data_dir, **{"evaluation.num_candidates": 2})
  with caplog.at_level("INFO", logger="dalle_jax.pipeline"):
    _stand_in_run(changed, root, monkeypatch)
  assert "pipeline: evaluation: re-running (config changed" in caplog.text
  assert "pipeline: evaluation: re-ran in" in caplog.text
  # stages.json keeps one vocabulary of actions; only its reading differs.
  assert _events(root, 2)["evaluation"] == "replaced"
  table = "\n".join(pipeline.report.stage_time_section(root))
  assert "| evaluation | re-ran |" in table
  assert "| dvae | skipped |" in table


def test_move_aside_never_overwrites(tmp_path):
  path = tmp_path / "dvae"
  path.mkdir()
  first = pipeline.move_aside(str(path), "stamp")
  path.mkdir()
  (path / "marker").write_text("second")
  second = pipeline.move_aside(str(path), "stamp")
  assert first.endswith("dvae.replaced-stamp")
  assert second.endswith("dvae.replaced-stamp-1")
  assert os.path.exists(os.path.join(second, "marker"))
  assert pipeline.move_aside(str(path), "stamp") is None


def test_stage_finished_needs_the_last_checkpoint_and_the_export(tmp_path):
  workdir = tmp_path / "dvae"
  (workdir / "checkpoints" / "2").mkdir(parents=True)
  (workdir / "checkpoints" / "4.orbax-checkpoint-tmp-1").mkdir()
  (workdir / "params").mkdir()
  assert not pipeline.stage_finished(str(workdir), 4)  # only step 2 is done
  (workdir / "checkpoints" / "4").mkdir()
  assert pipeline.stage_finished(str(workdir), 4)
  assert not pipeline.stage_finished(str(workdir), 6)
  (workdir / "params").rmdir()
  assert not pipeline.stage_finished(str(workdir), 4)


def test_stage_log_sums_resumed_time_and_restarts_on_replace(tmp_path):
  def seconds_after(action, seconds):
    log = pipeline.StageLog(str(tmp_path))  # one run each
    log.record("dvae", action, seconds, "why")
    with open(tmp_path / "stages.json") as handle:
      return json.load(handle)["steps"]["dvae"]

  root = str(tmp_path)
  assert seconds_after("trained", 5.0) == {
    "seconds": 5.0,
    "run": 1,
    "action": "trained",
    "root": root,
  }
  assert seconds_after("resumed", 3.0)["seconds"] == 8.0
  assert seconds_after("skipped", 0.0) == {
    "seconds": 8.0,
    "run": 2,
    "action": "skipped",
    "root": root,
  }
  assert seconds_after("replaced", 2.0)["seconds"] == 2.0


def test_stage_log_keeps_the_root_a_skipped_output_was_made_in(tmp_path):
  path = tmp_path / "stages.json"
  # A copied root: its outputs were made in /old/run, and skipping them
  # here does not make their records this root's.
  path.write_text(json.dumps({"runs": 1, "steps": {}, "events": []}))
  log = pipeline.StageLog(str(tmp_path))
  log.data["steps"]["dvae"] = {"seconds": 1.0, "root": "/old/run"}
  log.record("dvae", "skipped", 0.0, "why")
  # Made before roots were recorded: a skip means it matched this root.
  log.record("clip", "skipped", 0.0, "why")
  steps = json.loads(path.read_text())["steps"]
  assert steps["dvae"]["root"] == "/old/run"
  assert steps["clip"]["root"] == str(tmp_path)


def test_a_moved_root_is_skipped_and_still_sees_changes(tmp_path, monkeypatch):
  data_dir = str(tmp_path / "data")
  first = str(tmp_path / "first")
  assert _stand_in_run(tiny_config(data_dir), first, monkeypatch) == list(STEPS)
  with open(os.path.join(first, "transformer", "config.json")) as handle:
    recorded = json.load(handle)
  assert recorded["tokenizer"]["path"].startswith(first + os.sep)
  assert recorded["dvae"]["workdir"] == os.path.join(first, "dvae")
  # Moved twice: the records still name the first root, which is gone.
  second = str(tmp_path / "elsewhere" / "second")
  shutil.move(first, second)
  third = str(tmp_path / "third")
  shutil.move(second, third)
  assert _stand_in_run(tiny_config(data_dir), third, monkeypatch) == []
  assert _events(third, 2) == dict.fromkeys(STEPS, "skipped")
  changed = tiny_config(data_dir, **{"transformer.optim.lr": 5e-4})
  assert _stand_in_run(changed, third, monkeypatch) == [
    "transformer",
    "evaluation",
  ]
  events = {e["step"]: e["reason"] for e in _run_events(third, 3)}
  assert events["transformer"].startswith("config changed: optim.lr: ")
  assert "tokenizer" not in events["transformer"]


def test_a_root_made_before_roots_were_recorded_can_move(tmp_path, monkeypatch):
  data_dir = str(tmp_path / "data")
  root = str(tmp_path / "root")
  _stand_in_run(tiny_config(data_dir), root, monkeypatch)
  path = os.path.join(root, "stages.json")
  with open(path) as handle:
    record = json.load(handle)
  for entry in record["steps"].values():
    del entry["root"]
  with open(path, "w") as handle:
    json.dump(record, handle)
  # One run where it was made records the root; then it can move.
  assert _stand_in_run(tiny_config(data_dir), root, monkeypatch) == []
  moved = str(tmp_path / "moved")
  shutil.move(root, moved)
  assert _stand_in_run(tiny_config(data_dir), moved, monkeypatch) == []


# ---------------------------------------------------------------------------
# The config.


@pytest.mark.parametrize("variant", default_config.VARIANTS)
def test_default_config_builds_and_validates(variant, tmp_path):
  config = config_lib.load_config(f"{DEFAULT}:variant={variant}")
  root = str(tmp_path)
  pipeline.validate(config)
  pipeline.validate(config, root)
  stages = pipeline.stage_configs(config, root)
  for field in ("data.image_size", "data.text_length", "tokenizer.vocab_size"):
    values = {config_lib.get_field(stages[s], field) for s in stages}
    assert values == {config_lib.get_field(config, field)}
  assert stages["transformer"].dvae.workdir == os.path.join(root, "dvae")
  # The evaluation reranks as the sampling API does by default.
  assert config.evaluation.clip_image_shift == rerank.DEFAULT_CLIP_IMAGE_SHIFT


@pytest.mark.parametrize("reconstruct", [False, True])
def test_clip_reads_the_dvae_only_on_reconstructions(reconstruct, tmp_path):
  config = config_lib.load_config(
    f"{DEFAULT}:variant=tiny", {"clip.dvae.reconstruct": reconstruct}
  )
  inputs = pipeline.step_inputs(config)
  assert ("dvae" in inputs["clip"]) == reconstruct
  assert inputs["transformer"] == pipeline.STEP_INPUTS["transformer"]
  root = str(tmp_path)
  workdir = pipeline.stage_configs(config, root)["clip"].dvae.workdir
  assert workdir == (os.path.join(root, "dvae") if reconstruct else "")


def test_shared_fields_follow_overrides_from_any_section():
  config = config_lib.load_config(f"{DEFAULT}:variant=tiny")
  config_lib.override_from_text(config, "data.image_size", "64")
  assert config.dvae.data.image_size == config.clip.data.image_size == 64
  config_lib.override_from_text(config, "clip.data.text_length", "12")
  assert config.data.text_length == config.transformer.data.text_length == 12
  config_lib.override_from_text(config, "dvae.train.num_steps", "7")
  assert config.dvae.train.num_steps == 7 and config.clip.train.num_steps == 4


def test_train_command_line_reads_the_default_config():
  config, workdir = train.parse_command_line(
    [
      "--config",
      f"{DEFAULT}:variant=tiny",
      "--workdir",
      "runs/x",
      "--config.transformer.train.num_steps=3",
      "--config.evaluation.num_candidates=2",
    ]
  )
  assert config.task == "pipeline" and workdir == "runs/x"
  assert config.transformer.train.num_steps == 3
  assert config.evaluation.num_candidates == 2


@pytest.mark.parametrize(
  "overrides, message",
  [
    (
      {"data.name": "folder", "data.folder": "/photos"},
      "is not a directory",
    ),
    (
      {"transformer.dvae.workdir": "/elsewhere"},
      "gives the transformer stage its own dVAE",
    ),
    ({"clip.dvae.workdir": "/elsewhere"}, "gives the clip stage its own dVAE"),
    ({"evaluation.splits": ("train",)}, "use one or more of"),
    ({"evaluation.num_candidates": 0}, "num_candidates=0 must be at least 1"),
    ({"evaluation.clip_image_shift": -1}, "clip_image_shift=-1 must be at"),
    ({"dvae.task": "clip"}, "config.dvae.task='clip' must be 'dvae'"),
    ({"clip.train.num_steps": 0}, "config.train.num_steps=0 must be > 0"),
    (
      {"dvae.model.group_count": 3},  # the tiny dVAE's grid becomes 8
      r"grid side is 8 but config.transformer.model.grid_side=16",
    ),
    (
      {"transformer.model.image_vocab_size": 64},
      r"codebook size is 32 but config.transformer.model.image_vocab_size=64",
    ),
    (
      {
        "data.name": "folder",
        "data.folder": os.path.dirname(os.path.abspath(__file__)),
        "clip.data.hard_negatives": 1,
      },
      "hard_negatives=1 needs Shapes captions",
    ),
  ],
)
def test_invalid_pipeline_config_is_refused(tmp_path, overrides, message):
  config = config_lib.load_config(f"{DEFAULT}:variant=tiny", overrides)
  with pytest.raises(ValueError, match=message):
    pipeline.validate(config, str(tmp_path))


def test_rerank_scorers_experiment_on_the_saved_candidates(runs, capsys):
  from experiments import rerank_scorers

  root = runs["root"]
  generator = Generator.from_workdir(root)
  path = os.path.join(root, "evaluation", "zero_shot.npz")
  saved = np.load(path)
  captions = [str(c) for c in saved["captions"]]
  # The likelihoods of the saved codes equal what the Generator reports when
  # it samples the same candidates (same seed and temperature) and scores
  # them itself.
  saved_config = checkpoint.read_json(
    os.path.join(root, pipeline.PIPELINE_FILE)
  )
  temperature = saved_config["evaluation"]["temperature"]
  own = generator(
    captions, num_candidates=4, keep=4, seed=0, rerank=False,
    scorer="likelihood", temperature=temperature,
  )  # fmt: skip
  np.testing.assert_array_equal(own.tokens, saved["tokens"])
  likelihood = rerank_scorers.likelihood_scores(
    generator, captions, saved["tokens"], chunk_size=3
  )
  np.testing.assert_allclose(likelihood, own.scores, rtol=1e-5, atol=1e-4)

  result = rerank_scorers.compare_split(generator, path, chunk_size=4)
  with open(os.path.join(root, "evaluation", "results.json")) as handle:
    curve = json.load(handle)["splits"]["zero_shot"]["curve"]
  assert result["reranked"]["clip"] == pytest.approx(curve["reranked"])
  assert result["single_sample"] == pytest.approx(curve["single_sample"])
  correct = generation_eval.correct_from_holds(saved["holds"])
  gain = correct[np.arange(4), np.argmax(likelihood, axis=1)] - correct.mean(1)
  assert result["gain"]["likelihood"][0] == pytest.approx(gain.mean())

  assert rerank_scorers.main(["--workdir", root, "--chunk_size", "4"]) == 0
  printed = capsys.readouterr().out
  assert "zero_shot: 4 prompts" in printed and "validation" in printed

  # A range of the file's prompts is reranked as if the file held only them.
  part = rerank_scorers.compare_split(
    generator, path, chunk_size=4, prompts=slice(2, 4)
  )
  rows = correct[2:4]
  picks = np.argmax(saved["scores"][2:4], axis=1)
  assert part["prompts"] == 2
  assert part["reranked"]["clip"][-1] == pytest.approx(
    rows[np.arange(2), picks].mean()
  )
  assert part["single_sample"] == pytest.approx(rows.mean())
  argv = ["--workdir", root, "--chunk_size", "4", "--prompts"]
  assert rerank_scorers.main([*argv, "2:4"]) == 0
  assert "zero_shot: 2 prompts" in capsys.readouterr().out
  assert rerank_scorers.main([*argv, "4:2"]) == 2
  assert "0 <= START < END" in capsys.readouterr().err
  assert rerank_scorers.main([*argv, "9:12"]) == 2
  assert "has no prompts in 9:12" in capsys.readouterr().err


def test_rerank_scorers_scores_with_another_clip_run(runs, capsys):
  from experiments import rerank_scorers

  # The pipeline's own CLIP, loaded as "another" run, must give back the
  # scores the evaluation saved for the same decoded candidates.
  root = runs["root"]
  generator = Generator.from_workdir(root)
  clip_dir = os.path.join(root, "clip")
  clip = stages.load_stage(clip_dir, "clip")
  scorer = rerank_scorers.clip_scorer(generator, clip)
  saved = np.load(os.path.join(root, "evaluation", "zero_shot.npz"))
  captions = [str(c) for c in saved["captions"]]
  images = rerank_scorers.decoded_candidates(
    generator, saved["tokens"], chunk_size=3
  )
  scores = rerank_scorers.image_scores(scorer, captions, images, chunk_size=3)
  np.testing.assert_allclose(scores, saved["scores"], rtol=1e-5, atol=1e-5)
  # A CLIP for another image size is refused with the size it needs.
  bigger = dataclasses.replace(
    clip.model_config, image_size=2 * generator.image_size
  )
  with pytest.raises(ValueError, match="data.image_size=32"):
    rerank_scorers.clip_scorer(
      generator, dataclasses.replace(clip, model_config=bigger)
    )

  argv = ["--workdir", root, "--chunk_size", "4", "--clip_workdir", clip_dir]
  assert rerank_scorers.main(argv) == 0
  printed = capsys.readouterr().out
  assert "clip:clip@0: best of 4 minus one sample" in printed
  # The evaluation scored with the default shift: rescoring at that shift
  # picks what it picked on every prompt.
  shift = rerank.DEFAULT_CLIP_IMAGE_SHIFT
  assert rerank_scorers.main([*argv, "--image_shift", str(shift)]) == 0
  printed = capsys.readouterr().out
  assert f"clip:clip@{shift}: best of 4 minus one sample" in printed
  assert re.search(
    rf"clip@{shift} against clip, best of 4: right where clip is wrong on 0"
    r" prompts, the reverse on 0",
    printed,
  )


def test_clip_domain_gap_measures_another_clip_run(runs, capsys):
  from experiments import clip_domain_gap

  # The pipeline's own CLIP, passed as another run, must print the same
  # pair accuracies as the pipeline's CLIP read through the Generator.
  root = runs["root"]
  argv = ["--workdir", root, "--examples", "8", "--chunk_size", "4"]
  assert clip_domain_gap.main(argv) == 0
  own = capsys.readouterr().out
  other = ["--clip_workdir", os.path.join(root, "clip")]
  assert clip_domain_gap.main(argv + other) == 0
  assert capsys.readouterr().out == own
  assert "zero_shot: 8 examples" in own and "plus" in own
  assert "nan" not in own  # shapes without examples print "-"
  assert "colour-shape pair" in own and "reconstructions judged" in own


def test_clip_domain_gap_pair_table_counts_each_named_pair():
  from experiments import clip_domain_gap

  captions = [
    "a white plus above a blue plus",
    "a small white plus in the center",
    "a red triangle",
    "a red triangle to the left of a white plus",
  ]
  judged_correct = np.array([False, True, True, True])
  table = clip_domain_gap.pair_table(captions, judged_correct)
  # Hardest first: blue plus 0 of 1, white plus 2 of 3, red triangle 2 of 2.
  assert list(table) == ["blue plus", "white plus", "red triangle"]
  assert table["blue plus"] == (1, 0.0)
  assert table["white plus"] == (3, pytest.approx(2 / 3))
  assert table["red triangle"] == (2, 1.0)


def test_rerank_scorers_standardises_each_prompt():
  from experiments import rerank_scorers

  scores = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
  out = rerank_scorers.standardised(scores)
  np.testing.assert_allclose(out[0], [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
  np.testing.assert_array_equal(out[1], [0.0, 0.0, 0.0])
  correct = np.array([[False, False, True], [True, False, False]])
  best_correct = np.array([True, True])
  mean, error = rerank_scorers.reranking_gain(correct, best_correct)
  # Each prompt: its pick is correct and 1/3 of its candidates are: +2/3.
  assert mean == pytest.approx(2 / 3) and error == pytest.approx(0.0)
  mean, error = rerank_scorers.reranking_gain(correct, np.array([True, False]))
  # Gains +2/3 and -1/3: mean 1/6, sample sd 1/sqrt(2), over sqrt(2) prompts.
  assert mean == pytest.approx(1 / 6) and error == pytest.approx(0.5)


def test_sampling_sweep_judges_held_back_prompts(runs, capsys, monkeypatch):
  from dalle_jax.data import pipeline as data_pipeline
  from experiments import sampling_sweep

  root = runs["root"]
  argv = [
    "--workdir", root, "--splits", "zero_shot", "--num_prompts", "3",
    "--setting", "temperature=1.0", "--setting", "temperature=0.5,top_k=4",
  ]  # fmt: skip
  assert sampling_sweep.main(argv) == 0
  first = capsys.readouterr().out
  sweep = os.path.join(root, "sampling_sweep", "zero_shot")
  summary = checkpoint.read_json(os.path.join(sweep, "summary.json"))

  # The held-back prompts are the first distinct canonical captions of the
  # built zero_shot split (read from the data set, not regenerated) that
  # the evaluation did not judge.
  with np.load(os.path.join(root, "evaluation", "zero_shot.npz")) as saved:
    evaluated = {str(caption) for caption in saved["captions"]}
  stage_config = pipeline.stage_configs(tiny_config(runs["data_dir"]), root)
  source = data_pipeline.prepare_sources(stage_config["dvae"]).extra[
    "zero_shot"
  ]
  distinct = generation_eval.first_distinct_captions(
    source, len(source), "canonical_caption"
  )
  assert summary["prompts"] == [c for c in distinct if c not in evaluated][:3]

  # Each setting's figures are those of its saved, judged candidates.
  for label in ("temperature=1.0", "temperature=0.5,top_k=4"):
    with np.load(os.path.join(sweep, f"{label}.npz")) as saved:
      assert list(saved["captions"]) == summary["prompts"]
      assert saved["tokens"].shape[:2] == (3, 4)
      correct = np.all(saved["holds"] != 0, axis=-1)
      best = np.argmax(saved["scores"], axis=1)
    result = summary["results"][label]
    assert result["single_sample"] == pytest.approx(correct.mean())
    assert result["reranked"]["clip"][-1] == pytest.approx(
      correct[np.arange(3), best].mean()
    )
    assert f"{label:s}" in first
  assert summary["chosen"] in summary["results"]
  assert "3 held-back prompts" in first and "CLIP best of N" in first

  # A second call reuses the saved candidates: it samples nothing and
  # prints the same tables.
  def no_sampling(*args, **kwargs):
    raise AssertionError("sampled again")

  monkeypatch.setattr(generation_eval, "judge_split", no_sampling)
  assert sampling_sweep.main(argv) == 0
  second = capsys.readouterr().out
  assert "reused" in second and "sampled" not in second
  assert second.split("\n\n", 1)[1] == first.split("\n\n", 1)[1]

  # Too many prompts for the split is refused with the counts and the fix.
  assert sampling_sweep.main([*argv[:4], "--num_prompts", "100"]) == 1
  assert "lower --num_prompts" in capsys.readouterr().err


def test_sampling_sweep_skips_used_prompts(runs, capsys):
  from experiments import sampling_sweep

  root = runs["root"]
  argv = [
    "--workdir", root, "--splits", "zero_shot", "--num_prompts", "2",
    "--setting", "temperature=1.0",
  ]  # fmt: skip
  sweep = os.path.join(root, "sampling_sweep", "zero_shot")
  assert sampling_sweep.main([*argv, "--num_prompts", "4"]) == 0
  first = checkpoint.read_json(os.path.join(sweep, "summary.json"))
  with open(os.path.join(sweep, "temperature=1.0.npz"), "rb") as saved:
    first_file = saved.read()
  capsys.readouterr()

  # Prompts 3 and 4 of the same held-back list, in a folder of their own:
  # the first sweep's files stay as they were.
  assert sampling_sweep.main([*argv, "--skip_prompts", "2"]) == 0
  fresh_dir = os.path.join(sweep, "prompts_3-4")
  fresh = checkpoint.read_json(os.path.join(fresh_dir, "summary.json"))
  assert fresh["prompts"] == first["prompts"][2:4]
  with np.load(os.path.join(fresh_dir, "temperature=1.0.npz")) as saved:
    assert list(saved["captions"]) == fresh["prompts"]
  assert checkpoint.read_json(os.path.join(sweep, "summary.json")) == first
  with open(os.path.join(sweep, "temperature=1.0.npz"), "rb") as saved:
    assert saved.read() == first_file
  assert "2 held-back prompts" in capsys.readouterr().out

  # A negative count, or more than the split holds, is refused.
  assert sampling_sweep.main([*argv, "--skip_prompts", "-1"]) == 2
  assert "give 0 or more" in capsys.readouterr().err
  assert sampling_sweep.main([*argv, "--skip_prompts", "100"]) == 1
  error = capsys.readouterr().err
  assert "the 102 that --skip_prompts=100 plus --num_prompts=2 need" in error


@pytest.mark.parametrize(
  "text, message",
  [
    ("temp=0.8", "keys among temperature, top_k, top_p"),
    ("temperature", "write key=value pairs"),
    ("top_k=1.5", "top_k='1.5' is not an integer"),
    ("temperature=0", "must be a finite Python number > 0"),
    ("top_p=1.5", r"number in \(0, 1\]"),
  ],
)
def test_sampling_sweep_refuses_a_bad_setting(text, message):
  from experiments import sampling_sweep

  with pytest.raises(ValueError, match=message):
    sampling_sweep.parse_setting(text)


def test_sampling_sweep_reads_settings():
  from experiments import sampling_sweep

  setting = sampling_sweep.parse_setting("temperature=0.8, top_k=64,top_p=0")
  assert setting == {"temperature": 0.8, "top_k": 64, "top_p": 0.0}
  assert (
    sampling_sweep.setting_label(setting)
    == "temperature=0.8,top_k=64,top_p=0.0"
  )


def test_sampling_sweep_chooses_by_the_mean_over_splits():
  from experiments.sampling_sweep import choose

  def result(best, single):
    return {"reranked": {"clip": [0.0, best]}, "single_sample": single}

  per_split = {
    "zero_shot": {"a": result(0.875, 0.5), "b": result(0.625, 0.5)},
    "validation": {"a": result(0.625, 0.5), "b": result(1.0, 0.5)},
  }
  # a is best on zero_shot alone, b on the mean (0.8125 against 0.75).
  assert choose({"zero_shot": per_split["zero_shot"]}) == "a"
  assert choose(per_split) == "b"
  # Equal means (0.75): the higher mean single-sample accuracy wins.
  per_split["validation"]["b"] = result(0.875, 0.25)
  assert choose(per_split) == "a"
  same = {"x": {"a": result(0.5, 0.5), "b": result(0.5, 0.5)}}
  assert choose(same) == "a"  # a full tie: the earlier setting


def test_rerank_scorers_paired_counts_and_exact_p_value():
  from experiments import rerank_scorers

  # 7 prompts only the first gets right, 1 only the second, 2 both, 1
  # neither: p = 2 * P(X <= 1), X ~ Binomial(8, 1/2), written out.
  first = np.array([1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0], bool)
  second = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0], bool)
  expected = 2 * (math.comb(8, 0) + math.comb(8, 1)) / 2**8
  wins, losses, p_value = rerank_scorers.paired_counts(first, second)
  assert (wins, losses) == (7, 1)
  assert p_value == pytest.approx(expected)
  assert rerank_scorers.paired_counts(first, first) == (0, 0, 1.0)


def test_rerank_scorers_reads_other_candidates(runs, capsys, tmp_path):
  from experiments import rerank_scorers

  # The evaluation's own candidates, named by a pattern elsewhere: the same
  # tables as the default reading.
  root = runs["root"]
  for split in ("zero_shot", "validation"):
    shutil.copy(
      os.path.join(root, "evaluation", f"{split}.npz"),
      tmp_path / f"held_back_{split}.npz",
    )
  base = ["--workdir", root, "--chunk_size", "4"]
  assert rerank_scorers.main(base) == 0
  default = capsys.readouterr().out
  pattern = str(tmp_path / "held_back_{split}.npz")
  assert rerank_scorers.main([*base, "--candidates", pattern]) == 0
  assert capsys.readouterr().out == default
  assert "likelihood against clip, best of 4" in default
  assert rerank_scorers.main([*base, "--candidates", "no_split.npz"]) == 1
  assert "has no {split}" in capsys.readouterr().err
