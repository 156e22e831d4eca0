"""Image grids and PNG files for people to look at."""

from __future__ import annotations

import functools
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def make_grid(rows: np.ndarray, padding: int = 2) -> np.ndarray:
  """Tiles `[R, C, H, W, 3] uint8` images into one `[H', W', 3]` picture.

  Args:
    rows: R rows of C images each (e.g. originals over reconstructions).
    padding: grey pixels between tiles.

  Returns:
    `[R*(H+p)+p, C*(W+p)+p, 3] uint8`.
  """
  rows = np.asarray(rows)
  if rows.ndim != 5 or rows.shape[-1] != 3:
    raise ValueError(
      f"make_grid expects [rows, columns, H, W, 3] images, got {rows.shape}."
    )
  num_rows, num_cols, height, width, _ = rows.shape
  grid = np.full(
    (
      num_rows * (height + padding) + padding,
      num_cols * (width + padding) + padding,
      3,
    ),
    128,
    np.uint8,
  )
  for r in range(num_rows):
    for c in range(num_cols):
      top = padding + r * (height + padding)
      left = padding + c * (width + padding)
      grid[top : top + height, left : left + width] = rows[r, c]
  return grid


# Pillow's default font at its own size (10 px) draws spaces about 1 px
# wide, so captions run together ("a smallyellowsquare"); at 12 px they read.
LABEL_FONT_SIZE = 12
LABEL_LINE_HEIGHT = 15


@functools.cache
def label_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
  """The font of every label under a picture (Pillow's built-in one).

  Loaded once: a grid draws a label under every tile.
  """
  return ImageFont.load_default(size=LABEL_FONT_SIZE)


def wrap_to_width(text: str, font, width: int) -> list[str]:
  """`text` in lines no wider than `width` px (a longer word stays whole)."""
  lines: list[str] = []
  for word in text.split():
    candidate = f"{lines[-1]} {word}" if lines else word
    if lines and font.getlength(candidate) <= width:
      lines[-1] = candidate
    else:
      lines.append(word)
  return lines or [""]


def add_labels(
  grid: np.ndarray, labels: list[str], tile_width: int, padding: int = 2
) -> np.ndarray:
  """Adds a text strip under a one-row grid, one label per column."""
  strip = Image.new(
    "RGB", (grid.shape[1], LABEL_LINE_HEIGHT + 4), (255, 255, 255)
  )
  draw = ImageDraw.Draw(strip)
  font = label_font()
  for column, label in enumerate(labels):
    left = padding + column * (tile_width + padding)
    draw.text((left, 2), label, fill=(0, 0, 0), font=font)
  return np.concatenate([grid, np.asarray(strip)], axis=0)


def save_png(path: str, image: np.ndarray, scale: int = 1) -> str:
  """Writes `[H, W, 3] uint8` as PNG (atomically), upscaled by `scale`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  picture = Image.fromarray(np.asarray(image, np.uint8))
  if scale > 1:
    picture = picture.resize(
      (picture.width * scale, picture.height * scale), Image.NEAREST
    )
  temporary = f"{path}.tmp.png"
  picture.save(temporary)
  os.replace(temporary, path)
  return path
