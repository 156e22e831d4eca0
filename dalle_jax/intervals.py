"""95% intervals for the evaluation's shares, so a reader sees their noise.

The evaluation judges a few dozen prompts per split, where one prompt moves
a share by 1-2 points. Two intervals, both over prompts:

- a share of prompts (CLIP's best of N correct, any of N correct): the
  Wilson score interval of a binomial proportion, which stays inside [0, 1]
  and is sound near 0% and 100%, where the normal approximation is not;
- a mean over prompts of a per-prompt share (one sample judged correct):
  the mean plus or minus z standard errors of the per-prompt shares. The
  candidates of one prompt are not independent draws (a prompt the model
  cannot draw fails most of them), so treating every candidate as its own
  trial would make the interval far too narrow.
"""

from collections.abc import Sequence

import numpy as np

# The standard normal's 97.5% quantile: two-sided 95% intervals.
Z_95 = 1.959963984540054


def wilson_interval(
  successes: int, trials: int, z: float = Z_95
) -> tuple[float, float]:
  """The Wilson score interval of `successes` out of `trials`.

  Raises:
    ValueError: no trials, or successes outside [0, trials].
  """
  if trials <= 0 or not 0 <= successes <= trials:
    raise ValueError(
      f"A share needs trials > 0 and 0 <= successes <= trials, got "
      f"{successes} of {trials}."
    )
  share = successes / trials
  z2 = z * z
  centre = (share + z2 / (2 * trials)) / (1 + z2 / trials)
  half = (
    z
    * np.sqrt(share * (1 - share) / trials + z2 / (4 * trials * trials))
    / (1 + z2 / trials)
  )
  return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def standard_error(values: Sequence[float]) -> float:
  """The standard error of the mean of [P] per-prompt values.

  Raises:
    ValueError: fewer than two values (no standard error).
  """
  values = np.asarray(values, float)
  if values.size < 2:
    raise ValueError(
      f"A standard error over prompts needs at least 2, got {values.size}."
    )
  return float(values.std(ddof=1) / np.sqrt(values.size))


def mean_interval(
  values: Sequence[float], z: float = Z_95
) -> tuple[float, float]:
  """mean +- z standard errors of [P] per-prompt shares, clipped to [0, 1].

  Raises:
    ValueError: fewer than two values (no standard error).
  """
  half = z * standard_error(values)
  mean = float(np.mean(values))
  return max(0.0, mean - half), min(1.0, mean + half)
