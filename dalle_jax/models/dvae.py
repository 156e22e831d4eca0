"""The discrete VAE (stage 1): images to a grid of codes and back.

The architecture is the one of OpenAI's released dVAE
(`openai/DALL-E:dall_e/{encoder,decoder}.py`), so the released weights load
through `dalle_jax.weights`, but the layout is NHWC and module names are
flat: `encoder/{input, group_G_block_K/{id_path, conv_1..conv_4}, output}`,
`decoder/{input, group_G_block_K/..., output}` (G, K counted from 1).

Shape letters: B batch, H = W = `image_size`, C image channels (3),
h = w = `grid_size` (H / 2**(group_count - 1)), K `vocab_size`, S the
decoder's statistics channels (`output_channels`, location and log-scale).

Typical use:
  model = DVAE(DVAEConfig(image_size=64))
  variables = model.init(rng, images_bhwc_uint8, rng, 1.0)
  codes = model.apply(variables, images_bhwc_uint8, method=DVAE.encode)
  images = model.apply(variables, codes, method=DVAE.decode)

Images are `[B, H, W, C]` uint8 in [0, 255] or float in [0, 1]. Grayscale
`[B, H, W]` or `[B, H, W, 1]` is accepted and repeated to C channels.
"""

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from dalle_jax import losses, sharding
from dalle_jax.models import initializers, winograd

COMPUTE_DTYPES = ("float32", "bfloat16")
# How 3x3 convs compute: 'auto' picks per layer (`conv_algorithm`),
# 'direct' is XLA's convolution, 'winograd' is `winograd.conv3x3`,
# 'padded' is XLA's convolution on channels zero-padded to PAD_CHANNELS_TO
# (`PaddedConv`).
CONV_ALGORITHMS = ("auto", "direct", "winograd", "padded")
# 'auto' pads float32 3x3 convs on XLA:CPU with fewer input or output
# channels than this: XLA's CPU convolution is slow on so few channels, and
# the zeros cost less than they save. Measured fwd+bwd (2-core AMD EPYC,
# jax 0.10.2, batch 32 at 64x64), direct -> padded to 8: 16 -> 4 channels
# 134 -> 82 ms, 4 -> 4 60 -> 50 ms, 4 -> 16 110 -> 92 ms; padded to 16
# instead, 4 -> 4 took 140 ms. The shapes64 dVAE train step (hidden width 4
# at full resolution): 1.44 -> 1.23 s (1.17x), median of 12 steps side by
# side, bitwise the same first loss (`experiments/benchmarks/dvae_conv.py`).
# Padding the 7x7 input conv (3 channels) gave nothing, so only 3x3 convs
# are padded.
PAD_CHANNELS_TO = 8
# 'auto' uses Winograd for float32 3x3 convs on XLA:CPU when C_in * C_out /
# (C_in + C_out) is at least this: the matmuls it saves grow with C_in *
# C_out per pixel, its memory-bound transforms with C_in + C_out. Measured
# per conv (2-core AMD EPYC, batch 4, jax 0.10.2), direct -> Winograd: 512
# -> 256 at 64x64 (171) 583 -> 383 ms, 512 -> 128 at 128x128 (102) 1248 ->
# 1043 ms, 128 -> 128 at 128x128 (64) 323 -> 275 ms; 256 -> 64 at 256x256
# (51) about equal, and its transformed tiles take 1 GB; 64 -> 64 at
# 256x256 (32) 335 -> 439 ms. So the paper's model uses it from the second
# encoder group to the third decoder group; the CPU Shapes model (at most
# 128 -> 32, 26) keeps the direct conv, as do accelerators, whose
# convolution units beat 16 batched matmuls.
WINOGRAD_MIN_CHANNELS = 64
# ... and when the call has at least this many 2x2 output tiles (B * H * W
# / 4): below it fixed costs win (a 64 px model with n_hid 64 at batch 1,
# 16 to 64 tiles a layer, encoded and decoded 0.64x as fast with Winograd
# in its wide layers as without).
WINOGRAD_MIN_TILES = 256
ACTIVATION_AXES = (
  sharding.ACT_BATCH,
  sharding.ACT_HEIGHT,
  sharding.ACT_WIDTH,
  sharding.ACT_CHANNELS,
)


@dataclasses.dataclass(frozen=True)
class DVAEConfig:
  """Hyperparameters of the dVAE; defaults are the paper's model at 256 px.

  Attributes:
    image_size: side of the square input images, in pixels.
    group_count: resolution groups; the grid is image_size /
      2**(group_count - 1) on a side. The released model has 4.
    n_hid: width of the first encoder group (and the last decoder group);
      group g (from 0) of the encoder is n_hid * 2**g wide.
    n_blk_per_group: residual blocks per group.
    vocab_size: K, the number of codes.
    n_init: width of the decoder's first (codebook) 1x1 conv.
    input_channels: C, image channels.
    output_channels: decoder output maps, the logit-Laplace location then
      log-scale for each image channel (2 * C).
    dtype: compute dtype name, 'float32' or 'bfloat16'. Params are always
      float32, and the encoder's logits conv and the decoder's codebook and
      output convs always compute in float32 (the released model also keeps
      the first two in float32).
    conv_algorithm: how 3x3 convs compute, one of CONV_ALGORITHMS: 'auto'
      (Winograd F(2x2, 3x3) or padded channels where it is faster, see
      `conv_algorithm`), or 'direct', 'winograd' or 'padded' everywhere.
      Same parameters and, up to float rounding, the same outputs either
      way.
  """

  image_size: int = 256
  group_count: int = 4
  n_hid: int = 256
  n_blk_per_group: int = 2
  vocab_size: int = 8192
  n_init: int = 128
  input_channels: int = 3
  output_channels: int = 6
  dtype: str = "float32"
  conv_algorithm: str = "auto"

  @property
  def grid_size(self) -> int:
    """Side of the code grid."""
    return self.image_size // 2 ** (self.group_count - 1)

  @property
  def compute_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)

  def validate(self) -> None:
    """Checks the sizes fit together.

    Raises:
      ValueError: naming the bad field, the allowed values and the fix.
    """
    positive = (
      "image_size",
      "group_count",
      "n_hid",
      "n_blk_per_group",
      "vocab_size",
      "n_init",
      "input_channels",
    )
    for name in positive:
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise ValueError(
          f"DVAEConfig.{name}={value!r} must be a positive integer."
        )
    factor = 2 ** (self.group_count - 1)
    if self.image_size % factor:
      raise ValueError(
        f"DVAEConfig.image_size={self.image_size} is not divisible by "
        f"2**(group_count - 1) = {factor} (group_count={self.group_count}); "
        f"use a multiple of {factor}, e.g. "
        f"{max(factor, self.image_size // factor * factor)}, or fewer groups."
      )
    if self.n_hid % 4:
      raise ValueError(
        f"DVAEConfig.n_hid={self.n_hid} must be a multiple of 4 (residual "
        "blocks use a hidden width of a quarter of their output width)."
      )
    if self.output_channels != 2 * self.input_channels:
      raise ValueError(
        f"DVAEConfig.output_channels={self.output_channels} must be "
        f"2 * input_channels = {2 * self.input_channels} (a logit-Laplace "
        "location and log-scale per image channel)."
      )
    if self.dtype not in COMPUTE_DTYPES:
      raise ValueError(
        f"DVAEConfig.dtype={self.dtype!r} is not supported; use one of "
        f"{COMPUTE_DTYPES} (a dtype name string)."
      )
    if self.conv_algorithm not in CONV_ALGORITHMS:
      raise ValueError(
        f"DVAEConfig.conv_algorithm={self.conv_algorithm!r} is not "
        f"supported; use one of {CONV_ALGORITHMS}."
      )


class _ExplicitConv(nn.Module):
  """A stride-1 'same' conv whose arithmetic a subclass writes out.

  Same parameters as `nn.Conv` with a `kernel_size` square kernel
  (`kernel` `[k, k, C_in, features]`, `bias` `[features]`), so checkpoints
  and converted weights do not depend on which of the two computes.

  Attributes:
    features: output channels.
    dtype: compute dtype; params stay float32.
    kernel_init, bias_init: initialisers (with logical axis names).
  """

  kernel_size: ClassVar[int]
  features: int
  dtype: jnp.dtype
  kernel_init: nn.initializers.Initializer
  bias_init: nn.initializers.Initializer

  def convolve(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`[B, h, w, C_in]`, `[k, k, C_in, features]` -> `[B, h, w, features]`."""
    raise NotImplementedError

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """`[B, h, w, C_in]` -> `[B, h, w, features]` in `dtype`."""
    size = self.kernel_size
    kernel = self.param(
      "kernel",
      self.kernel_init,
      (size, size, x.shape[-1], self.features),
      jnp.float32,
    )
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    return self.convolve(x, kernel) + bias


class PointwiseConv(_ExplicitConv):
  """A 1x1 conv computed as a matmul over the channel axis.

  Why: XLA's CPU convolution is 2-5x slower than a matmul for 1x1 kernels
  at the dVAE's shapes (fwd+bwd, batch 32, 64 px; e.g. 32 -> 4 channels at
  64x64: 41 ms as a conv, 8 ms as a matmul), and 1x1 convs are a third of
  the dVAE's convs.
  """

  kernel_size: ClassVar[int] = 1

  def convolve(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jnp.einsum("bhwc,cd->bhwd", x, kernel[0, 0])


class PaddedConv(_ExplicitConv):
  """A 3x3 conv on channels zero-padded up to PAD_CHANNELS_TO.

  Zero input channels meet zero kernel rows, and the extra output channels
  are dropped, so outputs and the real kernel's gradients are those of the
  unpadded conv; only XLA:CPU's speed differs (see PAD_CHANNELS_TO).
  """

  kernel_size: ClassVar[int] = 3

  def convolve(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    in_features, features = kernel.shape[2:]
    extra_in = max(0, PAD_CHANNELS_TO - in_features)
    extra_out = max(0, PAD_CHANNELS_TO - features)
    x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra_in)))
    kernel = jnp.pad(kernel, ((0, 0), (0, 0), (0, extra_in), (0, extra_out)))
    y = jax.lax.conv_general_dilated(
      x,
      kernel,
      window_strides=(1, 1),
      padding="SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return y[..., :features]


class WinogradConv(_ExplicitConv):
  """A 3x3 conv computed by `winograd.conv3x3` (see `conv_algorithm`)."""

  kernel_size: ClassVar[int] = 3

  def convolve(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    return winograd.conv3x3(x, kernel)


def conv_algorithm(
  requested: str,
  kernel_size: int,
  input_shape: tuple[int, ...],
  features: int,
  dtype: jnp.dtype,
) -> str:
  """'direct', 'winograd' or 'padded': how one conv layer computes.

  'auto', for float32 3x3 convs on XLA:CPU, means Winograd with C_in *
  C_out / (C_in + C_out) >= WINOGRAD_MIN_CHANNELS and at least
  WINOGRAD_MIN_TILES output tiles, padded channels with C_in or C_out below
  PAD_CHANNELS_TO (all measured there), direct otherwise, and direct
  elsewhere; 'winograd' and 'padded' apply to every 3x3 conv (other kernel
  sizes stay direct).

  Args:
    requested: `DVAEConfig.conv_algorithm`.
    kernel_size: the conv's kernel side.
    input_shape: `[B, H, W, C_in]` of the conv's input.
    features: C_out.
    dtype: compute dtype.
  """
  if kernel_size != 3 or requested == "direct":
    return "direct"
  if requested in ("winograd", "padded"):
    return requested
  if jax.default_backend() != "cpu" or dtype != jnp.float32:
    return "direct"
  batch, height, width, in_features = input_shape
  channels = in_features * features / (in_features + features)
  tiles = batch * -(-height // 2) * -(-width // 2)
  if channels >= WINOGRAD_MIN_CHANNELS and tiles >= WINOGRAD_MIN_TILES:
    return "winograd"
  if min(in_features, features) < PAD_CHANNELS_TO:
    return "padded"
  return "direct"


def _conv(
  features: int,
  kernel_size: int,
  dtype: jnp.dtype,
  name: str,
  in_axis: str = sharding.CHANNELS_IN,
  out_axis: str = sharding.CHANNELS_OUT,
  algorithm: str = "direct",
) -> nn.Module:
  """A stride-1 'same' conv with float32 params and logical axis names.

  Weights start as N(0, std = 1 / sqrt(fan_in)) like the released model's
  (fan_in = in_channels * kernel_size**2); biases start at zero. 1x1 convs
  are `PointwiseConv` (a matmul, faster on CPU); 3x3 convs are
  `WinogradConv` or `PaddedConv` when `algorithm` is 'winograd' or
  'padded' (see `conv_algorithm`); the others `nn.Conv`.
  """
  kernel_init = nn.with_logical_partitioning(
    initializers.variance_scaling(1.0, "fan_in", "normal"),
    (sharding.KERNEL_HEIGHT, sharding.KERNEL_WIDTH, in_axis, out_axis),
  )
  bias_init = nn.with_logical_partitioning(
    nn.initializers.zeros_init(), (out_axis,)
  )
  if kernel_size == 1:
    return PointwiseConv(features, dtype, kernel_init, bias_init, name=name)
  if algorithm == "winograd":
    return WinogradConv(features, dtype, kernel_init, bias_init, name=name)
  if algorithm == "padded":
    return PaddedConv(features, dtype, kernel_init, bias_init, name=name)
  return nn.Conv(
    features,
    (kernel_size, kernel_size),
    padding="SAME",
    dtype=dtype,
    param_dtype=jnp.float32,
    kernel_init=kernel_init,
    bias_init=bias_init,
    name=name,
  )


class ResidualBlock(nn.Module):
  """Pre-activation bottleneck block: `skip(x) + post_gain * residual(x)`.

  The residual branch is four ReLU-conv pairs of kernel sizes
  `kernel_sizes`, hidden width `features // 4`. The skip is the identity, or
  a 1x1 conv (`id_path`) when the width changes.

  Attributes:
    features: output channels.
    kernel_sizes: four odd kernel sizes; (3, 3, 3, 1) in the encoder,
      (1, 3, 3, 3) in the decoder.
    post_gain: scale of the residual branch, 1 / (number of blocks)**2.
    dtype: compute dtype.
    algorithm: `DVAEConfig.conv_algorithm`, resolved per conv.
  """

  features: int
  kernel_sizes: tuple[int, int, int, int]
  post_gain: float
  dtype: jnp.dtype = jnp.float32
  algorithm: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """`[B, h, w, C_in]` -> `[B, h, w, features]` in `dtype`."""
    if x.shape[-1] == self.features:
      skip = x
    else:
      skip = _conv(self.features, 1, self.dtype, "id_path")(x)
    hidden = self.features // 4
    widths = (hidden, hidden, hidden, self.features)
    residual = x
    for index, (width, size) in enumerate(
      zip(widths, self.kernel_sizes, strict=True)
    ):
      residual = nn.relu(residual)
      algorithm = conv_algorithm(
        self.algorithm, size, residual.shape, width, self.dtype
      )
      residual = _conv(
        width, size, self.dtype, f"conv_{index + 1}", algorithm=algorithm
      )(residual)
    return skip + self.post_gain * residual


def _max_pool_2x2(x: jax.Array) -> jax.Array:
  """`[B, h, w, C]` -> `[B, h/2, w/2, C]`, max over 2x2 windows."""
  batch, height, width, channels = x.shape
  windows = x.reshape(batch, height // 2, 2, width // 2, 2, channels)
  return jnp.max(windows, axis=(2, 4))


def _upsample_2x(x: jax.Array) -> jax.Array:
  """`[B, h, w, C]` -> `[B, 2h, 2w, C]`, nearest neighbour."""
  batch, height, width, channels = x.shape
  x = jnp.broadcast_to(
    x[:, :, None, :, None, :], (batch, height, 2, width, 2, channels)
  )
  return x.reshape(batch, 2 * height, 2 * width, channels)


def _post_gain(config: DVAEConfig) -> float:
  return 1.0 / (config.group_count * config.n_blk_per_group) ** 2


class Encoder(nn.Module):
  """Mapped pixels to code logits.

  Attributes:
    config: the dVAE hyperparameters.
  """

  config: DVAEConfig

  @nn.compact
  def __call__(self, pixels_mapped: jax.Array) -> jax.Array:
    """Encodes pixels already passed through `losses.map_pixels`.

    Args:
      pixels_mapped: `[B, H, W, C]` float in [eps, 1 - eps].

    Returns:
      `[B, h, w, K]` float32 logits.
    """
    config = self.config
    dtype = config.compute_dtype
    x = _conv(config.n_hid, 7, dtype, "input")(pixels_mapped.astype(dtype))
    for group in range(config.group_count):
      for block in range(config.n_blk_per_group):
        x = ResidualBlock(
          config.n_hid * 2**group,
          (3, 3, 3, 1),
          _post_gain(config),
          dtype,
          config.conv_algorithm,
          name=f"group_{group + 1}_block_{block + 1}",
        )(x)
      if group < config.group_count - 1:
        x = _max_pool_2x2(x)
      x = nn.with_logical_constraint(x, ACTIVATION_AXES)
    x = nn.relu(x).astype(jnp.float32)
    logits = _conv(
      config.vocab_size, 1, jnp.float32, "output", out_axis=sharding.CODEBOOK
    )(x)
    return nn.with_logical_constraint(logits, ACTIVATION_AXES)


class CodeEmbedding(nn.Module):
  """The decoder's first 1x1 conv, applied to codes; this conv is the codebook.

  Integer codes gather rows of the kernel instead of multiplying by a one-hot
  tensor, which gives the same result without the K-wide matmul.

  Attributes:
    vocab_size: K.
    features: output channels (`n_init`).
  """

  vocab_size: int
  features: int

  @nn.compact
  def __call__(self, codes: jax.Array) -> jax.Array:
    """`[B, h, w]` int or `[B, h, w, K]` float -> `[B, h, w, features]` f32."""
    kernel_init = initializers.variance_scaling(1.0, "fan_in", "normal")
    kernel = self.param(
      "kernel",
      nn.with_logical_partitioning(
        kernel_init,
        (
          sharding.KERNEL_HEIGHT,
          sharding.KERNEL_WIDTH,
          sharding.CODEBOOK,
          sharding.CHANNELS_OUT,
        ),
      ),
      (1, 1, self.vocab_size, self.features),
      jnp.float32,
    )
    bias = self.param(
      "bias",
      nn.with_logical_partitioning(
        nn.initializers.zeros_init(), (sharding.CHANNELS_OUT,)
      ),
      (self.features,),
      jnp.float32,
    )
    table = kernel[0, 0]
    if jnp.issubdtype(codes.dtype, jnp.integer):
      # Out-of-range codes (negative ones included) become NaN instead of
      # silently wrapping or clamping to a valid code.
      in_range = (codes >= 0) & (codes < self.vocab_size)
      codes = jnp.where(in_range, codes, self.vocab_size)
      embedded = jnp.take(table, codes, axis=0, mode="fill", fill_value=jnp.nan)
    else:
      embedded = jnp.einsum(
        "bhwk,kc->bhwc",
        codes.astype(jnp.float32),
        table,
        precision=jax.lax.Precision.HIGHEST,
      )
    return embedded + bias


class Decoder(nn.Module):
  """Codes (or relaxed one-hot codes) to per-pixel logit-Laplace statistics.

  Attributes:
    config: the dVAE hyperparameters.
  """

  config: DVAEConfig

  @nn.compact
  def __call__(self, codes: jax.Array) -> jax.Array:
    """Decodes codes.

    Args:
      codes: `[B, h, w]` integer codes in [0, K), or `[B, h, w, K]` float
        (soft) one-hot codes.

    Returns:
      `[B, H, W, S]` float32: location channels, then log-scale channels.
    """
    config = self.config
    dtype = config.compute_dtype
    x = CodeEmbedding(config.vocab_size, config.n_init, name="input")(codes)
    x = x.astype(dtype)
    for group in range(config.group_count):
      for block in range(config.n_blk_per_group):
        x = ResidualBlock(
          config.n_hid * 2 ** (config.group_count - 1 - group),
          (1, 3, 3, 3),
          _post_gain(config),
          dtype,
          config.conv_algorithm,
          name=f"group_{group + 1}_block_{block + 1}",
        )(x)
      if group < config.group_count - 1:
        x = _upsample_2x(x)
      x = nn.with_logical_constraint(x, ACTIVATION_AXES)
    # float32 here keeps the log-scale precise enough for the likelihood.
    x = nn.relu(x).astype(jnp.float32)
    stats = _conv(config.output_channels, 1, jnp.float32, "output")(x)
    return nn.with_logical_constraint(stats, ACTIVATION_AXES)


class DVAE(nn.Module):
  """Encoder plus decoder, with the user-facing conversions.

  Attributes:
    config: the dVAE hyperparameters (validated on first use).
  """

  config: DVAEConfig

  def setup(self):
    self.config.validate()
    self.encoder = Encoder(self.config, name="encoder")
    self.decoder = Decoder(self.config, name="decoder")

  def __call__(
    self,
    images: jax.Array,
    rng: jax.Array,
    temperature: float | jax.Array,
  ) -> dict[str, jax.Array]:
    """Training forward pass through the Gumbel-softmax relaxation.

    Args:
      images: `[B, H, W, C]` uint8 or float in [0, 1] (grayscale accepted).
      rng: PRNG key for the Gumbel noise.
      temperature: relaxation temperature, a positive scalar.

    Returns:
      A dict of float32 arrays: `logits` `[B, h, w, K]` (encoder),
      `soft_codes` `[B, h, w, K]` (relaxed one-hot, rows sum to 1), `loc`
      and `log_scale` `[B, H, W, C]` (logit-Laplace statistics of the
      reconstruction of the mapped pixels). Feed it to `losses.dvae_loss`.
    """
    logits = self.encode_logits(images)
    soft_codes = losses.gumbel_softmax(logits, rng, temperature)
    stats = self.decoder(soft_codes)
    loc, log_scale = jnp.split(stats, 2, axis=-1)
    return {
      "logits": logits,
      "soft_codes": soft_codes,
      "loc": loc,
      "log_scale": log_scale,
    }

  def encode_logits(self, images: jax.Array) -> jax.Array:
    """Code logits of images.

    Args:
      images: `[B, H, W, C]` uint8 in [0, 255] or float in [0, 1]
        (grayscale accepted); mapped with `losses.map_pixels` here.

    Returns:
      `[B, h, w, K]` float32.

    Raises:
      ValueError: if the images do not have the configured shape.
    """
    pixels = losses.pixels_to_unit(self._checked_images(images))
    return self.encoder(losses.map_pixels(pixels))

  def encode(self, images: jax.Array) -> jax.Array:
    """Image tokens: the argmax code of each cell (no Gumbel noise).

    Args:
      images: `[B, H, W, C]` uint8 in [0, 255] or float in [0, 1].

    Returns:
      `[B, h, w]` int32 codes in [0, K).
    """
    return jnp.argmax(self.encode_logits(images), axis=-1).astype(jnp.int32)

  def decode_logits(self, codes: jax.Array) -> jax.Array:
    """Logit-Laplace statistics of the decoded images.

    Args:
      codes: `[B, h, w]` integer codes, or `[B, h, w, K]` float soft one-hot.
        Integer codes outside [0, K) give NaN outputs (a traced check
        cannot raise).

    Returns:
      `[B, H, W, S]` float32: location channels then log-scale channels.

    Raises:
      ValueError: if the codes do not have the configured grid shape.
    """
    return self.decoder(self._checked_codes(codes))

  def decode(self, codes: jax.Array) -> jax.Array:
    """Images from codes: the distribution's centre, as uint8.

    The centre is `unmap_pixels(sigmoid(loc))` (strictly the median of the
    logit-Laplace distribution, which the released notebook displays), then
    rounded to the nearest of 0..255.

    Args:
      codes: `[B, h, w]` integer codes, or `[B, h, w, K]` float soft one-hot.

    Returns:
      `[B, H, W, C]` uint8.
    """
    loc = self.decode_logits(codes)[..., : self.config.input_channels]
    pixels = losses.unmap_pixels(jax.nn.sigmoid(loc))
    return jnp.round(pixels * 255.0).astype(jnp.uint8)

  def _checked_images(self, images: jax.Array) -> jax.Array:
    """Repeats grayscale to C channels and checks `[B, H, W, C]`."""
    config = self.config
    if images.ndim == 3:
      images = images[..., None]
    if images.ndim == 4 and images.shape[-1] == 1:
      images = jnp.repeat(images, config.input_channels, axis=-1)
    expected = (config.image_size, config.image_size, config.input_channels)
    if images.ndim != 4 or images.shape[1:] != expected:
      raise ValueError(
        f"images have shape {images.shape}; expected [B, {expected[0]}, "
        f"{expected[1]}, {expected[2]}] (uint8 or float in [0, 1]; grayscale "
        "[B, H, W] or [B, H, W, 1] is repeated to RGB). Resize the images, "
        "or build the model with DVAEConfig(image_size=...) to match."
      )
    return images

  def _checked_codes(self, codes: jax.Array) -> jax.Array:
    """Checks `[B, h, w]` integer or `[B, h, w, K]` float codes."""
    config = self.config
    grid = (config.grid_size, config.grid_size)
    if jnp.issubdtype(codes.dtype, jnp.integer):
      valid = codes.ndim == 3 and codes.shape[1:] == grid
    else:
      valid = codes.ndim == 4 and codes.shape[1:] == (*grid, config.vocab_size)
    if not valid:
      raise ValueError(
        f"codes have shape {codes.shape} and dtype {codes.dtype}; expected "
        f"[B, {grid[0]}, {grid[1]}] integer codes or [B, {grid[0]}, "
        f"{grid[1]}, {config.vocab_size}] float soft one-hot codes."
      )
    return codes
