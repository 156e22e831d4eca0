"""TFDS builder that turns a folder of captioned images into array_record splits.

Input layout, one of:

1. Side-car captions: image files anywhere under the folder (extensions png,
   jpg, jpeg, webp, bmp, gif, tif, tiff; any case), each with a caption file
   of the same stem next to it: `cats/01.jpg` + `cats/01.txt`. The whole text
   file is one caption (newlines become spaces).
2. A table: `captions.tsv` at the folder root, one `path<TAB>caption` per
   line, no header, paths relative to the folder. The same image may appear
   on several lines with different captions; each line is one example. When
   `captions.tsv` exists, side-car `.txt` files are ignored.

Every image is decoded, converted to RGB (`preprocess.to_rgb`: transparency
composited on black) and stored as PNG at its own size, or shrunk so that its
shorter side is at most `max_side`. Images that cannot be decoded (corrupt
bytes, a `.jpg` that is really text, a missing file named by the table) and
images without a caption are skipped, never fatal: they are counted in
`builder.info.metadata` (`skipped_unreadable`, `skipped_uncaptioned`, with the
first few paths) and summarised in one logged warning. Preparation decodes
each image twice (once to sort out unreadable files before the split, once to
write it); it is a one-off cost.

Splits: `validation` takes the images whose relative path hashes below
`validation_fraction` (deterministic, so an image never changes split), at
least one image when there are two or more, and `train` takes the rest. All
captions of one image share its split. With a single usable image there is
only `train`.

Features per example: `image` [H, W, 3] uint8, `caption` (str; read back as
bytes), `path` (the image's path relative to the folder).

Read back without TensorFlow:

  builder = prepare_folder("my_images", data_dir="~/tfds")
  source = builder.as_data_source("train")  # random access, len(source)
"""

import dataclasses
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from dalle_jax.data import preprocess

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
  {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)
CAPTIONS_TABLE = "captions.tsv"
DEFAULT_VALIDATION_FRACTION = 0.02
_PATHS_SHOWN = 5
_EXPECTED_LAYOUT = (
  "expected image files (png, jpg, jpeg, webp, bmp, gif, tif, tiff) each with "
  "a same-stem .txt caption beside it, or a captions.tsv at the folder root "
  "with one 'path<TAB>caption' per line"
)


@dataclasses.dataclass(frozen=True)
class CaptionedImage:
  """One example before decoding: an image path and its caption.

  Attributes:
    relative_path: POSIX path of the image relative to the folder.
    caption: the caption, whitespace collapsed, original case.
  """

  relative_path: str
  caption: str


def _collapse_whitespace(text: str) -> str:
  return " ".join(text.split())


def _read_captions_table(folder: str) -> list[CaptionedImage]:
  """Parses `captions.tsv`; rows with an empty caption keep caption ''."""
  table_path = os.path.join(folder, CAPTIONS_TABLE)
  rows = []
  with open(table_path, encoding="utf-8", errors="replace") as table:
    for line_number, line in enumerate(table, start=1):
      if not line.strip():
        continue
      if "\t" not in line:
        raise ValueError(
          f"{table_path}:{line_number} has no tab: {line.rstrip()!r}. Each "
          "line must be 'path<TAB>caption'."
        )
      path, caption = line.rstrip("\r\n").split("\t", 1)
      rows.append(CaptionedImage(path.strip(), _collapse_whitespace(caption)))
  return rows


def _read_sidecar_caption(image_path: str) -> str:
  """The same-stem .txt next to an image, collapsed; '' when missing."""
  caption_path = os.path.splitext(image_path)[0] + ".txt"
  if not os.path.isfile(caption_path):
    return ""
  with open(caption_path, encoding="utf-8", errors="replace") as caption_file:
    return _collapse_whitespace(caption_file.read())


def _walk_image_paths(folder: str) -> list[str]:
  """Relative POSIX paths of image files under `folder`, sorted, no hidden."""
  paths = []
  for root, dirs, files in os.walk(folder):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    for name in sorted(files):
      extension = os.path.splitext(name)[1].lower()
      if extension in IMAGE_EXTENSIONS and not name.startswith("."):
        relative = os.path.relpath(os.path.join(root, name), folder)
        paths.append(relative.replace(os.sep, "/"))
  return paths


def find_captioned_images(folder: str) -> list[CaptionedImage]:
  """Lists the folder's images with captions ('' where there is none)."""
  if os.path.isfile(os.path.join(folder, CAPTIONS_TABLE)):
    return _read_captions_table(folder)
  return [
    CaptionedImage(path, _read_sidecar_caption(os.path.join(folder, path)))
    for path in _walk_image_paths(folder)
  ]


def validation_score(relative_path: str) -> float:
  """A deterministic number in [0, 1) from the path; below the fraction = val."""
  digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(
  relative_paths: Sequence[str], validation_fraction: float
) -> dict[str, set[str]]:
  """Splits distinct image paths into 'train' and 'validation' sets.

  Validation holds the paths scoring below `validation_fraction`, but at
  least one and at most all but one of them when there are two or more paths.
  """
  ranked = sorted(set(relative_paths), key=validation_score)
  wanted = sum(validation_score(p) < validation_fraction for p in ranked)
  if len(ranked) >= 2:
    wanted = min(max(wanted, 1), len(ranked) - 1)
  else:
    wanted = 0
  return {"validation": set(ranked[:wanted]), "train": set(ranked[wanted:])}


def load_rgb(image_path: str, max_side: int | None) -> np.ndarray:
  """Reads an image file as [H, W, 3] uint8, shrunk to `max_side` if given.

  Raises:
    preprocess.UnreadableImageError: missing, unreadable or undecodable file.
  """
  try:
    with open(image_path, "rb") as image_file:
      data = image_file.read()
  except OSError as error:
    raise preprocess.UnreadableImageError(
      f"cannot read {image_path}: {error}"
    ) from error
  image = preprocess.decode_image(data)
  if max_side is not None:
    image = preprocess.limit_shorter_side(image, max_side)
  return image


def encode_png(image: np.ndarray) -> bytes:
  """[H, W, 3] uint8 -> PNG bytes."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


def _is_input_file(name: str) -> bool:
  """Images, side-car captions and the caption table; not TFDS output."""
  extension = os.path.splitext(name)[1].lower()
  return not name.startswith(".") and (
    extension in IMAGE_EXTENSIONS
    or extension == ".txt"
    or name == CAPTIONS_TABLE
  )


def _folder_fingerprint(folder: str) -> str:
  """Hash of the input files' paths, sizes and mtimes: edits re-prepare."""
  digest = hashlib.sha256()
  for root, dirs, files in os.walk(folder):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    for name in sorted(filter(_is_input_file, files)):
      path = os.path.join(root, name)
      stat = os.stat(path)
      entry = f"{os.path.relpath(path, folder)}\0{stat.st_size}\0"
      digest.update(f"{entry}{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  """Builder config of one folder; make it with `folder_config`.

  Attributes:
    folder: absolute path of the image folder.
    max_side: if set, images whose shorter side is larger are shrunk to it.
    validation_fraction: share of images hashed into 'validation', [0, 1).
  """

  folder: str = ""
  max_side: int | None = None
  validation_fraction: float = DEFAULT_VALIDATION_FRACTION


def folder_config(
  folder: str,
  *,
  max_side: int | None = None,
  validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
) -> FolderConfig:
  """Builds the config whose name is unique to the folder, settings and files.

  The name hashes the absolute path, the settings and a fingerprint of the
  files (paths, sizes, modification times), so two folders, two settings, or
  one folder before and after an edit never share prepared files.

  Raises:
    FileNotFoundError: `folder` is not a directory.
    ValueError: `max_side` or `validation_fraction` out of range.
  """
  folder = os.path.abspath(os.path.expanduser(folder))
  if not os.path.isdir(folder):
    raise FileNotFoundError(
      f"Image folder {folder} does not exist or is not a directory; "
      f"{_EXPECTED_LAYOUT}."
    )
  if max_side is not None and (not isinstance(max_side, int) or max_side < 1):
    raise ValueError(
      f"max_side={max_side!r} must be None (keep sizes) or a positive int."
    )
  if not 0.0 <= validation_fraction < 1.0:
    raise ValueError(
      f"validation_fraction={validation_fraction} must be in [0, 1); the "
      f"default is {DEFAULT_VALIDATION_FRACTION}."
    )
  identity = json.dumps(
    [folder, max_side, validation_fraction, _folder_fingerprint(folder)]
  )
  digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
  slug = re.sub(r"[^a-z0-9]+", "_", os.path.basename(folder).lower())
  return FolderConfig(
    name=f"{slug.strip('_')[:40] or 'folder'}_{digest}",
    description=f"Captioned images from {folder}",
    folder=folder,
    max_side=max_side,
    validation_fraction=validation_fraction,
  )


def _summarise_skips(
  folder: str, total: int, unreadable: list[str], uncaptioned: list[str]
) -> None:
  """Logs one warning naming the skip counts and the first few paths."""
  if not unreadable and not uncaptioned:
    return
  logger.warning(
    "Skipped %d of %d images in %s: %d unreadable (first: %s), %d without a "
    "caption (first: %s). The counts are in builder.info.metadata.",
    len(unreadable) + len(uncaptioned),
    total,
    folder,
    len(unreadable),
    "; ".join(unreadable[:_PATHS_SHOWN]) or "none",
    len(uncaptioned),
    ", ".join(uncaptioned[:_PATHS_SHOWN]) or "none",
  )


class CaptionedFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Captioned image folder -> 'train' / 'validation' (module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=__doc__.split("\n")[0],
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(
            shape=(None, None, 3), dtype=np.uint8, encoding_format="png"
          ),
          "caption": tfds.features.Text(),
          "path": tfds.features.Text(),
        }
      ),
      metadata=tfds.core.MetadataDict(),
    )

  def _usable_examples(self) -> list[CaptionedImage]:
    """Captioned, decodable examples; records the skips in the metadata."""
    folder = self.builder_config.folder
    readable: dict[str, bool] = {}
    unreadable, uncaptioned, usable = [], [], []
    for item in find_captioned_images(folder):
      if not item.caption:
        uncaptioned.append(item.relative_path)
        continue
      if item.relative_path not in readable:
        try:
          load_rgb(os.path.join(folder, item.relative_path), None)
          readable[item.relative_path] = True
        except preprocess.UnreadableImageError as error:
          readable[item.relative_path] = False
          unreadable.append(f"{item.relative_path}: {error}")
      if readable[item.relative_path]:
        usable.append(item)
    _summarise_skips(
      folder, len(readable) + len(uncaptioned), unreadable, uncaptioned
    )
    self.info.metadata.update(
      skipped_unreadable=len(unreadable),
      skipped_uncaptioned=len(uncaptioned),
      first_unreadable=unreadable[:_PATHS_SHOWN],
      first_uncaptioned=uncaptioned[:_PATHS_SHOWN],
      usable_examples=len(usable),
    )
    if not usable:
      raise ValueError(
        f"No usable captioned image in {folder} ({len(unreadable)} "
        f"unreadable, {len(uncaptioned)} without a caption); "
        f"{_EXPECTED_LAYOUT}."
      )
    return usable

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    usable = self._usable_examples()
    splits = assign_splits(
      [item.relative_path for item in usable],
      self.builder_config.validation_fraction,
    )
    return {
      name: self._generate_examples(
        [item for item in usable if item.relative_path in paths]
      )
      for name, paths in splits.items()
      if paths
    }

  def _generate_examples(
    self, items: Sequence[CaptionedImage]
  ) -> Iterator[tuple[str, dict]]:
    config = self.builder_config
    for index, item in enumerate(items):
      image_path = os.path.join(config.folder, item.relative_path)
      image = load_rgb(image_path, config.max_side)
      example = {
        "image": encode_png(image),
        "caption": item.caption,
        "path": item.relative_path,
      }
      # The index keeps keys unique when a table repeats an image.
      yield f"{index:09d}:{item.relative_path}", example


def prepare_folder(
  folder: str,
  data_dir: str,
  *,
  max_side: int | None = None,
  validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
) -> CaptionedFolder:
  """Prepares (once) and returns the builder of a captioned image folder.

  Args:
    folder: the image folder (layout: module docstring).
    data_dir: TFDS data directory for the prepared array_record files.
    max_side: if set, store images with their shorter side at most this.
    validation_fraction: share of images hashed into 'validation'.

  Returns:
    The prepared builder; read with `builder.as_data_source(split)`.

  Raises:
    FileNotFoundError: `folder` is not a directory.
    ValueError: bad settings, or the folder has no usable captioned image.
  """
  config = folder_config(
    folder, max_side=max_side, validation_fraction=validation_fraction
  )
  builder = CaptionedFolder(
    data_dir=os.path.expanduser(data_dir),
    config=config,
    file_format="array_record",
  )
  builder.download_and_prepare()
  return builder
