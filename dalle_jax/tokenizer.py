"""BPE text tokenizer (sentencepiece): train, load, fixed-length encode, decode.

One encoded caption is a row of exactly L = `text_length` int32 ids:

  [t_0, t_1, ..., t_{n-1}, pad_n, pad_{n+1}, ..., pad_{L-1}]

- t_i in [0, V) are sentencepiece BPE ids, V = `bpe_vocab_size`. Id 0 is
  `<unk>`: a character never seen in training becomes `<unk>` (or its UTF-8
  bytes, for a model trained with `byte_fallback=True`); encoding never fails.
- pad_p = P + p is the padding token of text position p, where the pad base
  P is V by default. A training run sets P to its configured BPE bound
  (`config.tokenizer.vocab_size` >= V: a small caption set supports fewer
  pieces than asked for), so that pads sit where the model's embedding
  expects them, and the first id >= P ends the caption (CLIP pools there).
  The paper (§2.2) gives every text position its own learned pad token
  instead of masking, so the full text vocabulary is P + L (`vocab_size`).
- No BOS and no EOS. The first pad already marks where a caption ends (pad_n
  can only follow the last caption token), and any start-of-sequence token the
  transformer wants is the transformer's business, not the tokenizer's.

Captions are lower-cased and their whitespace collapsed to single spaces
(`normalise_caption`) before training and encoding, and no other unicode
normalisation is applied, so decode(encode(c)) == normalise_caption(c) for
every caption that fits in L tokens and uses only characters seen in training.
Longer captions keep their first L tokens; they are counted on
`Tokenizer.truncation` and reported by a rate-limited logging warning.
"""

import argparse
import dataclasses
import io
import logging
import os
import re
import secrets
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm

logger = logging.getLogger(__name__)

PAPER_TEXT_LENGTH = 256
_TRAIN_COMMAND = (
  "python -m dalle_jax.tokenizer --captions CAPTIONS.txt --out {path} "
  "--vocab_size N"
)
# sentencepiece treats the largest unsigned 32-bit value as "no seed".
_SEED_MODULUS = 2**32 - 1
# sentencepiece's sampling seed is process-wide: setting it and encoding must
# not interleave with another thread's, or seeded results stop reproducing.
_SAMPLING_LOCK = threading.Lock()


def normalise_caption(caption: str) -> str:
  """Lower-cases a caption and collapses its whitespace to single spaces."""
  return " ".join(caption.lower().split())


def _train_options(vocab_size: int, byte_fallback: bool) -> dict:
  """sentencepiece trainer options for a deterministic, quiet BPE model."""
  return dict(
    model_type="bpe",
    vocab_size=vocab_size,
    character_coverage=1.0,
    byte_fallback=byte_fallback,
    unk_id=0,
    bos_id=-1,
    eos_id=-1,
    pad_id=-1,
    # Captions are normalised in Python (normalise_caption); a second
    # normalisation (NFKC) inside sentencepiece would break the round trip.
    normalization_rule_name="identity",
    # One thread and no sentence sampling: same captions, same model bytes.
    num_threads=1,
    input_sentence_size=0,
    shuffle_input_sentence=False,
    minloglevel=2,
  )


def _train_model_bytes(
  captions: Sequence[str], vocab_size: int, byte_fallback: bool
) -> bytes:
  """Trains a BPE model in memory and returns its serialized proto."""
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(captions),
    model_writer=model,
    **_train_options(vocab_size, byte_fallback),
  )
  return model.getvalue()


def _largest_vocab_from_error(error: RuntimeError) -> int | None:
  """Parses sentencepiece's "set it to a value <= M" message; None if absent."""
  match = re.search(r"value <= (\d+)", str(error))
  return int(match.group(1)) if match else None


def _smallest_vocab_from_error(error: RuntimeError) -> int | None:
  """Parses sentencepiece's "smaller than required_chars. N vs M" message."""
  match = re.search(r"required_chars\. \d+ vs (\d+)", str(error))
  return int(match.group(1)) if match else None


def _write_atomically(path: str, data: bytes) -> None:
  """Writes `data` to `path` via a temp file + rename: never half a file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  handle, temp_path = tempfile.mkstemp(
    dir=directory, prefix=os.path.basename(path) + ".", suffix=".tmp"
  )
  try:
    with os.fdopen(handle, "wb") as temp_file:
      temp_file.write(data)
      temp_file.flush()
      os.fsync(temp_file.fileno())
    # mkstemp makes the file private (0600); a model is an ordinary file.
    os.chmod(temp_path, 0o644)
    os.replace(temp_path, path)
  except BaseException:
    if os.path.exists(temp_path):
      os.remove(temp_path)
    raise


def train_tokenizer(
  captions: Iterable[str],
  model_path: str,
  vocab_size: int,
  *,
  text_length: int = PAPER_TEXT_LENGTH,
  byte_fallback: bool = False,
  vocab_size_is_upper_bound: bool = False,
) -> "Tokenizer":
  """Trains a BPE tokenizer on captions and writes it to `model_path`.

  Training is deterministic: the same captions in the same order give the same
  model bytes. The model file is written atomically.

  Args:
    captions: caption strings; lower-cased and whitespace-normalised here.
      Empty captions are ignored.
    model_path: where to write the sentencepiece model (`.model` by custom).
    vocab_size: number of BPE ids V, including `<unk>` (and the 256 byte
      pieces when `byte_fallback`).
    text_length: L of the returned tokenizer.
    byte_fallback: encode unseen characters as their UTF-8 bytes instead of
      `<unk>`, so they survive a round trip; costs 256 ids of the vocabulary.
    vocab_size_is_upper_bound: if the captions cannot support `vocab_size`
      distinct pieces, train the largest vocabulary they support and log a
      warning, instead of raising.

  Returns:
    The trained Tokenizer.

  Raises:
    ValueError: no non-empty caption; `vocab_size` below the number of
      distinct characters (the message names the minimum); or `vocab_size`
      above what the captions support and `vocab_size_is_upper_bound` is
      False (the message names the maximum).
  """
  texts = [text for text in map(normalise_caption, captions) if text]
  if not texts:
    raise ValueError(
      "train_tokenizer got no non-empty caption; pass at least one caption."
    )
  try:
    model_bytes = _train_model_bytes(texts, vocab_size, byte_fallback)
  except RuntimeError as error:
    largest = _largest_vocab_from_error(error)
    smallest = _smallest_vocab_from_error(error)
    if largest is not None and vocab_size_is_upper_bound:
      logger.warning(
        "%d captions support at most %d BPE pieces; training with %d instead "
        "of the requested vocab_size=%d.",
        len(texts),
        largest,
        largest,
        vocab_size,
      )
      model_bytes = _train_model_bytes(texts, largest, byte_fallback)
    elif largest is not None:
      raise ValueError(
        f"vocab_size={vocab_size} is more BPE pieces than {len(texts)} "
        f"captions support: the maximum is {largest}. Pass vocab_size <= "
        f"{largest}, "
        "more captions, or vocab_size_is_upper_bound=True."
      ) from error
    elif smallest is not None:
      raise ValueError(
        f"vocab_size={vocab_size} is smaller than the {smallest} pieces the "
        f"captions' distinct characters need; pass vocab_size >= {smallest}."
      ) from error
    else:
      raise
  _write_atomically(model_path, model_bytes)
  return Tokenizer(model_proto=model_bytes, text_length=text_length)


@dataclasses.dataclass
class TruncationCounter:
  """Running count of encoded captions that were longer than L tokens.

  Attributes:
    captions_seen: captions encoded so far.
    captions_truncated: captions longer than L tokens among them.
    longest_tokens: token count of the longest caption seen.
  """

  captions_seen: int = 0
  captions_truncated: int = 0
  longest_tokens: int = 0
  # A warning is logged when captions_truncated first reaches 1, 10, 100, ...
  next_warning_at: int = 1
  lock: threading.Lock = dataclasses.field(
    default_factory=threading.Lock, repr=False, compare=False
  )

  def record(self, token_counts: Sequence[int], text_length: int) -> bool:
    """Adds one batch; returns whether a warning is due for it."""
    truncated = sum(count > text_length for count in token_counts)
    with self.lock:
      self.captions_seen += len(token_counts)
      self.captions_truncated += truncated
      self.longest_tokens = max([self.longest_tokens, *token_counts])
      if truncated and self.captions_truncated >= self.next_warning_at:
        while self.next_warning_at <= self.captions_truncated:
          self.next_warning_at *= 10
        return True
    return False


def _processor_from_bytes(model_proto: bytes, source: str):
  """Builds a SentencePieceProcessor; ValueError if the bytes are no model."""
  try:
    processor = spm.SentencePieceProcessor(model_proto=model_proto)
  except RuntimeError as error:
    raise ValueError(
      f"{source} is not a sentencepiece model ({error}). Train one with: "
      + _TRAIN_COMMAND.format(path=source)
    ) from error
  if processor.get_piece_size() == 0:
    raise ValueError(
      f"{source} is an empty sentencepiece model. Train one with: "
      + _TRAIN_COMMAND.format(path=source)
    )
  return processor


@dataclasses.dataclass(frozen=True)
class Tokenizer:
  """A trained BPE model plus the fixed text length L.

  Attributes:
    model_proto: the serialized sentencepiece model.
    text_length: L, the number of text positions of every encoded caption.
    truncation: running count of truncated captions (the only mutable part).
    pad_base: P, the padding id of position 0; None means V =
      `bpe_vocab_size`. Must be >= V.
  """

  model_proto: bytes = dataclasses.field(repr=False)
  text_length: int
  truncation: TruncationCounter = dataclasses.field(
    default_factory=TruncationCounter, repr=False, compare=False
  )
  pad_base: int | None = None
  _processor: spm.SentencePieceProcessor = dataclasses.field(
    init=False, repr=False, compare=False
  )

  def __post_init__(self):
    if (
      not isinstance(self.text_length, int)
      or isinstance(self.text_length, bool)
      or self.text_length < 1
    ):
      raise ValueError(
        f"text_length={self.text_length!r} must be a positive int, e.g. "
        f"{PAPER_TEXT_LENGTH} as in the paper."
      )
    processor = _processor_from_bytes(self.model_proto, "model_proto")
    object.__setattr__(self, "_processor", processor)
    pieces = processor.get_piece_size()
    if self.pad_base is not None and not (
      isinstance(self.pad_base, int) and self.pad_base >= pieces
    ):
      raise ValueError(
        f"pad_base={self.pad_base!r} is below the tokenizer's {pieces} BPE "
        f"pieces: padding ids would collide with them. Use a pad base (the "
        f"run's config.tokenizer.vocab_size) >= {pieces}, or a tokenizer "
        "trained with that bound."
      )

  def __reduce__(self):
    # The processor is rebuilt from the bytes, so the tokenizer pickles into
    # data-loader worker processes; each process keeps its own counter.
    return (
      _rebuild_tokenizer,
      (self.model_proto, self.text_length, self.pad_base),
    )

  @classmethod
  def load(
    cls, path: str, text_length: int, pad_base: int | None = None
  ) -> "Tokenizer":
    """Reads a sentencepiece model file written by `train_tokenizer`.

    `pad_base` is P of the module docstring (None: V).

    Raises:
      FileNotFoundError: nothing at `path`.
      ValueError: the file is not a sentencepiece model.
    """
    if not os.path.isfile(path):
      raise FileNotFoundError(
        f"No tokenizer model at {path}. Train one with: "
        + _TRAIN_COMMAND.format(path=path)
      )
    with open(path, "rb") as model_file:
      model_proto = model_file.read()
    _processor_from_bytes(model_proto, path)
    return cls(
      model_proto=model_proto, text_length=text_length, pad_base=pad_base
    )

  @property
  def bpe_vocab_size(self) -> int:
    """V: the number of BPE ids, [0, V); id 0 is `<unk>`."""
    return self._processor.get_piece_size()

  @property
  def pad_start(self) -> int:
    """P: the padding id of text position 0 (`pad_base`, or V)."""
    return self.bpe_vocab_size if self.pad_base is None else self.pad_base

  @property
  def vocab_size(self) -> int:
    """P + L: BPE ids (and unused ids up to P), then one pad per position."""
    return self.pad_start + self.text_length

  def pad_id(self, position: int) -> int:
    """The padding id of text position `position` in [0, L)."""
    if not 0 <= position < self.text_length:
      raise ValueError(
        f"position={position} is outside the text positions "
        f"[0, {self.text_length})."
      )
    return self.pad_start + position

  def encode(
    self,
    captions: Sequence[str],
    *,
    bpe_dropout: float = 0.0,
    rng_seed: int | None = None,
  ) -> np.ndarray:
    """Encodes captions into fixed-length rows with per-position padding.

    Args:
      captions: N caption strings (a list, not a single str).
      bpe_dropout: probability of skipping each BPE merge (BPE dropout; the
        paper uses 0.1 in training). 0 gives the deterministic segmentation.
      rng_seed: with `bpe_dropout > 0`, makes the sampled segmentations
        reproducible for the same batch (also across threads: seeding and
        sampling happen under one lock); None draws a fresh seed.

    Returns:
      [N, L] int32 token ids; see the module docstring for the layout.
    """
    if isinstance(captions, str):
      raise TypeError(
        "encode takes a sequence of captions, got one str; wrap it: "
        "encode([caption])."
      )
    if not 0.0 <= bpe_dropout <= 1.0:
      raise ValueError(
        f"bpe_dropout={bpe_dropout} must be in [0, 1]; the paper uses 0.1."
      )
    texts = [normalise_caption(caption) for caption in captions]
    if bpe_dropout > 0.0:
      seed = secrets.randbits(32) if rng_seed is None else rng_seed
      with _SAMPLING_LOCK:
        spm.set_random_generator_seed(seed % _SEED_MODULUS)
        ids = self._processor.encode(
          texts,
          out_type=int,
          enable_sampling=True,
          alpha=bpe_dropout,
          nbest_size=-1,
          # One worker thread, started fresh by this call, seeded just above.
          num_threads=1,
        )
    else:
      ids = self._processor.encode(texts, out_type=int, num_threads=1)
    self._record_truncations([len(row) for row in ids])
    return self._pad_and_truncate(ids)

  def _pad_and_truncate(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
    """[N] ragged id lists -> [N, L] int32 with per-position pads."""
    tokens = np.tile(
      np.arange(self.text_length, dtype=np.int32) + self.pad_start,
      (len(ids), 1),
    )
    for row, row_ids in enumerate(ids):
      kept = row_ids[: self.text_length]
      tokens[row, : len(kept)] = kept
    return tokens

  def _record_truncations(self, token_counts: Sequence[int]) -> None:
    if self.truncation.record(token_counts, self.text_length):
      counter = self.truncation
      logger.warning(
        "%d of %d captions so far were longer than text_length=%d tokens "
        "(longest: %d) and were truncated; raise text_length to keep them "
        "whole.",
        counter.captions_truncated,
        counter.captions_seen,
        self.text_length,
        counter.longest_tokens,
      )

  def decode(self, tokens: np.ndarray) -> list[str] | str:
    """Turns token rows back into text, dropping padding ids.

    Args:
      tokens: [N, L] or [L] integer ids in [0, vocab_size).

    Returns:
      N strings for [N, L] input, one string for [L] input.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim not in (1, 2) or not np.issubdtype(tokens.dtype, np.integer):
      raise ValueError(
        f"decode takes [N, L] or [L] integer tokens, got shape {tokens.shape} "
        f"dtype {tokens.dtype}."
      )
    if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
      raise ValueError(
        f"token ids must be in [0, {self.vocab_size}), got values in "
        f"[{tokens.min()}, {tokens.max()}]."
      )
    rows = tokens if tokens.ndim == 2 else tokens[None]
    ids = [[int(t) for t in row if t < self.bpe_vocab_size] for row in rows]
    texts = self._processor.decode(ids)
    return texts if tokens.ndim == 2 else texts[0]


def _rebuild_tokenizer(
  model_proto: bytes, text_length: int, pad_base: int | None
) -> Tokenizer:
  """Unpickles a Tokenizer (with a fresh truncation counter)."""
  return Tokenizer(model_proto, text_length, pad_base=pad_base)


def _read_captions(path: str) -> list[str]:
  with open(path, encoding="utf-8") as captions_file:
    return [line.rstrip("\n") for line in captions_file if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
  """Command line: train a tokenizer from a file with one caption per line."""
  parser = argparse.ArgumentParser(
    prog="python -m dalle_jax.tokenizer", description=__doc__.split("\n")[0]
  )
  parser.add_argument(
    "--captions", required=True, help="text file, one caption per line"
  )
  parser.add_argument("--out", required=True, help="model file to write")
  parser.add_argument(
    "--vocab_size", type=int, required=True, help="BPE vocabulary size V"
  )
  parser.add_argument(
    "--byte_fallback",
    action="store_true",
    help="encode unseen characters as UTF-8 bytes instead of <unk>",
  )
  parser.add_argument(
    "--vocab_size_is_upper_bound",
    action="store_true",
    help="lower vocab_size to what the captions support instead of failing",
  )
  args = parser.parse_args(argv)
  captions = _read_captions(args.captions)
  tokenizer = train_tokenizer(
    captions,
    args.out,
    args.vocab_size,
    byte_fallback=args.byte_fallback,
    vocab_size_is_upper_bound=args.vocab_size_is_upper_bound,
  )
  print(
    f"wrote {args.out}: {tokenizer.bpe_vocab_size} BPE pieces from "
    f"{len(captions)} captions"
  )
  return 0


if __name__ == "__main__":
  logging.basicConfig(level=logging.INFO)
  sys.exit(main())
