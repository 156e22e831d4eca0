"""Judges whether a Shapes image shows what a caption says.

The judge reads the image only (never the caption it came with): it finds
the coloured objects and names each one's colour, shape, size and grid cell,
then checks every attribute the caption states (SHAPES.md, "The judge").

Shape letters: S is the canvas side, H and W an object's box height and width.
"""

import dataclasses
import itertools

import numpy as np

from dalle_jax.data import shapes

# A pixel belongs to an object when its brightest channel exceeds this; the
# dimmest palette colour peaks at 180, so dark noise stays background.
FOREGROUND_THRESHOLD = 80
# Blobs smaller than this fraction of a small shape's box are noise.
MIN_AREA_FRACTION = 0.15
# Grid cell boundaries, fractions of S: halfway between the grid centres.
CELL_BOUNDARIES = (
  (shapes.GRID_CENTRES[0] + shapes.GRID_CENTRES[1]) / 2,
  (shapes.GRID_CENTRES[1] + shapes.GRID_CENTRES[2]) / 2,
)
ATTRIBUTES = ("count", "colour", "shape", "size", "position", "relation")

# Words that carry no fact in any caption template.
_FILLER_WORDS = ("a", "an", "the", "in", "there", "is", "has")


@dataclasses.dataclass(frozen=True)
class DetectedObject:
  """One coloured object found in an image.

  Attributes:
    colour: nearest palette colour name of the object's mean colour.
    shape: the shape in SHAPES that overlaps the object's mask best.
    size: the size in SIZES whose box side is nearest the object's box.
    position: grid cell name (one of POSITIONS) of the box centre.
    centre: (x, y) of the box centre in pixels.
    box: (top, left, height, width) in pixels.
    area: number of pixels.
  """

  colour: str
  shape: str
  size: str
  position: str
  centre: tuple[float, float]
  box: tuple[int, int, int, int]
  area: int


@dataclasses.dataclass(frozen=True)
class MentionFacts:
  """What a caption says about one object; None where it says nothing."""

  colour: str
  shape: str
  size: str | None = None
  position: str | None = None


@dataclasses.dataclass(frozen=True)
class CaptionFacts:
  """What a caption states.

  Attributes:
    objects: the objects named, in caption order.
    relation: one of RELATIONS, relating objects[0] to objects[1], or None.
  """

  objects: tuple[MentionFacts, ...]
  relation: str | None = None


# ---------------------------------------------------------------------------
# Reading images.


def _find_runs(mask: np.ndarray):
  """Horizontal runs of True pixels, in row-major order.

  Args:
    mask: [S, S] bool.

  Returns:
    (rows, starts, stops) int arrays, one entry per run; stop is exclusive.
  """
  padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
  padded[:, 1:-1] = mask
  edges = np.diff(padded, axis=1)
  rows, starts = np.nonzero(edges == 1)
  _, stops = np.nonzero(edges == -1)
  return rows, starts, stops


def _label_runs(rows, starts, stops, num_rows: int) -> np.ndarray:
  """Component id of each run; runs in adjacent rows that overlap join.

  Union-find over runs rather than pixels: a Shapes image has a few runs per
  row, so a plain Python loop stays fast.

  Returns:
    [num_runs] int array of component ids 0..K-1.
  """
  parent = list(range(len(rows)))

  def find(run):
    while parent[run] != run:
      parent[run] = parent[parent[run]]
      run = parent[run]
    return run

  row_begin = np.searchsorted(rows, np.arange(num_rows + 1)).tolist()
  starts_list, stops_list = starts.tolist(), stops.tolist()
  for row in range(num_rows - 1):
    upper, upper_end = row_begin[row], row_begin[row + 1]
    lower, lower_end = upper_end, row_begin[row + 2]
    while upper < upper_end and lower < lower_end:
      # Four-connectivity: the runs share at least one column.
      if (
        starts_list[upper] < stops_list[lower]
        and starts_list[lower] < stops_list[upper]
      ):
        parent[find(upper)] = find(lower)
      if stops_list[upper] < stops_list[lower]:
        upper += 1
      else:
        lower += 1
  roots = np.array([find(run) for run in range(len(rows))], np.int64)
  return np.unique(roots, return_inverse=True)[1].reshape(-1)


def label_components(mask: np.ndarray):
  """Connected components (4-connectivity) of a mask.

  Args:
    mask: [S, S] bool.

  Returns:
    (labels, pixel_rows, pixel_cols): for every True pixel, its component id
    (0..K-1) and coordinates, all [N] int arrays.
  """
  rows, starts, stops = _find_runs(mask)
  run_labels = _label_runs(rows, starts, stops, mask.shape[0])
  lengths = stops - starts
  run_of_pixel = np.repeat(np.arange(len(rows)), lengths)
  offset_in_run = np.arange(lengths.sum()) - np.repeat(
    np.cumsum(lengths) - lengths, lengths
  )
  pixel_cols = starts[run_of_pixel] + offset_in_run
  return run_labels[run_of_pixel], rows[run_of_pixel], pixel_cols


def _best_shape(mask: np.ndarray) -> str:
  """The shape whose rendering at the mask's box overlaps it best (IoU)."""
  height, width = mask.shape

  def overlap(shape):
    template = shapes.shape_mask(shape, height, width)
    return (mask & template).sum() / (mask | template).sum()

  return max(shapes.SHAPES, key=overlap)


def _nearest_size(height: int, width: int, image_size: int) -> str:
  side = (height + width) / 2
  return min(
    shapes.SIZES, key=lambda size: abs(side - shapes.box_side(size, image_size))
  )


def _cell(centre: tuple[float, float], image_size: int) -> str:
  column, row = (
    int(np.searchsorted(CELL_BOUNDARIES, coordinate / image_size))
    for coordinate in centre
  )
  return shapes.POSITIONS[3 * row + column]


def _check_image(image: np.ndarray) -> None:
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(
      f"The judge needs an [S, S, 3] uint8 image, got shape {image.shape} "
      f"dtype {image.dtype}. Convert with np.clip(x, 0, 255).astype(np.uint8)."
    )
  if image.shape[0] != image.shape[1]:
    raise ValueError(
      f"The judge needs a square image, got {image.shape[0]}x"
      f"{image.shape[1]}. Crop or resize it to S x S."
    )


def _describe_component(image, rows, cols) -> DetectedObject:
  image_size = image.shape[0]
  top, left = int(rows.min()), int(cols.min())
  height, width = int(rows.max()) - top + 1, int(cols.max()) - left + 1
  mask = np.zeros((height, width), bool)
  mask[rows - top, cols - left] = True
  centre = (left + width / 2, top + height / 2)
  return DetectedObject(
    colour=shapes.nearest_colour(image[rows, cols].mean(axis=0)),
    shape=_best_shape(mask),
    size=_nearest_size(height, width, image_size),
    position=_cell(centre, image_size),
    centre=centre,
    box=(top, left, height, width),
    area=len(rows),
  )


def describe(image: np.ndarray) -> list[DetectedObject]:
  """Finds the coloured objects in an image.

  Args:
    image: [S, S, 3] uint8.

  Returns:
    The objects, largest first; blobs smaller than MIN_AREA_FRACTION of a
    small shape's box are ignored as noise.
  """
  _check_image(image)
  image = np.asarray(image)
  image_size = image.shape[0]
  foreground = image.max(axis=2) > FOREGROUND_THRESHOLD
  labels, rows, cols = label_components(foreground)
  if len(labels) == 0:
    return []
  min_area = max(
    4.0, MIN_AREA_FRACTION * shapes.box_side("small", image_size) ** 2
  )
  areas = np.bincount(labels)
  objects = []
  for component in np.argsort(-areas, kind="stable"):
    if areas[component] < min_area:
      break
    in_component = labels == component
    objects.append(
      _describe_component(image, rows[in_component], cols[in_component])
    )
  return objects


def relation_between(first: DetectedObject, second: DetectedObject) -> str:
  """Where `first` is relative to `second`, along the axis they differ most."""
  dx = second.centre[0] - first.centre[0]
  dy = second.centre[1] - first.centre[1]
  if abs(dx) >= abs(dy):
    return "to the left of" if dx > 0 else "to the right of"
  # Image rows grow downwards.
  return "above" if dy > 0 else "below"


# ---------------------------------------------------------------------------
# Reading captions.


def _phrase_table() -> dict[tuple[str, ...], tuple[str, str]]:
  """Maps each word sequence to (kind, value)."""
  table = {}
  for kind, values in (
    ("colour", tuple(shapes.COLOURS)),
    ("shape", shapes.SHAPES),
    ("size", shapes.SIZES),
    ("position", shapes.POSITIONS),
    ("relation", shapes.RELATIONS),
    ("filler", _FILLER_WORDS),
  ):
    for value in values:
      table[tuple(value.split())] = (kind, value)
  return table


_PHRASES = _phrase_table()
_LONGEST_PHRASE = max(len(words) for words in _PHRASES)


def _tokenise(caption: str) -> list[tuple[str, str]]:
  """Splits a caption into (kind, value) phrases, longest match first."""
  words = caption.lower().replace(",", " ").split()
  phrases, start = [], 0
  while start < len(words):
    for length in range(_LONGEST_PHRASE, 0, -1):
      phrase = _PHRASES.get(tuple(words[start : start + length]))
      if phrase is not None:
        break
    else:
      raise ValueError(
        f"Cannot parse caption {caption!r}: unknown word {words[start]!r}. "
        "Captions use the Shapes vocabulary (see SHAPES.md)."
      )
    if phrase[0] != "filler":
      phrases.append(phrase)
    start += length
  return phrases


def _group_mentions(caption: str, phrases):
  """Groups phrases into object mentions, a relation and a position.

  Returns:
    (mentions, relation, relation_after, position): mentions as dicts of
    colour/shape/size, the relation or None, how many mentions precede the
    relation, and the position or None.
  """
  mentions, pending = [], {}
  relation = position = relation_after = None
  for kind, value in phrases:
    repeated = (
      kind in pending
      or (kind == "relation" and relation is not None)
      or (kind == "position" and position is not None)
    )
    if repeated:
      raise ValueError(
        f"Cannot parse caption {caption!r}: it states the {kind} twice "
        f"(second time {value!r})."
      )
    if kind == "relation":
      relation, relation_after = value, len(mentions)
    elif kind == "position":
      position = value
    else:
      pending[kind] = value
    if kind == "shape":
      mentions.append(pending)
      pending = {}
  if pending:
    raise ValueError(
      f"Cannot parse caption {caption!r}: {sorted(pending.values())} do not "
      "end with a shape word."
    )
  return mentions, relation, relation_after, position


def _check_structure(caption, mentions, relation, relation_after, position):
  if any("colour" not in mention for mention in mentions):
    raise ValueError(
      f"Cannot parse caption {caption!r}: every shape needs a colour."
    )
  one_object = len(mentions) == 1 and relation is None
  two_objects = len(mentions) == 2 and relation_after == 1
  if not (one_object or two_objects) or (two_objects and position):
    raise ValueError(
      f"Cannot parse caption {caption!r}: it must name one object (with an "
      "optional position) or two objects with a relation between them, as "
      'in "a red circle above a blue square".'
    )


def parse_caption(caption: str) -> CaptionFacts:
  """Reads the facts a caption states.

  Keyword based: it accepts the canonical captions and every paraphrase
  template of shapes.py, ignoring filler words and commas.

  Args:
    caption: e.g. 'a small red circle in the top left'.

  Returns:
    The facts.

  Raises:
    ValueError: naming the caption, for unknown words or captions that do not
      describe one object or two related objects.
  """
  phrases = _tokenise(caption)
  mentions, relation, relation_after, position = _group_mentions(
    caption, phrases
  )
  _check_structure(caption, mentions, relation, relation_after, position)
  if position is not None:
    mentions[0]["position"] = position
  return CaptionFacts(
    objects=tuple(MentionFacts(**mention) for mention in mentions),
    relation=relation,
  )


# ---------------------------------------------------------------------------
# Comparing the two.


def _mention_checks(mention: MentionFacts, obj: DetectedObject | None):
  """Per stated attribute of one mention, whether `obj` matches it."""
  checks = {}
  for attribute in ("colour", "shape", "size", "position"):
    stated = getattr(mention, attribute)
    if stated is not None:
      checks[attribute] = obj is not None and getattr(obj, attribute) == stated
  return checks


def _assignment_checks(facts: CaptionFacts, assigned):
  """Attribute checks when mention i is shown by assigned[i] (or None).

  Returns:
    (checks, score): {attribute: matches}, and a score that ranks matchings
    by how many single mention attributes hold, then by the relation, so
    objects are identified by what they are before where they are.
  """
  checks, mention_matches = {}, 0
  for mention, obj in zip(facts.objects, assigned, strict=True):
    for attribute, ok in _mention_checks(mention, obj).items():
      checks[attribute] = checks.get(attribute, True) and ok
      mention_matches += ok
  if facts.relation is not None:
    first, second = assigned
    checks["relation"] = (
      first is not None
      and second is not None
      and relation_between(first, second) == facts.relation
    )
  return checks, (mention_matches, checks.get("relation", False))


def judge(caption: str, image: np.ndarray) -> dict[str, bool]:
  """Checks each attribute a caption states against an image.

  Each mentioned object is matched to a distinct detected object, choosing
  the matching under which most of the mentions' attributes hold, so a wrong
  binding (a red square and a blue circle for 'a red circle ... a blue
  square') fails colour or shape, and a swapped relation fails the relation.

  Args:
    caption: a Shapes caption (canonical or a paraphrase).
    image: [S, S, 3] uint8.

  Returns:
    {attribute: matches} for 'count' and every attribute the caption states,
    among ATTRIBUTES.
  """
  facts = parse_caption(caption)
  objects = describe(image)
  num_mentions = len(facts.objects)
  # Pad with None so that missing objects can be assigned too.
  candidates = objects + [None] * max(0, num_mentions - len(objects))
  best_checks, best_score = None, None
  for assigned in itertools.permutations(candidates, num_mentions):
    checks, score = _assignment_checks(facts, assigned)
    if best_score is None or score > best_score:
      best_checks, best_score = checks, score
  return {"count": len(objects) == num_mentions, **best_checks}


def correct(caption: str, image: np.ndarray) -> bool:
  """Whether every attribute the caption states matches the image."""
  return all(judge(caption, image).values())
