"""Parity of our CLIP with Hugging Face transformers' CLIPModel, importers.

The reference is transformers' PyTorch `CLIPModel` with a small random
config and every weight (biases and LayerNorm parameters included) drawn at
random, so a transposed or mismatched tensor cannot hide behind zeros/ones.
Closeness is measured as max |ours - reference| / max |reference|.
"""

import dataclasses
import functools
import json
import os

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity needs PyTorch")
transformers = pytest.importorskip(
  "transformers", reason="parity needs Hugging Face transformers"
)

from dalle_jax import checkpoint, clip_weights  # noqa: E402
from dalle_jax.models import clip  # noqa: E402

EOS = 7  # neither the largest id nor transformers' legacy 2
VOCAB = 100
TEXT_LENGTH = 16
TOLERANCE = 1e-4


def _hf_config(eos_token_id=EOS):
  return transformers.CLIPConfig(
    text_config=dict(
      vocab_size=VOCAB,
      hidden_size=64,
      intermediate_size=256,
      num_hidden_layers=2,
      num_attention_heads=4,
      max_position_embeddings=TEXT_LENGTH,
      hidden_act="quick_gelu",
      eos_token_id=eos_token_id,
      bos_token_id=0,
      pad_token_id=1,
    ),
    vision_config=dict(
      image_size=32,
      patch_size=8,
      hidden_size=64,
      intermediate_size=256,
      num_hidden_layers=2,
      num_attention_heads=4,
      hidden_act="quick_gelu",
    ),
    projection_dim=32,
  )


@pytest.fixture(scope="module")
def hf_model():
  torch.manual_seed(0)
  model = transformers.CLIPModel(_hf_config()).eval()
  with torch.no_grad():
    for parameter in model.parameters():
      parameter.copy_(torch.randn_like(parameter) * 0.2)
    model.logit_scale.fill_(1.7)
  return model


@pytest.fixture(scope="module")
def hf_state_dict(hf_model):
  return {k: v.numpy().copy() for k, v in hf_model.state_dict().items()}


@pytest.fixture(scope="module")
def converted(hf_model, hf_state_dict):
  overrides = clip_weights.hf_config_overrides(hf_model.config.to_dict())
  return clip_weights.clip_params_from_hf_state_dict(hf_state_dict, **overrides)


def _inputs():
  rng = np.random.default_rng(0)
  images = rng.normal(size=(4, 32, 32, 3)).astype(np.float32)
  tokens = rng.integers(0, VOCAB, (4, TEXT_LENGTH))
  tokens[tokens == EOS] = EOS + 1
  tokens[0, 0] = EOS  # first position
  tokens[1, [5, 9]] = EOS  # twice: the first one ends the caption
  tokens[2, -1] = EOS  # last position
  # Row 3 has no EOS: transformers then pools at position 0.
  return images, tokens.astype(np.int32)


def _hf_outputs(model, images, tokens):
  with torch.no_grad():
    out = model(
      input_ids=torch.from_numpy(tokens.astype(np.int64)),
      pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
    )
  return {
    "image": out.image_embeds.numpy(),
    "text": out.text_embeds.numpy(),
    "logits_per_image": out.logits_per_image.numpy(),
    "logits_per_text": out.logits_per_text.numpy(),
  }


def _embed_all(model, images, tokens):
  logits_per_image, logits_per_text = model(images, tokens)
  return {
    "image": model.embed_image(images),
    "text": model.embed_text(tokens),
    "logits_per_image": logits_per_image,
    "logits_per_text": logits_per_text,
  }


@functools.cache
def _compiled(config):
  """One jitted forward per config: compiling dominates these tests."""
  return jax.jit(
    lambda params, images, tokens: clip.CLIP(config).apply(
      {"params": params}, images, tokens, method=_embed_all
    )
  )


def _ours(config, params, images, tokens):
  return _compiled(config)(params, images, tokens)


def _relative_error(ours, reference):
  ours, reference = np.asarray(ours), np.asarray(reference)
  assert ours.shape == reference.shape
  return float(np.abs(ours - reference).max() / np.abs(reference).max())


def _assert_matches(ours, reference):
  for name in reference:
    error = _relative_error(ours[name], reference[name])
    assert error < TOLERANCE, f"{name}: relative error {error:.2e}"


def test_hf_parity(hf_model, converted):
  config, params = converted
  assert config.vision_heads == 4 and config.text_heads == 4
  assert config.text_pooling == clip.POOL_FIRST_EQUAL
  assert config.eos_token == EOS
  images, tokens = _inputs()
  reference = _hf_outputs(hf_model, images, tokens)
  _assert_matches(_ours(config, params, images, tokens), reference)
  # Negative control: pooling elsewhere is far outside the tolerance, so
  # the match above does depend on the pooled position.
  # (The same config as the legacy test's, so it compiles once.)
  by_largest = dataclasses.replace(
    config, text_pooling=clip.POOL_ARGMAX_ID, eos_token=49407
  )
  wrong = _ours(by_largest, params, images, tokens)
  assert _relative_error(wrong["text"], reference["text"]) > 100 * TOLERANCE


def test_hf_legacy_eos_pools_at_the_largest_id(hf_model, hf_state_dict):
  legacy = transformers.CLIPModel(_hf_config(eos_token_id=2)).eval()
  legacy.load_state_dict(hf_model.state_dict())
  overrides = clip_weights.hf_config_overrides(legacy.config.to_dict())
  assert overrides["text_pooling"] == clip.POOL_ARGMAX_ID
  assert overrides["eos_token"] == 49407
  config, params = clip_weights.clip_params_from_hf_state_dict(
    hf_state_dict, **overrides
  )
  images, tokens = _inputs()
  _assert_matches(
    _ours(config, params, images, tokens),
    _hf_outputs(legacy, images, tokens),
  )


def _openai_state_dict(hf_sd):
  """HF CLIPModel tensors under OpenAI `clip/model.py` names."""
  sd = {
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
  sd = {openai: hf_sd[hf] for openai, hf in sd.items()}
  sd["visual.proj"] = hf_sd["visual_projection.weight"].T
  sd["text_projection"] = hf_sd["text_projection.weight"].T
  block_names = {
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
  }
  for openai_tower, hf_tower in (("visual.", "vision"), ("", "text")):
    for index in range(2):
      openai = f"{openai_tower}transformer.resblocks.{index}."
      hf = f"{hf_tower}_model.encoder.layers.{index}."
      for openai_name, hf_name in block_names.items():
        sd[openai + openai_name] = hf_sd[hf + hf_name]
      for kind in ("weight", "bias"):
        sd[f"{openai}attn.in_proj_{kind}"] = np.concatenate(
          [hf_sd[f"{hf}self_attn.{p}_proj.{kind}"] for p in "qkv"]
        )
  return sd


def _assert_same_params(got, expected):
  assert jax.tree.structure(got) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
    np.testing.assert_array_equal(a, b)


def test_openai_layout_parity(hf_model, hf_state_dict, converted):
  openai_sd = _openai_state_dict(hf_state_dict)
  config, params = clip_weights.clip_params_from_openai_state_dict(
    openai_sd,
    vision_heads=4,
    text_heads=4,
    text_pooling=clip.POOL_FIRST_EQUAL,
    eos_token=EOS,
  )
  assert config == converted[0]
  _assert_same_params(params, converted[1])
  images, tokens = _inputs()
  _assert_matches(
    _ours(config, params, images, tokens),
    _hf_outputs(hf_model, images, tokens),
  )


def test_openai_defaults_inferred_from_shapes(hf_state_dict):
  config, _ = clip_weights.clip_params_from_openai_state_dict(
    _openai_state_dict(hf_state_dict)
  )
  assert config == clip.CLIPConfig(
    image_size=32,
    patch_size=8,
    vision_width=64,
    vision_layers=2,
    vision_heads=1,  # OpenAI's width / 64
    text_vocab_size=VOCAB,
    text_length=TEXT_LENGTH,
    text_width=64,
    text_layers=2,
    text_heads=1,
    embed_dim=32,
    mlp_ratio=4,
    activation="quick_gelu",
    layer_norm_eps=1e-5,
    text_pooling=clip.POOL_ARGMAX_ID,
  )


def test_load_hf_snapshot_directory(
  tmp_path, hf_model, hf_state_dict, converted
):
  from safetensors.numpy import save_file

  with_buffers = dict(hf_state_dict)
  for tower, rows in (("vision", 17), ("text", TEXT_LENGTH)):
    key = f"{tower}_model.embeddings.position_ids"
    with_buffers[key] = np.arange(rows)[None]
  save_file(with_buffers, str(tmp_path / "model.safetensors"))
  hf_model.config.to_json_file(str(tmp_path / "config.json"))
  config, params = clip_weights.load_clip_checkpoint(str(tmp_path))
  assert config == converted[0]
  _assert_same_params(params, converted[1])


def test_load_openai_torch_state_dict(tmp_path, hf_state_dict, converted):
  openai_sd = {
    k: torch.from_numpy(v).half()
    for k, v in _openai_state_dict(hf_state_dict).items()
  }
  # OpenAI's archives also carry these (dropped by clip.model.build_model).
  openai_sd["input_resolution"] = torch.tensor(32)
  openai_sd["context_length"] = torch.tensor(TEXT_LENGTH)
  openai_sd["vocab_size"] = torch.tensor(VOCAB)
  path = str(tmp_path / "ViT-tiny.pt")
  torch.save(openai_sd, path)
  config, params = clip_weights.load_clip_checkpoint(
    path, vision_heads=4, text_heads=4
  )
  assert config.vision_heads == 4
  half = jax.tree.map(
    lambda x: x.astype(np.float16).astype(np.float32), converted[1]
  )
  _assert_same_params(params, half)


def test_bfloat16_safetensors_are_read_as_float32(tmp_path):
  from safetensors.torch import save_file

  value = torch.tensor([1.0, 2.5, -3.0], dtype=torch.bfloat16)
  path = str(tmp_path / "weights.safetensors")
  save_file({"w": value}, path)
  loaded = clip_weights.load_state_dict(path)
  assert loaded["w"].dtype == np.float32
  np.testing.assert_array_equal(loaded["w"], [1.0, 2.5, -3.0])


def test_command_line_writes_params_and_config(tmp_path, hf_state_dict):
  from safetensors.numpy import save_file

  weights = str(tmp_path / "openai.safetensors")
  save_file(_openai_state_dict(hf_state_dict), weights)
  out = str(tmp_path / "out")
  clip_weights.main(["--checkpoint", weights, "--out", out])
  with open(os.path.join(out, "config.json")) as handle:
    saved = json.load(handle)
  assert saved["task"] == "clip"
  expected_config, expected_params = clip_weights.load_clip_checkpoint(weights)
  assert clip.CLIPConfig(**saved["model"]) == expected_config
  _assert_same_params(checkpoint.load_params(out), expected_params)


class _Opaque:
  """A class that weights_only unpickling must refuse."""


@pytest.mark.parametrize(
  "payload, message",
  [
    ({"w": _Opaque()}, "not a plain PyTorch state dict"),
    ([1, 2], "holds a list, not a state dict"),
  ],
)
def test_torch_files_that_are_not_state_dicts(tmp_path, payload, message):
  path = str(tmp_path / "bad.pt")
  torch.save(payload, path)
  with pytest.raises(ValueError, match=message):
    clip_weights.load_clip_checkpoint(path)


def test_torchscript_archives_need_consent(tmp_path):
  path = str(tmp_path / "scripted.pt")
  torch.jit.script(torch.nn.Linear(2, 2)).save(path)
  with pytest.raises(ValueError, match="TorchScript archive.*allow_torch"):
    clip_weights.load_clip_checkpoint(path)
  # With consent it is read, and turns out to be no CLIP.
  with pytest.raises(ValueError, match=r"found 2 keys.*\['bias', 'weight'\]"):
    clip_weights.load_clip_checkpoint(path, allow_torchscript=True)


def test_directory_without_weights(tmp_path):
  (tmp_path / "notes.txt").write_text("x")
  with pytest.raises(ValueError, match=r"has none of.*\['notes.txt'\]"):
    clip_weights.load_clip_checkpoint(str(tmp_path))


@pytest.mark.parametrize(
  "keys, message",
  [
    (["encoder.conv.w", "decoder.conv.w"], r"found 2 keys.*'decoder.conv.w'"),
    (["visual.layer1.0.conv1.weight", "visual.conv1.weight"], "ResNet CLIP"),
  ],
)
def test_unknown_layouts_are_named(keys, message):
  with pytest.raises(ValueError, match=message):
    clip_weights.detect_layout({key: np.zeros(1) for key in keys})


def _edited(sd, drop=(), replace=None):
  edited = {k: v for k, v in sd.items() if k not in drop}
  edited.update(replace or {})
  return edited


def _moved_layer(sd, tower, old, new):
  prefix = f"{tower}_model.encoder.layers."
  return {
    k.replace(f"{prefix}{old}.", f"{prefix}{new}."): v for k, v in sd.items()
  }


@pytest.mark.parametrize(
  "edit, message",
  [
    (
      lambda sd: _edited(sd, drop=["text_model.final_layer_norm.bias"]),
      "has no 'text_model.final_layer_norm.bias'",
    ),
    (
      lambda sd: _edited(sd, replace={"text_model.extra": np.zeros(2)}),
      r"keys a ViT CLIPModel does not: \['text_model.extra'\]",
    ),
    (
      lambda sd: _edited(
        sd,
        replace={
          "vision_model.embeddings.position_embedding.weight": np.zeros(
            (18, 64)
          )
        },
      ),
      r"18 rows; a ViT has G\*G \+ 1",
    ),
    (
      lambda sd: _edited(
        sd,
        replace={
          "vision_model.encoder.layers.0.mlp.fc1.weight": np.zeros((100, 64))
        },
      ),
      "vision MLP is 100 wide for width 64",
    ),
    (
      lambda sd: _edited(
        sd,
        replace={
          "text_model.encoder.layers.0.mlp.fc1.weight": np.zeros((128, 64))
        },
      ),
      r"MLP ratios 4 \(vision\) and 2 \(text\)",
    ),
    (
      lambda sd: _moved_layer(sd, "vision", 1, 2),
      r"vision layers \[0, 2\]",
    ),
    (
      lambda sd: _edited(
        sd, replace={"text_projection.weight": np.zeros((16, 64))}
      ),
      r"\['text'\]\['projection'\] has shape \(64, 16\).*expects \(64, 32\)",
    ),
  ],
)
def test_hf_state_dict_errors(hf_state_dict, edit, message):
  with pytest.raises(ValueError, match=message):
    clip_weights.clip_params_from_hf_state_dict(edit(hf_state_dict))


def test_unknown_override_is_named(hf_state_dict):
  with pytest.raises(
    ValueError, match=r"Unknown CLIPConfig field\(s\) \['heads'\]"
  ):
    clip_weights.clip_params_from_hf_state_dict(hf_state_dict, heads=4)


@pytest.mark.parametrize(
  "extra", ["visual.extra", "transformer.resblocks.0.attn.mystery"]
)
def test_openai_unknown_keys_are_named(hf_state_dict, extra):
  sd = _openai_state_dict(hf_state_dict)
  sd[extra] = np.zeros(1)
  with pytest.raises(ValueError, match=f"keys a ViT CLIP does not: .*{extra}"):
    clip_weights.clip_params_from_openai_state_dict(sd)


@pytest.mark.parametrize(
  "hf_config, message",
  [
    (
      {"text_config": {"hidden_act": "gelu"}},
      "differ in hidden_act: text 'gelu', vision 'quick_gelu'",
    ),
    ({"text_config": {"eos_token_id": [2, 3]}}, r"\[2, 3\]; a single int"),
  ],
)
def test_hf_config_overrides_errors(hf_config, message):
  with pytest.raises(ValueError, match=message):
    clip_weights.hf_config_overrides(hf_config)


def test_hf_config_overrides_defaults_and_legacy_dicts():
  overrides = clip_weights.hf_config_overrides(
    {"text_config_dict": {"num_attention_heads": 6}}
  )
  assert overrides == dict(
    vision_heads=12,
    text_heads=6,
    activation="quick_gelu",
    layer_norm_eps=1e-5,
    eos_token=49407,
    text_pooling=clip.POOL_FIRST_EQUAL,
  )
