"""Tests for the Shapes generator and its TFDS builder, against SHAPES.md.

The geometry checks below re-derive SHAPES.md from scratch (palette, box
sides, grid centres, shape outlines) instead of reusing the generator's
constants or masks.
"""

import dataclasses
import re

import numpy as np
import pytest

from dalle_jax.data import judge, shapes, shapes_tfds

# SHAPES.md, copied by hand.
PALETTE = {
  "red": (220, 30, 30),
  "green": (30, 180, 60),
  "blue": (40, 70, 230),
  "yellow": (240, 220, 30),
  "purple": (150, 50, 200),
  "orange": (245, 140, 20),
  "cyan": (30, 210, 220),
  "white": (240, 240, 240),
}
SHAPE_NAMES = ("circle", "square", "triangle", "plus")
HELD_OUT = {
  ("red", "triangle"),
  ("green", "circle"),
  ("blue", "plus"),
  ("yellow", "square"),
  ("purple", "triangle"),
  ("orange", "circle"),
  ("cyan", "square"),
  ("white", "plus"),
}
GRID = {
  "top left": (0.22, 0.22),
  "top": (0.50, 0.22),
  "top right": (0.78, 0.22),
  "left": (0.22, 0.50),
  "center": (0.50, 0.50),
  "right": (0.78, 0.50),
  "bottom left": (0.22, 0.78),
  "bottom": (0.50, 0.78),
  "bottom right": (0.78, 0.78),
}
INVERSE = {
  "to the left of": "to the right of",
  "to the right of": "to the left of",
  "above": "below",
  "below": "above",
}
SPLITS = ("train", "validation", "zero_shot")
ONE_OBJECT = re.compile(
  r"^a (small|large) (\w+) (\w+) in the (top left|top right|bottom left|"
  r"bottom right|top|bottom|left|right|center)$"
)
TWO_OBJECTS = re.compile(
  r"^a (\w+) (\w+) (to the left of|to the right of|above|below) a (\w+) "
  r"(\w+)$"
)


def examples(split, image_size, count, seed=0):
  return [
    shapes.generate_example(split, index, image_size, seed)
    for index in range(count)
  ]


def bounding_box(mask):
  rows, cols = np.nonzero(mask)
  return rows.min(), cols.min(), rows.max() + 1, cols.max() + 1


def assert_shape_outline(mask, shape):
  """Checks a cropped [B, B] mask against SHAPES.md's description of shape."""
  side = mask.shape[0]
  widths = mask.sum(axis=1)
  middle = side // 2
  if shape == "square":
    assert mask.all()
  elif shape == "triangle":
    # Apex up, base width = height: the rows widen downwards to a full base.
    assert widths[-1] == side
    assert np.all(np.diff(widths) >= 0)
    assert 1 <= widths[0] <= 2
    cols = np.nonzero(mask[0])[0]
    assert abs((cols.min() + cols.max() + 1) / 2 - side / 2) <= 0.5
  elif shape == "circle":
    assert mask[middle].all() and mask[:, middle].all()
    assert not mask[0, 0] and not mask[-1, -1]
    assert abs(mask.sum() / (np.pi / 4 * side**2) - 1) < 0.1
  elif shape == "plus":
    assert mask[middle].all() and mask[:, middle].all()
    # Each arm is one third of the box wide: every row (and column) is
    # either the full box or one arm's width.
    arm = widths[0]
    assert abs(arm - side / 3) <= 1
    assert set(widths) == {arm, side} and (widths == side).sum() == arm
    assert set(mask.sum(axis=0)) == {arm, side}
    assert not mask[0, 0] and not mask[-1, -1]
  else:
    raise AssertionError(f"unexpected shape {shape}")


def check_object(image, region, colour, shape, side, centre):
  """Checks the one object drawn inside `region` of the canvas."""
  image_size = image.shape[0]
  colour_mask = np.all(image == PALETTE[colour], axis=2) & region
  top, left, bottom, right = bounding_box(colour_mask)
  assert (bottom - top, right - left) == (side, side)
  box_centre = ((left + right) / 2, (top + bottom) / 2)
  # Jitter of at most 0.03 S, plus half a pixel for snapping to the grid.
  for actual, nominal in zip(box_centre, centre, strict=True):
    assert abs(actual - nominal * image_size) <= 0.03 * image_size + 0.5
  assert_shape_outline(colour_mask[top:bottom, left:right], shape)
  # Nothing else of the object's colour lies in the region.
  outside = colour_mask.copy()
  outside[top:bottom, left:right] = False
  assert not outside.any()


def check_geometry(example):
  image = example["image"]
  image_size = image.shape[0]
  assert image.shape == (image_size, image_size, 3)
  assert image.dtype == np.uint8
  allowed = {(0, 0, 0), *PALETTE.values()}
  packed = image.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
  values = {(v >> 16, (v >> 8) & 255, v & 255) for v in np.unique(packed)}
  assert values <= allowed
  caption = example["canonical_caption"]
  everywhere = np.ones(image.shape[:2], bool)
  if match := ONE_OBJECT.match(caption):
    size, colour, shape, position = match.groups()
    side = round({"small": 0.25, "large": 0.40}[size] * image_size)
    check_object(image, everywhere, colour, shape, side, GRID[position])
    non_black = image.any(axis=2)
    top, left, bottom, right = bounding_box(non_black)
    assert (bottom - top, right - left) == (side, side)
    return
  match = TWO_OBJECTS.match(caption)
  assert match, caption
  colour1, shape1, relation, colour2, shape2 = match.groups()
  assert (colour1, shape1) != (colour2, shape2)
  side = round(0.25 * image_size)
  first_centre = {
    "to the left of": (0.28, 0.5),
    "to the right of": (0.72, 0.5),
    "above": (0.5, 0.28),
    "below": (0.5, 0.72),
  }[relation]
  second_centre = tuple(1.0 - value for value in first_centre)
  # The two objects never cross the canvas midline along the relation's axis.
  axis = 1 if relation in ("to the left of", "to the right of") else 0
  coordinate = np.indices(image.shape[:2])[axis] + 0.5
  first_half = (coordinate < image_size / 2) == (first_centre[1 - axis] < 0.5)
  check_object(image, first_half, colour1, shape1, side, first_centre)
  check_object(image, ~first_half, colour2, shape2, side, second_centre)


@pytest.mark.parametrize(
  "image_size, count", [(32, 200), (64, 200), (128, 12), (256, 6)]
)
@pytest.mark.parametrize("split", SPLITS)
def test_geometry_matches_contract(split, image_size, count):
  for example in examples(split, image_size, count):
    check_geometry(example)


def test_triangle_is_apex_up_with_base_equal_height():
  scene = shapes.Scene(
    objects=(
      shapes.ShapeObject("red", "triangle", "large", (0.5, 0.5), "center"),
    )
  )
  image = shapes.render(scene, 64)
  mask = image.any(axis=2)
  top, left, bottom, right = bounding_box(mask)
  side = round(0.40 * 64)
  assert bottom - top == side and right - left == side
  assert mask[bottom - 1, left:right].all()
  assert mask[top].sum() <= 2
  assert np.all(image[mask] == PALETTE["red"])


def test_object_never_leaves_canvas_at_largest_jitter():
  for x, y in ((0.19, 0.19), (0.81, 0.81), (0.19, 0.81)):
    scene = shapes.Scene(
      objects=(shapes.ShapeObject("white", "square", "large", (x, y)),)
    )
    for image_size in shapes.IMAGE_SIZES:
      image = shapes.render(scene, image_size)
      side = round(0.40 * image_size)
      assert image.any(axis=2).sum() == side * side


def test_public_constants_follow_contract():
  assert shapes.COLOURS == PALETTE
  assert list(shapes.COLOURS) == list(PALETTE)
  assert shapes.SHAPES == SHAPE_NAMES
  assert shapes.SIZES == ("small", "large")
  assert shapes.POSITIONS == tuple(GRID)
  assert set(shapes.RELATIONS) == set(INVERSE)
  assert set(shapes.HELD_OUT_PAIRS) == HELD_OUT
  assert shapes.SPLITS == SPLITS


def test_half_of_every_split_has_two_objects():
  for split in SPLITS:
    captions = [
      example["canonical_caption"] for example in examples(split, 32, 100)
    ]
    two_objects = [bool(TWO_OBJECTS.match(caption)) for caption in captions]
    assert sum(two_objects) == 50


def caption_pairs(caption):
  colours = "|".join(PALETTE)
  shape_names = "|".join(SHAPE_NAMES)
  return set(re.findall(rf"\b({colours}) ({shape_names})\b", caption))


def test_held_out_pairs_never_in_train_or_validation():
  for split in ("train", "validation"):
    seen = set()
    for example in examples(split, 32, 600):
      for caption in (example["caption"], example["canonical_caption"]):
        pairs = caption_pairs(caption)
        assert pairs and not pairs & HELD_OUT, caption
        seen |= pairs
    # Every colour and every shape still appears, with other partners.
    assert {colour for colour, _ in seen} == set(PALETTE)
    assert {shape for _, shape in seen} == set(SHAPE_NAMES)
    assert seen == set(shapes.SEEN_PAIRS)


def test_scenes_of_each_split_use_the_right_pairs():
  rng = np.random.default_rng(0)
  for split in SPLITS:
    for _ in range(300):
      scene = shapes.sample_scene(rng, split)
      pairs = {(obj.colour, obj.shape) for obj in scene.objects}
      if split == "zero_shot":
        assert pairs <= HELD_OUT
      else:
        assert not pairs & HELD_OUT


def test_zero_shot_holds_only_held_out_pairs():
  seen = set()
  for example in examples("zero_shot", 32, 300):
    pairs = caption_pairs(example["caption"])
    assert pairs and pairs <= HELD_OUT
    seen |= pairs
  assert seen == HELD_OUT


def caption_skeleton(caption):
  """The caption with every vocabulary word replaced by its kind."""
  for kind, words in (
    ("R", INVERSE),
    ("P", sorted(GRID, key=len, reverse=True)),
    ("C", PALETTE),
    ("X", SHAPE_NAMES),
    ("Z", ("small", "large")),
  ):
    caption = re.sub(r"\b(" + "|".join(words) + r")\b", kind, caption)
  return caption


def test_captions_per_split():
  train = examples("train", 32, 200)
  for example in train:
    assert example["caption"] == example["caption"].lower()
    assert caption_pairs(example["caption"]) == caption_pairs(
      example["canonical_caption"]
    )
  assert sum(ex["caption"] != ex["canonical_caption"] for ex in train) > 100
  # At least three templates per kind of scene are drawn.
  skeletons = {caption_skeleton(example["caption"]) for example in train}
  assert len({s for s in skeletons if "R" in s}) >= 3
  assert len({s for s in skeletons if "R" not in s}) >= 3
  for split in ("validation", "zero_shot"):
    for example in examples(split, 32, 50):
      assert example["caption"] == example["canonical_caption"]


@pytest.mark.parametrize("attribute", ["shape", "colour"])
def test_swapped_caption_changes_one_attribute_to_a_seen_pair(attribute):
  rng = np.random.default_rng(0)
  values = SHAPE_NAMES if attribute == "shape" else tuple(PALETTE)
  swapped_objects = set()
  for example in examples("train", 32, 300):
    caption = example["caption"]
    negative = shapes.swapped_caption(caption, rng, attribute)
    words, new_words = caption.split(), negative.split()
    assert len(words) == len(new_words)
    pairs = zip(words, new_words, strict=True)
    changed = [i for i, (a, b) in enumerate(pairs) if a != b]
    assert len(changed) == 1, (caption, negative)
    (i,) = changed
    old, new = words[i].rstrip(","), new_words[i].rstrip(",")
    assert old in values and new in values and old != new
    if attribute == "shape":
      pair = (words[i - 1], new)
    else:
      pair = (new, words[i + 1].rstrip(","))
    assert pair[0] in PALETTE and pair[1] in SHAPE_NAMES
    assert pair not in HELD_OUT
    # The text of the training split still never names a held-out pair.
    assert not caption_pairs(negative) & HELD_OUT
    swapped_objects.add((len(caption_pairs(caption)), i))
  # Both objects of two-object captions are swapped sometimes.
  assert len({i for n, i in swapped_objects if n == 2}) >= 4


@pytest.mark.parametrize("attribute", ["shape", "colour"])
def test_swapped_caption_of_a_held_out_pair_names_a_seen_one(attribute):
  # zero_shot captions name held-out pairs; swapping one of their objects
  # (as experiments/clip_domain_gap.py does) must still give a seen pair.
  rng = np.random.default_rng(0)
  for example in examples("zero_shot", 32, 100):
    caption = example["caption"]
    negative = shapes.swapped_caption(caption, rng, attribute)
    new_pairs = caption_pairs(negative) - caption_pairs(caption)
    assert len(new_pairs) == 1, (caption, negative)
    assert not new_pairs & HELD_OUT


@pytest.mark.parametrize(
  "caption, attribute, message",
  [
    ("a photo of a dog", "shape", "names no '<colour> <shape>'"),
    ("a red circle in the top", "size", "cannot be swapped"),
  ],
)
def test_swapped_caption_errors(caption, attribute, message):
  with pytest.raises(ValueError, match=message):
    shapes.swapped_caption(caption, np.random.default_rng(0), attribute)


@pytest.mark.parametrize("split", ["train", "zero_shot"])
def test_swapped_shape_image_redraws_one_object_as_a_seen_pair(split):
  # Reference: the scene itself, re-rendered with one object's shape
  # changed; the swap must equal one of those renderings.
  rng = np.random.default_rng(0)
  swapped_objects = set()
  for index in range(120):
    scene = shapes.sample_scene(
      shapes.example_rng(split, index, 0), split, num_objects=1 + index % 2
    )
    image = shapes.render(scene, 32)
    swapped = shapes.swapped_shape_image(image, rng)
    matches = [
      (i, new)
      for i, obj in enumerate(scene.objects)
      for new in SHAPE_NAMES
      if new != obj.shape
      and np.array_equal(
        swapped,
        shapes.render(
          dataclasses.replace(
            scene,
            objects=tuple(
              dataclasses.replace(o, shape=new) if j == i else o
              for j, o in enumerate(scene.objects)
            ),
          ),
          32,
        ),
      )
    ]
    assert len(matches) == 1, (scene, matches)
    (i, new), colour = matches[0], scene.objects[matches[0][0]].colour
    assert (colour, new) not in HELD_OUT
    swapped_objects.add((len(scene.objects), i))
  assert swapped_objects == {(1, 0), (2, 0), (2, 1)}


def test_swapped_shape_image_refuses_other_pictures():
  rng = np.random.default_rng(0)
  noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
  with pytest.raises(ValueError, match="not a flat palette shape"):
    shapes.swapped_shape_image(noise, rng)
  with pytest.raises(ValueError, match="no object whose shape"):
    shapes.swapped_shape_image(np.zeros((32, 32, 3), np.uint8), rng)


def nearest_palette_name(rgb):
  """SHAPES.md's judge rule, written out here: nearest palette entry."""
  return min(
    PALETTE,
    key=lambda name: sum(
      (int(a) - b) ** 2 for a, b in zip(rgb, PALETTE[name], strict=True)
    ),
  )


def test_nearest_colour_names_each_palette_entry_and_its_neighbours():
  rng = np.random.default_rng(0)
  for name, rgb in PALETTE.items():
    assert shapes.nearest_colour(np.array(rgb)) == name
  for rgb in rng.integers(0, 256, (500, 3)):
    assert shapes.nearest_colour(rgb) == nearest_palette_name(rgb)


@pytest.mark.parametrize("split", ["train", "zero_shot"])
def test_recoloured_example_repaints_every_object_as_a_seen_pair(split):
  # Reference: the scene's own rendering gives each object's pixels; the
  # repainted image must keep exactly those pixels lit, each object in one
  # flat colour that the judge's rule names as a seen pair with its shape.
  rng = np.random.default_rng(0)
  colours_seen = []
  for index in range(120):
    scene = shapes.sample_scene(
      shapes.example_rng(split, index, 0), split, num_objects=1 + index % 2
    )
    image = shapes.render(scene, 32)
    repainted, _ = shapes.recoloured_example(
      image, shapes.canonical_caption(scene), rng
    )
    assert repainted.dtype == np.uint8 and repainted.shape == image.shape
    np.testing.assert_array_equal(
      np.any(repainted != 0, axis=-1), np.any(image != 0, axis=-1)
    )
    for obj in scene.objects:
      alone = shapes.render(dataclasses.replace(scene, objects=(obj,)), 32)
      pixels = repainted[np.any(alone != 0, axis=-1)]
      assert np.all(pixels == pixels[0]), "an object is not one flat colour"
      colour = tuple(int(v) for v in pixels[0])
      assert max(colour) >= shapes.RECOLOUR_MIN_PEAK
      assert (nearest_palette_name(colour), obj.shape) not in HELD_OUT
      colours_seen.append(colour)
  # Colours off the palette, and many of them: the point of the change.
  assert len(set(colours_seen)) > 100
  assert not set(colours_seen) & set(PALETTE.values())


def test_seen_pair_colour_avoids_each_shape_s_held_out_colours():
  rng = np.random.default_rng(1)
  for shape in SHAPE_NAMES:
    names = set()
    for _ in range(400):
      rgb, name = shapes.seen_pair_colour(shape, rng)
      assert name == nearest_palette_name(rgb)
      names.add(name)
    allowed = {c for c in PALETTE if (c, shape) not in HELD_OUT}
    assert names == allowed, shape


def test_recoloured_example_refuses_other_pictures():
  rng = np.random.default_rng(0)
  noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
  with pytest.raises(ValueError, match="recolouring"):
    shapes.recoloured_example(noise, "a red square in the center", rng)


def test_recoloured_example_renames_its_caption_to_the_new_colours():
  # Reference: the judge (which reads only pixels) must find the renamed
  # caption true, and the caption must keep its paraphrase: the same words
  # except colours, and each object's shape where it was.
  rng = np.random.default_rng(3)
  renamed = 0
  for index in range(150):
    example = shapes.generate_example("train", index, 32, 0)
    image, caption = example["image"], example["caption"]
    repainted, new_caption = shapes.recoloured_example(image, caption, rng)
    assert all(judge.judge(new_caption, repainted).values()), new_caption
    assert caption_skeleton(new_caption) == caption_skeleton(caption)
    shapes_named = re.findall(r"\b(circle|square|triangle|plus)\b", caption)
    assert re.findall(r"\b(circle|square|triangle|plus)\b", new_caption) == (
      shapes_named
    )
    assert not caption_pairs(new_caption) & HELD_OUT
    renamed += new_caption != caption
  assert renamed > 100


def test_recoloured_example_refuses_another_caption():
  example = shapes.generate_example("train", 0, 32, 0)
  with pytest.raises(ValueError, match="does not show"):
    shapes.recoloured_example(
      example["image"],
      "a purple triangle in the center",
      np.random.default_rng(0),
    )


def test_paraphrases_include_canonical_and_three_templates():
  rng = np.random.default_rng(1)
  for num_objects in (1, 2):
    scene = shapes.sample_scene(rng, "train", num_objects=num_objects)
    captions = shapes.paraphrases(scene)
    assert len(set(captions)) >= 3
    assert shapes.canonical_caption(scene) in captions
    assert all(caption == caption.lower() for caption in captions)


def test_canonical_caption_wording():
  one = shapes.Scene(
    objects=(
      shapes.ShapeObject("red", "circle", "small", (0.5, 0.5), "center"),
    )
  )
  assert shapes.canonical_caption(one) == "a small red circle in the center"
  two = shapes.Scene(
    objects=(
      shapes.ShapeObject("red", "circle", "small", (0.5, 0.28)),
      shapes.ShapeObject("blue", "square", "small", (0.5, 0.72)),
    ),
    relation="above",
  )
  assert shapes.canonical_caption(two) == "a red circle above a blue square"
  image = shapes.render(two, 64)
  red_rows = np.nonzero(np.all(image == PALETTE["red"], axis=2))[0]
  blue_rows = np.nonzero(np.all(image == PALETTE["blue"], axis=2))[0]
  assert red_rows.max() < blue_rows.min()  # The red circle is the upper one.


def test_same_seed_same_bytes_other_seed_other_bytes():
  for split in SPLITS:
    first = examples(split, 64, 10, seed=7)
    again = examples(split, 64, 10, seed=7)
    other = examples(split, 64, 10, seed=8)
    for a, b in zip(first, again, strict=True):
      assert a["image"].tobytes() == b["image"].tobytes()
      assert a["caption"] == b["caption"]
    assert any(
      a["image"].tobytes() != c["image"].tobytes()
      for a, c in zip(first, other, strict=True)
    )


def test_splits_use_different_streams():
  train = examples("train", 32, 20)
  validation = examples("validation", 32, 20)
  differ = [
    a["canonical_caption"] != b["canonical_caption"]
    for a, b in zip(train, validation, strict=True)
  ]
  assert sum(differ) >= 15


def test_scene_does_not_depend_on_image_size():
  for split in SPLITS:
    for index in range(20):
      captions = {
        size: shapes.generate_example(split, index, size, 0)
        for size in (32, 64)
      }
      assert captions[32]["caption"] == captions[64]["caption"]
      assert (
        captions[32]["canonical_caption"] == captions[64]["canonical_caption"]
      )


def test_any_slice_generates_alone():
  # Example 57 is the same whether or not examples 0..56 were made before.
  alone = shapes.generate_example("train", 57, 32, 3)
  in_sequence = examples("train", 32, 58, seed=3)[57]
  assert alone["image"].tobytes() == in_sequence["image"].tobytes()
  assert alone["caption"] == in_sequence["caption"]


def test_unknown_split_is_rejected():
  with pytest.raises(ValueError, match=r"'test'.*zero_shot"):
    shapes.generate_example("test", 0, 64, 0)
  with pytest.raises(ValueError, match="allowed splits"):
    shapes.sample_scene(np.random.default_rng(0), "valid")


@pytest.mark.parametrize("image_size", [16, 100])
def test_unsupported_image_size_is_rejected(image_size):
  with pytest.raises(ValueError, match=r"\(32, 64, 128, 256\)"):
    shapes.generate_example("train", 0, image_size, 0)
  with pytest.raises(ValueError, match=str(image_size)):
    shapes.render(
      shapes.sample_scene(np.random.default_rng(0), "train"), image_size
    )


@pytest.mark.parametrize("index, seed", [(-1, 0), (0, -2), (1.5, 0)])
def test_bad_index_or_seed_is_rejected(index, seed):
  with pytest.raises(ValueError, match="non-negative integer"):
    shapes.generate_example("train", index, 32, seed)


def test_bad_num_objects_is_rejected():
  with pytest.raises(ValueError, match="num_objects 3"):
    shapes.sample_scene(np.random.default_rng(0), "train", num_objects=3)


def test_unknown_shape_mask_is_rejected():
  with pytest.raises(ValueError, match="'hexagon'"):
    shapes.shape_mask("hexagon", 8, 8)


# ---------------------------------------------------------------------------
# TFDS builder.


def decoded(record):
  return {
    "image": record["image"],
    "caption": record["caption"].decode(),
    "canonical_caption": record["canonical_caption"].decode(),
  }


def test_tfds_round_trip(tmp_path):
  sizes = {"train": 12, "validation": 4, "zero_shot": 6}
  builder = shapes_tfds.prepare_shapes(
    str(tmp_path),
    image_size=32,
    num_train=sizes["train"],
    num_validation=sizes["validation"],
    num_zero_shot=sizes["zero_shot"],
    seed=5,
  )
  assert "seed5" in builder.builder_config.name
  for split, count in sizes.items():
    source = builder.as_data_source(split)
    assert len(source) == count
    for index in range(count):
      record = decoded(source[index])
      expected = shapes.generate_example(split, index, 32, 5)
      assert record["image"].shape == (32, 32, 3)
      np.testing.assert_array_equal(record["image"], expected["image"])
      assert record["caption"] == expected["caption"]
      assert record["canonical_caption"] == expected["canonical_caption"]
  # A second call reuses the files instead of writing them again.
  files = sorted(path for path in tmp_path.rglob("*") if path.is_file())
  stamps = [path.stat().st_mtime_ns for path in files]
  again = shapes_tfds.prepare_shapes(
    str(tmp_path), 32, sizes["train"], sizes["validation"], 6, seed=5
  )
  assert again.data_dir == builder.data_dir
  assert [path.stat().st_mtime_ns for path in files] == stamps


def test_configs_with_other_data_never_share_a_name():
  names = {
    shapes_tfds.make_config(64).name,
    shapes_tfds.make_config(32).name,
    shapes_tfds.make_config(64, num_train=10).name,
    shapes_tfds.make_config(64, num_validation=10).name,
    shapes_tfds.make_config(64, num_zero_shot=10).name,
    shapes_tfds.make_config(64, seed=1).name,
  }
  assert len(names) == 6


def test_predefined_configs_have_default_split_sizes():
  configs = shapes_tfds.Shapes.builder_configs
  assert sorted(config.image_size for config in configs.values()) == [
    32,
    64,
    128,
    256,
  ]
  for config in configs.values():
    assert config.split_sizes == {
      "train": 100_000,
      "validation": 2_000,
      "zero_shot": 2_000,
    }
    assert config.seed == 0
  assert shapes_tfds.Shapes.DEFAULT_BUILDER_CONFIG_NAME == "64px"


def test_tfds_config_errors():
  with pytest.raises(ValueError, match=r"\(32, 64, 128, 256\)"):
    shapes_tfds.make_config(100)
  with pytest.raises(ValueError, match="num_train must be an int >= 1"):
    shapes_tfds.make_config(32, num_train=0)
  with pytest.raises(ValueError, match="seed must be an int >= 0"):
    shapes_tfds.make_config(32, seed=-1)
  with pytest.raises(ValueError, match="must be '32px-train5"):
    shapes_tfds.ShapesConfig(
      name="tiny", image_size=32, num_train=5, num_validation=5, num_zero_shot=5
    )
