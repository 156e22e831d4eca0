"""95% intervals over prompts, against SciPy and the standard library."""

import statistics

import numpy as np
import pytest
from scipy import stats

from dalle_jax import intervals, report
from dalle_jax.generation_eval import JUDGED


@pytest.mark.parametrize(
  "successes, trials", [(0, 1), (1, 1), (57, 64), (64, 64), (0, 64), (3, 7)]
)
def test_wilson_interval_matches_scipy(successes, trials):
  reference = stats.binomtest(successes, trials).proportion_ci(
    confidence_level=0.95, method="wilson"
  )
  low, high = intervals.wilson_interval(successes, trials)
  assert low == pytest.approx(reference.low, abs=1e-9)
  assert high == pytest.approx(reference.high, abs=1e-9)


def test_mean_interval_is_the_normal_interval_of_the_mean():
  values = [1.0, 0.25, 0.5, 0.0, 1.0, 0.75]
  half = (
    statistics.NormalDist().inv_cdf(0.975)
    * statistics.stdev(values)
    / len(values) ** 0.5
  )
  mean = statistics.fmean(values)
  assert intervals.standard_error(values) == pytest.approx(
    statistics.stdev(values) / len(values) ** 0.5
  )
  low, high = intervals.mean_interval(values)
  assert low == pytest.approx(mean - half) and high == pytest.approx(
    mean + half
  )
  # Near the ends it is clipped to shares that can exist.
  assert intervals.mean_interval([1.0, 1.0, 0.9])[1] == 1.0
  assert intervals.mean_interval([0.0, 0.0, 0.1])[0] == 0.0
  assert intervals.mean_interval([0.5, 0.5]) == (0.5, 0.5)


@pytest.mark.parametrize(
  "call, message",
  [
    (lambda: intervals.wilson_interval(1, 0), "trials > 0"),
    (lambda: intervals.wilson_interval(5, 4), "5 of 4"),
    (lambda: intervals.mean_interval([0.5]), "at least 2"),
  ],
)
def test_bad_input_is_refused(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_report_headline_shows_each_share_with_its_interval():
  # Four prompts of four candidates each, written out by hand.
  correct = [4, 0, 2, 3]
  best = [True, False, True, False]
  summary = {
    "num_prompts": 4,
    "num_candidates": 4,
    "curve": {
      "single_sample": 9 / 16,
      "reranked": [0.5],
      "any_correct": [0.75],
    },
    "prompts": [
      {"correct_candidates": c, "best_correct": b}
      for c, b in zip(correct, best, strict=True)
    ],
  }
  lines = report.headline_section({"splits": {"zero_shot": summary}})
  cells = [cell.strip() for cell in lines[-1].strip("|").split("|")]

  def expected(share, low, high):
    return f"{100 * share:.1f}% ({100 * low:.1f}-{100 * high:.1f})"

  shares = np.array(correct) / 4
  half = 1.959964 * shares.std(ddof=1) / 2
  rerank = stats.binomtest(2, 4).proportion_ci(method="wilson")
  anyone = stats.binomtest(3, 4).proportion_ci(method="wilson")
  shares = [
    expected(9 / 16, 9 / 16 - half, 9 / 16 + half),
    expected(0.5, rerank.low, rerank.high),
    expected(0.75, anyone.low, anyone.high),
  ]
  assert cells[3:] == shares
  # The pipeline log's closing line shows the same.
  line = report._split_line(JUDGED, "zero_shot", summary)
  assert all(share in line for share in shares), line
