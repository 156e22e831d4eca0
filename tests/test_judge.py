"""Tests for the Shapes judge: dataset images pass, edited captions fail."""

import numpy as np
import pytest

from dalle_jax.data import judge, shapes

SPLITS = ("train", "validation", "zero_shot")
COLOURS = (
  "red",
  "green",
  "blue",
  "yellow",
  "purple",
  "orange",
  "cyan",
  "white",
)
SHAPE_NAMES = ("circle", "square", "triangle", "plus")
POSITION_NAMES = (
  "top left",
  "top right",
  "bottom left",
  "bottom right",
  "top",
  "bottom",
  "left",
  "right",
  "center",
)
INVERSE = {
  "to the left of": "to the right of",
  "to the right of": "to the left of",
  "above": "below",
  "below": "above",
}


def examples(split, image_size, count, seed=0):
  return [
    shapes.generate_example(split, index, image_size, seed)
    for index in range(count)
  ]


@pytest.mark.parametrize(
  "image_size, count", [(32, 300), (64, 300), (128, 20), (256, 8)]
)
@pytest.mark.parametrize("split", SPLITS)
def test_every_dataset_image_is_correct_for_its_captions(
  split, image_size, count
):
  for example in examples(split, image_size, count):
    for caption in (example["caption"], example["canonical_caption"]):
      verdict = judge.judge(caption, example["image"])
      assert all(verdict.values()), (caption, verdict)
      assert judge.correct(caption, example["image"])


def test_every_paraphrase_template_is_judged_correct():
  rng = np.random.default_rng(0)
  for split in SPLITS:
    for num_objects in (1, 2):
      for _ in range(20):
        scene = shapes.sample_scene(rng, split, num_objects=num_objects)
        image = shapes.render(scene, 64)
        for caption in shapes.paraphrases(scene):
          assert judge.correct(caption, image), caption


def test_stated_attributes_per_kind_of_caption():
  one = shapes.generate_example("validation", 0, 64, 0)
  two = shapes.generate_example("validation", 1, 64, 0)
  assert set(judge.judge(one["caption"], one["image"])) == {
    "count",
    "colour",
    "shape",
    "size",
    "position",
  }
  assert set(judge.judge(two["caption"], two["image"])) == {
    "count",
    "colour",
    "shape",
    "relation",
  }


def words_in(caption, vocabulary):
  return [word for word in vocabulary if f" {word} " in f" {caption} "]


def wrong_colour(caption):
  used = words_in(caption, COLOURS)
  other = next(c for c in COLOURS if c not in used)
  return caption.replace(f" {used[0]} ", f" {other} ", 1), "colour"


def wrong_shape(caption):
  used = [word for word in caption.split() if word in SHAPE_NAMES]
  other = next(s for s in SHAPE_NAMES if s not in used)
  return caption.replace(f" {used[0]}", f" {other}", 1), "shape"


def wrong_size(caption):
  swapped = {"small": "large", "large": "small"}
  head, size, tail = caption.split(" ", 2)
  return f"{head} {swapped[size]} {tail}", "size"


def wrong_position(caption):
  head, position = caption.rsplit(" in the ", 1)
  other = next(p for p in POSITION_NAMES if p != position)
  return f"{head} in the {other}", "position"


def swapped_relation(caption):
  relation = next(r for r in INVERSE if f" {r} " in caption)
  return caption.replace(f" {relation} ", f" {INVERSE[relation]} "), "relation"


def swapped_binding(caption):
  # 'a red circle above a blue square' -> 'a blue circle above a red square'.
  words = caption.split()
  colour_at = [i for i, word in enumerate(words) if word in COLOURS]
  first, second = colour_at
  words[first], words[second] = words[second], words[first]
  return " ".join(words), None


@pytest.mark.parametrize("image_size", [32, 64])
def test_edited_one_object_captions_are_rejected(image_size):
  for example in examples("validation", image_size, 60)[::2]:
    caption = example["canonical_caption"]
    for edit in (wrong_colour, wrong_shape, wrong_size, wrong_position):
      wrong, attribute = edit(caption)
      assert wrong != caption
      verdict = judge.judge(wrong, example["image"])
      assert not verdict[attribute], (wrong, verdict)
      assert not judge.correct(wrong, example["image"])


@pytest.mark.parametrize("split", ["validation", "zero_shot"])
def test_edited_two_object_captions_are_rejected(split):
  for example in examples(split, 64, 60)[1::2]:
    caption = example["canonical_caption"]
    for edit in (wrong_colour, wrong_shape, swapped_relation, swapped_binding):
      wrong, attribute = edit(caption)
      if wrong == caption:  # Both objects share the colour: no binding edit.
        continue
      verdict = judge.judge(wrong, example["image"])
      if attribute is not None:
        assert not verdict[attribute], (wrong, verdict)
      assert not judge.correct(wrong, example["image"]), wrong


def test_relation_told_from_the_other_side_is_correct():
  scene = shapes.Scene(
    objects=(
      shapes.ShapeObject("red", "circle", "small", (0.28, 0.5)),
      shapes.ShapeObject("blue", "square", "small", (0.72, 0.5)),
    ),
    relation="to the left of",
  )
  image = shapes.render(scene, 64)
  assert judge.correct("a red circle to the left of a blue square", image)
  assert judge.correct("a blue square to the right of a red circle", image)
  assert not judge.correct("a red circle to the right of a blue square", image)
  assert not judge.correct("a red circle above a blue square", image)


def draw_square(image_size, top, left, side, colour):
  image = np.zeros((image_size, image_size, 3), np.uint8)
  image[top : top + side, left : left + side] = colour
  return image


@pytest.mark.parametrize("image_size", [32, 48, 64, 100, 200, 256])
def test_hand_drawn_square_at_any_canvas_size(image_size):
  side = round(0.40 * image_size)
  top = round(0.78 * image_size - side / 2)
  left = round(0.22 * image_size - side / 2)
  image = draw_square(image_size, top, left, side, (40, 70, 230))
  (found,) = judge.describe(image)
  assert (found.colour, found.shape, found.size, found.position) == (
    "blue",
    "square",
    "large",
    "bottom left",
  )
  assert found.box == (top, left, side, side)
  assert found.area == side * side
  assert judge.correct("a large blue square in the bottom left", image)


def test_hand_drawn_plus_and_circle():
  image = np.zeros((64, 64, 3), np.uint8)
  # A small plus (box 16, arms 6 px) centred in the top right cell.
  image[6:22, 47:53] = (245, 140, 20)
  image[11:17, 42:58] = (245, 140, 20)
  # A large circle (box 26) centred in the center cell.
  rows, cols = np.mgrid[:64, :64]
  inside = (rows + 0.5 - 32) ** 2 + (cols + 0.5 - 32) ** 2 <= 13**2
  image[inside] = (30, 210, 220)
  described = {
    (obj.colour, obj.shape, obj.size, obj.position)
    for obj in judge.describe(image)
  }
  assert described == {
    ("orange", "plus", "small", "top right"),
    ("cyan", "circle", "large", "center"),
  }


def test_robust_to_noise_and_specks():
  rng = np.random.default_rng(0)
  for example in examples("zero_shot", 64, 40):
    noisy = example["image"].astype(int) + rng.integers(-12, 13, (64, 64, 3))
    # A few isolated bright specks, far below the minimum object area.
    for row, col in rng.integers(0, 64, (5, 2)):
      noisy[row, col] = 255
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    assert judge.correct(example["caption"], noisy), example["caption"]


def test_count_is_checked():
  blank = np.zeros((64, 64, 3), np.uint8)
  assert judge.describe(blank) == []
  verdict = judge.judge("a small red circle in the center", blank)
  assert not any(verdict.values())
  two = shapes.generate_example("validation", 1, 64, 0)
  one_object_caption = "a small red circle in the center"
  assert not judge.judge(one_object_caption, two["image"])["count"]
  one = shapes.generate_example("validation", 0, 64, 0)
  verdict = judge.judge("a red circle above a blue square", one["image"])
  assert not verdict["count"] and not verdict["relation"]


def test_parse_canonical_and_paraphrases():
  facts = judge.parse_caption("a small red circle in the top left")
  assert facts == judge.CaptionFacts(
    objects=(judge.MentionFacts("red", "circle", "small", "top left"),)
  )
  for caption in (
    "large white plus, center",
    "there is a large white plus in the center",
    "the center has a large white plus",
  ):
    assert judge.parse_caption(caption) == judge.CaptionFacts(
      objects=(judge.MentionFacts("white", "plus", "large", "center"),)
    )
  two = judge.parse_caption("a red circle to the left of a blue square")
  assert two == judge.CaptionFacts(
    objects=(
      judge.MentionFacts("red", "circle"),
      judge.MentionFacts("blue", "square"),
    ),
    relation="to the left of",
  )
  assert judge.parse_caption("red circle to the left of blue square") == two


@pytest.mark.parametrize(
  "caption, message",
  [
    ("a small red hexagon in the top", "unknown word 'hexagon'"),
    ("a small red", "do not end with a shape word"),
    ("a small circle in the top", "every shape needs a colour"),
    ("a red blue circle", "states the colour twice"),
    ("a red circle above a blue square below", "states the relation twice"),
    ("a red circle in the top in the left", "states the position twice"),
    ("a red circle a blue square", "must name one object"),
    ("a red circle above", "must name one object"),
    ("above a red circle a blue square", "must name one object"),
    ("a red circle above a blue square in the top", "must name one object"),
  ],
)
def test_uncaptionable_captions_are_rejected(caption, message):
  with pytest.raises(ValueError, match=message) as error:
    judge.judge(caption, np.zeros((32, 32, 3), np.uint8))
  assert repr(caption) in str(error.value)


def test_bad_images_are_rejected():
  with pytest.raises(ValueError, match="uint8"):
    judge.describe(np.zeros((32, 32, 3), np.float32))
  with pytest.raises(ValueError, match="uint8"):
    judge.describe(np.zeros((32, 32), np.uint8))
  with pytest.raises(ValueError, match="square image, got 32x48"):
    judge.describe(np.zeros((32, 48, 3), np.uint8))


def test_verdict_arrays_and_their_summary_agree_with_the_judge():
  from dalle_jax import evaluate

  found = examples("validation", 64, 12)
  images = np.stack([example["image"] for example in found])
  captions = [example["canonical_caption"] for example in found]
  # Every other caption names a wrong colour: those fail on colour only.
  edited = [
    wrong_colour(caption)[0] if n % 2 else caption
    for n, caption in enumerate(captions)
  ]
  verdicts = evaluate.judge_verdicts(edited, images)
  colour = evaluate.ATTRIBUTES.index("colour")
  for n, caption in enumerate(edited):
    expected = judge.judge(caption, images[n])
    for a, attribute in enumerate(evaluate.ATTRIBUTES):
      if attribute in expected:
        assert verdicts[n, a] == int(expected[attribute])
      else:
        assert verdicts[n, a] == evaluate.NOT_STATED
    assert verdicts[n, colour] == (0 if n % 2 else 1)

  metrics = evaluate.judge_images(edited, images)
  assert metrics["judged_correct"] == pytest.approx(0.5)
  assert metrics["wrong_colour"] == pytest.approx(0.5)
  assert metrics["wrong_shape"] == 0.0

  with pytest.raises(ValueError, match="12 captions for 11 images"):
    evaluate.judge_verdicts(edited, images[:11])
