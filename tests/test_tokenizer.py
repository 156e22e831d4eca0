"""Tests for dalle_jax.tokenizer: layout, round trip, truncation, dropout."""

import itertools
import logging
import os
import pickle
import threading

import numpy as np
import pytest
import sentencepiece as spm

from dalle_jax import tokenizer as tokenizer_lib
from dalle_jax.tokenizer import Tokenizer, train_tokenizer

SIZES = ["small", "large"]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "cyan"]
SHAPES = ["circle", "square", "triangle", "plus"]
POSITIONS = ["top left", "top", "right", "center", "bottom right"]
CAPTIONS = [
  f"a {size} {colour} {shape} in the {position}"
  for size, colour, shape, position in itertools.product(
    SIZES, COLOURS, SHAPES, POSITIONS
  )
] + [
  f"a {c1} {s1} {relation} a {c2} {s2}"
  for c1, s1, c2, s2, relation in itertools.product(
    COLOURS[:3], SHAPES, COLOURS[3:6], SHAPES[:2], ["above", "to the left of"]
  )
]
VOCAB_SIZE = 120


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tok") / "shapes.model")
  train_tokenizer(CAPTIONS, path, VOCAB_SIZE, text_length=16)
  return path


@pytest.fixture
def tok(model_path):
  # A fresh tokenizer per test, so truncation counts start at zero.
  return Tokenizer.load(model_path, text_length=16)


def test_sizes_and_per_position_pad_ids(tok, model_path):
  reference = spm.SentencePieceProcessor(model_file=model_path)
  assert tok.bpe_vocab_size == reference.get_piece_size() == VOCAB_SIZE
  assert tok.vocab_size == VOCAB_SIZE + 16
  bpe_ids = reference.encode("a red circle in the top")
  row = tok.encode(["A Red circle in the   top"])[0]
  expected = bpe_ids + [VOCAB_SIZE + p for p in range(len(bpe_ids), 16)]
  assert row.dtype == np.int32
  assert row.tolist() == expected
  assert [tok.pad_id(p) for p in (0, 5, 15)] == [120, 125, 135]


def test_empty_caption_is_all_distinct_pads(tok):
  tokens = tok.encode(["", "   "])
  assert tokens.shape == (2, 16)
  assert tokens[0].tolist() == list(range(120, 136))
  assert len(set(tokens[1].tolist())) == 16
  assert tok.decode(tokens) == ["", ""]


def test_empty_caption_is_all_pads_with_bpe_dropout_too(tok, caplog):
  # The unconditional sample's prompt: no caption token, no warning.
  with caplog.at_level(logging.WARNING, logger="dalle_jax.tokenizer"):
    tokens = tok.encode([""], bpe_dropout=0.5, rng_seed=3)
  assert tokens.tolist() == [list(range(120, 136))]
  assert not caplog.records
  assert tok.truncation.captions_truncated == 0


def test_truncation_starts_one_token_past_text_length(model_path, caplog):
  caption = CAPTIONS[0]
  bpe_ids = spm.SentencePieceProcessor(model_file=model_path).encode(caption)
  exact = Tokenizer.load(model_path, text_length=len(bpe_ids))
  short = Tokenizer.load(model_path, text_length=len(bpe_ids) - 1)
  with caplog.at_level(logging.WARNING, logger="dalle_jax.tokenizer"):
    whole = exact.encode([caption])
    assert not caplog.records  # exactly L tokens fit: nothing is cut
    cut = short.encode([caption])
  assert whole[0].tolist() == bpe_ids
  assert exact.decode(whole) == [caption]
  assert cut[0].tolist() == bpe_ids[:-1]  # the first L tokens are kept
  assert len(caplog.records) == 1
  message = caplog.records[0].getMessage()
  assert "1 of 1 captions" in message
  assert f"text_length={len(bpe_ids) - 1}" in message
  assert f"longest: {len(bpe_ids)}" in message


def test_round_trip_lower_cases_and_normalises_whitespace(tok):
  captions = [
    "A Small RED circle in the top left",
    "  a blue plus  above\ta yellow square ",
    "a large cyan triangle in the center",
  ]
  decoded = tok.decode(tok.encode(captions))
  assert decoded == [
    "a small red circle in the top left",
    "a blue plus above a yellow square",
    "a large cyan triangle in the center",
  ]
  assert tok.decode(tok.encode(captions)[1]) == decoded[1]


def test_encode_empty_batch(tok):
  assert tok.encode([]).shape == (0, 16)


def test_truncation_is_counted_and_warned_once_per_decade(model_path, caplog):
  short = Tokenizer.load(model_path, text_length=4)
  long_enough = Tokenizer.load(model_path, text_length=64)
  captions = CAPTIONS[:3]
  with caplog.at_level(logging.WARNING, logger="dalle_jax.tokenizer"):
    tokens = short.encode(captions)
    assert len(caplog.records) == 1
    assert "3 of 3 captions" in caplog.records[0].getMessage()
    assert "text_length=4" in caplog.records[0].getMessage()
    short.encode(captions + ["a"])  # 6 truncated: below the next threshold
    assert len(caplog.records) == 1
    short.encode(captions * 2)  # 12 truncated: crosses 10
    assert len(caplog.records) == 2
  assert tokens.shape == (3, 4)
  np.testing.assert_array_equal(tokens, long_enough.encode(captions)[:, :4])
  assert short.truncation.captions_truncated == 12
  assert short.truncation.captions_seen == 13
  assert short.truncation.longest_tokens > 4


def test_bpe_dropout_is_seeded_and_decodes_to_the_same_text(model_path):
  # Room for unmerged segmentations, which are longer.
  tok = Tokenizer.load(model_path, text_length=64)
  captions = CAPTIONS[::7]
  plain = tok.encode(captions)
  first = tok.encode(captions, bpe_dropout=0.5, rng_seed=7)
  again = tok.encode(captions, bpe_dropout=0.5, rng_seed=7)
  other = tok.encode(captions, bpe_dropout=0.5, rng_seed=8)
  np.testing.assert_array_equal(first, again)
  assert (first != plain).any(axis=1).sum() > len(captions) // 2
  assert (first != other).any()
  assert tok.decode(first) == tok.decode(plain) == captions


def test_seeded_bpe_dropout_reproduces_across_threads(tok):
  captions = CAPTIONS[:30]
  expected = [
    tok.encode(captions, bpe_dropout=0.3, rng_seed=s) for s in range(20)
  ]
  mismatches = []

  def encode_all():
    for seed, want in enumerate(expected):
      got = tok.encode(captions, bpe_dropout=0.3, rng_seed=seed)
      mismatches.append(not np.array_equal(got, want))

  threads = [threading.Thread(target=encode_all) for _ in range(4)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert len(mismatches) == 80 and not any(mismatches)


def test_bpe_dropout_without_seed_varies(tok):
  captions = CAPTIONS[:40]
  draws = [tok.encode(captions, bpe_dropout=0.5) for _ in range(2)]
  assert (draws[0] != draws[1]).any()


def test_training_is_deterministic_and_leaves_no_temp_file(tmp_path):
  first = tmp_path / "a" / "m.model"
  second = tmp_path / "b" / "m.model"
  train_tokenizer(CAPTIONS, str(first), 80)
  train_tokenizer(iter(CAPTIONS), str(second), 80)
  assert first.read_bytes() == second.read_bytes()
  assert os.listdir(first.parent) == ["m.model"]


def test_unseen_characters_encode_as_unk(tok):
  row = tok.encode(["a red жж circle"])[0]
  assert 0 in row.tolist()  # id 0 is <unk>
  assert tok.decode(row).startswith("a red")


def test_byte_fallback_round_trips_unseen_characters(tmp_path):
  path = str(tmp_path / "bytes.model")
  tok = train_tokenizer(CAPTIONS, path, 300, text_length=32, byte_fallback=True)
  caption = "a red circle über 日本"
  assert tok.decode(tok.encode([caption]))[0] == caption


def test_vocab_size_too_large_names_the_maximum(tmp_path):
  path = str(tmp_path / "m.model")
  with pytest.raises(ValueError, match=r"maximum is \d+") as error:
    train_tokenizer(CAPTIONS, path, 5000)
  maximum = int(str(error.value).split("maximum is ")[1].split(".")[0])
  assert not os.path.exists(path)
  tok = train_tokenizer(CAPTIONS, path, 5000, vocab_size_is_upper_bound=True)
  assert tok.bpe_vocab_size == maximum


def test_vocab_size_upper_bound_logs_a_warning(tmp_path, caplog):
  path = str(tmp_path / "m.model")
  with caplog.at_level(logging.WARNING, logger="dalle_jax.tokenizer"):
    train_tokenizer(CAPTIONS, path, 5000, vocab_size_is_upper_bound=True)
  assert "requested vocab_size=5000" in caplog.text


def test_vocab_size_too_small_names_the_minimum(tmp_path):
  with pytest.raises(ValueError, match=r"vocab_size >= \d+"):
    train_tokenizer(CAPTIONS, str(tmp_path / "m.model"), 5)


def test_no_captions_raises(tmp_path):
  with pytest.raises(ValueError, match="no non-empty caption"):
    train_tokenizer(["", "  "], str(tmp_path / "m.model"), 50)


def test_missing_model_names_path_and_command(tmp_path):
  path = str(tmp_path / "nothing.model")
  with pytest.raises(FileNotFoundError, match="python -m dalle_jax.tokenizer"):
    Tokenizer.load(path, text_length=8)
  with pytest.raises(FileNotFoundError, match="nothing.model"):
    Tokenizer.load(path, text_length=8)


@pytest.mark.parametrize("content", [b"this is not a model", b""])
def test_corrupt_model_names_path(tmp_path, content):
  path = tmp_path / "broken.model"
  path.write_bytes(content)
  with pytest.raises(ValueError, match="broken.model.*python -m dalle_jax"):
    Tokenizer.load(str(path), text_length=8)


@pytest.mark.parametrize("text_length", [0, -3, 2.5, True])
def test_bad_text_length_raises(model_path, text_length):
  with pytest.raises(ValueError, match="text_length"):
    Tokenizer.load(model_path, text_length=text_length)


def test_encode_rejects_bad_arguments(tok):
  with pytest.raises(TypeError, match=r"encode\(\[caption\]\)"):
    tok.encode("a red circle")
  with pytest.raises(ValueError, match="bpe_dropout=1.5"):
    tok.encode(["a"], bpe_dropout=1.5)


def test_decode_rejects_bad_tokens(tok):
  with pytest.raises(ValueError, match=r"\[0, 136\)"):
    tok.decode(np.array([[3, 136]]))
  with pytest.raises(ValueError, match=r"\[0, 136\)"):
    tok.decode(np.array([-1, 3]))
  with pytest.raises(ValueError, match="integer tokens"):
    tok.decode(np.zeros((2, 2, 2), np.int32))
  with pytest.raises(ValueError, match="integer tokens"):
    tok.decode(np.zeros((4,), np.float32))


def test_decode_drops_pads_anywhere(tok):
  ids = tok.encode(["a red circle"])[0]
  pads_first = np.concatenate([[tok.pad_id(0)], ids[:-1]])
  assert tok.decode(pads_first) == "a red circle"


def test_pad_id_out_of_range_raises(tok):
  with pytest.raises(ValueError, match=r"position=16.*\[0, 16\)"):
    tok.pad_id(16)


def test_pickle_round_trip(tok):
  clone = pickle.loads(pickle.dumps(tok))
  assert clone == tok
  np.testing.assert_array_equal(
    clone.encode(CAPTIONS[:5]), tok.encode(CAPTIONS[:5])
  )


def test_tokenizer_is_frozen(tok):
  with pytest.raises(AttributeError):
    tok.text_length = 3


def test_command_line_trains_from_a_caption_file(tmp_path, capsys):
  captions_file = tmp_path / "captions.txt"
  captions_file.write_text("\n".join(CAPTIONS) + "\n\n", encoding="utf-8")
  out = tmp_path / "cli" / "t.model"
  exit_code = tokenizer_lib.main(
    ["--captions", str(captions_file), "--out", str(out), "--vocab_size", "90"]
  )
  assert exit_code == 0
  assert Tokenizer.load(str(out), text_length=8).bpe_vocab_size == 90
  assert f"{len(CAPTIONS)} captions" in capsys.readouterr().out


def test_pad_base_moves_pads_past_unused_ids(model_path):
  # A run asks for up to 128 pieces; these captions support 120.
  tok = Tokenizer.load(model_path, text_length=16, pad_base=128)
  assert tok.bpe_vocab_size == VOCAB_SIZE and tok.pad_start == 128
  assert tok.vocab_size == 128 + 16
  rows = tok.encode(["a red circle", ""])
  caption_end = int(np.argmax(rows[0] >= VOCAB_SIZE))
  np.testing.assert_array_equal(
    rows[0, caption_end:], 128 + np.arange(caption_end, 16)
  )
  np.testing.assert_array_equal(rows[1], 128 + np.arange(16))
  assert np.all(rows[0, :caption_end] < VOCAB_SIZE)
  assert tok.pad_id(3) == 131
  assert tok.decode(rows[0]) == "a red circle"
  clone = pickle.loads(pickle.dumps(tok))
  assert clone.pad_start == 128
  np.testing.assert_array_equal(clone.encode(["a red circle"]), rows[:1])


@pytest.mark.parametrize("pad_base", [VOCAB_SIZE - 1, 0, 12.5])
def test_pad_base_below_the_pieces_is_refused(model_path, pad_base):
  with pytest.raises(ValueError, match=f"pad_base={pad_base}.*{VOCAB_SIZE}"):
    Tokenizer.load(model_path, text_length=16, pad_base=pad_base)
