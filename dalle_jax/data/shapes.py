"""Procedural Shapes data set: scenes, their pixels and their captions.

/work/shared/SHAPES.md is the contract this module follows. Everything here is
pure numpy and deterministic: an example depends only on (split, index,
image_size, seed), so any slice of any split can be generated on its own.

Shape letters: S is the canvas side in pixels, B a shape's box side.
"""

import dataclasses
import functools
import itertools
import re

import numpy as np
from scipy import ndimage

COLOURS: dict[str, tuple[int, int, int]] = {
  "red": (220, 30, 30),
  "green": (30, 180, 60),
  "blue": (40, 70, 230),
  "yellow": (240, 220, 30),
  "purple": (150, 50, 200),
  "orange": (245, 140, 20),
  "cyan": (30, 210, 220),
  "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle", "plus")
SIZES = ("small", "large")
POSITIONS = (
  "top left",
  "top",
  "top right",
  "left",
  "center",
  "right",
  "bottom left",
  "bottom",
  "bottom right",
)
RELATIONS = ("to the left of", "to the right of", "above", "below")
INVERSE_RELATION = {
  "to the left of": "to the right of",
  "to the right of": "to the left of",
  "above": "below",
  "below": "above",
}
HELD_OUT_PAIRS = frozenset(
  {
    ("red", "triangle"),
    ("green", "circle"),
    ("blue", "plus"),
    ("yellow", "square"),
    ("purple", "triangle"),
    ("orange", "circle"),
    ("cyan", "square"),
    ("white", "plus"),
  }
)
SEEN_PAIRS = tuple(
  pair
  for pair in itertools.product(COLOURS, SHAPES)
  if pair not in HELD_OUT_PAIRS
)
SPLITS = ("train", "validation", "zero_shot")
_PALETTE_NAMES = tuple(COLOURS)
_PALETTE = np.array([COLOURS[name] for name in _PALETTE_NAMES], float)
# A recoloured object's brightest channel is at least this, like every
# palette colour's (the dimmest peaks at 180), so it stays far above the
# judge's foreground threshold.
RECOLOUR_MIN_PEAK = 150
IMAGE_SIZES = (32, 64, 128, 256)

# Fractions of S. Grid centres per axis, the largest jitter of a centre, and
# the two centres of a two-object scene along the relation's axis.
GRID_CENTRES = (0.22, 0.50, 0.78)
MAX_JITTER = 0.03
PAIR_CENTRES = (0.28, 0.72)
BOX_FRACTIONS = {"small": 0.25, "large": 0.40}

# Paraphrase templates, the canonical one first. Fields of one-object
# templates: size, colour, shape, position. Two-object templates name the
# objects 1 (the one the relation is about) and 2.
ONE_OBJECT_TEMPLATES = (
  "a {size} {colour} {shape} in the {position}",
  "{size} {colour} {shape}, {position}",
  "there is a {size} {colour} {shape} in the {position}",
  "the {position} has a {size} {colour} {shape}",
)
TWO_OBJECT_TEMPLATES = (
  "a {colour1} {shape1} {relation} a {colour2} {shape2}",
  "{colour1} {shape1} {relation} {colour2} {shape2}",
  "there is a {colour1} {shape1} {relation} a {colour2} {shape2}",
  # The same scene told from the other object's side.
  "a {colour2} {shape2} {inverse_relation} a {colour1} {shape1}",
)

# Mixed into every example's seed so that splits draw from unrelated streams.
_SPLIT_CODES = {"train": 0, "validation": 1, "zero_shot": 2}


@dataclasses.dataclass(frozen=True)
class ShapeObject:
  """One filled shape on the canvas.

  Attributes:
    colour: a key of COLOURS.
    shape: one of SHAPES.
    size: one of SIZES.
    centre: (x, y) of the box centre as fractions of S, jitter included.
    position: the grid cell name (one of POSITIONS) for a one-object scene;
      None for an object placed by a relation.
  """

  colour: str
  shape: str
  size: str
  centre: tuple[float, float]
  position: str | None = None


@dataclasses.dataclass(frozen=True)
class Scene:
  """What an image shows, independent of its canvas size.

  Attributes:
    objects: one object, or two objects where the first is the one the
      relation is about.
    relation: one of RELATIONS for two-object scenes, else None.
  """

  objects: tuple[ShapeObject, ...]
  relation: str | None = None


def nearest_colour(rgb: np.ndarray) -> str:
  """The palette entry nearest to an [3] RGB colour (squared distance).

  The judge names an object's colour with this rule, so a colour is "red"
  exactly when the judge would read it as red.
  """
  distances = np.square(_PALETTE - np.asarray(rgb, float)).sum(axis=1)
  return _PALETTE_NAMES[int(np.argmin(distances))]


def check_split(split: str) -> None:
  """Raises ValueError unless `split` is one of SPLITS."""
  if split not in SPLITS:
    raise ValueError(
      f"Unknown split {split!r}; allowed splits are {SPLITS}. Pick one of "
      "those."
    )


def check_image_size(image_size: int) -> None:
  """Raises ValueError unless `image_size` is one of IMAGE_SIZES."""
  if image_size not in IMAGE_SIZES:
    raise ValueError(
      f"Unsupported image size {image_size!r}; allowed sizes are "
      f"{IMAGE_SIZES}. Pick one of those."
    )


def box_side(size: str, image_size: int) -> int:
  """The side in pixels of the bounding box of a `size` shape."""
  return round(BOX_FRACTIONS[size] * image_size)


def shape_mask(shape: str, height: int, width: int) -> np.ndarray:
  """Rasterises `shape` filling a box, one pixel at a time, no anti-aliasing.

  A pixel is inside when its centre is inside the shape; for the triangle the
  width at the pixel row's lower edge is used, so the apex row is never empty
  and the mask spans the whole box. Tests are done in integers (coordinates
  doubled) so that no pixel depends on floating-point rounding.

  Args:
    shape: one of SHAPES.
    height: box height H in pixels.
    width: box width W in pixels.

  Returns:
    [H, W] bool mask. A circle is the ellipse inscribed in the box; a triangle
    is isosceles with its apex at the top centre and its base the bottom row;
    a plus has a horizontal and a vertical arm, each one third of the box wide.
  """
  rows = np.arange(height)[:, None]
  cols = np.arange(width)[None, :]
  # Doubled offsets of pixel centres from the box centre.
  dy = np.abs(2 * rows + 1 - height)
  dx = np.abs(2 * cols + 1 - width)
  if shape == "circle":
    return dx**2 * height**2 + dy**2 * width**2 <= width**2 * height**2
  if shape == "square":
    return np.ones((height, width), bool)
  if shape == "triangle":
    return dx * height <= width * (rows + 1)
  if shape == "plus":
    return (3 * dy <= height) | (3 * dx <= width)
  raise ValueError(f"Unknown shape {shape!r}; allowed shapes are {SHAPES}.")


def _jittered(rng: np.random.Generator, x: float, y: float):
  jitter_x, jitter_y = rng.uniform(-MAX_JITTER, MAX_JITTER, size=2)
  return (float(x + jitter_x), float(y + jitter_y))


def _pick(rng: np.random.Generator, values):
  return values[int(rng.integers(len(values)))]


def _sample_one_object(rng, pairs) -> Scene:
  colour, shape = _pick(rng, pairs)
  size = _pick(rng, SIZES)
  cell = int(rng.integers(len(POSITIONS)))
  centre = _jittered(rng, GRID_CENTRES[cell % 3], GRID_CENTRES[cell // 3])
  obj = ShapeObject(colour, shape, size, centre, POSITIONS[cell])
  return Scene(objects=(obj,))


def _pair_centres(relation: str):
  """Nominal centres of (first, second) object for a relation."""
  low, high = PAIR_CENTRES
  return {
    "to the left of": ((low, 0.5), (high, 0.5)),
    "to the right of": ((high, 0.5), (low, 0.5)),
    "above": ((0.5, low), (0.5, high)),
    "below": ((0.5, high), (0.5, low)),
  }[relation]


def _sample_two_objects(rng, pairs) -> Scene:
  first = int(rng.integers(len(pairs)))
  # Draw the second pair among the others, so the objects always differ in
  # colour or shape and the caption names each one unambiguously.
  second = (first + 1 + int(rng.integers(len(pairs) - 1))) % len(pairs)
  relation = _pick(rng, RELATIONS)
  objects = tuple(
    ShapeObject(*pairs[index], "small", _jittered(rng, *nominal))
    for index, nominal in zip(
      (first, second), _pair_centres(relation), strict=True
    )
  )
  return Scene(objects=objects, relation=relation)


def sample_scene(
  rng: np.random.Generator, split: str, num_objects: int | None = None
) -> Scene:
  """Draws a scene of `split`.

  Args:
    rng: source of randomness; the only one used.
    split: one of SPLITS. 'train' and 'validation' use only seen (colour,
      shape) pairs, 'zero_shot' only HELD_OUT_PAIRS.
    num_objects: 1 or 2; None draws either with probability 1/2.

  Returns:
    The scene; it does not depend on any canvas size.
  """
  check_split(split)
  if num_objects is None:
    num_objects = int(rng.integers(1, 3))
  pairs = sorted(HELD_OUT_PAIRS) if split == "zero_shot" else SEEN_PAIRS
  if num_objects == 1:
    return _sample_one_object(rng, pairs)
  if num_objects == 2:
    return _sample_two_objects(rng, pairs)
  raise ValueError(
    f"Unsupported num_objects {num_objects!r}; allowed are 1, 2 or None "
    "(random)."
  )


def _box_origin(centre: float, side: int, image_size: int) -> int:
  """First pixel of a box of `side` centred at `centre` (fraction of S)."""
  origin = int(np.floor(centre * image_size - side / 2 + 0.5))
  # Clamping moves the box towards its nominal cell, so the jitter bound holds.
  return min(max(origin, 0), image_size - side)


def render(scene: Scene, image_size: int) -> np.ndarray:
  """Draws a scene on a black canvas.

  Args:
    scene: what to draw.
    image_size: canvas side S, one of IMAGE_SIZES.

  Returns:
    [S, S, 3] uint8 image: black background, flat palette colours.
  """
  check_image_size(image_size)
  image = np.zeros((image_size, image_size, 3), np.uint8)
  for obj in scene.objects:
    side = box_side(obj.size, image_size)
    left = _box_origin(obj.centre[0], side, image_size)
    top = _box_origin(obj.centre[1], side, image_size)
    box = image[top : top + side, left : left + side]
    box[shape_mask(obj.shape, side, side)] = COLOURS[obj.colour]
  return image


def _template_fields(scene: Scene) -> dict[str, str]:
  if scene.relation is None:
    (obj,) = scene.objects
    return dict(
      size=obj.size, colour=obj.colour, shape=obj.shape, position=obj.position
    )
  first, second = scene.objects
  return dict(
    colour1=first.colour,
    shape1=first.shape,
    colour2=second.colour,
    shape2=second.shape,
    relation=scene.relation,
    inverse_relation=INVERSE_RELATION[scene.relation],
  )


def paraphrases(scene: Scene) -> list[str]:
  """All captions of a scene, one per template, the canonical one first."""
  templates = (
    ONE_OBJECT_TEMPLATES if scene.relation is None else TWO_OBJECT_TEMPLATES
  )
  fields = _template_fields(scene)
  return [template.format(**fields) for template in templates]


def canonical_caption(scene: Scene) -> str:
  """The caption evaluation uses, e.g. 'a small red circle in the top left'."""
  return paraphrases(scene)[0]


# A named object in any template: its colour word, a space, its shape word.
_OBJECT_WORDS = re.compile(
  r"\b({}) ({})\b".format("|".join(COLOURS), "|".join(SHAPES))
)


SWAPPABLE_ATTRIBUTES = ("shape", "colour")


def swapped_caption(
  caption: str, rng: np.random.Generator, attribute: str = "shape"
) -> str:
  """The caption with one named object's shape (or colour) replaced.

  A hard negative for contrastive training: the caption of a scene that
  differs from the original in one attribute of one object, told in the
  same paraphrase. The new value keeps the object's (colour, shape) pair
  seen, so a held-out pair never appears in training text, even as a
  negative.

  Args:
    caption: a Shapes caption in any template, e.g. 'red circle, top left'.
    rng: picks the object (of two) and the new value.
    attribute: one of SWAPPABLE_ATTRIBUTES.

  Returns:
    e.g. 'red square, top left' (shape) or 'blue circle, top left'
    (colour).

  Raises:
    ValueError: if the caption names no '{colour} {shape}' object, or the
      attribute is not swappable.
  """
  if attribute not in SWAPPABLE_ATTRIBUTES:
    raise ValueError(
      f"attribute={attribute!r} cannot be swapped; use one of "
      f"{SWAPPABLE_ATTRIBUTES}."
    )
  objects = list(_OBJECT_WORDS.finditer(caption))
  if not objects:
    raise ValueError(
      f"The caption {caption!r} names no '<colour> <shape>' object of the "
      "Shapes vocabulary, so it has no swapped negative; hard negatives "
      "(config.data.hard_negatives > 0) need Shapes captions."
    )
  chosen = objects[int(rng.integers(len(objects)))]
  colour, shape = chosen.groups()
  if attribute == "shape":
    group = 2
    others = [
      s for s in SHAPES if s != shape and (colour, s) not in HELD_OUT_PAIRS
    ]
  else:
    group = 1
    others = [
      c for c in COLOURS if c != colour and (c, shape) not in HELD_OUT_PAIRS
    ]
  start, end = chosen.span(group)
  return caption[:start] + _pick(rng, others) + caption[end:]


@functools.lru_cache(maxsize=256)
def _read_only_mask(shape: str, height: int, width: int) -> np.ndarray:
  """`shape_mask`, computed once per box (reading renderings back is hot)."""
  mask = shape_mask(shape, height, width)
  mask.flags.writeable = False
  return mask


def find_objects(
  image: np.ndarray,
) -> list[tuple[str, str, tuple[slice, slice]]]:
  """The objects of a Shapes rendering, read back from its pixels.

  Objects never touch (SHAPES.md's layout), every shape fills its box edge
  to edge, and colours are flat palette entries, so each connected
  non-black region is one object whose bounding box is its box.

  Args:
    image: [S, S, 3] uint8, a rendering (`render`) or its lossless copy.

  Returns:
    [(colour, shape, (rows, cols))] in reading order, the slices being the
    object's box.

  Raises:
    ValueError: a region whose colour is not a palette entry or whose mask
      is none of SHAPES at its box: the image is not a Shapes rendering.
  """
  labels, _ = ndimage.label(np.any(image != 0, axis=-1))
  objects = []
  for index, box in enumerate(ndimage.find_objects(labels), start=1):
    mask = labels[box] == index
    pixels = image[box][mask]  # [P, 3], the region's colours
    colour = tuple(int(v) for v in pixels[0])
    names = [name for name, rgb in COLOURS.items() if rgb == colour]
    height, width = mask.shape
    matching = [
      s
      for s in SHAPES
      if np.array_equal(_read_only_mask(s, height, width), mask)
    ]
    if not names or not matching or not np.all(pixels == colour):
      raise ValueError(
        f"The region at rows {box[0].start}-{box[0].stop - 1}, columns "
        f"{box[1].start}-{box[1].stop - 1} is not a flat palette shape; "
        "image hard negatives (config.data.negative_images) and "
        "recolouring (config.data.recolour) need Shapes renderings."
      )
    objects.append((names[0], matching[0], box))
  return objects


def swapped_shape_image(
  image: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
  """The rendering with one object redrawn as another shape.

  The image-side twin of `swapped_caption`: the same scene, colour, box and
  layout, one object's shape replaced, so the caption of the original no
  longer holds. The new (colour, shape) pair is a seen one, so no held-out
  pair is ever drawn.

  Args:
    image: [S, S, 3] uint8 Shapes rendering of seen pairs.
    rng: picks the object (of two) and its new shape.

  Returns:
    [S, S, 3] uint8, a new array.

  Raises:
    ValueError: the image is not a Shapes rendering (`find_objects`), or no
      object has a seen pair to swap to (an image of held-out pairs).
  """
  swappable = []  # (colour, shape, box, new shapes) per object
  for colour, shape, box in find_objects(image):
    height, width = box[0].stop - box[0].start, box[1].stop - box[1].start
    old_mask = _read_only_mask(shape, height, width)
    new_shapes = [
      new
      for new in SHAPES
      if (colour, new) not in HELD_OUT_PAIRS
      # At tiny boxes two shapes can rasterise alike; that is no swap.
      and not np.array_equal(_read_only_mask(new, height, width), old_mask)
    ]
    if new_shapes:
      swappable.append((colour, shape, box, new_shapes))
  if not swappable:
    raise ValueError(
      "The image has no object whose shape can be swapped to a seen "
      "(colour, shape) pair; image hard negatives need training renderings."
    )
  colour, shape, box, new_shapes = _pick(rng, swappable)
  swapped = image.copy()
  region = swapped[box]
  height, width = region.shape[:2]
  region[_read_only_mask(shape, height, width)] = 0
  region[_read_only_mask(_pick(rng, new_shapes), height, width)] = COLOURS[
    colour
  ]
  return swapped


def example_rng(split: str, index: int, seed: int) -> np.random.Generator:
  """The random stream of one example; independent of the canvas size."""
  check_split(split)
  for name, value in (("index", index), ("seed", seed)):
    if not isinstance(value, (int, np.integer)) or value < 0:
      raise ValueError(
        f"{name} must be a non-negative integer, got {value!r}. Pass an int "
        ">= 0."
      )
  entropy = (int(seed), _SPLIT_CODES[split], int(index))
  return np.random.default_rng(np.random.SeedSequence(entropy))


def generate_example(
  split: str, index: int, image_size: int, seed: int
) -> dict[str, np.ndarray | str]:
  """Generates example `index` of `split`.

  Even indices hold one-object scenes, odd ones two-object scenes, so every
  split is half of each kind.

  Args:
    split: one of SPLITS.
    index: example number, >= 0.
    image_size: canvas side S, one of IMAGE_SIZES.
    seed: data set seed, >= 0.

  Returns:
    {'image': [S, S, 3] uint8, 'caption': str, 'canonical_caption': str}.
    The caption is a random paraphrase for 'train' and the canonical caption
    for the evaluation splits.
  """
  check_image_size(image_size)
  rng = example_rng(split, index, seed)
  scene = sample_scene(rng, split, num_objects=1 + index % 2)
  captions = paraphrases(scene)
  caption = _pick(rng, captions) if split == "train" else captions[0]
  return {
    "image": render(scene, image_size),
    "caption": caption,
    "canonical_caption": captions[0],
  }


def seen_pair_colour(
  shape: str, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
  """A random colour that the judge would pair with `shape` as a seen pair.

  Uniform over the RGB cube, except colours whose brightest channel is
  below RECOLOUR_MIN_PEAK and colours whose nearest palette entry forms a
  held-out pair with `shape` (e.g. nothing near white or blue for a plus).

  Returns:
    ([3] uint8 colour, the name of its nearest palette entry).
  """
  while True:
    rgb = rng.integers(0, 256, size=3)
    if rgb.max() < RECOLOUR_MIN_PEAK:
      continue
    name = nearest_colour(rgb)
    if (name, shape) not in HELD_OUT_PAIRS:
      return rgb.astype(np.uint8), name


def recoloured_example(
  image: np.ndarray, caption: str, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
  """The rendering repainted in new colours, and its caption kept true.

  An augmentation that never creates a held-out pair (SHAPES.md asks for
  such): shapes meet many more colours than the palette's eight. Each
  object gets a random colour that reads as a seen pair with its shape
  (`seen_pair_colour`), and the caption's colour word for it becomes that
  colour's palette name, in the caption's own paraphrase. Two objects keep
  distinct (colour, shape) pairs, as every Shapes scene has.

  Args:
    image: [S, S, 3] uint8 Shapes rendering.
    caption: its caption, in any template.
    rng: draws the colours.

  Returns:
    ([S, S, 3] uint8 new array, the renamed caption).

  Raises:
    ValueError: the image is not a Shapes rendering, or the caption names
      an object the image does not show.
  """
  objects = find_objects(image)
  while True:
    drawn = [seen_pair_colour(shape, rng) for _, shape, _ in objects]
    colours = [rgb for rgb, _ in drawn]
    names = [name for _, name in drawn]
    pairs = [
      (name, shape) for name, (_, shape, _) in zip(names, objects, strict=True)
    ]
    if len(set(pairs)) == len(pairs):
      break
  renamed = {
    (c, s): name for (c, s, _), name in zip(objects, names, strict=True)
  }
  recoloured = image.copy()
  for (_, shape, box), rgb in zip(objects, colours, strict=True):
    region = recoloured[box]
    height, width = region.shape[:2]
    region[_read_only_mask(shape, height, width)] = rgb
  pieces, end = [], 0
  for mention in _OBJECT_WORDS.finditer(caption):
    if mention.groups() not in renamed:
      raise ValueError(
        f"The caption {caption!r} names a {' '.join(mention.groups())} that "
        "the image does not show; recolouring needs a rendering and its "
        "own caption."
      )
    pieces += [caption[end : mention.start(1)], renamed[mention.groups()]]
    end = mention.end(1)
  return recoloured, "".join(pieces) + caption[end:]
