"""Tests for dalle_jax.sampling: logit filters and the decoding loop."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dalle_jax import sampling

VOCAB = 8
NUM_TOKENS = 6
NEG_INF = -np.inf


def _kept(filtered) -> np.ndarray:
  """Which entries survived a filter, as a bool array."""
  return np.isfinite(np.asarray(filtered))


def test_temperature_divides_the_logits():
  logits = np.array([[1.0, 2.0, -3.0]], np.float32)
  np.testing.assert_allclose(
    sampling.filter_logits(logits, 2.0), [[0.5, 1.0, -1.5]]
  )
  np.testing.assert_allclose(sampling.filter_logits(logits), logits)


@pytest.mark.parametrize(
  "settings", [dict(), dict(temperature=0.5, top_k=3, top_p=0.5)]
)
def test_greedy_keeps_only_the_first_argmax_unscaled(settings):
  logits = np.array([[1.0, 3.0, 3.0, 0.0], [5.0, 1.0, 2.0, 0.0]], np.float32)
  filtered = sampling.filter_logits(logits, greedy=True, **settings)
  np.testing.assert_array_equal(_kept(filtered), [[0, 1, 0, 0], [1, 0, 0, 0]])
  assert filtered[0, 1] == 3.0


def test_top_k_keeps_the_k_largest_per_row():
  logits = np.array([[1.0, 3.0, 2.0, 0.0], [0.0, -1.0, 5.0, 4.0]], np.float32)
  filtered = sampling.filter_logits(logits, top_k=2)
  np.testing.assert_array_equal(_kept(filtered), [[0, 1, 1, 0], [0, 0, 1, 1]])
  np.testing.assert_allclose(filtered[0, 1:3], [3.0, 2.0])
  # k at or beyond the vocabulary keeps everything.
  assert _kept(sampling.filter_logits(logits, top_k=9)).all()


def test_top_k_keeps_ties_with_the_kth_value():
  logits = np.array([[1.0, 1.0, 1.0, 0.0]], np.float32)
  filtered = sampling.filter_logits(logits, top_k=2)
  np.testing.assert_array_equal(_kept(filtered), [[1, 1, 1, 0]])


# Probabilities 0.5, 0.3, 0.15, 0.05, shuffled; p values stay away from the
# cumulative sums 0.5, 0.8, 0.95 so float rounding cannot decide.
PROBS = np.array([0.15, 0.5, 0.05, 0.3])
LOG_PROBS = np.log(PROBS)[None].astype(np.float32)


@pytest.mark.parametrize(
  "top_p, expected",
  [
    (0.4, [0, 1, 0, 0]),
    (0.7, [0, 1, 0, 1]),
    (0.9, [1, 1, 0, 1]),
    (0.99, [1, 1, 1, 1]),
    (1.0, [1, 1, 1, 1]),
    (1e-6, [0, 1, 0, 0]),
  ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, expected):
  filtered = sampling.filter_logits(LOG_PROBS, top_p=top_p)
  np.testing.assert_array_equal(_kept(filtered), [expected])


def test_top_k_applies_before_top_p():
  # Without top-k, 0.82 needs three tokens (0.5 + 0.3 < 0.82); after top-3
  # the probabilities are renormalised over 0.95: 0.526 + 0.316 > 0.82.
  alone = sampling.filter_logits(LOG_PROBS, top_p=0.82)
  both = sampling.filter_logits(LOG_PROBS, top_k=3, top_p=0.82)
  np.testing.assert_array_equal(_kept(alone), [[1, 1, 0, 1]])
  np.testing.assert_array_equal(_kept(both), [[0, 1, 0, 1]])


def test_temperature_applies_before_top_p():
  # At temperature 2 the probabilities are proportional to sqrt(p): 0.379,
  # 0.294, 0.208, 0.120, so 0.7 needs three tokens instead of two.
  cold = sampling.filter_logits(LOG_PROBS, 1.0, top_p=0.7)
  warm = sampling.filter_logits(LOG_PROBS, 2.0, top_p=0.7)
  np.testing.assert_array_equal(_kept(cold), [[0, 1, 0, 1]])
  np.testing.assert_array_equal(_kept(warm), [[1, 1, 0, 1]])


@pytest.mark.parametrize(
  "settings, message",
  [
    (
      dict(temperature=0.0),
      r"temperature=0.0 must be a finite Python number > 0 .* greedy=True",
    ),
    (dict(temperature=0), r"temperature=0 must be a finite .* greedy=True"),
    # Greedy needs no temperature, but a bad one is still an error.
    (dict(temperature=0.0, greedy=True), r"temperature=0.0 must be a finite"),
    (dict(temperature=-1.0), r"temperature=-1.0 must be a finite .* > 0"),
    (dict(temperature=math.nan), r"temperature=nan must be a finite"),
    (dict(temperature=math.inf), r"temperature=inf must be a finite"),
    (dict(temperature="1"), r"temperature='1' must be a finite"),
    (dict(greedy=1), r"greedy=1 must be True \(argmax decoding\) or False"),
    (dict(greedy=None), r"greedy=None must be True"),
    (dict(top_k=0), r"top_k=0 must be None .* integer >= 1"),
    (dict(top_k=-3), r"top_k=-3 must be None"),
    (dict(top_k=2.5), r"top_k=2.5 must be None"),
    (dict(top_k=True), r"top_k=True must be None"),
    (dict(top_p=0.0), r"top_p=0.0 must be None .* \(0, 1\]"),
    (dict(top_p=-0.5), r"top_p=-0.5 must be None .* \(0, 1\]"),
    (dict(top_p=1.5), r"top_p=1.5 must be None"),
    (dict(top_p=math.nan), r"top_p=nan must be None"),
  ],
)
def test_bad_settings_are_rejected(settings, message):
  logits = np.zeros((1, VOCAB), np.float32)
  with pytest.raises(ValueError, match=message):
    sampling.filter_logits(logits, **settings)
  with pytest.raises(ValueError, match=message):
    sampling.sample_image_codes(
      _next_code_step, logits, 0, _keys(1), NUM_TOKENS, **settings
    )


def _one_hot_logits(codes, scale=10.0):
  return scale * jax.nn.one_hot(codes, VOCAB)


def _next_code_step(cache, codes, position):
  """A fake model that always predicts the fed code plus one."""
  del position
  return _one_hot_logits((codes + 1) % VOCAB), cache + 1


def _next_position_step(cache, codes, position):
  """A fake model that predicts the next position's index, whatever it saw."""
  return _one_hot_logits(jnp.full_like(codes, position + 1) % VOCAB), cache


def _keys(batch, seed=0):
  return sampling.row_keys(seed, np.arange(batch), np.zeros(batch, np.int32))


@pytest.mark.parametrize(
  "settings", [dict(greedy=True), dict(temperature=1.0, top_k=1)]
)
def test_fake_model_gives_the_known_sequence(settings):
  first = _one_hot_logits(jnp.array([3, 7]))
  codes = sampling.sample_image_codes(
    _next_code_step, first, 0, _keys(2), NUM_TOKENS, **settings
  )
  np.testing.assert_array_equal(codes, [[3, 4, 5, 6, 7, 0], [7, 0, 1, 2, 3, 4]])
  assert codes.dtype == jnp.int32


def test_step_fn_receives_the_position_of_the_fed_code():
  first = _one_hot_logits(jnp.array([5]))
  codes = sampling.sample_image_codes(
    _next_position_step, first, 0, _keys(1), NUM_TOKENS, greedy=True
  )
  np.testing.assert_array_equal(codes, [[5, 1, 2, 3, 4, 5]])


def test_loop_body_is_traced_once():
  seen = []

  def step(cache, codes, position):
    seen.append(cache)  # traced once: the cache is a scan carry
    logits, cache = _next_code_step(cache, codes, position)
    return logits, cache

  first = _one_hot_logits(jnp.array([0]))
  codes = sampling.sample_image_codes(
    step, first, jnp.int32(0), _keys(1), NUM_TOKENS, greedy=True
  )
  assert len(seen) == 1  # the loop body was traced once, not per step
  np.testing.assert_array_equal(codes, [[0, 1, 2, 3, 4, 5]])


def test_single_token_needs_no_step():
  def step(cache, codes, position):
    raise AssertionError("no step is needed for one token")

  codes = sampling.sample_image_codes(
    step, _one_hot_logits(jnp.array([2])), 0, _keys(1), 1, greedy=True
  )
  np.testing.assert_array_equal(codes, [[2]])


@pytest.mark.parametrize("greedy", [True, False])
def test_priming_feeds_the_given_codes_and_returns_them(greedy):
  first = _one_hot_logits(jnp.array([0, 0]))
  prime = np.array([[5, 2], [1, 6]], np.int32)
  codes = sampling.sample_image_codes(
    _next_code_step,
    first,
    0,
    _keys(2),
    NUM_TOKENS,
    top_k=1,
    greedy=greedy,
    prime_codes=prime,
  )
  np.testing.assert_array_equal(codes, [[5, 2, 3, 4, 5, 6], [1, 6, 7, 0, 1, 2]])


def test_priming_the_whole_image_returns_it():
  prime = np.array([[4, 4, 1, 0, 7, 2]], np.int32)
  codes = sampling.sample_image_codes(
    _next_code_step,
    _one_hot_logits(jnp.array([3])),
    0,
    _keys(1),
    NUM_TOKENS,
    prime_codes=prime,
  )
  np.testing.assert_array_equal(codes, prime)


# A fixed random "model": the logits of the next code are a row of TABLE
# picked by the fed code, plus the prompt's own offset kept in the cache.
TABLE = np.random.default_rng(0).normal(0, 2, (VOCAB, VOCAB)).astype(np.float32)


def _table_step(cache, codes, position):
  del position
  return jnp.asarray(TABLE)[codes] + cache, cache


@functools.cache
def _table_sampler(top_k=None):
  @jax.jit
  def sample(prompt_offsets, seed, prompt_indices, candidate_indices):
    rngs = sampling.row_keys(seed, prompt_indices, candidate_indices)
    first = prompt_offsets
    return sampling.sample_image_codes(
      _table_step, first, prompt_offsets, rngs, NUM_TOKENS, 1.0, top_k
    )

  return sample


def test_same_seed_same_codes_whatever_the_batch():
  offsets = np.random.default_rng(1).normal(0, 1, (2, VOCAB))
  offsets = offsets.astype(np.float32)
  # Two prompts x two candidates folded into one batch of 4 ...
  prompts = np.array([0, 0, 1, 1])
  candidates = np.array([0, 1, 0, 1])
  batch = _table_sampler()(offsets[prompts], 7, prompts, candidates)
  # ... equal each row sampled alone (a batch of 1 compiles separately).
  for row, (prompt, candidate) in enumerate(
    zip(prompts, candidates, strict=True)
  ):
    alone = _table_sampler()(
      offsets[prompt][None], 7, np.array([prompt]), np.array([candidate])
    )
    np.testing.assert_array_equal(alone[0], batch[row])
  # Candidates of one prompt differ, and another seed changes the codes.
  assert not np.array_equal(batch[0], batch[1])
  other = _table_sampler()(offsets[prompts], 8, prompts, candidates)
  assert not np.array_equal(other, batch)


def test_greedy_follows_the_argmax_chain_whatever_the_seed():
  offsets = np.random.default_rng(2).normal(0, 1, (3, VOCAB))
  offsets = offsets.astype(np.float32)

  def greedy(seed):
    rngs = sampling.row_keys(seed, np.arange(3), np.zeros(3, np.int32))
    return sampling.sample_image_codes(
      _table_step, offsets, offsets, rngs, NUM_TOKENS, greedy=True
    )

  # Reference: the argmax chain through the table, written out in numpy.
  expected = np.zeros((3, NUM_TOKENS), np.int64)
  expected[:, 0] = np.argmax(offsets, axis=-1)
  for index in range(1, NUM_TOKENS):
    expected[:, index] = np.argmax(
      TABLE[expected[:, index - 1]] + offsets, axis=-1
    )
  np.testing.assert_array_equal(greedy(0), expected)
  np.testing.assert_array_equal(greedy(1), expected)


def test_sampled_codes_respect_top_k():
  offsets = np.zeros((16, VOCAB), np.float32)
  rows = np.arange(16)
  codes = np.asarray(
    _table_sampler(top_k=2)(offsets, 3, rows, np.zeros(16, np.int32))
  )
  # Each code after the first must be one of the 2 best after its parent.
  best_two = np.argsort(-TABLE, axis=-1)[:, :2]
  for parent, child in zip(
    codes[:, :-1].ravel(), codes[:, 1:].ravel(), strict=True
  ):
    assert child in best_two[parent]
  assert len(np.unique(codes[:, 1:])) > 2  # it did sample, not argmax


def test_second_call_compiles_nothing():
  sample = _table_sampler()
  offsets = np.zeros((3, VOCAB), np.float32)
  sample(offsets, 0, np.arange(3), np.zeros(3, np.int32))
  events = []

  def listener(name, duration, **kwargs):
    del duration, kwargs
    events.append(name)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    jax.block_until_ready(
      sample(offsets + 1, 5, np.arange(3) + 3, np.ones(3, np.int32))
    )
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert not [name for name in events if "compile" in name], events


def test_bad_loop_inputs_are_rejected():
  logits = np.zeros((2, VOCAB), np.float32)

  def sample(**changes):
    args = dict(
      step_fn=_next_code_step,
      first_logits=logits,
      cache=0,
      rngs=_keys(2),
      num_tokens=NUM_TOKENS,
    )
    args.update(changes)
    return sampling.sample_image_codes(**args)

  with pytest.raises(ValueError, match=r"first_logits has shape \(8,\)"):
    sample(first_logits=logits[0])
  with pytest.raises(ValueError, match=r"rngs has shape \(3,\).*\[2\] PRNG"):
    sample(rngs=_keys(3))
  with pytest.raises(ValueError, match=r"rngs .* dtype uint32"):
    sample(rngs=np.zeros((2,), np.uint32))
  with pytest.raises(ValueError, match="num_tokens=0 must be a positive"):
    sample(num_tokens=0)
  with pytest.raises(ValueError, match=r"prime_codes has shape \(1, 2\)"):
    sample(prime_codes=np.zeros((1, 2), np.int32))
  with pytest.raises(ValueError, match="more than num_tokens=6"):
    sample(prime_codes=np.zeros((2, 7), np.int32))
  with pytest.raises(ValueError, match="prime_codes has dtype float32"):
    sample(prime_codes=np.zeros((2, 2), np.float32))
  with pytest.raises(ValueError, match=r"codes in \[0, 8\], outside .* 8\)"):
    sample(prime_codes=np.array([[0, 8], [1, 2]], np.int32))
  with pytest.raises(ValueError, match=r"codes in \[-1, 2\]"):
    sample(prime_codes=np.array([[0, -1], [1, 2]], np.int32))
