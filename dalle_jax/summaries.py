"""Metric and image logging: JSON lines plus TensorBoard event files.

TensorBoard files are written with tensorboardX, which needs no TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import numpy as np
from tensorboardX import SummaryWriter

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """Appends scalars to `<workdir>/metrics.jsonl` and TensorBoard events.

  Each JSON line is `{"step": int, "split": str, <name>: float, ...}`.
  """

  def __init__(self, workdir: str):
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, METRICS_FILE), "a")  # noqa: SIM115
    self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write_scalars(
    self, step: int, split: str, scalars: Mapping[str, float]
  ) -> None:
    values = {name: float(value) for name, value in scalars.items()}
    record = {"step": int(step), "split": split}
    record.update(
      {k: (v if math.isfinite(v) else str(v)) for k, v in values.items()}
    )
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    for name, value in values.items():
      self._tensorboard.add_scalar(f"{split}/{name}", value, step)

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    """Logs one `[H, W, 3] uint8` image."""
    self._tensorboard.add_image(
      name, np.asarray(image), step, dataformats="HWC"
    )

  def close(self) -> None:
    self._jsonl.close()
    self._tensorboard.close()


def read_metrics(workdir: str) -> list[dict]:
  """Reads back every record of `<workdir>/metrics.jsonl`."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as handle:
    return [json.loads(line) for line in handle if line.strip()]


def format_metrics(metrics: dict) -> str:
  """`{'loss': 0.0225029, 'step': 3}` -> `'loss 0.0225, step 3'`.

  Floats keep 4 significant digits: enough to compare runs by eye, where
  the full float32 repr is noise. The exact values are in metrics.jsonl.
  """
  shown = (
    f"{name} {value:.4g}"
    if isinstance(value, (float, np.floating))
    else f"{name} {value}"
    for name, value in metrics.items()
  )
  return ", ".join(shown)
