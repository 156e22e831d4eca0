"""Tests for dalle_jax.data.preprocess: mode conversion, decode, resize/crop."""

import io

import numpy as np
import pytest
from PIL import Image

from dalle_jax.data import preprocess
from dalle_jax.data.preprocess import UnreadableImageError

RNG = np.random.default_rng(0)


def _png_bytes(image: Image.Image, **save_options) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format="PNG", **save_options)
  return buffer.getvalue()


def _composite_expected(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
  """Plain per-pixel round(c * a / 255)."""
  out = np.zeros(rgb.shape, np.uint8)
  for index in np.ndindex(rgb.shape):
    out[index] = round(int(rgb[index]) * int(alpha[index[:2]]) / 255)
  return out


def test_rgb_passes_through_as_the_same_object():
  image = Image.fromarray(RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8))
  assert preprocess.to_rgb(image) is image


def test_grey_l_repeats_the_channel():
  grey = RNG.integers(0, 256, (4, 5), dtype=np.uint8)
  rgb = np.asarray(preprocess.to_rgb(Image.fromarray(grey)))
  assert rgb.shape == (4, 5, 3)
  for channel in range(3):
    np.testing.assert_array_equal(rgb[..., channel], grey)


def test_one_bit_maps_to_black_and_white():
  bits = RNG.integers(0, 2, (6, 8)).astype(bool)
  rgb = np.asarray(preprocess.to_rgb(Image.fromarray(bits)))
  np.testing.assert_array_equal(rgb[..., 1], np.where(bits, 255, 0))


def test_rgba_is_composited_on_black():
  rgba = RNG.integers(0, 256, (5, 6, 4), dtype=np.uint8)
  rgba[0, 0, 3] = 0
  rgba[0, 1, 3] = 255
  rgb = np.asarray(preprocess.to_rgb(Image.fromarray(rgba, mode="RGBA")))
  np.testing.assert_array_equal(
    rgb, _composite_expected(rgba[..., :3], rgba[..., 3])
  )
  assert rgb[0, 0].tolist() == [0, 0, 0]
  assert rgb[0, 1].tolist() == rgba[0, 1, :3].tolist()


def test_la_is_composited_on_black():
  la = RNG.integers(0, 256, (3, 4, 2), dtype=np.uint8)
  rgb = np.asarray(preprocess.to_rgb(Image.fromarray(la, mode="LA")))
  grey3 = np.repeat(la[..., :1], 3, axis=-1)
  np.testing.assert_array_equal(rgb, _composite_expected(grey3, la[..., 1]))


def _palette_image(indices: np.ndarray, palette: list[tuple[int, int, int]]):
  image = Image.fromarray(indices, mode="P")
  image.putpalette([value for colour in palette for value in colour])
  return image


PALETTE = [(10, 20, 30), (200, 100, 50), (0, 255, 128), (77, 66, 55)]


def test_palette_without_transparency_looks_up_colours():
  indices = RNG.integers(0, 4, (5, 7), dtype=np.uint8)
  rgb = np.asarray(preprocess.to_rgb(_palette_image(indices, PALETTE)))
  expected = np.array([[PALETTE[i] for i in row] for row in indices])
  np.testing.assert_array_equal(rgb, expected)


def test_palette_with_a_transparent_index_goes_black():
  indices = RNG.integers(0, 4, (5, 7), dtype=np.uint8)
  png = _png_bytes(_palette_image(indices, PALETTE), transparency=2)
  with Image.open(io.BytesIO(png)) as reopened:
    assert reopened.mode == "P" and "transparency" in reopened.info
    rgb = np.asarray(preprocess.to_rgb(reopened))
  expected = np.array(
    [[(0, 0, 0) if i == 2 else PALETTE[i] for i in row] for row in indices]
  )
  np.testing.assert_array_equal(rgb, expected)


def test_palette_with_partial_alpha_is_composited():
  indices = RNG.integers(0, 4, (4, 4), dtype=np.uint8)
  alphas = [255, 128, 0, 64]
  png = _png_bytes(_palette_image(indices, PALETTE), transparency=bytes(alphas))
  rgb = preprocess.decode_image(png)
  expected = np.array(
    [
      [[round(c * alphas[i] / 255) for c in PALETTE[i]] for i in row]
      for row in indices
    ]
  )
  np.testing.assert_array_equal(rgb, expected)


def test_sixteen_bit_grey_is_scaled_not_clipped():
  values = RNG.integers(0, 65536, (4, 6), dtype=np.uint16)
  values[0, :3] = [0, 65535, 128]
  image = Image.fromarray(values)
  assert image.mode == "I;16"
  rgb = np.asarray(preprocess.to_rgb(image))
  expected = np.vectorize(lambda v: round(v / 257))(values)
  np.testing.assert_array_equal(rgb[..., 2], expected)
  assert rgb[0, :3, 0].tolist() == [0, 255, 0]


def test_sixteen_bit_png_decodes_scaled():
  values = RNG.integers(0, 65536, (3, 5), dtype=np.uint16)
  rgb = preprocess.decode_image(_png_bytes(Image.fromarray(values)))
  expected = np.vectorize(lambda v: round(v / 257))(values)
  np.testing.assert_array_equal(rgb[..., 0], expected)


def test_cmyk_converts_with_the_plain_formula():
  cmyk = RNG.integers(0, 256, (4, 5, 4), dtype=np.uint8)
  image = Image.frombytes("CMYK", (5, 4), cmyk.tobytes())
  rgb = np.asarray(preprocess.to_rgb(image))
  expected = np.zeros((4, 5, 3), np.uint8)
  for row, col, channel in np.ndindex(expected.shape):
    ink, black = int(cmyk[row, col, channel]), int(cmyk[row, col, 3])
    expected[row, col, channel] = round((255 - ink) * (255 - black) / 255)
  np.testing.assert_array_equal(rgb, expected)


class _UnconvertibleImage:
  """Stands in for a Pillow image whose mode Pillow cannot turn into RGB."""

  mode = "XYZ"
  info: dict = {}

  def convert(self, mode):
    raise ValueError(f"conversion from XYZ to {mode} not supported")


def test_unconvertible_mode_raises_unreadable():
  with pytest.raises(UnreadableImageError, match="'XYZ'"):
    preprocess.to_rgb(_UnconvertibleImage())


def test_decode_png_round_trip():
  pixels = RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8)
  decoded = preprocess.decode_image(_png_bytes(Image.fromarray(pixels)))
  assert decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded, pixels)


def test_decode_jpeg_shape():
  buffer = io.BytesIO()
  Image.new("RGB", (13, 8), (200, 10, 10)).save(buffer, format="JPEG")
  decoded = preprocess.decode_image(buffer.getvalue())
  assert decoded.shape == (8, 13, 3)
  assert np.abs(decoded.astype(int) - [200, 10, 10]).max() <= 3


def test_decode_applies_exif_orientation():
  pixels = RNG.integers(0, 256, (2, 3, 3), dtype=np.uint8)
  exif = Image.Exif()
  exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
  png = _png_bytes(Image.fromarray(pixels), exif=exif)
  np.testing.assert_array_equal(
    preprocess.decode_image(png), np.rot90(pixels, k=-1)
  )


@pytest.mark.parametrize(
  "data", [b"", b"this is a caption, not a picture", b"\x89PNG\r\n\x1a\n" * 4]
)
def test_decode_garbage_raises_unreadable(data):
  with pytest.raises(UnreadableImageError, match="cannot decode image"):
    preprocess.decode_image(data)


def test_decode_truncated_jpeg_raises_a_value_error():
  buffer = io.BytesIO()
  noise = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
  Image.fromarray(noise).save(buffer, format="JPEG")
  with pytest.raises(ValueError, match="bytes, starting"):
    preprocess.decode_image(buffer.getvalue()[:300])


def test_resize_and_crop_right_size_is_passed_through():
  image = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
  assert preprocess.resize_and_center_crop(image, 16) is image


def test_crop_only_when_shorter_side_matches():
  wide = RNG.integers(0, 256, (20, 50, 3), dtype=np.uint8)
  np.testing.assert_array_equal(
    preprocess.resize_and_center_crop(wide, 20), wide[:, 15:35]
  )
  tall = RNG.integers(0, 256, (91, 30, 3), dtype=np.uint8)
  np.testing.assert_array_equal(
    preprocess.resize_and_center_crop(tall, 30), tall[30:60]
  )


def test_resize_keeps_the_centre_band():
  # Red | green | blue columns; halving keeps green exactly in the middle.
  image = np.zeros((40, 80, 3), np.uint8)
  image[:, :20] = (255, 0, 0)
  image[:, 20:60] = (0, 255, 0)
  image[:, 60:] = (0, 0, 255)
  out = preprocess.resize_and_center_crop(image, 20)
  assert out.shape == (20, 20, 3) and out.dtype == np.uint8
  # Lanczos reaches 3 output pixels past a colour edge; the inside is exact.
  np.testing.assert_array_equal(out[:, 4:16], np.full((20, 12, 3), (0, 255, 0)))


@pytest.mark.parametrize("shape", [(8, 12, 3), (300, 100, 3), (5, 5, 3)])
def test_resize_and_crop_output_size(shape):
  image = RNG.integers(0, 256, shape, dtype=np.uint8)
  out = preprocess.resize_and_center_crop(image, 32)
  assert out.shape == (32, 32, 3) and out.dtype == np.uint8
  assert out.flags["C_CONTIGUOUS"]


def test_resize_of_a_constant_image_stays_constant():
  image = np.full((37, 23, 3), (12, 200, 99), np.uint8)
  out = preprocess.resize_and_center_crop(image, 64)
  np.testing.assert_array_equal(out, np.full((64, 64, 3), (12, 200, 99)))


@pytest.mark.parametrize(
  "image",
  [
    np.zeros((4, 4), np.uint8),
    np.zeros((4, 4, 4), np.uint8),
    np.zeros((4, 4, 3), np.float32),
  ],
)
def test_resize_rejects_non_rgb_uint8(image):
  with pytest.raises(ValueError, match=r"\[H, W, 3\] uint8"):
    preprocess.resize_and_center_crop(image, 4)


@pytest.mark.parametrize("size", [0, -1, 2.0])
def test_resize_rejects_bad_size(size):
  with pytest.raises(ValueError, match="size="):
    preprocess.resize_and_center_crop(np.zeros((4, 4, 3), np.uint8), size)


def test_limit_shorter_side():
  small = RNG.integers(0, 256, (30, 60, 3), dtype=np.uint8)
  assert preprocess.limit_shorter_side(small, 30) is small
  large = RNG.integers(0, 256, (100, 50, 3), dtype=np.uint8)
  assert preprocess.limit_shorter_side(large, 25).shape == (50, 25, 3)
  with pytest.raises(ValueError, match="max_side=0"):
    preprocess.limit_shorter_side(large, 0)
