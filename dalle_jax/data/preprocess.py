"""Image preprocessing: decode bytes, convert any mode to RGB, resize and crop.

Pure functions on numpy arrays and Pillow images; no TensorFlow. Shape
letters: H, W an input image's height and width; S an output side.

Mode conversion rules (`to_rgb`):
- Modes with transparency (RGBA, LA, PA, premultiplied RGBa, and P, L or
  RGB images with a `transparency` entry) are composited on black, i.e. each
  channel becomes round(c * alpha / 255). Black is the background of the
  Shapes canvases, so a transparent cut-out looks like a Shapes scene.
- 16-bit and 32-bit greyscale (I;16, I;16B, I;16L, I;16N, I, F) are read as
  16-bit values and scaled to 8 bits by round(v / 257), clipped to [0, 255].
  Pillow's own conversion clips instead of scaling, which turns almost every
  16-bit image white.
- Everything else (1, L, P, CMYK, YCbCr, HSV, ...) uses Pillow's conversion.
"""

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa"})
# Modes whose transparency is a colour key in `image.info["transparency"]`.
_KEYED_TRANSPARENCY_MODES = frozenset({"P", "L", "RGB"})
_WIDE_GREY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_DECODE_ERRORS = (
  OSError,  # includes PIL.UnidentifiedImageError and truncated files
  SyntaxError,  # some Pillow plugins report malformed headers this way
  ValueError,
  EOFError,
  Image.DecompressionBombError,
)


class UnreadableImageError(ValueError):
  """Bytes that are not a decodable image, or an image not convertible to RGB."""


def _has_transparency(image: Image.Image) -> bool:
  return image.mode in _ALPHA_MODES or (
    image.mode in _KEYED_TRANSPARENCY_MODES and "transparency" in image.info
  )


def _composite_on_black(rgba: Image.Image) -> Image.Image:
  """RGBA -> RGB with each channel multiplied by alpha (rounded)."""
  pixels = np.asarray(rgba, dtype=np.uint16)
  rgb, alpha = pixels[..., :3], pixels[..., 3:]
  # (x + 127) // 255 == round(x / 255) for integers x >= 0 (no ties: 255 odd).
  composited = (rgb * alpha + 127) // 255
  return Image.fromarray(composited.astype(np.uint8))


def _wide_grey_to_rgb(image: Image.Image) -> Image.Image:
  """16/32-bit greyscale -> RGB, scaling 16-bit values to 8 bits."""
  values = np.asarray(image).astype(np.float64)
  grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
  return Image.fromarray(np.repeat(grey[..., None], 3, axis=-1))


def to_rgb(image: Image.Image) -> Image.Image:
  """Converts a Pillow image of any mode to mode RGB (rules: module docstring).

  Raises:
    UnreadableImageError: Pillow cannot convert this mode to RGB.
  """
  if _has_transparency(image):
    return _composite_on_black(image.convert("RGBA"))
  if image.mode == "RGB":
    return image
  if image.mode in _WIDE_GREY_MODES:
    return _wide_grey_to_rgb(image)
  try:
    return image.convert("RGB")
  except ValueError as error:
    raise UnreadableImageError(
      f"cannot convert image mode {image.mode!r} to RGB: {error}"
    ) from error


def decode_image(data: bytes) -> np.ndarray:
  """Decodes PNG, JPEG or any Pillow-readable bytes to an RGB array.

  EXIF orientation is applied, so phone photos come out upright. Of an
  animated image (GIF, WebP) the first frame is used.

  Args:
    data: the encoded image file's bytes.

  Returns:
    [H, W, 3] uint8.

  Raises:
    UnreadableImageError: the bytes are not a decodable image (the message
      names the size, the first bytes and Pillow's reason).
  """
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      upright = ImageOps.exif_transpose(image)
      return np.array(to_rgb(upright))
  except _DECODE_ERRORS as error:
    if isinstance(error, UnreadableImageError):
      raise
    if isinstance(error, UnidentifiedImageError):
      # Pillow's own message only names the in-memory buffer object.
      reason = "not a format Pillow recognises"
    else:
      reason = f"{type(error).__name__}: {error}"
    raise UnreadableImageError(
      f"cannot decode image ({len(data)} bytes, starting {data[:8]!r}): "
      f"{reason}"
    ) from error


def _check_rgb_array(image: np.ndarray) -> None:
  if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(
      f"expected an [H, W, 3] uint8 image, got shape {image.shape} dtype "
      f"{image.dtype}; decode with decode_image or convert with to_rgb first."
    )


def _check_side(name: str, side: int) -> None:
  if not isinstance(side, int) or isinstance(side, bool) or side < 1:
    raise ValueError(f"{name}={side!r} must be a positive int.")


def _resize_shorter_side(image: np.ndarray, side: int) -> np.ndarray:
  """Resizes [H, W, 3] so that min(H, W) == side, keeping the aspect ratio."""
  height, width = image.shape[:2]
  scale = side / min(height, width)
  new_height = max(side, round(height * scale))
  new_width = max(side, round(width * scale))
  resized = Image.fromarray(image).resize(
    (new_width, new_height), Image.Resampling.LANCZOS
  )
  return np.array(resized)


def limit_shorter_side(image: np.ndarray, max_side: int) -> np.ndarray:
  """Shrinks an image whose shorter side exceeds `max_side`; else returns it.

  Args:
    image: [H, W, 3] uint8.
    max_side: largest allowed min(H, W).

  Returns:
    [H', W', 3] uint8 with min(H', W') == min(min(H, W), max_side).
  """
  _check_rgb_array(image)
  _check_side("max_side", max_side)
  if min(image.shape[:2]) <= max_side:
    return image
  return _resize_shorter_side(image, max_side)


def resize_and_center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """Resizes the shorter side to `size` (Lanczos), then crops the centre.

  An image already [size, size, 3] is returned unchanged (the same array).

  Args:
    image: [H, W, 3] uint8.
    size: S, the output side.

  Returns:
    [S, S, 3] uint8.
  """
  _check_rgb_array(image)
  _check_side("size", size)
  if image.shape[:2] == (size, size):
    return image
  if min(image.shape[:2]) != size:
    image = _resize_shorter_side(image, size)
  top = (image.shape[0] - size) // 2
  left = (image.shape[1] - size) // 2
  return np.ascontiguousarray(image[top : top + size, left : left + size])
