"""Shapes step benchmarks: variant names, summary (timing is not a test)."""

import pytest

from experiments.benchmarks.shapes_attention import parse_variant


def test_variant_names_the_attention_tiles_and_text_length():
  assert parse_variant("dense:32:16") == {
    "attention": "dense",
    "block_size": 32,
    "text_length": 16,
  }


@pytest.mark.parametrize("variant", ["dense", "dense:32", "dense:x:16"])
def test_malformed_variant_says_the_expected_form(variant):
  with pytest.raises(SystemExit, match="attention:block_size:text_length"):
    parse_variant(variant)


def test_medians_and_speedups_are_against_the_first_variant():
  from experiments.benchmarks.text_length import medians_and_speedups

  seconds = {"slow": [2.0, 9.0, 2.0], "fast": [1.0, 1.0, 0.5, 7.0]}
  assert medians_and_speedups(seconds) == {
    "slow": (2.0, 1.0),
    "fast": (1.0, 2.0),
  }


def test_clip_stem_variant_names_the_stem_widths():
  from experiments.benchmarks.clip_stem import parse_variant

  assert parse_variant("none") == ()
  assert parse_variant("32,64,128") == (32, 64, 128)
  with pytest.raises(SystemExit, match="comma-separated stem widths"):
    parse_variant("32;64")
