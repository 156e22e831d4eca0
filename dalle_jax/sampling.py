"""Pure image-token sampling: logit filters and a fixed-length decoding loop.

No model is imported: the loop drives any `step_fn(cache, codes, position)
-> (logits, cache)`, e.g. `functools.partial(transformer.decode_step,
config, params)`, from the logits a prefill pass returned.

Several candidates per prompt are folded into the batch by the caller
(repeat each prompt's row). Each row draws from its own key, derived from
(seed, prompt index, candidate index) by `row_keys`, so a seed gives the same
codes for a prompt whatever the batch it is sampled in.

Shape letters: B batch rows (prompts x candidates), K image vocabulary,
N image tokens, P primed tokens.
"""

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np


def check_settings(temperature, top_k, top_p, greedy=False) -> None:
  """Raises ValueError for sampling settings outside their ranges.

  Callers that take settings long before sampling (e.g. the Generator)
  call it up front, so a bad value fails before any model work.
  """
  if not isinstance(greedy, bool):
    raise ValueError(
      f"greedy={greedy!r} must be True (argmax decoding) or False (sample)."
    )
  if not (isinstance(temperature, numbers.Real) and 0 < temperature < math.inf):
    raise ValueError(
      f"temperature={temperature!r} must be a finite Python number > 0"
      " (1 samples the model's own distribution); for argmax decoding pass"
      " greedy=True."
    )
  if top_k is not None and (
    not isinstance(top_k, numbers.Integral)
    or isinstance(top_k, bool)
    or top_k < 1
  ):
    raise ValueError(
      f"top_k={top_k!r} must be None (no top-k filter) or an integer >= 1."
    )
  if top_p is not None and not (
    isinstance(top_p, numbers.Real) and 0 < top_p <= 1
  ):
    raise ValueError(
      f"top_p={top_p!r} must be None (no nucleus filter) or a number in (0, 1]."
    )


def filter_logits(
  logits: jax.Array,
  temperature: float = 1.0,
  top_k: int | None = None,
  top_p: float | None = None,
  *,
  greedy: bool = False,
) -> jax.Array:
  """Temperature, then top-k, then top-p (nucleus), row by row.

  Removed tokens get -inf. Ties with the last kept value are kept, so top-k
  can keep more than k tokens when logits are equal.

  Args:
    logits: [B, K] float.
    temperature: finite Python number > 0; logits are divided by it.
    top_k: None, or keep the k largest logits (k >= K keeps all).
    top_p: None, or keep the smallest set of most likely tokens whose
      probability (after temperature and top-k) reaches top_p; the most
      likely token is always kept. 1 keeps all.
    greedy: keep only the argmax (the first one on ties), unscaled. It
      survives every filter, so temperature, top_k and top_p (still
      checked) change nothing.

  Returns:
    [B, K] float32 filtered logits, ready for `jax.random.categorical`.

  Raises:
    ValueError: temperature not a finite number > 0, top_k < 1, top_p
      outside (0, 1], or greedy not a bool.
  """
  check_settings(temperature, top_k, top_p, greedy)
  logits = logits.astype(jnp.float32)
  vocab = logits.shape[-1]
  if greedy:
    best = jnp.argmax(logits, axis=-1)[..., None]
    return jnp.where(jnp.arange(vocab) == best, logits, -jnp.inf)
  logits = logits / temperature
  if top_k is not None and top_k < vocab:
    kth_largest = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits >= kth_largest, logits, -jnp.inf)
  if top_p is not None and top_p < 1:
    descending = -jnp.sort(-logits, axis=-1)
    probs = jax.nn.softmax(descending, axis=-1)
    # A token is kept while the tokens before it have not yet reached top_p;
    # the first one has nothing before it, so at least one survives.
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    # isfinite: with top_p within rounding of 1, the mass before a token
    # top-k removed could still be "< top_p" and would bring it back.
    kept = (mass_before < top_p) & jnp.isfinite(descending)
    smallest_kept = jnp.min(
      jnp.where(kept, descending, jnp.inf), axis=-1, keepdims=True
    )
    logits = jnp.where(logits >= smallest_kept, logits, -jnp.inf)
  return logits


def row_keys(seed, prompt_indices, candidate_indices) -> jax.Array:
  """One PRNG key per batch row, from what the row is rather than where.

  Args:
    seed: int seed, or a PRNG key made with `jax.random.key`.
    prompt_indices: [B] int, each row's prompt in the caller's full prompt
      list (not in the batch).
    candidate_indices: [B] int, each row's candidate number for its prompt.

  Returns:
    [B] PRNG keys: fold_in(fold_in(key(seed), prompt), candidate).
  """
  base = seed
  if not jnp.issubdtype(jnp.result_type(seed), jax.dtypes.prng_key):
    base = jax.random.key(seed)

  def one(prompt, candidate):
    return jax.random.fold_in(jax.random.fold_in(base, prompt), candidate)

  return jax.vmap(one)(
    jnp.asarray(prompt_indices), jnp.asarray(candidate_indices)
  )


def _check_loop_inputs(first_logits, rngs, num_tokens, prime_codes) -> None:
  """Raises ValueError for inputs of sample_image_codes that cannot fit."""
  if first_logits.ndim != 2:
    raise ValueError(
      f"first_logits has shape {first_logits.shape}; expected [B, K], the"
      " image logits of the last text position (from the prefill)."
    )
  batch, vocab = first_logits.shape
  if not jnp.issubdtype(rngs.dtype, jax.dtypes.prng_key) or rngs.shape != (
    batch,
  ):
    raise ValueError(
      f"rngs has shape {rngs.shape} and dtype {rngs.dtype}; expected [{batch}]"
      " PRNG keys, one per row. Build them with sampling.row_keys."
    )
  if not isinstance(num_tokens, int) or num_tokens < 1:
    raise ValueError(
      f"num_tokens={num_tokens!r} must be a positive Python int (the image"
      " grid side squared)."
    )
  if prime_codes is None:
    return
  if prime_codes.ndim != 2 or prime_codes.shape[0] != batch:
    raise ValueError(
      f"prime_codes has shape {prime_codes.shape}; expected [{batch}, P]."
    )
  if prime_codes.shape[1] > num_tokens:
    raise ValueError(
      f"prime_codes has {prime_codes.shape[1]} tokens per row, more than"
      f" num_tokens={num_tokens}. Prime at most the whole image."
    )
  if not jnp.issubdtype(prime_codes.dtype, jnp.integer):
    raise ValueError(
      f"prime_codes has dtype {prime_codes.dtype}; expected int32 codes."
    )
  if isinstance(prime_codes, jax.core.Tracer) or not prime_codes.size:
    return
  values = np.asarray(prime_codes)
  if values.min() < 0 or values.max() >= vocab:
    raise ValueError(
      f"prime_codes holds codes in [{values.min()}, {values.max()}],"
      f" outside the image vocabulary [0, {vocab}). Pass dVAE codes."
    )


def sample_image_codes(
  step_fn,
  first_logits: jax.Array,
  cache,
  rngs: jax.Array,
  num_tokens: int,
  temperature: float = 1.0,
  top_k: int | None = None,
  top_p: float | None = None,
  *,
  greedy: bool = False,
  prime_codes: jax.Array | None = None,
) -> jax.Array:
  """Samples N image codes autoregressively in one fixed-length lax.scan.

  Step i picks code i from the current logits (or takes prime_codes[:, i]
  for i < P), then, unless it is the last, calls
  `step_fn(cache, code_i, i)` for the logits of code i + 1. Shapes are
  static, so inside `jax.jit` (e.g. together with the prefill) the whole
  loop compiles once, whatever the prompts, seeds or step.

  Args:
    step_fn: (cache, codes [B] int32, position int32 scalar) -> (logits
      [B, K], cache): feeds image cell `position` and predicts the next one.
    first_logits: [B, K] float logits of image code 0.
    cache: the decoding state after the prefill (any pytree).
    rngs: [B] PRNG keys, one per row (see `row_keys`); the draw of code i
      uses fold_in(rngs[b], i).
    num_tokens: N, Python int.
    temperature: finite Python number > 0; see `filter_logits`.
    top_k: see `filter_logits`.
    top_p: see `filter_logits`.
    greedy: pick the argmax at every step (no randomness; rngs unused).
    prime_codes: optional [B, P] int32 codes of the first P cells (e.g. the
      top rows of an image to complete); fed instead of sampled and returned
      unchanged.

  Returns:
    [B, N] int32 codes in raster order.

  Raises:
    ValueError: bad settings (see filter_logits), shapes that do not fit,
      or concrete prime_codes outside [0, K).
  """
  check_settings(temperature, top_k, top_p, greedy)
  _check_loop_inputs(first_logits, rngs, num_tokens, prime_codes)
  batch = first_logits.shape[0]
  num_primed = 0 if prime_codes is None else prime_codes.shape[1]

  def choose(logits, step):
    if greedy:
      picked = jnp.argmax(logits, axis=-1)
    else:
      filtered = filter_logits(logits, temperature, top_k, top_p)
      picked = jax.vmap(
        lambda key, row: jax.random.categorical(
          jax.random.fold_in(key, step), row
        )
      )(rngs, filtered)
    picked = picked.astype(jnp.int32)
    if num_primed:
      primed = jnp.take(prime_codes, jnp.minimum(step, num_primed - 1), axis=1)
      picked = jnp.where(step < num_primed, primed.astype(jnp.int32), picked)
    return picked

  def body(carry, step):
    logits, cache = carry
    code = choose(logits, step)
    logits, cache = step_fn(cache, code, step)
    return (logits.astype(jnp.float32), cache), code

  logits = first_logits.astype(jnp.float32)
  codes = jnp.zeros((batch, 0), jnp.int32)
  if num_tokens > 1:  # a scan traces its body even for zero steps
    steps = jnp.arange(num_tokens - 1, dtype=jnp.int32)
    (logits, _), codes = jax.lax.scan(body, (logits, cache), steps)
    codes = codes.T
  # The last code needs no step_fn call: nothing comes after it.
  last = choose(logits, jnp.int32(num_tokens - 1))
  return jnp.concatenate([codes, last[:, None]], axis=1)
