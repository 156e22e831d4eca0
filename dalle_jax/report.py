"""Evaluates a pipeline work directory and writes its report.

`evaluate` samples `num_candidates` images for each of the first distinct
canonical captions of the Shapes splits `zero_shot` (held-out colour-shape
pairs) and `validation` (seen pairs), once, in sampling order, scores each
with CLIP and judges each with the Shapes judge. From these, for N = 1, 2,
4, ... candidates: the share of prompts whose CLIP-best of the first N is
correct (reranked), and the share with at least one correct among the first
N (what a perfect reranker would reach); the single-sample accuracy is the
mean over all candidates. Attributes (count, colour, shape, size, position,
relation) are scored separately over the captions that state them.

`write_report` turns the evaluation, the stages' metrics.jsonl and
stages.json into ROOT/report.md with figures in ROOT/figures/:
  python -m dalle_jax.report --workdir ROOT

Shape letters: P prompts, C candidates per prompt, A judged attributes,
S image side, W code grid side.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
from collections.abc import Sequence

import numpy as np
from ml_collections import ConfigDict
from PIL import Image, ImageDraw, ImageFont

from dalle_jax import checkpoint, images, summaries
from dalle_jax import config as config_lib
from dalle_jax.data import judge
from dalle_jax.data import pipeline as data_pipeline

SPLITS = ("zero_shot", "validation")
SPLIT_TITLES = {
  "zero_shot": "zero_shot (held-out colour-shape pairs)",
  "validation": "validation (seen pairs)",
}
ATTRIBUTES = judge.ATTRIBUTES
EVALUATION_DIR = "evaluation"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
# Written by dalle_jax.pipeline: the config and what each run did.
PIPELINE_FILE = "pipeline.json"
STAGES_FILE = "stages.json"
FIGURES_DIR = "figures"
STAGES = ("dvae", "clip", "transformer")
# holds[p, c, a]: the judge's verdict on attribute a, or NOT_STATED.
NOT_STATED = -1
MIN_TILE_PIXELS = 160
GRID_COLUMNS = 4
TRAIN_COMMAND = (
  "python -m dalle_jax.train --config dalle_jax/configs/default.py "
  "--workdir {root}"
)

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
# Evaluation math: pure functions of judged, scored candidates.


def candidate_counts(num_candidates: int) -> list[int]:
  """N = 1, 2, 4, ... below `num_candidates`, then `num_candidates` itself."""
  counts = [2**i for i in range(num_candidates.bit_length())]
  counts = [n for n in counts if n < num_candidates]
  return [*counts, num_candidates]


def best_of_first(scores: np.ndarray, count: int) -> np.ndarray:
  """[P] int: each prompt's highest-scoring candidate among the first `count`.

  Ties go to the earlier candidate.
  """
  return np.argmax(scores[:, :count], axis=1)


def accuracy_curve(
  correct: np.ndarray, scores: np.ndarray, counts: Sequence[int]
) -> dict:
  """Accuracy against the number of candidates, with and without reranking.

  Args:
    correct: [P, C] bool, the judge's verdict on each candidate.
    scores: [P, C] float, CLIP's score of each candidate.
    counts: the numbers of candidates N to evaluate, each in [1, C].

  Returns:
    `single_sample` (mean correctness of all candidates: no reranking),
    and per N in `candidates`: `reranked` (share of prompts whose best-scored
    of the first N is correct) and `any_correct` (share with at least one
    correct among the first N: a perfect reranker).
  """
  rows = np.arange(correct.shape[0])
  return {
    "single_sample": float(np.mean(correct)),
    "candidates": [int(n) for n in counts],
    "reranked": [
      float(np.mean(correct[rows, best_of_first(scores, n)])) for n in counts
    ],
    "any_correct": [float(np.mean(correct[:, :n].any(axis=1))) for n in counts],
  }


def judge_candidates(
  captions: Sequence[str], samples: np.ndarray
) -> np.ndarray:
  """Judges every candidate: [P, C, S, S, 3] uint8 -> [P, C, A] int8.

  Returns:
    1 where the attribute the caption states holds, 0 where it fails,
    NOT_STATED where the caption does not state it.
  """
  holds = np.full(samples.shape[:2] + (len(ATTRIBUTES),), NOT_STATED, np.int8)
  for p, caption in enumerate(captions):
    for c, image in enumerate(samples[p]):
      for attribute, ok in judge.judge(caption, image).items():
        holds[p, c, ATTRIBUTES.index(attribute)] = int(ok)
  return holds


def correct_from_holds(holds: np.ndarray) -> np.ndarray:
  """[P, C, A] verdicts -> [P, C] bool: every stated attribute holds."""
  return np.all(holds != 0, axis=-1)


def attribute_accuracy(holds: np.ndarray, best: np.ndarray) -> dict:
  """Per attribute, accuracy over the captions that state it.

  Args:
    holds: [P, C, A] int8 verdicts (see `judge_candidates`).
    best: [P] int, the reranked candidate of each prompt.

  Returns:
    {attribute: {stated (prompts stating it), single_sample (share of all
    their candidates where it holds), reranked (share of their reranked
    candidates where it holds)}}; accuracies are None when no caption
    states the attribute.
  """
  chosen = holds[np.arange(holds.shape[0]), best]  # [P, A]
  table = {}
  for a, attribute in enumerate(ATTRIBUTES):
    stated = holds[:, 0, a] != NOT_STATED
    count = int(stated.sum())
    table[attribute] = {
      "stated": count,
      "single_sample": float(np.mean(holds[stated, :, a])) if count else None,
      "reranked": float(np.mean(chosen[stated, a])) if count else None,
    }
  return table


def summarise_split(
  captions: Sequence[str], holds: np.ndarray, scores: np.ndarray
) -> dict:
  """The figures of one split (see `accuracy_curve`, `attribute_accuracy`)."""
  correct = correct_from_holds(holds)
  best = best_of_first(scores, scores.shape[1])
  rows = np.arange(len(captions))
  return {
    "num_prompts": len(captions),
    "num_candidates": int(scores.shape[1]),
    "curve": accuracy_curve(correct, scores, candidate_counts(scores.shape[1])),
    "attributes": attribute_accuracy(holds, best),
    "prompts": [
      {
        "caption": caption,
        "best": int(best[p]),
        "best_score": float(scores[p, best[p]]),
        "best_correct": bool(correct[p, best[p]]),
        "correct_candidates": int(correct[p].sum()),
      }
      for p, caption in zip(rows, captions, strict=True)
    ],
  }


# ---------------------------------------------------------------------------
# Running the evaluation.


def evaluation_captions(source, count: int) -> list[str]:
  """The first `count` distinct canonical captions of a Shapes split.

  Raises:
    ValueError: the split has fewer distinct captions (names both counts).
  """
  captions: list[str] = []
  for start in range(0, len(source), 256):
    indices = range(start, min(start + 256, len(source)))
    for example in data_pipeline.read_examples(source, indices):
      caption = example["canonical_caption"]
      caption = (
        caption.decode("utf-8") if isinstance(caption, bytes) else caption
      )
      if caption not in captions:
        captions.append(caption)
      if len(captions) == count:
        return captions
  raise ValueError(
    f"The split has {len(captions)} distinct canonical captions but "
    f"config.evaluation.num_prompts={count}; lower num_prompts or raise the "
    "split's size (config.data.shapes.num_validation / num_zero_shot)."
  )


def _split_source(sources: data_pipeline.DataSources, split: str):
  return sources.eval if split == "validation" else sources.extra[split]


def evaluate(
  root: str, evaluation: ConfigDict, data_config: ConfigDict
) -> dict[str, float]:
  """Samples, scores and judges candidates; writes ROOT/evaluation/.

  Writes `results.json` (the figures of each split, see `summarise_split`)
  and `<split>.npz` (`captions` [P], `tokens` [P, C, W, W] int32, `scores`
  [P, C] float32, `holds` [P, C, A] int8, `best_images` [P, S, S, 3]
  uint8), from which `write_report` draws everything.

  Args:
    root: the pipeline's work directory (dvae/, transformer/, clip/).
    evaluation: the pipeline config's `evaluation` section.
    data_config: a stage's run config (its `data` section names the split
      files).

  Returns:
    The headline figures (see `headline`).
  """
  from dalle_jax.generator import Generator  # loads jax models: on use only

  workdir = os.path.join(root, EVALUATION_DIR)
  os.makedirs(workdir, exist_ok=True)
  checkpoint.write_json_atomically(
    os.path.join(workdir, checkpoint.CONFIG_FILE),
    config_lib.to_dict(evaluation),
  )
  generator = Generator.from_workdir(root)
  sources = data_pipeline.prepare_sources(data_config)
  results = {"splits": {}}
  for split in evaluation.splits:
    captions = evaluation_captions(
      _split_source(sources, split), evaluation.num_prompts
    )
    samples = generator(
      captions,
      num_candidates=evaluation.num_candidates,
      keep=evaluation.num_candidates,
      temperature=evaluation.temperature,
      top_k=evaluation.top_k or None,
      top_p=evaluation.top_p or None,
      seed=evaluation.seed,
      rerank=False,
      scorer="clip",
      chunk_size=evaluation.chunk_size,
    )
    holds = judge_candidates(captions, samples.images)
    summary = summarise_split(captions, holds, samples.scores)
    best = [prompt["best"] for prompt in summary["prompts"]]
    np.savez_compressed(
      os.path.join(workdir, f"{split}.npz"),
      captions=np.array(captions),
      tokens=samples.tokens,
      scores=samples.scores,
      holds=holds,
      best_images=samples.images[np.arange(len(captions)), best],
    )
    results["splits"][split] = summary
  checkpoint.write_json_atomically(os.path.join(workdir, RESULTS_FILE), results)
  return headline(root)


# ---------------------------------------------------------------------------
# Reading a work directory.


def read_results(root: str) -> dict:
  """ROOT/evaluation/results.json.

  Raises:
    FileNotFoundError: no evaluation yet (names the command that makes it).
  """
  path = os.path.join(root, EVALUATION_DIR, RESULTS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{path} does not exist, so {root!r} is not a finished pipeline run. "
      "Run the pipeline (finished stages are not trained again): "
      + TRAIN_COMMAND.format(root=root)
    )
  with open(path) as handle:
    results = json.load(handle)
  # JSON files are written with sorted keys; show splits in SPLITS order.
  results["splits"] = {
    split: results["splits"][split]
    for split in SPLITS
    if split in results["splits"]
  }
  return results


def _read_json(path: str, default):
  if not os.path.exists(path):
    return default
  with open(path) as handle:
    return json.load(handle)


def read_steps(root: str) -> tuple[int, list[tuple[str, dict]]]:
  """stages.json: the number of runs, and each step's entry in run order."""
  stages = _read_json(os.path.join(root, STAGES_FILE), {})
  steps = stages.get("steps", {})
  order = dict.fromkeys(e["step"] for e in stages.get("events", []))
  names = [name for name in order if name in steps]
  return stages.get("runs", 0), [(name, steps[name]) for name in names]


def final_eval(root: str, stage: str) -> dict:
  """The last eval record of a stage's metrics.jsonl ({} if none)."""
  records = summaries.read_metrics(os.path.join(root, stage))
  evals = [r for r in records if r["split"] == "eval"]
  return evals[-1] if evals else {}


def headline(root: str) -> dict[str, float]:
  """Per split: single-sample, reranked and any-correct accuracy at C."""
  figures = {}
  for split, summary in read_results(root)["splits"].items():
    curve = summary["curve"]
    figures[f"{split}_single_sample"] = curve["single_sample"]
    figures[f"{split}_reranked"] = curve["reranked"][-1]
    figures[f"{split}_any_correct"] = curve["any_correct"][-1]
  return figures


def summary_lines(root: str) -> list[str]:
  """One line per split and per stage, for the end of a pipeline log."""
  lines = []
  for split, summary in read_results(root)["splits"].items():
    curve, count = summary["curve"], summary["num_candidates"]
    lines.append(
      f"{split}: one sample {_percent(curve['single_sample'])} correct, "
      f"CLIP best of {count} {_percent(curve['reranked'][-1])}, "
      f"any of {count} {_percent(curve['any_correct'][-1])}"
    )
  for name, entry in read_steps(root)[1]:
    lines.append(
      f"{name}: {entry['action']} in this run; took "
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
  font = ImageFont.load_default()
  line_height = 13
  tile = Image.new("RGB", (size, size + num_lines * line_height + 4), "white")
  tile.paste(Image.fromarray(image).resize((size, size), Image.NEAREST))
  draw = ImageDraw.Draw(tile)
  for i, (line, colour) in enumerate(zip(lines, colours, strict=True)):
    draw.text((2, size + 2 + i * line_height), line, fill=colour, font=font)
  return np.asarray(tile)


def sample_grid(root: str, split: str, summary: dict, count: int, path: str):
  """The CLIP-best image of the first prompts, with caption and verdict."""
  data = np.load(os.path.join(root, EVALUATION_DIR, f"{split}.npz"))
  best_images = data["best_images"][:count]
  side = best_images.shape[1]
  size = side * max(1, math.ceil(MIN_TILE_PIXELS / side))
  chars = max(size // 7, 8)  # the default font is about 6-7 px a character
  texts = []
  for p, prompt in enumerate(summary["prompts"][:count]):
    verdict, colour = _verdict(prompt, data["holds"][p, prompt["best"]])
    caption = textwrap.wrap(prompt["caption"], chars)
    verdict_lines = textwrap.wrap(verdict, chars)
    texts.append(
      (
        caption + verdict_lines,
        [(0, 0, 0)] * len(caption) + [colour] * len(verdict_lines),
      )
    )
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


def headline_section(results: dict) -> list[str]:
  """Per split: one-sample, CLIP-best and any-correct accuracy at C."""
  rows = []
  for split, summary in results["splits"].items():
    curve, count = summary["curve"], summary["num_candidates"]
    rows.append(
      (
        SPLIT_TITLES[split],
        summary["num_prompts"],
        count,
        _percent(curve["single_sample"]),
        _percent(curve["reranked"][-1]),
        _percent(curve["any_correct"][-1]),
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


def stage_time_section(root: str) -> list[str]:
  """Per step: what the latest run did and the time its output took."""
  runs, steps = read_steps(root)
  rows = [
    (name, entry["action"], format_seconds(entry["seconds"]), entry.get("run"))
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


def write_figures(root: str, results: dict, grid_prompts: int) -> dict:
  """Writes every PNG into ROOT/figures; returns {name: relative path}."""
  folder = os.path.join(root, FIGURES_DIR)
  os.makedirs(folder, exist_ok=True)
  figures = {}
  for stage in STAGES:
    path = os.path.join(folder, f"training_{stage}.png")
    if plot_training_curves(root, stage, path):
      figures[f"training_{stage}"] = path
  figures["accuracy"] = plot_accuracy_curves(
    results, os.path.join(folder, "accuracy_vs_candidates.png")
  )
  for split, summary in results["splits"].items():
    figures[f"samples_{split}"] = sample_grid(
      root, split, summary, grid_prompts,
      os.path.join(folder, f"samples_{split}.png"),
    )  # fmt: skip
  return {name: os.path.relpath(p, root) for name, p in figures.items()}


def report_markdown(root: str, results: dict, figures: dict) -> str:
  """The text of report.md."""
  config = _read_json(os.path.join(root, PIPELINE_FILE), {})
  evaluation = config.get("evaluation", {})
  lines = [
    "# dalle_jax pipeline report",
    "",
    f"Work directory: `{root}` (variant `{config.get('variant', '?')}`). "
    "Regenerate with `python -m dalle_jax.report --workdir "
    f"{root}`.",
    "",
    "## Zero-shot generation, judged",
    "",
    f"Each prompt is a distinct canonical caption of the split; "
    f"{evaluation.get('num_candidates', '?')} candidates were sampled per "
    f"prompt (temperature {evaluation.get('temperature', '?')}, seed "
    f"{evaluation.get('seed', '?')}), scored by CLIP and judged by the "
    "Shapes judge. *One sample*: share of all candidates judged correct. "
    "*CLIP best of N*: share of prompts whose highest-scored of the first N "
    "candidates is correct. *Any of N*: share with at least one correct "
    "among the first N (what a perfect reranker would reach).",
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
    "### Samples: CLIP's best image per prompt",
    "",
  ]
  for split in results["splits"]:
    grid = figures[f"samples_{split}"]
    lines += [f"{SPLIT_TITLES[split]}:", "", f"![{split} samples]({grid})", ""]
  lines += ["## Stages", "", *stage_time_section(root), ""]
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
  lines += [
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
  config = _read_json(os.path.join(root, PIPELINE_FILE), {})
  grid_prompts = config.get("evaluation", {}).get("grid_prompts", 16)
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
