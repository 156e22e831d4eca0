"""Writes the report of a finished pipeline work directory.

`write_report` turns the evaluation (see `dalle_jax.generation_eval`: its
results.json and per-split .npz), the stages' metrics.jsonl and
stages.json into ROOT/report.md, with training curves, the accuracy (or
CLIP score) against the number of candidates, and labelled sample grids
in ROOT/figures/:
  python -m dalle_jax.report --workdir ROOT

Shape letters: P prompts, S image side.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from dalle_jax import checkpoint, images, intervals, relocation, summaries
from dalle_jax.checkpoint import CONFIG_FILE
from dalle_jax.generation_eval import (
  ATTRIBUTES,
  CLIP_SCORES,
  EVALUATION_DIR,
  JUDGED,
  SCORED_SPLIT,
  SPLITS,
  read_results,
)

SPLIT_TITLES = {
  "zero_shot": "zero_shot (held-out colour-shape pairs)",
  "validation": "validation (seen pairs)",
}
REPORT_FILE = "report.md"
# Written by dalle_jax.pipeline: the config and what each run did.
PIPELINE_FILE = "pipeline.json"
STAGES_FILE = relocation.STAGES_FILE
# stages.json records every step's action with the training stages' words;
# the evaluation runs rather than trains, and reads so in logs and reports.
EVALUATION_STEP = "evaluation"
_EVALUATION_ACTIONS = {"trained": "ran", "replaced": "re-ran"}
FIGURES_DIR = "figures"
STAGES = ("dvae", "clip", "transformer")
MIN_TILE_PIXELS = 160
CAPTION_COLOUR, SCORE_COLOUR = (0, 0, 0), (0, 70, 160)
GRID_COLUMNS = 4

# Training-curve panels per stage: (title, [(split, metric), ...]).
_JUDGED = (("eval", "validation_judged_correct"),
           ("eval", "zero_shot_judged_correct"))  # fmt: skip
CURVES = {
  "dvae": (
    ("loss", (("train", "loss"),)),
    ("reconstruction PSNR (dB)", (("eval", "psnr"),)),
    ("reconstructions judged correct", _JUDGED),
  ),
  "clip": (
    ("loss", (("train", "loss"), ("eval", "loss"))),
    (
      "retrieval top-1",
      (
        ("eval", "text_to_image_top1"),
        ("eval", "image_to_text_top1"),
        ("eval", "zero_shot_text_to_image_top1"),
        ("eval", "zero_shot_image_to_text_top1"),
      ),
    ),
  ),
  "transformer": (
    ("loss", (("train", "loss"), ("eval", "loss"))),
    (
      "image bits per token",
      (("train", "image_bits_per_token"), ("eval", "image_bits_per_token")),
    ),
    ("one sample judged correct", _JUDGED),
  ),
}
# The final evaluation figures the report shows per stage.
STAGE_METRICS = {
  "dvae": (
    "psnr", "mse", "codebook_usage", "code_perplexity",
    "validation_judged_correct", "zero_shot_judged_correct",
    *(f"{split}_wrong_{a}" for split in SPLITS for a in ATTRIBUTES),
  ),
  "clip": (
    "loss", "text_to_image_top1", "image_to_text_top1", "chance_top1",
    "zero_shot_loss", "zero_shot_text_to_image_top1",
    "zero_shot_image_to_text_top1", "zero_shot_chance_top1",
  ),
  "transformer": (
    "loss", "text_loss", "image_loss", "image_bits_per_token",
    "image_accuracy", "validation_judged_correct", "zero_shot_judged_correct",
  ),
}  # fmt: skip

# ---------------------------------------------------------------------------
# Reading a work directory.


def evaluation_settings(root: str, config: dict) -> dict:
  """The settings ROOT's evaluation was sampled with.

  The evaluation's own record (`evaluation/config.json`, written when it
  ran), not pipeline.json's section: pipeline.json holds the latest run's
  config, written when that run starts, so after a run that changed the
  sampling settings and stopped before its evaluation it describes an
  evaluation that was never made. pipeline.json's section only for
  evaluations without a record.
  """
  own = checkpoint.read_json(
    os.path.join(root, EVALUATION_DIR, CONFIG_FILE), None
  )
  return own if own is not None else config.get("evaluation", {})


def read_steps(root: str) -> tuple[int, list[tuple[str, dict]]]:
  """stages.json: the number of runs, and each step's entry in run order."""
  stages = checkpoint.read_json(os.path.join(root, STAGES_FILE), {})
  steps = stages.get("steps", {})
  order = dict.fromkeys(e["step"] for e in stages.get("events", []))
  names = [name for name in order if name in steps]
  return stages.get("runs", 0), [(name, steps[name]) for name in names]


def final_eval(root: str, stage: str) -> dict:
  """The last eval record of a stage's metrics.jsonl ({} if none)."""
  records = summaries.read_metrics(os.path.join(root, stage))
  evals = [r for r in records if r["split"] == "eval"]
  return evals[-1] if evals else {}


def _split_line(kind: str, split: str, summary: dict) -> str:
  count = summary["num_candidates"]
  if kind == CLIP_SCORES:
    return (
      f"{split}: mean CLIP score {summary['mean_score']:.2f} over all "
      f"{count} candidates, {summary['mean_best_score']:.2f} for the best "
      f"of {count}"
    )
  curve, bounds = summary["curve"], headline_intervals(summary)

  def share(key: str, value: float) -> str:
    return _with_interval(value, bounds.get(key))

  return (
    f"{split}: one sample {share('single_sample', curve['single_sample'])} "
    f"correct, CLIP best of {count} "
    f"{share('reranked', curve['reranked'][-1])}, any of {count} "
    f"{share('any_correct', curve['any_correct'][-1])} (95% intervals over "
    "prompts in brackets)"
  )


def action_text(step: str, action: str) -> str:
  """How a step's recorded `action` reads: 'ran' for a trained evaluation."""
  if step == EVALUATION_STEP:
    return _EVALUATION_ACTIONS.get(action, action)
  return action


def summary_lines(root: str) -> list[str]:
  """One line per split and per stage, for the end of a pipeline log."""
  results = read_results(root)
  lines = [
    _split_line(results["kind"], split, summary)
    for split, summary in results["splits"].items()
  ]
  for name, entry in read_steps(root)[1]:
    lines.append(
      f"{name}: {action_text(name, entry['action'])} in this run; took "
      f"{format_seconds(entry['seconds'])} to make"
    )
  return lines


# ---------------------------------------------------------------------------
# Figures.


def _series(records: list[dict], split: str, metric: str):
  points = [
    (r["step"], float(r[metric]))
    for r in records
    if r["split"] == split and metric in r
  ]
  return [p[0] for p in points], [p[1] for p in points]


def plot_training_curves(root: str, stage: str, path: str) -> str | None:
  """Plots a stage's metrics.jsonl as one panel per CURVES entry."""
  from matplotlib.figure import Figure  # no pyplot: no global state

  records = summaries.read_metrics(os.path.join(root, stage))
  panels = [
    (title, [(s, m, *_series(records, s, m)) for s, m in lines])
    for title, lines in CURVES[stage]
  ]
  panels = [(t, [ln for ln in lines if ln[2]]) for t, lines in panels]
  panels = [(t, lines) for t, lines in panels if lines]
  if not panels:
    return None
  figure = Figure(figsize=(4.5 * len(panels), 3.4), layout="constrained")
  axes = figure.subplots(1, len(panels), squeeze=False)[0]
  for axis, (title, lines) in zip(axes, panels, strict=True):
    for split, metric, steps, values in lines:
      axis.plot(steps, values, marker="o" if split == "eval" else None,
                markersize=3, label=f"{split} {metric}")  # fmt: skip
    axis.set_title(title)
    axis.set_xlabel("step")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
  figure.suptitle(f"{stage} training")
  figure.savefig(path, dpi=100)
  return path


def plot_accuracy_curves(results: dict, path: str) -> str:
  """Accuracy against the number of candidates, one panel per split."""
  from matplotlib.figure import Figure

  splits = list(results["splits"])
  figure = Figure(figsize=(5 * len(splits), 3.8), layout="constrained")
  axes = figure.subplots(1, len(splits), squeeze=False)[0]
  for axis, split in zip(axes, splits, strict=True):
    curve = results["splits"][split]["curve"]
    counts = curve["candidates"]
    axis.plot(counts, curve["reranked"], marker="o", label="CLIP best of N")
    axis.plot(
      counts,
      [curve["single_sample"]] * len(counts),
      linestyle="--",
      label="no reranking (one sample)",
    )
    axis.plot(
      counts,
      curve["any_correct"],
      marker=".",
      label="any of N (perfect reranker)",
    )
    axis.set_xscale("log", base=2)
    axis.set_xticks(counts, [str(n) for n in counts])
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel("candidates N")
    axis.set_ylabel("share of prompts judged correct")
    axis.set_title(SPLIT_TITLES[split])
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
  figure.savefig(path, dpi=100)
  return path


def _verdict(prompt: dict, holds_row: np.ndarray) -> tuple[str, tuple]:
  if prompt["best_correct"]:
    return "judged correct", (0, 120, 0)
  wrong = [a for a, h in zip(ATTRIBUTES, holds_row, strict=True) if h == 0]
  return "wrong: " + ", ".join(wrong), (200, 0, 0)


def labelled_tile(image, lines, colours, size: int, num_lines: int):
  """[S, S, 3] uint8 enlarged to `size` px, text lines underneath."""
  font = images.label_font()
  line_height = images.LABEL_LINE_HEIGHT
  tile = Image.new("RGB", (size, size + num_lines * line_height + 4), "white")
  tile.paste(Image.fromarray(image).resize((size, size), Image.NEAREST))
  draw = ImageDraw.Draw(tile)
  for i, (line, colour) in enumerate(zip(lines, colours, strict=True)):
    draw.text((2, size + 2 + i * line_height), line, fill=colour, font=font)
  return np.asarray(tile)


def labelled_grid(best_images: np.ndarray, labels, path: str) -> str:
  """Images in rows of GRID_COLUMNS, each with its label underneath.

  Args:
    best_images: [P, S, S, 3] uint8, enlarged to at least MIN_TILE_PIXELS.
    labels: per image, a list of (text, RGB colour) pairs; each text is
      wrapped to the tile's width.
    path: the PNG to write.

  Returns:
    `path`.
  """
  side = best_images.shape[1]
  size = side * max(1, math.ceil(MIN_TILE_PIXELS / side))
  font = images.label_font()
  texts = []
  for label in labels:
    lines, colours = [], []
    for text, colour in label:
      wrapped = images.wrap_to_width(text, font, size - 4)
      lines += wrapped
      colours += [colour] * len(wrapped)
    texts.append((lines, colours))
  num_lines = max(len(lines) for lines, _ in texts)
  tiles = [
    labelled_tile(image, lines, colours, size, num_lines)
    for image, (lines, colours) in zip(best_images, texts, strict=True)
  ]
  columns = min(GRID_COLUMNS, len(tiles))
  blank = np.full_like(tiles[0], 255)
  tiles += [blank] * (-len(tiles) % columns)
  rows = np.stack(tiles).reshape(-1, columns, *tiles[0].shape)
  return images.save_png(path, images.make_grid(rows))


def sample_grid(root: str, split: str, summary: dict, count: int, path: str):
  """The CLIP-best image of the first prompts, with caption and verdict."""
  data = np.load(os.path.join(root, EVALUATION_DIR, f"{split}.npz"))
  labels = [
    [
      (prompt["caption"], CAPTION_COLOUR),
      _verdict(prompt, data["holds"][p, prompt["best"]]),
    ]
    for p, prompt in enumerate(summary["prompts"][:count])
  ]
  return labelled_grid(data["best_images"][:count], labels, path)


def scored_sample_grid(
  root: str, split: str, summary: dict, count: int, path: str
) -> str:
  """The CLIP-best image of the first prompts, with caption and score."""
  data = np.load(os.path.join(root, EVALUATION_DIR, f"{split}.npz"))
  prompts = summary["prompts"][:count]
  labels = [
    [
      (prompt["caption"], CAPTION_COLOUR),
      (f"CLIP score {prompt['best_score']:.2f}", SCORE_COLOUR),
    ]
    for prompt in prompts
  ]
  return labelled_grid(data["top_images"][: len(prompts), 0], labels, path)


# ---------------------------------------------------------------------------
# report.md


def format_seconds(seconds: float) -> str:
  """`83.2` -> `'1m 23s'`."""
  minutes, rest = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  if hours:
    return f"{hours}h {minutes:02d}m {rest:02d}s"
  return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


def _percent(value) -> str:
  return "n/a" if value is None else f"{100 * value:.1f}%"


def _number(value) -> str:
  if isinstance(value, str):
    return value
  return f"{value:.4g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |"]
  lines.append("|" + "|".join(" --- " for _ in header) + "|")
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return lines


def _with_interval(value, interval: tuple[float, float] | None) -> str:
  """`0.89, (0.79, 0.95)` -> `'89.1% (79.1-94.6)'`."""
  if interval is None:
    return _percent(value)
  low, high = interval
  return f"{_percent(value)} ({100 * low:.1f}-{100 * high:.1f})"


def headline_intervals(summary: dict) -> dict[str, tuple[float, float]]:
  """95% intervals over prompts for the headline's three shares.

  `single_sample` is the mean of the prompts' shares of correct
  candidates, `reranked` and `any_correct` shares of prompts (see
  `dalle_jax.intervals`). Empty with fewer than 2 prompts.
  """
  prompts, count = summary["prompts"], summary["num_candidates"]
  if len(prompts) < 2:
    return {}
  correct = [p["correct_candidates"] for p in prompts]
  return {
    "single_sample": intervals.mean_interval([c / count for c in correct]),
    "reranked": intervals.wilson_interval(
      sum(p["best_correct"] for p in prompts), len(prompts)
    ),
    "any_correct": intervals.wilson_interval(
      sum(c > 0 for c in correct), len(prompts)
    ),
  }


def headline_section(results: dict) -> list[str]:
  """Per split: one-sample, CLIP-best and any-correct accuracy at C.

  Each share is followed by its 95% interval over prompts.
  """
  rows = []
  for split, summary in results["splits"].items():
    curve, count = summary["curve"], summary["num_candidates"]
    bounds = headline_intervals(summary)
    rows.append(
      (
        SPLIT_TITLES[split],
        summary["num_prompts"],
        count,
        _with_interval(curve["single_sample"], bounds.get("single_sample")),
        _with_interval(curve["reranked"][-1], bounds.get("reranked")),
        _with_interval(curve["any_correct"][-1], bounds.get("any_correct")),
      )
    )
  header = ("split", "prompts", "candidates C", "one sample",
            "CLIP best of C", "any of C correct")  # fmt: skip
  return _table(header, rows)


def curve_section(results: dict) -> list[str]:
  """Accuracy for each N, with and without reranking, both splits."""
  splits = list(results["splits"])
  counts = results["splits"][splits[0]]["curve"]["candidates"]
  header = ["N"]
  for split in splits:
    header += [f"{split}: CLIP best of N", f"{split}: any of N"]
  rows = []
  for i, n in enumerate(counts):
    row = [str(n)]
    for split in splits:
      curve = results["splits"][split]["curve"]
      row += [_percent(curve["reranked"][i]), _percent(curve["any_correct"][i])]
    rows.append(row)
  singles = ["one sample (no reranking)"]
  for split in splits:
    singles += [
      _percent(results["splits"][split]["curve"]["single_sample"]),
      "",
    ]
  return _table(header, [*rows, singles])


def attribute_section(results: dict) -> list[str]:
  """Per attribute and split: how often it holds, before and after."""
  splits = list(results["splits"])
  header = ["attribute"]
  for split in splits:
    header += [
      f"{split}: stated in",
      f"{split}: one sample",
      f"{split}: CLIP best",
    ]
  rows = []
  for attribute in ATTRIBUTES:
    row = [attribute]
    for split in splits:
      entry = results["splits"][split]["attributes"][attribute]
      row += [
        f"{entry['stated']} prompts",
        _percent(entry["single_sample"]),
        _percent(entry["reranked"]),
      ]
    rows.append(row)
  return _table(header, rows)


def pair_section(summary: dict) -> list[str]:
  """Per colour-shape pair of one split, hardest first (one sample)."""
  pairs = sorted(
    summary["pairs"].items(),
    key=lambda item: (item[1]["single_sample"], item[0]),
  )
  return _table(
    ["pair", "named in", "one sample", "CLIP best"],
    [
      [
        pair,
        f"{entry['prompts']} prompts",
        _percent(entry["single_sample"]),
        _percent(entry["reranked"]),
      ]
      for pair, entry in pairs
    ],
  )


def stage_time_section(root: str) -> list[str]:
  """Per step: what the latest run did and the time its output took."""
  runs, steps = read_steps(root)
  rows = [
    (
      name,
      action_text(name, entry["action"]),
      format_seconds(entry["seconds"]),
      entry.get("run"),
    )
    for name, entry in steps
  ]
  total = sum(entry["seconds"] for _, entry in steps)
  rows.append(("total", "", format_seconds(total), ""))
  header = ("step", f"latest run (#{runs})", "time to make", "made in run")
  return _table(header, rows)


def stage_metrics_section(root: str, stage: str) -> list[str]:
  """A stage's final evaluation figures (STAGE_METRICS) as a table."""
  record = final_eval(root, stage)
  rows = [
    (name, _number(record[name]))
    for name in STAGE_METRICS[stage]
    if name in record
  ]
  if not rows:
    return ["(no evaluation recorded)"]
  return [f"Final evaluation at step {record['step']} (metrics without a "
          "split prefix are on `validation`):", "",
          *_table(("metric", "value"), rows)]  # fmt: skip


def scored_headline_section(results: dict) -> list[str]:
  """Per split: the mean CLIP score of all candidates and of the best."""
  rows = [
    (
      split,
      summary["num_prompts"],
      summary["num_candidates"],
      _number(summary["mean_score"]),
      _number(summary["mean_best_score"]),
    )
    for split, summary in results["splits"].items()
  ]
  header = ("split", "prompts", "candidates C",
            "mean CLIP score, all candidates",
            "mean CLIP score, best of C")  # fmt: skip
  return _table(header, rows)


def scored_curve_section(summary: dict) -> list[str]:
  """The mean best-of-N CLIP score for each N, then all candidates."""
  curve = summary["curve"]
  rows = [
    (str(n), _number(score))
    for n, score in zip(curve["candidates"], curve["mean_best_score"],
                        strict=True)
  ]  # fmt: skip
  rows.append(("all candidates (no reranking)", _number(summary["mean_score"])))
  return _table(("N", "mean CLIP score of the best of N"), rows)


def _cell(text: str) -> str:
  """A user's caption as one Markdown table cell."""
  return text.replace("|", "\\|")


def scored_prompt_section(summary: dict) -> list[str]:
  """Per prompt: the best candidate's score, the mean, the top scores."""
  rows = [
    (
      _cell(prompt["caption"]),
      _number(prompt["best_score"]),
      _number(prompt["mean_score"]),
      ", ".join(f"{s:.2f}" for s in prompt["top_scores"]),
      ", ".join(str(c) for c in prompt["top"]),
    )
    for prompt in summary["prompts"]
  ]
  header = ("prompt", "best score", "mean score", "top scores",
            "top candidates")  # fmt: skip
  return _table(header, rows)


def write_figures(root: str, results: dict, grid_prompts: int) -> dict:
  """Writes every PNG into ROOT/figures; returns {name: relative path}."""
  folder = os.path.join(root, FIGURES_DIR)
  os.makedirs(folder, exist_ok=True)
  figures = {}
  for stage in STAGES:
    path = os.path.join(folder, f"training_{stage}.png")
    if plot_training_curves(root, stage, path):
      figures[f"training_{stage}"] = path
  judged = results["kind"] == JUDGED
  if judged:
    figures["accuracy"] = plot_accuracy_curves(
      results, os.path.join(folder, "accuracy_vs_candidates.png")
    )
  grid = sample_grid if judged else scored_sample_grid
  for split, summary in results["splits"].items():
    figures[f"samples_{split}"] = grid(
      root, split, summary, grid_prompts,
      os.path.join(folder, f"samples_{split}.png"),
    )  # fmt: skip
  return {name: os.path.relpath(p, root) for name, p in figures.items()}


def _sampling_settings(evaluation: dict) -> str:
  return (
    f"{evaluation.get('num_candidates', '?')} candidates were sampled per "
    f"prompt (temperature {evaluation.get('temperature', '?')}, seed "
    f"{evaluation.get('seed', '?')})"
  )


def _clip_scoring(evaluation: dict) -> str:
  """How CLIP scored the candidates; evaluations older than the image
  shift scored each image once."""
  shift = evaluation.get("clip_image_shift", 0)
  if not shift:
    return "scored by CLIP"
  return (
    "scored by CLIP (each image's embedding averaged over its 9 copies "
    f"moved by up to {shift} px, `evaluation.clip_image_shift`)"
  )


def judged_sections(results: dict, figures: dict, evaluation: dict):
  """The Shapes evaluation: judged accuracy, by N and by attribute."""
  lines = [
    "## Zero-shot generation, judged",
    "",
    f"Each prompt is a distinct canonical caption of the split; "
    f"{_sampling_settings(evaluation)}, {_clip_scoring(evaluation)} and "
    "judged by the Shapes judge. *One sample*: share of all candidates "
    "judged correct. *CLIP best of N*: share of prompts whose "
    "highest-scored of the first N candidates is correct. *Any of N*: "
    "share with at least one correct "
    "among the first N (what a perfect reranker would reach). In brackets, "
    "95% intervals over prompts: Wilson's for the shares of prompts, and "
    "the mean +- 1.96 standard errors of the prompts' own shares for one "
    "sample (a prompt's candidates are not independent draws).",
    "",
    *headline_section(results),
    "",
    f"![accuracy against candidates]({figures['accuracy']})",
    "",
    "### Accuracy against the number of candidates",
    "",
    *curve_section(results),
    "",
    "### By attribute",
    "",
    "Share of images in which the attribute holds, over the prompts whose "
    "caption states it (`count`: the image shows as many objects as the "
    "caption names).",
    "",
    *attribute_section(results),
    "",
  ]
  if "zero_shot" in results["splits"]:
    lines += [
      "### By held-out pair",
      "",
      "Share of zero_shot images judged correct (every stated attribute), "
      "over the prompts that name the colour-shape pair (a prompt with two "
      "objects counts for both of its pairs). The split's accuracy depends "
      "on how often its prompts name the hardest pairs.",
      "",
      *pair_section(results["splits"]["zero_shot"]),
      "",
    ]
  lines += ["### Samples: CLIP's best image per prompt", ""]
  for split in results["splits"]:
    grid = figures[f"samples_{split}"]
    lines += [f"{SPLIT_TITLES[split]}:", "", f"![{split} samples]({grid})", ""]
  return lines


def scored_sections(results: dict, figures: dict, evaluation: dict):
  """A folder's evaluation: CLIP scores of the candidates, no judge."""
  summary = results["splits"][SCORED_SPLIT]
  return [
    "## Generation from the validation captions, scored by CLIP",
    "",
    "The data set is a folder of captioned images, which has no judge, so "
    "every figure here is CLIP's own. Each prompt is a distinct caption of "
    f"the `{SCORED_SPLIT}` split; {_sampling_settings(evaluation)} and "
    f"{_clip_scoring(evaluation)}: `exp(logit_scale) * cos(image, "
    "caption)`, at most 100. *All candidates*: the mean score without "
    "reranking. *Best of N*: the mean over prompts of the highest score "
    "among the first N candidates. CLIP both picks and grades the best, so "
    "best of N is at least the mean by construction: the gap shows how "
    "widely CLIP's "
    "scores spread over the candidates (what reranking buys by CLIP's own "
    "measure), not an independent judgement of the images.",
    "",
    *scored_headline_section(results),
    "",
    "### CLIP score against the number of candidates",
    "",
    *scored_curve_section(summary),
    "",
    "### Per prompt",
    "",
    "Candidates are numbered in sampling order; top scores best first.",
    "",
    *scored_prompt_section(summary),
    "",
    "### Samples: CLIP's best image per prompt",
    "",
    f"![{SCORED_SPLIT} samples]({figures[f'samples_{SCORED_SPLIT}']})",
    "",
  ]


def stage_sections(root: str, figures: dict) -> list[str]:
  """Time per step, then each stage's final figures and training curves."""
  lines = ["## Stages", "", *stage_time_section(root), ""]
  titles = {
    "dvae": "dVAE: hard-code reconstructions",
    "clip": "CLIP: retrieval within evaluation batches",
    "transformer": "Transformer",
  }
  for stage in STAGES:
    lines += [
      f"### {titles[stage]}",
      "",
      *stage_metrics_section(root, stage),
      "",
    ]
    if f"training_{stage}" in figures:
      lines += [f"![{stage} training]({figures[f'training_{stage}']})", ""]
  return lines


def report_markdown(root: str, results: dict, figures: dict) -> str:
  """The text of report.md."""
  config = checkpoint.read_json(os.path.join(root, PIPELINE_FILE), {})
  evaluation = evaluation_settings(root, config)
  sections = judged_sections if results["kind"] == JUDGED else scored_sections
  lines = [
    "# dalle_jax pipeline report",
    "",
    f"Work directory: `{root}` (variant `{config.get('variant', '?')}`). "
    "Regenerate with `python -m dalle_jax.report --workdir "
    f"{root}`.",
    "",
    *sections(results, figures, evaluation),
    *stage_sections(root, figures),
    "## Config",
    "",
    "<details><summary>pipeline.json</summary>",
    "",
    "```json",
    json.dumps(config, indent=2, sort_keys=True),
    "```",
    "",
    "</details>",
    "",
  ]
  return "\n".join(lines)


def write_report(root: str) -> str:
  """Writes ROOT/report.md and ROOT/figures/*.png; returns the report path.

  Raises:
    FileNotFoundError: the work directory has no evaluation yet.
  """
  root = os.path.abspath(root)
  results = read_results(root)
  config = checkpoint.read_json(os.path.join(root, PIPELINE_FILE), {})
  grid_prompts = evaluation_settings(root, config).get("grid_prompts", 16)
  figures = write_figures(root, results, grid_prompts)
  path = os.path.join(root, REPORT_FILE)
  temporary = f"{path}.tmp"
  with open(temporary, "w") as handle:
    handle.write(report_markdown(root, results, figures))
  os.replace(temporary, path)
  return path


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m dalle_jax.report --workdir ROOT`; returns the exit code."""
  parser = argparse.ArgumentParser(
    prog="python -m dalle_jax.report",
    description="Regenerate report.md and its figures from a finished "
    "pipeline work directory.",
  )
  parser.add_argument("--workdir", required=True, help="the pipeline root")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  try:
    path = write_report(args.workdir)
  except FileNotFoundError as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  print(f"Wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
