"""Imports released CLIP weights (Hugging Face or OpenAI layout) as params.

Two state-dict layouts are understood, both ViT CLIP only:
- Hugging Face `CLIPModel` (`model.safetensors`, `pytorch_model.bin`): keys
  like `vision_model.encoder.layers.0.self_attn.q_proj.weight`.
- OpenAI `clip/model.py` (and open_clip's OpenAI-style ViTs): keys like
  `visual.transformer.resblocks.0.attn.in_proj_weight` (q, k, v stacked).
  An OpenAI file is first renamed to the Hugging Face layout (q/k/v split,
  projections transposed), then converted like one.

Sizes come from the tensor shapes. Three things shapes cannot tell are
taken from an HF `config.json` when one is given (see `hf_config_overrides`)
and otherwise default to OpenAI's choices: heads = width / 64, QuickGELU,
and pooling the text at the largest token id. Any `CLIPConfig` field can be
overridden by keyword, e.g. `activation="gelu"` for open_clip models not
trained by OpenAI.

Files are read without unpickling code: safetensors, `.npz`, or
`torch.load(weights_only=True)` for a PyTorch state dict. OpenAI's released
`.pt` files are TorchScript archives, which `weights_only` refuses; they load
through `torch.jit.load` only with `allow_torchscript=True` (TorchScript is
interpreted, not unpickled Python, but it is still a program: trust the file).

Command line (writes `<out>/params` with orbax and `<out>/config.json`):
  python -m dalle_jax.clip_weights --checkpoint model.safetensors --out DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import re
import sys
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dalle_jax.models.clip import (
  CLIP,
  POOL_ARGMAX_ID,
  POOL_FIRST_EQUAL,
  CLIPConfig,
)

StateDict = Mapping[str, Any]
_SHOWN_KEYS = 8
# OpenAI's models use 64-wide heads (model.py: heads = width // 64).
_OPENAI_HEAD_DIM = 64
_HF_LAYER_KEY = re.compile(r"^(vision|text)_model\.encoder\.layers\.(\d+)\.")
# Buffers and metadata that are no parameters of ours.
_HF_IGNORED = re.compile(r"^(vision|text)_model\.embeddings\.position_ids$")
_OPENAI_IGNORED = ("input_resolution", "context_length", "vocab_size")
# HF CLIPTextConfig / CLIPVisionConfig defaults, used where config.json is
# silent (as transformers itself does).
_HF_DEFAULTS = {
  "text": {"num_attention_heads": 8, "eos_token_id": 49407},
  "vision": {"num_attention_heads": 12},
  "both": {"hidden_act": "quick_gelu", "layer_norm_eps": 1e-5},
}
# transformers (PR #24773): configs with eos_token_id == 2 pool at argmax.
_HF_LEGACY_EOS = 2
_CHECKPOINT_FILES = ("model.safetensors", "pytorch_model.bin")


# --------------------------------------------------------------------------
# Hugging Face layout.
# --------------------------------------------------------------------------


class _Reader:
  """Hands out state-dict tensors as float32 and remembers which were used."""

  def __init__(self, state_dict: StateDict):
    self.state_dict = state_dict
    self.used: set[str] = set()

  def take(self, key: str) -> np.ndarray:
    if key not in self.state_dict:
      stem = key.rsplit(".", 1)[0]
      near = sorted(k for k in self.state_dict if k.startswith(stem))
      raise ValueError(
        f"The CLIP state dict has no {key!r} (keys under {stem!r}: "
        f"{near[:_SHOWN_KEYS]}). It does not hold a complete ViT CLIP. (Names "
        "are Hugging Face's; OpenAI files are renamed to them first.)"
      )
    self.used.add(key)
    return np.asarray(self.state_dict[key], dtype=np.float32)

  def shape(self, key: str) -> tuple[int, ...]:
    if key not in self.state_dict:
      self.take(key)  # raises with the explanation
    return tuple(np.shape(self.state_dict[key]))


def _hf_layer_count(state_dict: StateDict, tower: str) -> int:
  indices = {
    int(match[2])
    for match in map(_HF_LAYER_KEY.match, state_dict)
    if match and match[1] == tower
  }
  if not indices or indices != set(range(len(indices))):
    raise ValueError(
      f"The Hugging Face CLIP state dict has {tower} layers "
      f"{sorted(indices)}; expected {tower}_model.encoder.layers.0 ... N-1."
    )
  return len(indices)


def _whole_ratio(hidden: int, width: int, tower: str) -> int:
  if hidden % width:
    raise ValueError(
      f"The {tower} MLP is {hidden} wide for width {width}, ratio "
      f"{hidden / width:g}; CLIPConfig.mlp_ratio supports whole ratios only."
    )
  return hidden // width


def infer_hf_config(state_dict: StateDict, **overrides) -> CLIPConfig:
  """Reads a `CLIPConfig` from the shapes of an HF `CLIPModel` state dict.

  Args:
    state_dict: HF `CLIPModel.state_dict()` (arrays or tensors).
    **overrides: `CLIPConfig` fields to set instead of the defaults for what
      shapes cannot tell (heads, activation, layer-norm eps, text pooling).

  Returns:
    The config.

  Raises:
    ValueError: if a shape is inconsistent with a ViT CLIP or an override
      names no `CLIPConfig` field.
  """
  reader = _Reader(state_dict)
  vision = "vision_model.embeddings."
  text = "text_model.embeddings."
  vision_width, _, patch_size, _ = reader.shape(
    vision + "patch_embedding.weight"
  )
  image_positions = reader.shape(vision + "position_embedding.weight")[0]
  grid_size = math.isqrt(image_positions - 1)
  if grid_size**2 + 1 != image_positions:
    raise ValueError(
      f"The image position table has {image_positions} rows; a ViT has "
      "G*G + 1 (class token plus a square patch grid)."
    )
  text_vocab_size, text_width = reader.shape(text + "token_embedding.weight")
  layer0 = "encoder.layers.0.mlp.fc1.weight"
  vision_ratio = _whole_ratio(
    reader.shape(f"vision_model.{layer0}")[0], vision_width, "vision"
  )
  text_ratio = _whole_ratio(
    reader.shape(f"text_model.{layer0}")[0], text_width, "text"
  )
  if vision_ratio != text_ratio:
    raise ValueError(
      f"The towers have MLP ratios {vision_ratio} (vision) and {text_ratio} "
      "(text); CLIPConfig.mlp_ratio is shared by both."
    )
  inferred = dict(
    image_size=grid_size * patch_size,
    patch_size=patch_size,
    vision_width=vision_width,
    vision_layers=_hf_layer_count(state_dict, "vision"),
    vision_heads=max(vision_width // _OPENAI_HEAD_DIM, 1),
    text_vocab_size=text_vocab_size,
    text_length=reader.shape(text + "position_embedding.weight")[0],
    text_width=text_width,
    text_layers=_hf_layer_count(state_dict, "text"),
    text_heads=max(text_width // _OPENAI_HEAD_DIM, 1),
    embed_dim=reader.shape("visual_projection.weight")[0],
    mlp_ratio=vision_ratio,
  )
  fields = {field.name for field in dataclasses.fields(CLIPConfig)}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(
      f"Unknown CLIPConfig field(s) {unknown}; the fields are {sorted(fields)}."
    )
  return CLIPConfig(**{**inferred, **overrides})


def _layer_norm(reader: _Reader, prefix: str) -> dict:
  return {
    "scale": reader.take(f"{prefix}.weight"),
    "bias": reader.take(f"{prefix}.bias"),
  }


def _dense(reader: _Reader, prefix: str) -> dict:
  # PyTorch Linear stores (out, in); flax Dense (in, out).
  return {
    "kernel": reader.take(f"{prefix}.weight").T,
    "bias": reader.take(f"{prefix}.bias"),
  }


def _attention(reader: _Reader, prefix: str, heads: int) -> dict:
  attention = {}
  for ours, theirs in (("query", "q"), ("key", "k"), ("value", "v")):
    weight = reader.take(f"{prefix}.{theirs}_proj.weight")
    width = weight.shape[1]
    attention[f"{ours}_kernel"] = weight.T.reshape(width, heads, -1)
    attention[f"{ours}_bias"] = reader.take(
      f"{prefix}.{theirs}_proj.bias"
    ).reshape(heads, -1)
  out = reader.take(f"{prefix}.out_proj.weight")
  attention["out_kernel"] = out.T.reshape(heads, -1, out.shape[0])
  attention["out_bias"] = reader.take(f"{prefix}.out_proj.bias")
  return attention


def _blocks(reader: _Reader, tower: str, layers: int, heads: int) -> dict:
  blocks = {}
  for index in range(layers):
    prefix = f"{tower}_model.encoder.layers.{index}"
    blocks[f"block_{index}"] = {
      "ln_1": _layer_norm(reader, f"{prefix}.layer_norm1"),
      "attn": _attention(reader, f"{prefix}.self_attn", heads),
      "ln_2": _layer_norm(reader, f"{prefix}.layer_norm2"),
      "fc1": _dense(reader, f"{prefix}.mlp.fc1"),
      "fc2": _dense(reader, f"{prefix}.mlp.fc2"),
    }
  return blocks


def _hf_params(reader: _Reader, config: CLIPConfig) -> dict:
  vision = "vision_model.embeddings."
  text = "text_model.embeddings."
  patch = reader.take(vision + "patch_embedding.weight")
  return {
    "vision": {
      # PyTorch OIHW -> flax HWIO.
      "patch_embedding": {"kernel": patch.transpose(2, 3, 1, 0)},
      "class_embedding": reader.take(vision + "class_embedding"),
      "position_embedding": reader.take(vision + "position_embedding.weight"),
      "ln_pre": _layer_norm(reader, "vision_model.pre_layrnorm"),
      **_blocks(reader, "vision", config.vision_layers, config.vision_heads),
      "ln_post": _layer_norm(reader, "vision_model.post_layernorm"),
      "projection": reader.take("visual_projection.weight").T,
    },
    "text": {
      "token_embedding": {
        "embedding": reader.take(text + "token_embedding.weight")
      },
      "position_embedding": reader.take(text + "position_embedding.weight"),
      **_blocks(reader, "text", config.text_layers, config.text_heads),
      "ln_final": _layer_norm(reader, "text_model.final_layer_norm"),
      "projection": reader.take("text_projection.weight").T,
    },
    "logit_scale": reader.take("logit_scale").reshape(()),
  }


def param_shapes(config: CLIPConfig) -> dict:
  """`CLIP(config)`'s `params` as `jax.ShapeDtypeStruct`s (nothing computed)."""
  images = jax.ShapeDtypeStruct(
    (1, config.image_size, config.image_size, 3), jnp.float32
  )
  tokens = jax.ShapeDtypeStruct((1, config.text_length), jnp.int32)
  variables = jax.eval_shape(
    CLIP(config).init, jax.random.key(0), images, tokens
  )
  return nn.unbox(variables)["params"]


def _check_shapes(params: dict, config: CLIPConfig) -> None:
  expected = {
    jax.tree_util.keystr(path): leaf.shape
    for path, leaf in jax.tree_util.tree_leaves_with_path(param_shapes(config))
  }
  got = {
    jax.tree_util.keystr(path): leaf.shape
    for path, leaf in jax.tree_util.tree_leaves_with_path(params)
  }
  for name in sorted(set(expected) | set(got)):
    if expected.get(name) != got.get(name):
      raise ValueError(
        f"Converted CLIP parameter {name} has shape {got.get(name)}; "
        f"{config} expects {expected.get(name)}. The state dict's tensors "
        "do not come from one consistent CLIP model."
      )


def clip_params_from_hf_state_dict(
  state_dict: StateDict, **overrides
) -> tuple[CLIPConfig, dict]:
  """Converts a Hugging Face `CLIPModel` state dict to `CLIP` params.

  Args:
    state_dict: `CLIPModel.state_dict()` as numpy arrays (anything
      `np.asarray` accepts); `*.position_ids` buffers are ignored.
    **overrides: `CLIPConfig` fields shapes cannot tell; pass
      `**hf_config_overrides(config_json)` for the checkpoint's own heads,
      activation, eps and pooling.

  Returns:
    `(config, params)`: params a nested dict of float32 numpy arrays, the
    `params` collection of `CLIP(config)` (unboxed).

  Raises:
    ValueError: on a missing, unexpected or inconsistently shaped tensor.
  """
  config = infer_hf_config(state_dict, **overrides)
  reader = _Reader(state_dict)
  params = _hf_params(reader, config)
  unexpected = sorted(
    key
    for key in state_dict
    if key not in reader.used and not _HF_IGNORED.match(key)
  )
  if unexpected:
    raise ValueError(
      f"The Hugging Face CLIP state dict has keys a ViT CLIPModel does not: "
      f"{unexpected[:_SHOWN_KEYS]} ({len(unexpected)} in all)."
    )
  _check_shapes(params, config)
  return config, params


def hf_config_overrides(hf_config: Mapping[str, Any]) -> dict[str, Any]:
  """`CLIPConfig` fields from an HF `CLIPModel` config (its `config.json`).

  Missing entries take transformers' defaults, as transformers does. Text
  pooling follows transformers 5: `eos_token_id == 2` (legacy configs) pools
  at the largest id, any other id at its first occurrence.

  Args:
    hf_config: the parsed `config.json` (or `CLIPModel.config.to_dict()`),
      with `text_config` / `vision_config` (or legacy `*_config_dict`).

  Returns:
    Keyword overrides for `clip_params_from_hf_state_dict`.

  Raises:
    ValueError: if the towers disagree on activation or eps (one value is
      shared here), or `eos_token_id` is a list.
  """
  towers = {}
  for tower in ("text", "vision"):
    towers[tower] = {
      **_HF_DEFAULTS["both"],
      **_HF_DEFAULTS[tower],
      **(hf_config.get(f"{tower}_config") or {}),
      **(hf_config.get(f"{tower}_config_dict") or {}),
    }
  for key in ("hidden_act", "layer_norm_eps"):
    values = (towers["text"][key], towers["vision"][key])
    if values[0] != values[1]:
      raise ValueError(
        f"The HF config's towers differ in {key}: text {values[0]!r}, vision "
        f"{values[1]!r}; CLIPConfig has one value for both."
      )
  eos = towers["text"]["eos_token_id"]
  if not isinstance(eos, int):
    raise ValueError(
      f"The HF config's text eos_token_id is {eos!r}; a single int id is "
      "needed to find where captions end."
    )
  overrides = dict(
    vision_heads=towers["vision"]["num_attention_heads"],
    text_heads=towers["text"]["num_attention_heads"],
    activation=towers["text"]["hidden_act"],
    layer_norm_eps=towers["text"]["layer_norm_eps"],
    eos_token=eos,
  )
  if eos == _HF_LEGACY_EOS:
    overrides.update(text_pooling=POOL_ARGMAX_ID, eos_token=49407)
  else:
    overrides.update(text_pooling=POOL_FIRST_EQUAL)
  return overrides


# --------------------------------------------------------------------------
# OpenAI layout: renamed to the Hugging Face one.
# --------------------------------------------------------------------------

_OPENAI_RENAMES = {
  "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
  "visual.class_embedding": "vision_model.embeddings.class_embedding",
  "visual.positional_embedding": (
    "vision_model.embeddings.position_embedding.weight"
  ),
  "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
  "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
  "visual.ln_post.weight": "vision_model.post_layernorm.weight",
  "visual.ln_post.bias": "vision_model.post_layernorm.bias",
  "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
  "positional_embedding": "text_model.embeddings.position_embedding.weight",
  "ln_final.weight": "text_model.final_layer_norm.weight",
  "ln_final.bias": "text_model.final_layer_norm.bias",
  "logit_scale": "logit_scale",
}
# OpenAI stores these two (in, out), as matrices applied by `x @ proj`.
_OPENAI_PROJECTIONS = {
  "visual.proj": "visual_projection.weight",
  "text_projection": "text_projection.weight",
}
_OPENAI_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")
_OPENAI_BLOCK_RENAMES = {
  "attn.out_proj.weight": "self_attn.out_proj.weight",
  "attn.out_proj.bias": "self_attn.out_proj.bias",
  "ln_1.weight": "layer_norm1.weight",
  "ln_1.bias": "layer_norm1.bias",
  "ln_2.weight": "layer_norm2.weight",
  "ln_2.bias": "layer_norm2.bias",
  "mlp.c_fc.weight": "mlp.fc1.weight",
  "mlp.c_fc.bias": "mlp.fc1.bias",
  "mlp.c_proj.weight": "mlp.fc2.weight",
  "mlp.c_proj.bias": "mlp.fc2.bias",
}


def _rename_openai_block_key(
  tower: str, index: str, rest: str, value
) -> dict[str, Any]:
  prefix = f"{tower}_model.encoder.layers.{index}."
  if rest in _OPENAI_BLOCK_RENAMES:
    return {prefix + _OPENAI_BLOCK_RENAMES[rest]: value}
  if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
    kind = rest.rsplit("_", 1)[1]
    # Rows are q, k, v stacked (torch.nn.MultiheadAttention).
    query, key, value_part = np.split(np.asarray(value), 3, axis=0)
    return {
      f"{prefix}self_attn.q_proj.{kind}": query,
      f"{prefix}self_attn.k_proj.{kind}": key,
      f"{prefix}self_attn.v_proj.{kind}": value_part,
    }
  return {}


def hf_state_dict_from_openai(state_dict: StateDict) -> dict[str, Any]:
  """Renames an OpenAI ViT CLIP state dict to the Hugging Face layout.

  Args:
    state_dict: OpenAI `CLIP.state_dict()` (keys as in `clip/model.py`).

  Returns:
    The same tensors under HF `CLIPModel` names: `in_proj_*` split into
    q/k/v, `visual.proj` and `text_projection` transposed.

  Raises:
    ValueError: on keys that an OpenAI ViT CLIP does not have.
  """
  renamed: dict[str, Any] = {}
  unknown = []
  for key, value in state_dict.items():
    block = _OPENAI_BLOCK.match(key)
    if key in _OPENAI_RENAMES:
      renamed[_OPENAI_RENAMES[key]] = value
    elif key in _OPENAI_PROJECTIONS:
      renamed[_OPENAI_PROJECTIONS[key]] = np.asarray(value).T
    elif block:
      tower = "vision" if block[1] else "text"
      parts = _rename_openai_block_key(tower, block[2], block[3], value)
      if not parts:
        unknown.append(key)
      renamed.update(parts)
    elif key not in _OPENAI_IGNORED:
      unknown.append(key)
  if unknown:
    raise ValueError(
      f"The OpenAI CLIP state dict has keys a ViT CLIP does not: "
      f"{sorted(unknown)[:_SHOWN_KEYS]} ({len(unknown)} in all)."
    )
  return renamed


def clip_params_from_openai_state_dict(
  state_dict: StateDict, **overrides
) -> tuple[CLIPConfig, dict]:
  """Converts an OpenAI ViT CLIP state dict to `CLIP` params.

  Args:
    state_dict: OpenAI `model.state_dict()` as numpy arrays; the JIT
      archives' `input_resolution`, `context_length`, `vocab_size` entries
      are ignored.
    **overrides: `CLIPConfig` fields; the defaults are OpenAI's (heads =
      width / 64, QuickGELU, pooling at the largest token id).

  Returns:
    `(config, params)` as `clip_params_from_hf_state_dict`.
  """
  return clip_params_from_hf_state_dict(
    hf_state_dict_from_openai(state_dict), **overrides
  )


# --------------------------------------------------------------------------
# Files.
# --------------------------------------------------------------------------


def _to_numpy(value) -> np.ndarray:
  import torch  # only for PyTorch files

  if isinstance(value, torch.Tensor):
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()  # torch hands no bfloat16 to numpy
    return value.numpy()
  return np.asarray(value)


def _as_float32(value: np.ndarray) -> np.ndarray:
  # Half-precision releases (float16; bfloat16, known to numpy through
  # ml_dtypes, which jax imports) become float32 like everything else.
  if value.dtype.kind == "f" or value.dtype.name == "bfloat16":
    return value.astype(np.float32)
  return value


def _load_safetensors(path: str) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file

  return {key: _as_float32(value) for key, value in load_file(path).items()}


def _is_torchscript(path: str) -> bool:
  if not zipfile.is_zipfile(path):
    return False
  with zipfile.ZipFile(path) as archive:
    return any(
      name.split("/", 1)[-1] == "constants.pkl" for name in archive.namelist()
    )


def _load_torch(path: str, allow_torchscript: bool) -> dict[str, np.ndarray]:
  import torch  # a test extra, not a runtime dependency

  if _is_torchscript(path):
    if not allow_torchscript:
      raise ValueError(
        f"{path} is a TorchScript archive (as OpenAI's released CLIP .pt "
        "files are), which torch.load(weights_only=True) refuses. If you "
        "trust the file, pass allow_torchscript=True (command line: "
        "--allow-torchscript) to read it with torch.jit.load."
      )
    module = torch.jit.load(path, map_location="cpu")
    return {k: _to_numpy(v) for k, v in module.state_dict().items()}
  try:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as error:  # torch raises UnpicklingError and others
    raise ValueError(
      f"{path} is not a plain PyTorch state dict: torch.load("
      f"weights_only=True) refused it ({type(error).__name__}: "
      f"{str(error)[:200]}). Save model.state_dict() instead of the model, "
      "or convert to .safetensors."
    ) from error
  if not isinstance(loaded, Mapping):
    raise ValueError(
      f"{path} holds a {type(loaded).__name__}, not a state dict (a dict "
      "of tensors)."
    )
  return {k: _to_numpy(v) for k, v in loaded.items()}


def load_state_dict(
  path: str, allow_torchscript: bool = False
) -> dict[str, np.ndarray]:
  """Reads a weights file into `{name: array}` without unpickling code.

  Args:
    path: `.safetensors`, `.npz`, or a PyTorch file (`.bin`, `.pt`,
      `.pth`): a state dict saved with `torch.save`, or with
      `allow_torchscript` a TorchScript archive.
    allow_torchscript: read TorchScript archives with `torch.jit.load`.

  Returns:
    The tensors as numpy arrays, floating point ones as float32.
  """
  if path.endswith(".safetensors"):
    return _load_safetensors(path)
  if path.endswith(".npz"):
    with np.load(path, allow_pickle=False) as archive:
      return {name: _as_float32(archive[name]) for name in archive.files}
  return _load_torch(path, allow_torchscript)


def detect_layout(state_dict: StateDict) -> str:
  """'hf' or 'openai', from the keys of a CLIP state dict.

  Raises:
    ValueError: for OpenAI's ResNet CLIPs (not supported) and for anything
      else, naming the first keys found.
  """
  keys = sorted(state_dict)
  if "visual.attnpool.c_proj.weight" in state_dict or any(
    key.startswith("visual.layer1.") for key in keys
  ):
    raise ValueError(
      "This is an OpenAI ResNet CLIP (keys visual.layer1..., "
      "visual.attnpool...); only ViT CLIPs are supported."
    )
  if "visual.class_embedding" in state_dict or "visual.proj" in state_dict:
    return "openai"
  if any(key.startswith(("vision_model.", "text_model.")) for key in keys):
    return "hf"
  raise ValueError(
    f"Not a CLIP state dict layout this importer knows: found {len(keys)} "
    f"keys, the first {keys[:_SHOWN_KEYS]}. Expected Hugging Face CLIPModel "
    "keys (vision_model..., text_model..., visual_projection.weight) or "
    "OpenAI ViT CLIP keys (visual.conv1.weight, visual.class_embedding, "
    "transformer.resblocks..., token_embedding.weight)."
  )


def _resolve_file(path: str) -> tuple[str, str | None]:
  """`(weights file, HF config.json or None)` for a file or a directory."""
  if os.path.isdir(path):
    for name in _CHECKPOINT_FILES:
      if os.path.isfile(os.path.join(path, name)):
        return _resolve_file(os.path.join(path, name))
    raise ValueError(
      f"Directory {path} has none of {_CHECKPOINT_FILES}; found "
      f"{sorted(os.listdir(path))[:_SHOWN_KEYS]}. Pass the weights file."
    )
  config_path = os.path.join(os.path.dirname(path), "config.json")
  return path, config_path if os.path.isfile(config_path) else None


def load_clip_checkpoint(
  path: str, *, allow_torchscript: bool = False, **overrides
) -> tuple[CLIPConfig, dict]:
  """Loads a released CLIP checkpoint, detecting its layout.

  For the Hugging Face layout, a `config.json` beside the file (an HF
  snapshot directory) supplies heads, activation, eps and pooling; explicit
  `overrides` win over it.

  Args:
    path: a weights file (see `load_state_dict`) or a directory holding
      `model.safetensors` or `pytorch_model.bin`.
    allow_torchscript: accept TorchScript archives (OpenAI's `.pt`).
    **overrides: `CLIPConfig` fields.

  Returns:
    `(config, params)` as `clip_params_from_hf_state_dict`.
  """
  weights_path, config_path = _resolve_file(path)
  state_dict = load_state_dict(weights_path, allow_torchscript)
  layout = detect_layout(state_dict)
  if layout == "openai":
    return clip_params_from_openai_state_dict(state_dict, **overrides)
  if config_path is not None:
    with open(config_path) as handle:
      hf_config = json.load(handle)
    if hf_config.get("model_type") == "clip":
      logging.info("Using heads/activation/pooling from %s", config_path)
      overrides = {**hf_config_overrides(hf_config), **overrides}
  return clip_params_from_hf_state_dict(state_dict, **overrides)


def save_clip(out_dir: str, config: CLIPConfig, params: dict) -> str:
  """Writes `<out_dir>/params` (orbax) and `<out_dir>/config.json`.

  `config.json` holds `{"task": "clip", "model": <CLIPConfig fields>}`, so
  `CLIPConfig(**json["model"])` rebuilds the config and
  `dalle_jax.checkpoint.load_params(out_dir)` the params.

  Returns:
    The path of the params checkpoint.
  """
  from dalle_jax import checkpoint  # orbax only when saving

  return checkpoint.export_model(
    out_dir, "clip", dataclasses.asdict(config), params
  )


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="python -m dalle_jax.clip_weights",
    description=(
      "Convert a Hugging Face or OpenAI ViT CLIP checkpoint to dalle_jax "
      "params (orbax) plus config.json."
    ),
  )
  parser.add_argument(
    "--checkpoint",
    required=True,
    help="model.safetensors, pytorch_model.bin, a .pt state dict, or an HF "
    "snapshot directory",
  )
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument(
    "--allow-torchscript",
    action="store_true",
    help="read TorchScript archives (OpenAI's released .pt) with "
    "torch.jit.load; only for files you trust",
  )
  return parser


def main(argv: Sequence[str] | None = None) -> None:
  """Runs the command line; see the module docstring."""
  args = _parser().parse_args(argv)
  config, params = load_clip_checkpoint(
    args.checkpoint, allow_torchscript=args.allow_torchscript
  )
  path = save_clip(args.out, config, params)
  print(f"wrote {path} and config.json: {config}")


if __name__ == "__main__":
  main(sys.argv[1:])
