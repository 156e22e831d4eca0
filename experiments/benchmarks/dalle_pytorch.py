"""Times our transformer against lucidrains' dalle-pytorch: train and sample.

Two cases, each run side by side in this process on the same configuration
(`TransformerConfig` is the one source; `torch_dalle` maps it onto
dalle-pytorch's `DALLE`):

- train: one AdamW step of the prior on precomputed image codes at the
  Shapes size (64 px -> 8x8 grid of 512 codes, 32 text tokens over a 256-id
  BPE vocabulary as in the issue, `--text_length 16` for the shipped
  config's, width 256 = 4 heads x 64, 6 layers, batch 16). Ours is a
  jitted step (loss, grads, `optax.adamw`) with the params and optimiser
  state donated; dalle-pytorch's is `loss = dalle(text, codes,
  return_loss=True)` (a [B, N] integer `image` is taken as codes, so its
  dVAE never runs), `backward()` and a fused `torch.optim.AdamW` step. Same
  AdamW settings on both sides, no clipping, weight decay on every tensor.
- sample: one image (batch 1) at width 256, 4 layers of 4 heads x 64, 256
  text tokens over a 16384-id BPE vocabulary, a 32x32 grid of 8192 codes
  (`--grid` shrinks it). Ours is `transformer.prefill` plus
  `sampling.sample_image_codes` in one jit; dalle-pytorch's is
  `generate_images(text, use_cache=True)` (its KV cache, off by default)
  with its default `filter_thres=0.5`, temperature 1. Its dVAE decode at
  the end is replaced by returning the codes, so only the transformer is
  timed. Ours uses the same rule: dalle-pytorch keeps the top half of the
  text + image logits, and since text logits are masked, that is top-k on
  the image logits with k = (V + K) // 2, i.e. no filter once k >= K
  (`equivalent_top_k`).

Each side gets one warm-up call (ours: compile; dalle-pytorch's sampling:
one forward pass over the text, not a whole image), then `--repeats` timed
calls, alternating ours and theirs so both see the same background load; the
medians and their ratio (theirs / ours) are printed with the parameter
counts, the JAX device and `torch.get_num_threads()`. The issue's targets
are a ratio >= 1.5 for train and >= 20 for sample. Weights are random.

The train case also prints the ceiling: our model's FLOPs per step
(`tasks.transformer.train_flops_per_example`, the same useful work for both
sides), each side's rate in GFLOP/s, the float32 matmul rate of this
machine measured in the same run, and the utilisation of that rate a step
1.5x faster than dalle-pytorch's would need. Measured (2026-12-04, 2-core
AMD EPYC with AVX2, jax 0.10.2, torch 2.13.0, `--case train --repeats 5`):
at text 32, 61.7 GFLOP per step, ours 1.42 s (43 GFLOP/s, 62% of the 70
GFLOP/s matmul rate measured in that run), dalle-pytorch 1.78 s (35, 50%):
1.25x, and 1.5x would need 75% of the matmul rate; at text 16, ours 1.01 s
(82% of 62 measured), dalle-pytorch 1.22 s: 1.21x, and 1.5x would need
102%, more than the machine's matmuls alone deliver. On a faster day of
the same machine kind (2026-12-06, `--case train --repeats 10`, text 32):
ours 0.597 s, dalle-pytorch 0.632 s: **1.06x**, with a matmul rate of 170
GFLOP/s (ours 61% of it, dalle-pytorch 58%); 1.5x would need 86%. The
ratio follows the machine: PyTorch's step gained 2.8x from the faster
day, ours 2.4x. Where our step's time goes, and what was tried against
it: `experiments/benchmarks/step_profile.py`.

What is matched, and what cannot be:
- Attention pattern (`--torch_attention matched`, the default): our layer
  kinds (`masks.layer_mask_kinds`: row, column, row, ..., conv last) become
  dalle-pytorch's `axial_row`, `axial_col`, ..., `conv_like`, the closest
  types it has. Its axial types run as full attention under a static mask
  (`optimize_for_inference=True`), the only form its KV cache covers; its
  `conv_like` has no cache, so in sampling that layer reruns over the whole
  sequence at every token (a limit of dalle-pytorch, not a choice here).
  `--torch_attention full` gives it plain causal attention in every layer
  instead: its fastest sampling (every layer cached), a different mask, and
  the fairest compute match for decoding, since our decode step attends
  densely over the cache in every layer. Masks differ in detail even when
  matched: its axial_row stops at the start of the row (ours sees the
  previous W + 1 tokens, as the paper), and its conv kernel is fixed at 5
  (so ours uses `conv_kernel=5` here).
- Extras switched off where dalle-pytorch has flags: `rotary_emb=False`
  (learned text positions and summed axial row + column image embeddings,
  like ours), `shift_tokens=False`, `stable=False`, `sandwich_norm=False`,
  `reversible=False`, no dropout, no shared layers, untied embeddings.
- Feed-forward: dalle-pytorch's is GEGLU with a fixed ff_mult of 4 (E -> 8E,
  gate, 4E -> E: 12 E^2 weights per block), so ours uses `mlp_ratio=6`
  (E -> 6E -> E, also 12 E^2 weights and matmul FLOPs) by default
  (`--mlp_ratio 4` is our shipped Shapes config).
- Cannot be switched off: LayerScale (one scale per channel per branch),
  the <bos> token and its position row, bias-free q/k/v projections (ours
  have biases), and one output layer over text + image vocabularies at
  every position, masked (ours: a text head on L - 1 positions and an image
  head on N). Parameter counts differ by (layers + 1) * width; see the
  printed counts.

Extra requirements (`requirements-bench.txt`); dalle-pytorch's own
dependencies cannot all be installed here (youtokentome needs Cython to
build, taming-transformers needs torchvision), so it is installed without
them, and `import_dalle_pytorch` puts stand-ins for the `taming` modules it
imports (and `pkg_resources`, gone from setuptools >= 81) in sys.modules
while importing it:

  uv pip install -r requirements-bench.txt  # + --find-links DIR of a CPU
  uv pip install --no-deps dalle-pytorch==1.6.6    # torch wheel, if any

Run from the repository root (a quiet machine; the full run takes about
ten minutes, most of it dalle-pytorch sampling a 1024-token image):

  python -m experiments.benchmarks.dalle_pytorch                  # both
  python -m experiments.benchmarks.dalle_pytorch --case train --repeats 10
  python -m experiments.benchmarks.dalle_pytorch --smoke --grid 4 \
      --repeats 1                                                 # smoke

Shape letters: B batch, L text length, V text vocabulary (BPE ids plus one
pad id per position), W grid side, N = W * W image tokens, K image
vocabulary, E width.
"""

import argparse
import contextlib
import dataclasses
import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import statistics
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from dalle_jax import sampling
from dalle_jax.configs import transformer as transformer_configs
from dalle_jax.models import transformer
from dalle_jax.models.masks import layer_mask_kinds
from dalle_jax.models.transformer import Transformer, TransformerConfig
from dalle_jax.tasks.transformer import (
  measure_matmul_tflops,
  model_config,
  train_flops_per_example,
)
from experiments.benchmarks.sampling import (
  prior_loss,
  random_inputs,
  random_params,
)

TORCH_ATTENTION = ("matched", "full")
# dalle-pytorch's names for our mask kinds (masks.MASK_KINDS).
TORCH_ATTENTION_TYPES = {
  "row": "axial_row",
  "column": "axial_col",
  "conv": "conv_like",
  "causal": "full",
}
# SparseConvCausalAttention's kernel; DALLE has no argument to change it.
TORCH_CONV_KERNEL = 5
# E -> 6E -> E has the weights and matmul FLOPs of dalle-pytorch's GEGLU
# with ff_mult 4 (E -> 8E, gate, 4E -> E).
GEGLU_MATCHING_MLP_RATIO = 6
# generate_images' default: keep the top half of the logits.
TORCH_FILTER_THRES = 0.5
# The Shapes config's AdamW (configs/transformer.py), on both sides.
ADAMW = dict(learning_rate=6e-4, b1=0.9, b2=0.96, eps=1e-8, weight_decay=4.5e-2)
TRAIN_TARGET, SAMPLE_TARGET = 1.5, 20.0
# The issue's train-case configuration ("text 32").
ISSUE_TEXT_LENGTH = 32
PAPER_BPE_VOCAB = 16384
INSTALL_COMMANDS = (
  "uv pip install -r requirements-bench.txt && "
  "uv pip install --no-deps dalle-pytorch==1.6.6"
)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--case", default="both", choices=["train", "sample", "both"]
  )
  parser.add_argument(
    "--repeats", type=int, default=3, help="timed calls per side"
  )
  parser.add_argument(
    "--grid", type=int, default=32, help="sampling grid side W"
  )
  parser.add_argument(
    "--torch_attention",
    default="matched",
    choices=TORCH_ATTENTION,
    help="dalle-pytorch's attn_types: ours mapped, or 'full' in every layer",
  )
  parser.add_argument(
    "--attention",
    default="block_sparse",
    choices=["block_sparse", "dense"],
    help="our full-sequence attention (train); decoding is always cached",
  )
  parser.add_argument("--mlp_ratio", type=int, default=GEGLU_MATCHING_MLP_RATIO)
  parser.add_argument(
    "--text_length",
    type=int,
    default=ISSUE_TEXT_LENGTH,
    help="train case's text tokens (the shipped Shapes config has 16)",
  )
  parser.add_argument(
    "--smoke",
    action="store_true",
    help="tiny widths, depths, texts and vocabularies: seconds, no timing",
  )
  return parser.parse_args(argv)


def train_config(args) -> TransformerConfig:
  """The Shapes size: our shipped shapes64 config at width 4 x 64."""
  run_config = transformer_configs.get_config("variant=shapes64")
  with run_config.unlocked():
    run_config.data.text_length = args.text_length
  config = model_config(run_config)
  config = dataclasses.replace(
    config,
    head_dim=64,
    mlp_ratio=args.mlp_ratio,
    conv_kernel=TORCH_CONV_KERNEL,
    attention=args.attention,
  )
  if args.smoke:
    config = dataclasses.replace(
      config,
      text_vocab_size=64 + 8,
      text_length=8,
      image_vocab_size=32,
      grid_side=4,
      num_layers=2,
      num_heads=2,
      head_dim=16,
      block_size=8,
    )
  return config


def sample_config(args) -> TransformerConfig:
  """Width 256, 4 layers of 4 x 64, text 256, W x W grid of 8192 codes."""
  config = TransformerConfig(
    text_vocab_size=PAPER_BPE_VOCAB + 256,
    text_length=256,
    image_vocab_size=8192,
    grid_side=args.grid,
    num_layers=4,
    num_heads=4,
    head_dim=64,
    mlp_ratio=args.mlp_ratio,
    conv_kernel=TORCH_CONV_KERNEL,
    attention=args.attention,
  )
  if args.smoke:
    config = dataclasses.replace(
      config,
      text_vocab_size=64 + 8,
      text_length=8,
      image_vocab_size=64,
      num_layers=2,
      num_heads=2,
      head_dim=16,
      block_size=8,
    )
  return config


class _TamingUnavailable:
  """Stands in for taming's VQGAN classes, which need torchvision."""

  def __init__(self, *args, **kwargs):
    del args, kwargs
    raise ImportError(
      "taming-transformers is stubbed out here (it needs torchvision), so"
      " dalle-pytorch's VQGanVAE cannot be built."
    )


def _distribution(name: str):
  """pkg_resources.get_distribution, as far as dalle-pytorch uses it."""
  return types.SimpleNamespace(version=importlib.metadata.version(name))


def _missing(name: str) -> bool:
  """Neither imported (stubs included) nor installed."""
  return name not in sys.modules and importlib.util.find_spec(name) is None


@contextlib.contextmanager
def _stand_ins():
  """Empty modules, during dalle_pytorch's import, for those it cannot get.

  Only for modules that are not installed: taming-transformers (needs
  torchvision) and pkg_resources (setuptools >= 81 dropped it; dalle_pytorch
  only reads `get_distribution(name).version`). They are removed again
  afterwards: dalle_pytorch keeps the names it imported, and a stub left in
  sys.modules would mislead others (pytest's `monkeypatch.syspath_prepend`
  imports from pkg_resources whenever it is there).
  """
  stubs = {}
  if _missing("taming"):
    for name in ("taming", "taming.models", "taming.models.vqgan"):
      stubs[name] = types.ModuleType(name)
    vqgan = stubs["taming.models.vqgan"]
    vqgan.VQModel = vqgan.GumbelVQ = _TamingUnavailable
  if _missing("pkg_resources"):
    stubs["pkg_resources"] = types.ModuleType("pkg_resources")
    stubs["pkg_resources"].get_distribution = _distribution
  sys.modules.update(stubs)
  try:
    yield
  finally:
    for name, stub in stubs.items():
      if sys.modules.get(name) is stub:
        del sys.modules[name]


def import_dalle_pytorch():
  """Imports dalle_pytorch, with `_stand_ins` for what it cannot get here.

  Returns:
    The dalle_pytorch module.

  Raises:
    ImportError: dalle-pytorch or one of its runtime dependencies is not
      installed (the message names the install commands), or the installed
      version has no KV cache.
  """
  try:
    with _stand_ins():
      dalle_pytorch = importlib.import_module("dalle_pytorch")
  except ImportError as error:
    raise ImportError(
      f"Cannot import dalle_pytorch ({error}). Install it with: "
      + INSTALL_COMMANDS
    ) from error
  if "cache" not in inspect.signature(dalle_pytorch.DALLE.forward).parameters:
    raise ImportError(
      f"dalle-pytorch {dalle_pytorch.__version__} has no KV cache"
      " (DALLE.forward takes no `cache`); install dalle-pytorch==1.6.6."
    )
  return dalle_pytorch


def torch_attention_types(num_layers: int, torch_attention: str):
  """dalle-pytorch's attn_types: our layer kinds mapped, or all 'full'."""
  if torch_attention not in TORCH_ATTENTION:
    raise ValueError(
      f"torch_attention={torch_attention!r} is not one of {TORCH_ATTENTION}."
    )
  if torch_attention == "full":
    return ("full",) * num_layers
  return tuple(TORCH_ATTENTION_TYPES[k] for k in layer_mask_kinds(num_layers))


def torch_dalle(config: TransformerConfig, torch_attention: str = "matched"):
  """dalle-pytorch's DALLE of the same sizes as `config`, float32, CPU.

  Its dVAE is a minimal DiscreteVAE with the same grid and codebook (DALLE
  reads W and K from it); it is frozen, never run here, and not counted.

  Args:
    config: our model's hyperparameters.
    torch_attention: 'matched' or 'full', see `torch_attention_types`.

  Returns:
    A `dalle_pytorch.DALLE` in train mode.
  """
  dalle_pytorch = import_dalle_pytorch()
  vae = dalle_pytorch.DiscreteVAE(
    image_size=2 * config.grid_side,  # one stride-2 layer -> W x W codes
    num_tokens=config.image_vocab_size,
    codebook_dim=8,
    num_layers=1,
    hidden_dim=8,
  )
  return dalle_pytorch.DALLE(
    dim=config.width,
    vae=vae,
    # DALLE adds one pad id per text position itself.
    num_text_tokens=config.text_vocab_size - config.text_length,
    text_seq_len=config.text_length,
    depth=config.num_layers,
    heads=config.num_heads,
    dim_head=config.head_dim,
    attn_types=torch_attention_types(config.num_layers, torch_attention),
    optimize_for_inference=True,
    rotary_emb=False,
    shift_tokens=False,
    stable=False,
    sandwich_norm=False,
    reversible=False,
    attn_dropout=0.0,
    ff_dropout=0.0,
    share_input_output_emb=False,
  )


def jax_parameter_count(config: TransformerConfig) -> int:
  """Number of trained scalars of our model (shapes only, no compute)."""
  text = jnp.zeros((1, config.text_length), jnp.int32)
  codes = jnp.zeros((1, config.num_image_tokens), jnp.int32)
  abstract = jax.eval_shape(
    Transformer(config).init, jax.random.key(0), text, codes
  )
  return sum(leaf.size for leaf in jax.tree.leaves(abstract["params"]))


def torch_parameter_count(dalle) -> int:
  """Number of trained scalars of a DALLE (the frozen dVAE excluded)."""
  return sum(p.numel() for p in dalle.parameters() if p.requires_grad)


def equivalent_top_k(config: TransformerConfig, filter_thres: float):
  """Our top_k for dalle-pytorch's `top_k(logits, thres=filter_thres)`.

  dalle-pytorch keeps the k = max(int((1 - thres) * (V + K)), 1) largest of
  the text + image logits; at an image position the text logits are masked
  to the most negative float, so that is top-k over the K image logits, or
  no filter once k >= K.

  Returns:
    k, or None for no top-k filter.
  """
  total = config.text_vocab_size + config.image_vocab_size
  k = max(int((1 - filter_thres) * total), 1)
  return None if k >= config.image_vocab_size else k


def jax_train_step(config: TransformerConfig, text, codes):
  """A no-argument call that runs one donated, jitted AdamW step.

  Args:
    config: our model's hyperparameters.
    text: [B, L] int32 text ids.
    codes: [B, N] int32 image codes.

  Returns:
    run(): one step on the same batch; returns its outputs, ready.
  """
  loss_fn = prior_loss(Transformer(config))
  optimizer = optax.adamw(**ADAMW)

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, text_tokens, image_codes):
    loss, grads = jax.value_and_grad(loss_fn)(params, text_tokens, image_codes)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  params = jax.tree.map(jnp.asarray, random_params(config))
  state = [params, jax.jit(optimizer.init)(params)]
  text, codes = jnp.asarray(text), jnp.asarray(codes)

  def run():
    state[0], state[1], loss = step(state[0], state[1], text, codes)
    return jax.block_until_ready((state[0], state[1], loss))

  return run


def torch_train_step(dalle, text, codes):
  """A no-argument call that runs one dalle-pytorch AdamW step."""
  parameters = [p for p in dalle.parameters() if p.requires_grad]
  optimizer = torch.optim.AdamW(
    parameters,
    lr=ADAMW["learning_rate"],
    betas=(ADAMW["b1"], ADAMW["b2"]),
    eps=ADAMW["eps"],
    weight_decay=ADAMW["weight_decay"],
    fused=True,  # one kernel over all tensors: its fastest CPU AdamW
  )
  text = torch.from_numpy(text.astype(np.int64))
  codes = torch.from_numpy(codes.astype(np.int64))
  dalle.train()

  def run():
    loss = dalle(text, codes, return_loss=True)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()

  return run


def jax_sampler(config: TransformerConfig, text):
  """A no-argument call that samples one image's codes, [1, N] int32."""
  top_k = equivalent_top_k(config, TORCH_FILTER_THRES)

  @jax.jit
  def sample(params, text_tokens, rngs):
    first_logits, cache = transformer.prefill(config, params, text_tokens)
    return sampling.sample_image_codes(
      functools.partial(transformer.decode_step, config, params),
      first_logits,
      cache,
      rngs,
      config.num_image_tokens,
      temperature=1.0,
      top_k=top_k,
    )

  params = jax.tree.map(jnp.asarray, random_params(config))
  text = jnp.asarray(text)
  rows = np.arange(len(text), dtype=np.int32)
  rngs = sampling.row_keys(0, rows, np.zeros_like(rows))
  return lambda: jax.block_until_ready(sample(params, text, rngs))


def torch_sampler(dalle, text):
  """(warm_up, run): run() samples one image's codes with the KV cache."""
  text = torch.from_numpy(text.astype(np.int64))
  # generate_images ends with vae.decode(codes); return the codes instead,
  # so only the transformer is timed.
  dalle.vae.decode = lambda image_codes: image_codes
  dalle.eval()

  def warm_up():
    with torch.no_grad():
      return dalle(text)

  def run():
    return dalle.generate_images(
      text,
      filter_thres=TORCH_FILTER_THRES,
      temperature=1.0,
      use_cache=True,
    )

  return warm_up, run


def interleaved_medians(ours, theirs, repeats: int):
  """Median seconds of ours() and theirs(), timed alternately.

  Returns:
    (ours median, theirs median).
  """
  times = ([], [])
  for _ in range(repeats):
    for fn, seconds in zip((ours, theirs), times, strict=True):
      start = time.perf_counter()
      fn()
      seconds.append(time.perf_counter() - start)
  return statistics.median(times[0]), statistics.median(times[1])


def timed_first_call(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def describe(config: TransformerConfig) -> str:
  return (
    f"L={config.text_length} V={config.text_vocab_size} W={config.grid_side}"
    f" K={config.image_vocab_size} layers={config.num_layers}"
    f" heads={config.num_heads}x{config.head_dim} mlp_ratio={config.mlp_ratio}"
  )


def report(case, config, dalle, torch_attention, seconds, target, extra):
  """Prints one case's attention, counts, median seconds and ratio.

  Args:
    case: the case's title.
    config: our model's hyperparameters.
    dalle: the dalle-pytorch model.
    torch_attention: how its attn_types were chosen.
    seconds: (ours, theirs) median seconds.
    target: the issue's minimum ratio.
    extra: more lines to print.
  """
  ours, theirs = seconds
  ratio = theirs / ours
  attn_types = torch_attention_types(config.num_layers, torch_attention)
  print(
    f"{case}: {describe(config)}\n"
    f"  dalle-pytorch attn_types {attn_types}\n"
    f"  params  ours {jax_parameter_count(config):,}"
    f"  dalle-pytorch {torch_parameter_count(dalle):,}\n"
    f"  seconds ours {ours:.4f}  dalle-pytorch {theirs:.4f}"
    f"  x {ratio:.2f} (target >= {target}){extra}",
    flush=True,
  )


def run_train(args, batch: int) -> None:
  config = train_config(args)
  dalle = torch_dalle(config, args.torch_attention)
  text, codes = random_inputs(config, batch)
  ours = jax_train_step(config, text, codes)
  theirs = torch_train_step(dalle, text, codes)
  compile_seconds = timed_first_call(ours)
  timed_first_call(theirs)
  seconds = interleaved_medians(ours, theirs, args.repeats)
  report(
    f"train (one step, batch {batch})",
    config,
    dalle,
    args.torch_attention,
    seconds,
    TRAIN_TARGET,
    f"\n  ours' first call (compile) {compile_seconds:.1f} s"
    + utilisation(config, batch, seconds),
  )


def utilisation(config: TransformerConfig, batch: int, seconds) -> str:
  """What the train target asks of this machine's matmul rate.

  Returns:
    Lines with our model's GFLOP per step, each side's GFLOP/s, the
    measured float32 matmul rate, and the share of it that a step
    TRAIN_TARGET times faster than dalle-pytorch's would need.
  """
  gflop = train_flops_per_example(config) * batch / 1e9
  peak = measure_matmul_tflops() * 1e3
  ours, theirs = seconds
  needed = gflop / (theirs / TRAIN_TARGET)
  return (
    f"\n  model {gflop:.1f} GFLOP per step; ours {gflop / ours:.1f} GFLOP/s"
    f" ({gflop / ours / peak:.0%} of the matmul rate), dalle-pytorch"
    f" {gflop / theirs:.1f} ({gflop / theirs / peak:.0%}); float32 matmul"
    f" {peak:.1f} GFLOP/s measured now; {TRAIN_TARGET}x would need"
    f" {needed:.1f} GFLOP/s ({needed / peak:.0%} of it)"
  )


def run_sample(args) -> None:
  config = sample_config(args)
  dalle = torch_dalle(config, args.torch_attention)
  text, _ = random_inputs(config, 1)
  ours = jax_sampler(config, text)
  warm_up, theirs = torch_sampler(dalle, text)
  compile_seconds = timed_first_call(ours)
  timed_first_call(warm_up)
  seconds = interleaved_medians(ours, theirs, args.repeats)
  tokens = config.num_image_tokens
  report(
    f"sample (one image, {tokens} tokens)",
    config,
    dalle,
    args.torch_attention,
    seconds,
    SAMPLE_TARGET,
    f"\n  per token ours {seconds[0] / tokens:.5f} s"
    f"  dalle-pytorch {seconds[1] / tokens:.5f} s;"
    f" top_k={equivalent_top_k(config, TORCH_FILTER_THRES)}"
    f"\n  ours' first call (compile) {compile_seconds:.1f} s",
  )


def main(argv=None):
  args = parse_args(argv)
  dalle_pytorch = import_dalle_pytorch()
  device = jax.devices()[0]
  print(
    f"jax {jax.__version__} on {device!r} ({jax.device_count()} device(s)"
    f" of {device.platform}); torch {torch.__version__} with"
    f" {torch.get_num_threads()} threads; dalle-pytorch"
    f" {dalle_pytorch.__version__}; our attention={args.attention};"
    f" repeats={args.repeats};"
    " medians, x = dalle-pytorch / ours",
    flush=True,
  )
  torch.manual_seed(0)
  if args.case in ("train", "both"):
    run_train(args, batch=2 if args.smoke else 16)
  if args.case in ("sample", "both"):
    run_sample(args)


if __name__ == "__main__":
  main()
