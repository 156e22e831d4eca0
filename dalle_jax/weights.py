"""Converters from OpenAI's released weights to this package's param trees.

So far: the dVAE (`encoder.pkl` / `decoder.pkl` of openai/DALL-E).

SECURITY: the released `.pkl` files are whole pickled PyTorch modules.
Loading them runs `torch.load(..., weights_only=False)`, i.e. unpickling,
which can execute arbitrary code stored in the file: only load files you
trust. The safe path is a tensor-only file: a `.safetensors` file or a `.npz`
of the module's `state_dict()` (see `load_state_dict`). A plain state dict
saved with `torch.save(module.state_dict(), path)` is also accepted.

Command line (writes `<out>/params` with orbax and `<out>/config.json`):
  python -m dalle_jax.weights dvae --encoder encoder.pkl \
    --decoder decoder.pkl --out runs/dvae_openai

Official parameter names (PyTorch, OIHW kernels) map to ours (HWIO kernels):
  blocks.input.{w,b}                       -> input/{kernel,bias}
  blocks.group_G.block_K.id_path.{w,b}     -> group_G_block_K/id_path/...
  blocks.group_G.block_K.res_path.conv_N.* -> group_G_block_K/conv_N/...
  blocks.output.conv.{w,b}                 -> output/{kernel,bias}
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dalle_jax.models.dvae import DVAE, DVAEConfig

StateDict = Mapping[str, Any]
_GROUP_KEY = re.compile(r"^blocks\.group_(\d+)\.block_(\d+)\.")
_SHOWN_KEYS = 6
_WARNING = (
  "WARNING: .pkl/.pt files are unpickled with torch.load(weights_only="
  "False), which runs code stored in the file; only convert files you "
  "trust. .safetensors and .npz files hold tensors only and are safe."
)


def dvae_params_from_state_dicts(
  encoder_sd: StateDict, decoder_sd: StateDict, image_size: int = 256
) -> tuple[DVAEConfig, dict]:
  """Converts the official dVAE's state dicts to this package's params.

  The sizes (group_count, n_hid, n_blk_per_group, vocab_size, n_init,
  channels) are read from the tensors; the image size is not stored in the
  weights (the convolutions work at any multiple of 8), so it is an argument.

  Args:
    encoder_sd: `dall_e.Encoder.state_dict()` as numpy arrays (or anything
      `np.asarray` accepts), keys like `blocks.input.w`.
    decoder_sd: `dall_e.Decoder.state_dict()`, same form.
    image_size: the `DVAEConfig.image_size` to return.

  Returns:
    `(config, params)`: `params` is the `params` collection
    (`{'encoder': ..., 'decoder': ...}`) of float32 numpy arrays, to be used
    as `DVAE(config).apply({'params': params}, ...)`.

  Raises:
    ValueError: if a dict is not a dVAE encoder/decoder state dict (says
      which keys were found), or a key is missing, unexpected or has the
      wrong shape.
  """
  config = infer_dvae_config(encoder_sd, decoder_sd, image_size)
  shapes = _param_shapes(config)
  params = {
    "encoder": _convert_tree(encoder_sd, shapes["encoder"], "encoder"),
    "decoder": _convert_tree(decoder_sd, shapes["decoder"], "decoder"),
  }
  return config, params


def infer_dvae_config(
  encoder_sd: StateDict, decoder_sd: StateDict, image_size: int = 256
) -> DVAEConfig:
  """Reads the dVAE sizes from the official state dicts.

  Args:
    encoder_sd: the encoder's state dict (see `dvae_params_from_state_dicts`).
    decoder_sd: the decoder's state dict.
    image_size: the `DVAEConfig.image_size` to return.

  Returns:
    The matching `DVAEConfig` (dtype float32).

  Raises:
    ValueError: if either dict is not what it should be, or they disagree.
  """
  encoder_input = _tensor(encoder_sd, "blocks.input.w", "encoder")
  encoder_output = _tensor(encoder_sd, "blocks.output.conv.w", "encoder")
  decoder_input = _tensor(decoder_sd, "blocks.input.w", "decoder")
  decoder_output = _tensor(decoder_sd, "blocks.output.conv.w", "decoder")
  if encoder_input.shape[2:] != (7, 7) or decoder_input.shape[2:] != (1, 1):
    raise ValueError(
      "The encoder's blocks.input.w should be a 7x7 conv and the decoder's "
      f"a 1x1 conv; found shapes {encoder_input.shape} (encoder) and "
      f"{decoder_input.shape} (decoder). Were encoder and decoder swapped?"
    )
  group_count, n_blk_per_group = _count_groups(encoder_sd, "encoder")
  vocab_size = encoder_output.shape[0]
  if decoder_input.shape[1] != vocab_size:
    raise ValueError(
      f"The encoder has {vocab_size} codes (blocks.output.conv.w "
      f"{encoder_output.shape}) but the decoder expects "
      f"{decoder_input.shape[1]} (blocks.input.w {decoder_input.shape}); "
      "pass an encoder and a decoder from the same model."
    )
  return DVAEConfig(
    image_size=image_size,
    group_count=group_count,
    n_hid=encoder_input.shape[0],
    n_blk_per_group=n_blk_per_group,
    vocab_size=vocab_size,
    n_init=decoder_input.shape[0],
    input_channels=encoder_input.shape[1],
    output_channels=decoder_output.shape[0],
  )


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a dVAE encoder or decoder file into a dict of numpy arrays.

  By suffix: `.safetensors` and `.npz` hold tensors only (safe). Anything
  else goes through `torch.load(weights_only=False)`: a pickled
  `dall_e.Encoder` / `dall_e.Decoder` module (as released by OpenAI; needs
  the `dall_e` package importable) or a pickled state dict. WARNING:
  unpickling executes code stored in the file; only load trusted files.

  Args:
    path: the file.

  Returns:
    `{parameter name: float32 array}`, names as in the official module.

  Raises:
    ValueError: if the file holds neither a module nor a dict, or a pickled
      class cannot be imported.
  """
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file  # optional

    return dict(load_file(path))
  if path.endswith(".npz"):
    with np.load(path, allow_pickle=False) as archive:
      return {name: archive[name] for name in archive.files}
  return _load_torch_file(path)


def load_openai_dvae(
  encoder_path: str, decoder_path: str, image_size: int = 256
) -> tuple[DVAEConfig, dict]:
  """Loads and converts OpenAI's dVAE files (see `load_state_dict`).

  WARNING: `.pkl` / `.pt` files are unpickled, which runs code stored in
  them; only load trusted files, or convert them once to `.safetensors`.

  Args:
    encoder_path: `encoder.pkl`, or a state dict / safetensors / npz file.
    decoder_path: `decoder.pkl`, same forms.
    image_size: the `DVAEConfig.image_size` to return.

  Returns:
    `(config, params)` as `dvae_params_from_state_dicts`.
  """
  return dvae_params_from_state_dicts(
    load_state_dict(encoder_path), load_state_dict(decoder_path), image_size
  )


def _load_torch_file(path: str) -> dict[str, np.ndarray]:
  """`torch.load` a pickled module or state dict; returns numpy arrays."""
  import torch  # a test extra, not a runtime dependency

  try:
    loaded = torch.load(path, map_location="cpu", weights_only=False)
  except ModuleNotFoundError as error:
    raise ValueError(
      f"{path} is a pickle that needs the module {error.name!r} to load. "
      "OpenAI's encoder.pkl/decoder.pkl need the dall_e package: "
      "pip install --no-deps DALL-E (plus attrs, requests), or convert the "
      "file to a state dict or .safetensors where dall_e is installed."
    ) from error
  if isinstance(loaded, torch.nn.Module):
    loaded = loaded.state_dict()
  if not isinstance(loaded, Mapping):
    raise ValueError(
      f"{path} holds a {type(loaded).__module__}.{type(loaded).__name__}; "
      "expected a pickled dall_e Encoder/Decoder module or a state dict "
      "(a dict of tensors with keys like 'blocks.input.w')."
    )
  return {
    name: value.detach().cpu().numpy()
    if isinstance(value, torch.Tensor)
    else value
    for name, value in loaded.items()
  }


def _tensor(state_dict: StateDict, key: str, which: str) -> np.ndarray:
  """`state_dict[key]` as a float32 array, or an error showing what is there."""
  if not isinstance(state_dict, Mapping) or key not in state_dict:
    found = (
      sorted(state_dict)[:_SHOWN_KEYS]
      if isinstance(state_dict, Mapping)
      else type(state_dict).__name__
    )
    raise ValueError(
      f"The {which} state dict has no {key!r}; found {found} (first "
      f"{_SHOWN_KEYS} keys). Expected the state dict of the official "
      f"dall_e {which.capitalize()} (keys like 'blocks.input.w', "
      "'blocks.group_1.block_1.res_path.conv_1.w')."
    )
  return np.asarray(state_dict[key], dtype=np.float32)


def _count_groups(state_dict: StateDict, which: str) -> tuple[int, int]:
  """`(group_count, n_blk_per_group)` from the `blocks.group_G.block_K` keys."""
  blocks = {
    (int(match[1]), int(match[2]))
    for match in map(_GROUP_KEY.match, state_dict)
    if match
  }
  groups = sorted({group for group, _ in blocks})
  if not groups or groups != list(range(1, len(groups) + 1)):
    raise ValueError(
      f"The {which} state dict has residual groups {groups}; expected "
      "blocks.group_1 ... blocks.group_G keys as in the official dall_e "
      f"{which.capitalize()}."
    )
  per_group = {
    group: sorted(block for g, block in blocks if g == group)
    for group in groups
  }
  counts = {len(numbers) for numbers in per_group.values()}
  if len(counts) != 1:
    raise ValueError(
      f"The {which} state dict's groups have different block counts "
      f"{per_group}; expected the same n_blk_per_group in every group."
    )
  return len(groups), counts.pop()


def _param_shapes(config: DVAEConfig) -> dict:
  """Shapes of the `params` collection of `DVAE(config)`, without computing.

  Traced on the smallest image the model takes and with direct convs: the
  parameters do not depend on either, and at 256 px the Winograd layers
  alone took 8 s of tracing (paper-size model, 2-core CPU).
  """
  smallest = 2 ** (config.group_count - 1)
  traced = dataclasses.replace(
    config, image_size=smallest, conv_algorithm="direct"
  )
  rng = jax.random.key(0)
  images = jax.ShapeDtypeStruct(
    (1, smallest, smallest, config.input_channels), jnp.uint8
  )
  variables = jax.eval_shape(DVAE(traced).init, rng, images, rng, 1.0)
  return nn.unbox(variables)["params"]


def _official_key(path: Sequence[str]) -> str:
  """`('group_1_block_2', 'conv_3', 'kernel')` -> official state-dict key."""
  *modules, leaf = path
  suffix = {"kernel": "w", "bias": "b"}[leaf]
  if modules == ["input"]:
    return f"blocks.input.{suffix}"
  if modules == ["output"]:
    return f"blocks.output.conv.{suffix}"
  block, layer = modules
  group_name, block_name = block.rsplit("_block_", 1)
  prefix = f"blocks.{group_name}.block_{block_name}"
  if layer == "id_path":
    return f"{prefix}.id_path.{suffix}"
  return f"{prefix}.res_path.{layer}.{suffix}"


def _convert_tree(state_dict: StateDict, shapes: dict, which: str) -> dict:
  """Fills a nested dict of `ShapeDtypeStruct` from an official state dict."""
  flat_shapes = {
    tuple(key.key for key in path): leaf
    for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]
  }
  wanted = {_official_key(path): path for path in flat_shapes}
  unexpected = sorted(set(state_dict) - set(wanted))
  if unexpected:
    raise ValueError(
      f"The {which} state dict has keys this model does not use: "
      f"{unexpected[:_SHOWN_KEYS]}; expected exactly the official dall_e "
      f"{which.capitalize()}'s parameters ({len(wanted)} tensors)."
    )
  converted: dict = {}
  for key, path in wanted.items():
    value = _tensor(state_dict, key, which)
    if value.ndim == 4:  # PyTorch OIHW -> flax HWIO.
      value = value.transpose(2, 3, 1, 0)
    expected = flat_shapes[path].shape
    if value.shape != expected:
      raise ValueError(
        f"The {which} tensor {key!r} has shape {value.shape} after "
        f"conversion to HWIO; this model expects {expected}. The state "
        "dict does not come from one consistent dall_e model."
      )
    node = converted
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = np.ascontiguousarray(value)
  return converted


def save_dvae(out_dir: str, config: DVAEConfig, params: dict) -> str:
  """Writes `<out_dir>/params` (orbax) and `<out_dir>/config.json`.

  `config.json` holds `{"task": "dvae", "model": <DVAEConfig fields>}`, so
  `DVAEConfig(**json["model"])` rebuilds the config and
  `dalle_jax.checkpoint.load_params(out_dir)` the params.

  Args:
    out_dir: directory to create or overwrite.
    config: the model's hyperparameters.
    params: the `params` collection.

  Returns:
    The path of the params checkpoint.
  """
  from dalle_jax import checkpoint  # orbax only when saving

  return checkpoint.export_model(
    out_dir, "dvae", dataclasses.asdict(config), params
  )


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="python -m dalle_jax.weights",
    description=(
      f"Convert released OpenAI weights to dalle_jax params. {_WARNING}"
    ),
  )
  commands = parser.add_subparsers(dest="command", required=True)
  dvae = commands.add_parser(
    "dvae",
    help="OpenAI's dVAE encoder.pkl/decoder.pkl -> orbax params.",
    description=f"Convert OpenAI's dVAE. {_WARNING}",
  )
  dvae.add_argument("--encoder", required=True, help="encoder.pkl or similar")
  dvae.add_argument("--decoder", required=True, help="decoder.pkl or similar")
  dvae.add_argument("--out", required=True, help="output directory")
  dvae.add_argument(
    "--image-size", type=int, default=256, help="DVAEConfig.image_size"
  )
  return parser


def main(argv: Sequence[str] | None = None) -> None:
  """Runs the command line; see the module docstring."""
  args = _parser().parse_args(argv)
  config, params = load_openai_dvae(args.encoder, args.decoder, args.image_size)
  path = save_dvae(args.out, config, params)
  print(f"wrote {path} and config.json: {config}")


if __name__ == "__main__":
  main(sys.argv[1:])
