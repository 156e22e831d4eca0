"""Label wrapping of the picture grids (dalle_jax.images)."""

from dalle_jax import images


def test_wrapped_lines_fit_the_width_and_keep_every_word():
  font = images.label_font()
  text = "a large yellow square to the right of a small orange circle"
  width = 150
  lines = images.wrap_to_width(text, font, width)
  assert len(lines) > 1
  assert " ".join(lines) == text
  assert all(font.getlength(line) <= width for line in lines)
  # Greedy: no line could have taken the next line's first word.
  for line, following in zip(lines[:-1], lines[1:], strict=True):
    assert font.getlength(f"{line} {following.split()[0]}") > width


def test_a_word_wider_than_the_width_stays_whole():
  font = images.label_font()
  assert images.wrap_to_width("a pentagonpentagon b", font, 20) == [
    "a",
    "pentagonpentagon",
    "b",
  ]


def test_spaces_are_visible_in_labels():
  # The reason for the label font's size: at Pillow's default size a space
  # was about a pixel wide and captions ran together.
  font = images.label_font()
  assert font.getlength("a b") - font.getlength("ab") >= 3
