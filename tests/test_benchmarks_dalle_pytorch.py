"""Tests for experiments/benchmarks/dalle_pytorch.py: is the comparison fair?

The models are only built (no timing). Tests that need dalle-pytorch skip
when it is not installed (see the benchmark's docstring for the commands).
"""

import sys
import types

import numpy as np
import pytest

from dalle_jax.models.transformer import TransformerConfig

torch = pytest.importorskip("torch", reason="torch is a benchmark extra")

# pyproject.toml puts the repository root on pytest's path for experiments/.
from experiments.benchmarks import dalle_pytorch as bench  # noqa: E402

TINY = TransformerConfig(
  text_vocab_size=40 + 8,
  text_length=8,
  image_vocab_size=32,
  grid_side=4,
  num_layers=3,
  num_heads=2,
  head_dim=16,
  mlp_ratio=bench.GEGLU_MATCHING_MLP_RATIO,
  conv_kernel=bench.TORCH_CONV_KERNEL,
)


@pytest.fixture(scope="module")
def dalle_pytorch():
  try:
    return bench.import_dalle_pytorch()
  except ImportError as error:
    pytest.skip(f"dalle-pytorch is not importable: {error}")


def _expected_counts(config: TransformerConfig) -> tuple[int, int]:
  """(ours, dalle-pytorch's) trained scalars, itemised by hand."""
  width, text, image = (
    config.width,
    config.text_vocab_size,
    config.image_vocab_size,
  )
  norms = 2 * 2 * width
  attention_weights = 4 * width * width + width  # q, k, v, out; out bias
  ours_block = (
    norms
    + attention_weights
    + 3 * width  # q, k, v biases
    + 2 * config.mlp_ratio * width * width  # up, down
    + config.mlp_ratio * width  # up bias
    + width  # down bias
  )
  theirs_block = (
    norms
    + attention_weights
    + 2 * width  # LayerScale of both branches
    + 8 * width * width
    + 8 * width  # GEGLU: E -> 2 x 4E
    + 4 * width * width
    + width  # 4E -> E
  )
  shared = (
    text * width  # text embedding
    + image * width  # image embedding
    + 2 * config.grid_side * width  # row and column embeddings
    + 2 * width  # final norm
    + width * (text + image)
    + text
    + image  # output head(s)
  )
  ours = config.num_layers * ours_block + shared + config.text_length * width
  theirs = (
    config.num_layers * theirs_block
    + shared
    + (config.text_length + 1) * width  # positions, <bos> included
  )
  return ours, theirs


@pytest.mark.parametrize("torch_attention", bench.TORCH_ATTENTION)
def test_parameter_counts_differ_only_by_unmatchable_extras(
  dalle_pytorch, torch_attention
):
  del dalle_pytorch
  ours = bench.jax_parameter_count(TINY)
  theirs = bench.torch_parameter_count(bench.torch_dalle(TINY, torch_attention))
  assert (ours, theirs) == _expected_counts(TINY) == (56_368, 56_496)
  # mlp_ratio 6 matches the GEGLU weights; what is left is +E per block
  # (LayerScale +2E, GEGLU biases +2E, no q/k/v biases -3E) and the <bos>
  # position row.
  assert theirs - ours == (TINY.num_layers + 1) * TINY.width


def test_matched_attention_uses_cached_axial_and_uncached_conv(dalle_pytorch):
  dalle = bench.torch_dalle(TINY, "matched")
  attentions = [
    type(module).__name__
    for module in dalle.transformer.modules()
    if type(module).__name__.endswith("Attention")
  ]
  assert attentions == ["Attention", "Attention", "SparseConvCausalAttention"]
  # Axial layers are full attention under a static mask, which the cache
  # covers; the static masks are row then column.
  row, column = (
    module.static_mask
    for module in dalle.transformer.modules()
    if isinstance(module, dalle_pytorch.attention.Attention)
  )
  text = TINY.text_length + 1  # with <bos>
  # Image cell 5 is (row 1, column 1) of the 4 x 4 grid.
  query = text + 5
  assert row[query, text + 4] and not row[query, text + 1]
  assert column[query, text + 1] and not column[query, text + 4]


def test_torch_attention_types_follow_the_paper_layer_kinds():
  assert bench.torch_attention_types(6, "matched") == (
    "axial_row",
    "axial_col",
    "axial_row",
    "axial_row",
    "axial_row",
    "conv_like",
  )
  assert bench.torch_attention_types(2, "full") == ("full", "full")
  with pytest.raises(ValueError, match=r"torch_attention='sparse' is not"):
    bench.torch_attention_types(2, "sparse")


@pytest.mark.parametrize("filter_thres", [0.5, 0.75, 0.9, 0.99])
def test_equivalent_top_k_keeps_what_dalle_pytorch_keeps(
  dalle_pytorch, filter_thres
):
  text_vocab = TINY.text_vocab_size
  generator = torch.Generator().manual_seed(0)
  logits = torch.randn(
    1, text_vocab + TINY.image_vocab_size, generator=generator
  )
  # At an image position dalle-pytorch masks the text logits this way.
  logits[:, :text_vocab] = -torch.finfo(logits.dtype).max
  kept = dalle_pytorch.dalle_pytorch.top_k(logits, thres=filter_thres)
  kept_images = int(torch.isfinite(kept[0, text_vocab:]).sum())
  top_k = bench.equivalent_top_k(TINY, filter_thres)
  assert kept_images == (TINY.image_vocab_size if top_k is None else top_k)
  # The kept image logits are the largest ones, as in our top-k filter.
  image_logits = logits[0, text_vocab:].numpy()
  largest = np.sort(image_logits)[::-1][:kept_images]
  kept_values = kept[0, text_vocab:].numpy()
  np.testing.assert_array_equal(
    np.sort(kept_values[np.isfinite(kept_values)])[::-1], largest
  )


def test_equivalent_top_k_by_hand():
  assert bench.equivalent_top_k(TINY, 0.5) is None  # 40 >= K = 32
  assert bench.equivalent_top_k(TINY, 0.75) == 20  # 0.25 * (48 + 32)
  assert bench.equivalent_top_k(TINY, 1.0) == 1


def test_missing_dalle_pytorch_names_the_install_commands(monkeypatch):
  monkeypatch.setitem(sys.modules, "dalle_pytorch", None)  # blocks import
  with pytest.raises(ImportError, match="--no-deps dalle-pytorch==1.6.6"):
    bench.import_dalle_pytorch()


def test_dalle_pytorch_without_a_cache_is_rejected(monkeypatch):
  class NoCacheDALLE:
    def forward(self, text, image=None, return_loss=False):
      del text, image, return_loss

  old = types.SimpleNamespace(DALLE=NoCacheDALLE, __version__="0.9")
  monkeypatch.setitem(sys.modules, "dalle_pytorch", old)
  with pytest.raises(ImportError, match="0.9 has no KV cache"):
    bench.import_dalle_pytorch()


def test_stand_ins_refuse_a_vqgan_and_leave_no_trace(dalle_pytorch):
  if not isinstance(dalle_pytorch.vae.VQModel, type) or not issubclass(
    dalle_pytorch.vae.VQModel, bench._TamingUnavailable
  ):
    pytest.skip("a real taming-transformers is installed: no stand-in")
  with pytest.raises(ImportError, match="needs torchvision"):
    dalle_pytorch.vae.VQModel()
  # pytest's monkeypatch.syspath_prepend imports from any pkg_resources in
  # sys.modules, so a stand-in must not stay there.
  for name in ("taming", "taming.models", "taming.models.vqgan"):
    assert name not in sys.modules
  if "pkg_resources" in sys.modules:
    assert hasattr(sys.modules["pkg_resources"], "fixup_namespace_packages")


@pytest.mark.parametrize(
  "argv, length", [([], 32), (["--text_length", "16"], 16)]
)
def test_train_case_text_length_is_the_issues_unless_set(argv, length):
  config = bench.train_config(bench.parse_args(argv))
  assert config.text_length == length
  # The shipped BPE bound (256) plus one pad id per text position.
  assert config.text_vocab_size == 256 + length
  assert (config.num_layers, config.width, config.grid_side) == (6, 256, 8)
