"""Tests for dalle_jax.losses against plain numpy formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dalle_jax import losses


def _numpy_softmax(logits):
  shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return shifted / shifted.sum(axis=-1, keepdims=True)


def _numpy_logit_laplace_density(x, loc, scale):
  logit = np.log(x / (1 - x))
  return np.exp(-np.abs(logit - loc) / scale) / (2 * scale * x * (1 - x))


def test_pixels_to_unit_scales_integers_and_keeps_floats():
  np.testing.assert_allclose(
    losses.pixels_to_unit(jnp.array([0, 51, 255], jnp.uint8)), [0, 0.2, 1]
  )
  floats = jnp.array([0.25, 0.5], jnp.bfloat16)
  unit = losses.pixels_to_unit(floats)
  assert unit.dtype == jnp.float32
  np.testing.assert_allclose(unit, [0.25, 0.5])


def test_map_and_unmap_pixels():
  x = np.linspace(0, 1, 11, dtype=np.float32)
  mapped = np.asarray(losses.map_pixels(x))
  np.testing.assert_allclose(mapped, 0.8 * x + 0.1, atol=1e-7)
  np.testing.assert_allclose(losses.unmap_pixels(mapped), x, atol=1e-6)
  # Values the decoder may produce outside [eps, 1 - eps] are clipped.
  np.testing.assert_allclose(losses.unmap_pixels(jnp.array([0.0, 1.0])), [0, 1])


def test_logit_laplace_nll_matches_the_density_formula():
  rng = np.random.default_rng(0)
  x = rng.uniform(0.1, 0.9, (2, 4, 4, 3)).astype(np.float32)
  loc = rng.normal(size=x.shape).astype(np.float32)
  log_scale = rng.normal(scale=0.5, size=x.shape).astype(np.float32)
  expected = -np.log(
    _numpy_logit_laplace_density(
      x.astype(np.float64), loc, np.exp(log_scale.astype(np.float64))
    )
  )
  nll = losses.logit_laplace_nll(x, loc, log_scale)
  assert nll.shape == x.shape and nll.dtype == jnp.float32
  np.testing.assert_allclose(nll, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
  "loc, log_scale", [(0.0, 0.0), (1.5, -1.0), (-2.0, -0.5)]
)
def test_logit_laplace_density_integrates_to_one(loc, log_scale):
  x = np.linspace(0, 1, 2_000_001)[1:-1]
  nll = losses.logit_laplace_nll(
    jnp.asarray(x, jnp.float32),
    jnp.full(x.shape, loc, jnp.float32),
    jnp.full(x.shape, log_scale, jnp.float32),
  )
  density = np.exp(-np.asarray(nll, np.float64))
  assert np.trapezoid(density, x) == pytest.approx(1.0, abs=2e-3)


def test_gumbel_softmax_rows_sum_to_one():
  logits = jax.random.normal(jax.random.key(0), (3, 5, 7))
  soft = losses.gumbel_softmax(logits, jax.random.key(1), 1.0)
  assert soft.shape == logits.shape and soft.dtype == jnp.float32
  np.testing.assert_allclose(soft.sum(axis=-1), 1.0, atol=1e-6)
  assert float(soft.min()) >= 0


def test_gumbel_softmax_is_one_hot_with_softmax_frequencies_when_cold():
  # Gumbel-max: at low temperature rows are one-hot (bar rare near-ties of
  # the noisy logits) and the hot index is distributed as softmax(logits).
  logits = np.array([1.0, 0.0, -1.0, 0.5], np.float32)
  rows = np.broadcast_to(logits, (20_000, 4))
  soft = np.asarray(losses.gumbel_softmax(rows, jax.random.key(2), 1e-3))
  assert np.mean(soft.max(axis=-1) > 0.99) > 0.99
  frequencies = np.bincount(soft.argmax(axis=-1), minlength=4) / len(rows)
  np.testing.assert_allclose(frequencies, _numpy_softmax(logits), atol=0.015)


def test_gumbel_softmax_is_nearly_uniform_when_hot():
  logits = jax.random.normal(jax.random.key(3), (4, 10))
  soft = losses.gumbel_softmax(logits, jax.random.key(4), 1e4)
  np.testing.assert_allclose(soft, 0.1, atol=1e-3)


def test_kl_to_uniform_is_log_k_minus_entropy():
  logits = np.random.default_rng(1).normal(size=(2, 3, 3, 16)) * 3
  probs = _numpy_softmax(logits)
  entropy = -(probs * np.log(probs)).sum(axis=-1)
  kl = losses.kl_to_uniform(jnp.asarray(logits, jnp.float32))
  assert kl.shape == (2, 3, 3)
  np.testing.assert_allclose(kl, np.log(16) - entropy, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    losses.kl_to_uniform(jnp.zeros((5, 16))), 0.0, atol=1e-6
  )


def _random_outputs(rng, batch=2, size=8, grid=2, codes=16):
  return {
    "logits": rng.normal(size=(batch, grid, grid, codes)).astype(np.float32),
    "loc": rng.normal(size=(batch, size, size, 3)).astype(np.float32),
    "log_scale": rng.normal(0, 0.3, (batch, size, size, 3)).astype(np.float32),
  }


def test_dvae_loss_matches_numpy():
  rng = np.random.default_rng(2)
  outputs = _random_outputs(rng)
  images = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
  kl_weight = 6.6

  x = 0.8 * images.astype(np.float64) / 255 + 0.1
  scale = np.exp(outputs["log_scale"].astype(np.float64))
  nll = -np.log(_numpy_logit_laplace_density(x, outputs["loc"], scale))
  probs = _numpy_softmax(outputs["logits"].astype(np.float64))
  kl = (probs * np.log(probs * 16)).sum(axis=-1)
  per_image = nll.sum(axis=(1, 2, 3)) + kl_weight * kl.sum(axis=(1, 2))
  expected = per_image.mean() / (8 * 8 * 3)
  reconstruction = np.clip(
    (1 / (1 + np.exp(-outputs["loc"])) - 0.1) / 0.8, 0, 1
  )

  loss, metrics = jax.jit(losses.dvae_loss)(outputs, images, kl_weight)
  assert loss.shape == () and loss.dtype == jnp.float32
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  assert float(metrics["loss"]) == pytest.approx(expected, rel=1e-5)
  assert float(metrics["nll_per_subpixel"]) == pytest.approx(nll.mean(), 1e-5)
  assert float(metrics["kl_per_cell"]) == pytest.approx(kl.mean(), rel=1e-5)
  assert float(metrics["mse"]) == pytest.approx(
    np.mean((reconstruction - images / 255) ** 2), rel=1e-4
  )
  mean_probs = probs.reshape(-1, 16).mean(axis=0)
  assert float(metrics["codebook_perplexity"]) == pytest.approx(
    np.exp(-(mean_probs * np.log(mean_probs)).sum()), rel=1e-4
  )


def test_dvae_loss_rejects_images_of_another_shape():
  outputs = _random_outputs(np.random.default_rng(3))
  with pytest.raises(ValueError, match=r"\(2, 8, 8, 3\).*grayscale"):
    losses.dvae_loss(outputs, np.zeros((2, 8, 8), np.uint8), 1.0)


def test_dvae_loss_gaussian_likelihood_matches_numpy():
  rng = np.random.default_rng(4)
  outputs = _random_outputs(rng)
  images = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
  sigma = 0.05

  x = 0.8 * images.astype(np.float64) / 255 + 0.1
  mean = 1 / (1 + np.exp(-outputs["loc"].astype(np.float64)))
  density = np.exp(-0.5 * ((x - mean) / sigma) ** 2) / (
    sigma * np.sqrt(2 * np.pi)
  )
  nll = -np.log(density)
  probs = _numpy_softmax(outputs["logits"].astype(np.float64))
  kl = (probs * np.log(probs * 16)).sum(axis=-1)
  expected = (nll.sum(axis=(1, 2, 3)) + 2.0 * kl.sum(axis=(1, 2))).mean() / (
    8 * 8 * 3
  )

  loss, metrics = losses.dvae_loss(
    outputs, images, 2.0, likelihood="gaussian", gaussian_scale=sigma
  )
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  assert float(metrics["nll_per_subpixel"]) == pytest.approx(nll.mean(), 1e-5)
  # The Gaussian has a fixed scale: the log-scale channels do not matter.
  outputs["log_scale"] = outputs["log_scale"] + 3.0
  again, _ = losses.dvae_loss(
    outputs, images, 2.0, likelihood="gaussian", gaussian_scale=sigma
  )
  assert float(again) == pytest.approx(float(loss), rel=1e-6)


def test_dvae_loss_rejects_unknown_likelihood():
  outputs = _random_outputs(np.random.default_rng(5))
  images = np.zeros((2, 8, 8, 3), np.uint8)
  with pytest.raises(ValueError, match="'laplace'.*logit_laplace"):
    losses.dvae_loss(outputs, images, 1.0, likelihood="laplace")
