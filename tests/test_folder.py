"""Tests for dalle_jax.data.folder: the captioned-folder TFDS builder."""

import hashlib
import os

import numpy as np
import pytest
from PIL import Image

from dalle_jax.data import folder as folder_lib

RNG = np.random.default_rng(0)


def _write_caption(path, text):
  path.write_text(text, encoding="utf-8")


def _composite_on_black(rgba: np.ndarray) -> np.ndarray:
  """Plain round(c * a / 255) per pixel."""
  out = np.zeros(rgba.shape[:2] + (3,), np.uint8)
  for row, col, channel in np.ndindex(out.shape):
    value = int(rgba[row, col, channel]) * int(rgba[row, col, 3]) / 255
    out[row, col, channel] = round(value)
  return out


@pytest.fixture(scope="module")
def sidecar_folder(tmp_path_factory):
  """Five usable images of different sizes/modes, one corrupt, one uncaptioned.

  Returns:
    (folder, {relative path: (expected [H, W, 3] uint8, caption)}).
  """
  root = tmp_path_factory.mktemp("sidecar") / "My Images"
  (root / "sub").mkdir(parents=True)
  expected = {}

  rgb = RNG.integers(0, 256, (20, 31, 3), dtype=np.uint8)
  Image.fromarray(rgb).save(root / "photo.png")
  _write_caption(root / "photo.txt", "A Red  thing\non two lines\n")
  expected["photo.png"] = (rgb, "A Red thing on two lines")

  grey = RNG.integers(0, 256, (17, 11), dtype=np.uint8)
  Image.fromarray(grey).save(root / "sub" / "grey.png")
  _write_caption(root / "sub" / "grey.txt", "grey")
  expected["sub/grey.png"] = (np.repeat(grey[..., None], 3, axis=-1), "grey")

  rgba = RNG.integers(0, 256, (9, 7, 4), dtype=np.uint8)
  Image.fromarray(rgba, mode="RGBA").save(root / "cutout.PNG")
  _write_caption(root / "cutout.txt", "a cut-out")
  expected["cutout.PNG"] = (_composite_on_black(rgba), "a cut-out")

  colours = [(255, 0, 0), (0, 0, 255), (0, 128, 0)]
  indices = RNG.integers(0, 3, (6, 12), dtype=np.uint8)
  palette = Image.fromarray(indices, mode="P")
  palette.putpalette([v for colour in colours for v in colour])
  palette.save(root / "palette.gif")
  _write_caption(root / "palette.txt", "a palette")
  table = np.array([[colours[i] for i in row] for row in indices], np.uint8)
  expected["palette.gif"] = (table, "a palette")

  jpeg = RNG.integers(0, 256, (24, 24, 3), dtype=np.uint8)
  Image.fromarray(jpeg).save(root / "sub" / "camera.jpg", quality=90)
  _write_caption(root / "sub" / "camera.txt", "a jpeg")
  with Image.open(root / "sub" / "camera.jpg") as decoded:
    expected["sub/camera.jpg"] = (np.asarray(decoded.convert("RGB")), "a jpeg")

  (root / "broken.jpg").write_text("I am a text file", encoding="utf-8")
  _write_caption(root / "broken.txt", "never seen")
  Image.fromarray(rgb[:5, :5]).save(root / "lonely.png")  # no caption
  _write_caption(root / "notes.txt", "a caption without an image is ignored")
  return str(root), expected


@pytest.fixture(scope="module")
def prepared(sidecar_folder, tmp_path_factory):
  folder, _ = sidecar_folder
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  return folder_lib.prepare_folder(folder, data_dir), data_dir


def _read_all(builder) -> dict[str, tuple[str, dict]]:
  """{path: (split, example)} over every split of a prepared builder."""
  examples = {}
  for split in builder.info.splits:
    source = builder.as_data_source(split)
    for index in range(len(source)):
      example = source[index]
      examples[example["path"].decode()] = (split, example)
  return examples


def test_prepared_images_and_captions_match(prepared, sidecar_folder):
  builder, _ = prepared
  _, expected = sidecar_folder
  examples = _read_all(builder)
  assert sorted(examples) == sorted(expected)
  for path, (image, caption) in expected.items():
    example = examples[path][1]
    assert example["image"].dtype == np.uint8
    np.testing.assert_array_equal(example["image"], image, err_msg=path)
    assert example["caption"].decode() == caption


def test_skips_are_counted(prepared):
  builder, _ = prepared
  metadata = builder.info.metadata
  assert metadata["skipped_unreadable"] == 1
  assert metadata["skipped_uncaptioned"] == 1
  assert metadata["first_uncaptioned"] == ["lonely.png"]
  assert metadata["first_unreadable"][0].startswith("broken.jpg: ")
  assert metadata["usable_examples"] == 5


def test_skip_warning_is_logged_once(sidecar_folder, tmp_path, caplog):
  folder, _ = sidecar_folder
  with caplog.at_level("WARNING", logger="dalle_jax.data.folder"):
    folder_lib.prepare_folder(folder, str(tmp_path), validation_fraction=0.5)
  warnings = [r for r in caplog.records if r.name == "dalle_jax.data.folder"]
  assert len(warnings) == 1
  assert "Skipped 2 of 7 images" in warnings[0].getMessage()
  assert "broken.jpg" in warnings[0].getMessage()


def test_splits_are_by_path_hash_with_at_least_one_validation(prepared):
  builder, _ = prepared
  splits = {p: s for p, (s, _) in _read_all(builder).items()}
  assert sorted(builder.info.splits) == ["train", "validation"]
  # With 5 images and a 2% fraction, validation is the lowest-hash image.
  lowest = min(
    splits,
    key=lambda p: int.from_bytes(
      hashlib.sha256(p.encode()).digest()[:8], "big"
    ),
  )
  assert [p for p, s in splits.items() if s == "validation"] == [lowest]


def test_prepare_again_reuses_files_and_metadata(prepared, sidecar_folder):
  builder, data_dir = prepared
  again = folder_lib.prepare_folder(sidecar_folder[0], data_dir)
  assert again.data_dir == builder.data_dir
  assert again.info.metadata["skipped_unreadable"] == 1


def test_assign_splits_against_a_plain_hash():
  paths = [f"img_{i}.png" for i in range(200)]
  splits = folder_lib.assign_splits(paths, 0.25)

  def score(path):
    digest = hashlib.sha256(path.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64

  assert splits["validation"] == {p for p in paths if score(p) < 0.25}
  assert splits["train"] == set(paths) - splits["validation"]
  assert 30 < len(splits["validation"]) < 70


def test_assign_splits_edge_cases():
  assert folder_lib.assign_splits(["a.png"], 0.5) == {
    "validation": set(),
    "train": {"a.png"},
  }
  two = folder_lib.assign_splits(["a.png", "b.png"], 0.0)
  assert len(two["validation"]) == 1 and len(two["train"]) == 1
  most = folder_lib.assign_splits(["a.png", "b.png", "c.png"], 0.999)
  assert len(most["train"]) == 1
  repeated = folder_lib.assign_splits(["a.png", "a.png", "b.png"], 0.0)
  assert repeated["validation"] | repeated["train"] == {"a.png", "b.png"}


def test_tsv_layout_with_repeated_and_missing_images(tmp_path):
  root = tmp_path / "table"
  root.mkdir()
  first = RNG.integers(0, 256, (8, 10, 3), dtype=np.uint8)
  second = RNG.integers(0, 256, (12, 6, 3), dtype=np.uint8)
  Image.fromarray(first).save(root / "one.png")
  Image.fromarray(second).save(root / "two.bmp")
  _write_caption(root / "one.txt", "ignored: the table wins")
  (root / "captions.tsv").write_text(
    "one.png\ta first caption\n"
    "\n"
    "one.png\ta second caption\n"
    "two.bmp\tthe other one\n"
    "gone.png\tno such file\n"
    "two.bmp\t\n",
    encoding="utf-8",
  )
  builder = folder_lib.prepare_folder(str(root), str(tmp_path / "tfds"))
  assert builder.info.metadata["skipped_unreadable"] == 1
  assert builder.info.metadata["skipped_uncaptioned"] == 1
  rows = []
  for split in builder.info.splits:
    source = builder.as_data_source(split)
    for index in range(len(source)):
      example = source[index]
      rows.append(
        (split, example["path"].decode(), example["caption"].decode())
      )
      wanted = first if example["path"] == b"one.png" else second
      np.testing.assert_array_equal(example["image"], wanted)
  assert sorted(row[1:] for row in rows) == [
    ("one.png", "a first caption"),
    ("one.png", "a second caption"),
    ("two.bmp", "the other one"),
  ]
  one_splits = {split for split, path, _ in rows if path == "one.png"}
  assert len(one_splits) == 1


def test_tsv_line_without_tab_raises(tmp_path):
  (tmp_path / "captions.tsv").write_text("a.png\tok\nb.png no tab\n")
  with pytest.raises(ValueError, match=r"captions.tsv:2 has no tab"):
    folder_lib.find_captioned_images(str(tmp_path))


def test_empty_folder_names_folder_and_layout(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match=r"empty \(0 unreadable.*captions.tsv"):
    folder_lib.prepare_folder(str(empty), str(tmp_path / "tfds"))


def test_folder_with_only_unusable_images_raises(tmp_path):
  root = tmp_path / "bad"
  root.mkdir()
  (root / "x.jpg").write_bytes(b"\xff\xd8 nope")
  _write_caption(root / "x.txt", "caption")
  Image.new("RGB", (4, 4)).save(root / "y.png")
  with pytest.raises(ValueError, match=r"1 unreadable, 1 without a caption"):
    folder_lib.prepare_folder(str(root), str(tmp_path / "tfds"))


def test_missing_folder_raises(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    folder_lib.folder_config(str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
  "settings, message",
  [
    ({"max_side": 0}, "max_side=0"),
    ({"validation_fraction": 1.0}, "validation_fraction=1.0"),
    ({"validation_fraction": -0.1}, "validation_fraction=-0.1"),
  ],
)
def test_bad_settings_raise(tmp_path, settings, message):
  with pytest.raises(ValueError, match=message):
    folder_lib.folder_config(str(tmp_path), **settings)


def test_config_names_differ_by_folder_settings_and_content(tmp_path):
  first, second = tmp_path / "a", tmp_path / "b"
  first.mkdir()
  second.mkdir()
  Image.new("RGB", (4, 4)).save(first / "x.png")
  Image.new("RGB", (4, 4)).save(second / "x.png")
  name = folder_lib.folder_config(str(first)).name
  assert name == folder_lib.folder_config(str(first)).name
  assert name.startswith("a_")
  others = {
    folder_lib.folder_config(str(second)).name,
    folder_lib.folder_config(str(first), max_side=64).name,
    folder_lib.folder_config(str(first), validation_fraction=0.1).name,
  }
  assert name not in others and len(others) == 3
  _write_caption(first / "x.txt", "now captioned")
  assert folder_lib.folder_config(str(first)).name != name
  # TFDS output written inside the folder does not change the name.
  (first / "prepared").mkdir()
  (first / "prepared" / "dataset_info.json").write_text("{}")
  with_output = folder_lib.folder_config(str(first)).name
  assert with_output == folder_lib.folder_config(str(first)).name


def test_load_rgb_shrinks_to_max_side(tmp_path):
  path = tmp_path / "big.png"
  Image.fromarray(RNG.integers(0, 256, (40, 100, 3), dtype=np.uint8)).save(path)
  assert folder_lib.load_rgb(str(path), 10).shape == (10, 25, 3)
  assert folder_lib.load_rgb(str(path), None).shape == (40, 100, 3)


def test_load_rgb_of_a_missing_file_is_unreadable(tmp_path):
  with pytest.raises(ValueError, match="cannot read .*missing.png"):
    folder_lib.load_rgb(os.path.join(tmp_path, "missing.png"), None)


def test_max_side_is_applied_when_preparing(tmp_path):
  root = tmp_path / "large"
  root.mkdir()
  Image.new("RGB", (90, 30), (1, 2, 3)).save(root / "wide.png")
  _write_caption(root / "wide.txt", "wide")
  builder = folder_lib.prepare_folder(
    str(root), str(tmp_path / "tfds"), max_side=12
  )
  assert list(builder.info.splits) == ["train"]
  image = builder.as_data_source("train")[0]["image"]
  np.testing.assert_array_equal(image, np.full((12, 36, 3), (1, 2, 3)))
