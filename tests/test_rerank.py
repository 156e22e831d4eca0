"""Reranking helpers: best-first selection, fixed-size chunks, scorer names.

The scorers themselves run on real models in test_generator.py.
"""

import numpy as np
import pytest

from dalle_jax import rerank


def test_top_k_by_score_is_best_first_stable_and_puts_nan_last():
  scores = np.array(
    [
      [0.5, 2.0, -1.0, 2.0, np.nan],
      [np.nan, -np.inf, 3.0, 0.0, 1.0],
    ]
  )
  np.testing.assert_array_equal(
    rerank.top_k_by_score(scores, 4), [[1, 3, 0, 2], [2, 4, 3, 1]]
  )
  np.testing.assert_array_equal(rerank.top_k_by_score(scores[0], 1), [1])
  np.testing.assert_array_equal(
    rerank.top_k_by_score(scores, 5)[1], [2, 4, 3, 1, 0]
  )


@pytest.mark.parametrize("k", [0, 6, True, 2.0])
def test_top_k_by_score_refuses_k_outside_the_scores(k):
  with pytest.raises(ValueError, match=r"must be an integer in \[1, 5\]"):
    rerank.top_k_by_score(np.zeros((2, 5)), k)


def test_map_in_chunks_calls_with_one_shape_and_drops_the_padding():
  rows = np.arange(10)
  labels = np.arange(10) * 10
  seen_shapes = []

  def fn(a, b):
    seen_shapes.append((a.shape, b.shape))
    return a + b, a * 2

  sums, doubles = rerank.map_in_chunks(fn, [rows, labels], 4, "testing")
  np.testing.assert_array_equal(sums, rows + labels)
  np.testing.assert_array_equal(doubles, rows * 2)
  assert seen_shapes == [((4,), (4,))] * 3
  (single,) = rerank.map_in_chunks(lambda a: a + 1, [rows[:2]], 8)
  np.testing.assert_array_equal(single, [1, 2])


@pytest.mark.parametrize("chunk_size", [0, -3, 1.5, True])
def test_map_in_chunks_refuses_bad_chunk_sizes(chunk_size):
  with pytest.raises(ValueError, match="chunk_size=.* integer >= 1"):
    rerank.map_in_chunks(lambda a: a, [np.zeros(3)], chunk_size)


def test_unknown_scorer_names_list_the_known_ones():
  with pytest.raises(ValueError, match=r"'bleu'.*\('clip', 'likelihood'\)"):
    rerank.check_scorer_name("bleu")
  with pytest.raises(ValueError, match=r"\('clip', 'likelihood'\)"):
    rerank.Scorer("clap", None, None, None)
  assert rerank.Scorer("clip", None, None, None).uses_images
  assert not rerank.Scorer("likelihood", None, None, None).uses_images


def test_score_needs_the_input_its_scorer_reads_one_row_per_prompt():
  likelihood = rerank.Scorer("likelihood", None, None, None)
  with pytest.raises(ValueError, match="reads codes; pass codes="):
    rerank.score(likelihood, ["a"], images=np.zeros((1, 8, 8, 3), np.uint8))
  clip = rerank.Scorer("clip", None, None, None)
  with pytest.raises(ValueError, match="reads images; pass images="):
    rerank.score(clip, ["a"], codes=np.zeros((1, 4), np.int32))
  with pytest.raises(ValueError, match="2 prompts for 3 rows of codes"):
    rerank.score(likelihood, ["a", "b"], codes=np.zeros((3, 4), np.int32))
