"""Tests for dalle_jax.weights: parity with OpenAI's dVAE, file formats, errors.

The reference is the official `dall_e` package (PyTorch) with random weights
and random (non-zero) biases. Agreement is measured as
max |ours - reference| / max |reference| over the whole tensor.
"""

import dataclasses
import json
import os
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need torch")
dall_e_encoder = pytest.importorskip(
  "dall_e.encoder", reason="parity tests need OpenAI's DALL-E package"
)
dall_e_decoder = pytest.importorskip("dall_e.decoder")
dall_e_utils = pytest.importorskip("dall_e.utils")

from dalle_jax import checkpoint, weights  # noqa: E402
from dalle_jax.models.dvae import DVAE  # noqa: E402

TOLERANCE = 1e-4


def _official_pair(n_hid, vocab_size, n_blk_per_group=2, seed=0):
  """Official Encoder and Decoder with random weights and random biases."""
  torch.manual_seed(seed)
  sizes = dict(
    n_hid=n_hid, vocab_size=vocab_size, n_blk_per_group=n_blk_per_group
  )
  encoder = dall_e_encoder.Encoder(**sizes)
  decoder = dall_e_decoder.Decoder(**sizes)
  with torch.no_grad():
    for module in (encoder, decoder):
      for name, parameter in module.named_parameters():
        if name.endswith(".b"):  # zero biases would hide a misplaced bias
          parameter.normal_(std=0.1)
  return encoder, decoder


def _numpy_state_dict(module):
  return {name: t.numpy().copy() for name, t in module.state_dict().items()}


def _relative_error(ours, reference):
  ours, reference = np.asarray(ours), np.asarray(reference)
  assert ours.shape == reference.shape
  return np.abs(ours - reference).max() / np.abs(reference).max()


def _official_encode(encoder, images):
  """`[B, H, W, 3] uint8` -> `[B, h, w, K]` logits via the official model."""
  pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
  with torch.no_grad():
    logits = encoder(dall_e_utils.map_pixels(pixels))
  return logits.permute(0, 2, 3, 1).numpy()


def _official_decode(decoder, codes_bhwk):
  """`[B, h, w, K]` float codes -> `[B, H, W, 6]` stats, official model."""
  codes = torch.from_numpy(codes_bhwk).permute(0, 3, 1, 2).contiguous()
  with torch.no_grad():
    return decoder(codes).permute(0, 2, 3, 1).numpy()


def _ours(config, params, inputs, method):
  model = DVAE(config)
  return np.asarray(
    jax.jit(lambda p, x: model.apply({"params": p}, x, method=method))(
      params, inputs
    )
  )


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _check_parity(encoder, decoder, image_size, soft_codes=False):
  config, params = weights.dvae_params_from_state_dicts(
    _numpy_state_dict(encoder), _numpy_state_dict(decoder), image_size
  )
  assert config.conv_algorithm == "auto"
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (1, image_size, image_size, 3), np.uint8)

  reference_logits = _official_encode(encoder, images)
  logits = _ours(config, params, images, DVAE.encode_logits)
  assert _relative_error(logits, reference_logits) < TOLERANCE
  # DVAE.encode is this argmax (test_dvae checks it); one compile less here.
  codes = logits.argmax(-1).astype(np.int32)
  np.testing.assert_array_equal(codes, reference_logits.argmax(-1))

  one_hot = np.eye(config.vocab_size, dtype=np.float32)[codes]
  reference_stats = _official_decode(decoder, one_hot)
  stats = _ours(config, params, codes, DVAE.decode_logits)
  assert _relative_error(stats, reference_stats) < TOLERANCE
  means = _sigmoid(stats[..., :3])
  assert _relative_error(means, _sigmoid(reference_stats[..., :3])) < TOLERANCE

  if soft_codes:  # the float (relaxed) input path of the decoder
    logits = rng.normal(size=one_hot.shape).astype(np.float32)
    soft = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    reference_stats = _official_decode(decoder, soft)
    stats = _ours(config, params, soft, DVAE.decode_logits)
    assert _relative_error(stats, reference_stats) < TOLERANCE
  return config


def test_parity_with_openai_at_paper_size():
  # 'auto': on a CPU the wide layers are Winograd, the others direct.
  encoder, decoder = _official_pair(n_hid=256, vocab_size=8192)
  config = _check_parity(encoder, decoder, image_size=256)
  assert (config.n_hid, config.vocab_size, config.grid_size) == (256, 8192, 32)
  assert (config.group_count, config.n_blk_per_group) == (4, 2)


def test_parity_with_openai_small_one_block_soft_codes():
  # At batch 1 and 64 px every layer has too few tiles for Winograd: this
  # is the direct convolution's parity (the paper-size test mixes both).
  encoder, decoder = _official_pair(n_hid=64, vocab_size=512, n_blk_per_group=1)
  config = _check_parity(encoder, decoder, image_size=64, soft_codes=True)
  assert (config.n_hid, config.vocab_size, config.n_blk_per_group) == (
    64,
    512,
    1,
  )
  assert (config.n_init, config.input_channels) == (128, 3)


@pytest.fixture(scope="module")
def small_pair():
  return _official_pair(n_hid=64, vocab_size=512, n_blk_per_group=1, seed=1)


@pytest.fixture(scope="module")
def small_state_dicts(small_pair):
  return tuple(_numpy_state_dict(module) for module in small_pair)


@pytest.fixture(scope="module")
def small_converted(small_state_dicts):
  return weights.dvae_params_from_state_dicts(*small_state_dicts, 64)


def _assert_trees_equal(left, right):
  assert jax.tree.structure(left) == jax.tree.structure(right)
  for a, b in zip(jax.tree.leaves(left), jax.tree.leaves(right), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_conversion_transposes_kernels_to_hwio(
  small_state_dicts, small_converted
):
  encoder_sd, decoder_sd = small_state_dicts
  _, params = small_converted
  np.testing.assert_array_equal(
    params["encoder"]["group_2_block_1"]["conv_1"]["kernel"],
    encoder_sd["blocks.group_2.block_1.res_path.conv_1.w"].transpose(
      2, 3, 1, 0
    ),
  )
  np.testing.assert_array_equal(
    params["decoder"]["group_1_block_1"]["id_path"]["bias"],
    decoder_sd["blocks.group_1.block_1.id_path.b"],
  )
  np.testing.assert_array_equal(
    params["decoder"]["input"]["kernel"][0, 0],
    decoder_sd["blocks.input.w"][:, :, 0, 0].T,
  )


def _save(tmp_path, small_pair, kind):
  """Writes the small pair as `kind` files; returns the two paths."""
  paths = []
  for name, module in zip(("encoder", "decoder"), small_pair, strict=True):
    if kind == "module":
      path = tmp_path / f"{name}.pkl"
      torch.save(module, path)
    elif kind == "state_dict":
      path = tmp_path / f"{name}.pt"
      torch.save(module.state_dict(), path)
    elif kind == "safetensors":
      safetensors_numpy = pytest.importorskip("safetensors.numpy")
      path = tmp_path / f"{name}.safetensors"
      safetensors_numpy.save_file(_numpy_state_dict(module), str(path))
    else:
      path = tmp_path / f"{name}.npz"
      np.savez(path, **_numpy_state_dict(module))
    paths.append(str(path))
  return paths


@pytest.mark.parametrize("kind", ["module", "state_dict", "safetensors", "npz"])
def test_every_file_format_converts_alike(
  tmp_path, small_pair, small_converted, kind
):
  encoder_path, decoder_path = _save(tmp_path, small_pair, kind)
  config, params = weights.load_openai_dvae(encoder_path, decoder_path, 64)
  expected_config, expected_params = small_converted
  assert config == expected_config
  _assert_trees_equal(params, expected_params)


def test_command_writes_orbax_params_and_config(
  tmp_path, small_pair, small_converted
):
  encoder_path, decoder_path = _save(tmp_path, small_pair, "module")
  out = tmp_path / "converted"
  weights.main(
    [
      "dvae",
      "--encoder",
      encoder_path,
      "--decoder",
      decoder_path,
      "--out",
      str(out),
      "--image-size",
      "64",
    ]
  )
  config, params = small_converted
  with open(out / "config.json") as handle:
    saved = json.load(handle)
  assert saved == {"task": "dvae", "model": dataclasses.asdict(config)}
  _assert_trees_equal(checkpoint.load_params(str(out)), params)


@pytest.mark.parametrize("argv", [["--help"], ["dvae", "--help"]])
def test_command_help_warns_about_unpickling(capsys, argv):
  with pytest.raises(SystemExit):
    weights.main(argv)
  help_text = " ".join(capsys.readouterr().out.split())
  assert "WARNING" in help_text and "runs code" in help_text


def test_a_pickled_random_dict_is_rejected_with_its_keys(tmp_path):
  path = str(tmp_path / "random.pkl")
  torch.save({"foo": torch.zeros(2), "bar": 1}, path)
  with pytest.raises(ValueError, match=r"no 'blocks.input.w'; found \['bar'"):
    weights.load_openai_dvae(path, path)


def test_a_pickled_list_is_rejected_with_its_type(tmp_path):
  path = str(tmp_path / "list.pkl")
  torch.save([1, 2, 3], path)
  with pytest.raises(ValueError, match=r"holds a builtins.list; expected"):
    weights.load_openai_dvae(path, path)


def test_a_pickle_of_a_missing_class_names_the_module(tmp_path, monkeypatch):
  (tmp_path / "vanishing_module.py").write_text("class Thing:\n  pass\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  import vanishing_module

  path = str(tmp_path / "thing.pkl")
  torch.save(vanishing_module.Thing(), path)
  os.remove(tmp_path / "vanishing_module.py")
  monkeypatch.delitem(sys.modules, "vanishing_module")
  with pytest.raises(ValueError, match=r"needs the module 'vanishing_module'"):
    weights.load_openai_dvae(path, path)


def test_a_state_dict_that_is_not_a_dict_is_rejected():
  with pytest.raises(ValueError, match=r"no 'blocks.input.w'; found list"):
    weights.dvae_params_from_state_dicts([1], {})


def _edited(state_dict, **changes):
  edited = dict(state_dict)
  for key, value in changes.items():
    if value is None:
      del edited[key]
    else:
      edited[key] = value
  return edited


def test_a_wrong_tensor_shape_names_the_key(small_state_dicts):
  encoder_sd, decoder_sd = small_state_dicts
  key = "blocks.group_3.block_1.res_path.conv_2.w"
  encoder_sd = _edited(encoder_sd, **{key: np.zeros((64, 64, 3, 5))})
  with pytest.raises(ValueError, match=rf"'{key}' has shape \(3, 5, 64, 64\)"):
    weights.dvae_params_from_state_dicts(encoder_sd, decoder_sd)


def test_a_missing_tensor_is_named(small_state_dicts):
  encoder_sd, decoder_sd = small_state_dicts
  key = "blocks.group_2.block_1.id_path.b"
  with pytest.raises(ValueError, match=rf"encoder state dict has no '{key}'"):
    weights.dvae_params_from_state_dicts(
      _edited(encoder_sd, **{key: None}), decoder_sd
    )


def test_an_unexpected_tensor_is_named(small_state_dicts):
  encoder_sd, decoder_sd = small_state_dicts
  decoder_sd = _edited(decoder_sd, **{"blocks.extra.w": np.zeros(3)})
  with pytest.raises(ValueError, match=r"does not use: \['blocks.extra.w'\]"):
    weights.dvae_params_from_state_dicts(encoder_sd, decoder_sd)


def test_swapped_encoder_and_decoder_are_detected(small_state_dicts):
  encoder_sd, decoder_sd = small_state_dicts
  with pytest.raises(ValueError, match=r"swapped"):
    weights.dvae_params_from_state_dicts(decoder_sd, encoder_sd)


def test_encoder_and_decoder_of_different_models_are_detected(
  small_state_dicts,
):
  encoder_sd, decoder_sd = small_state_dicts
  decoder_sd = _edited(
    decoder_sd, **{"blocks.input.w": np.zeros((128, 1024, 1, 1))}
  )
  with pytest.raises(ValueError, match=r"512 codes .* expects 1024"):
    weights.dvae_params_from_state_dicts(encoder_sd, decoder_sd)


def test_missing_groups_are_reported(small_state_dicts):
  encoder_sd, decoder_sd = small_state_dicts
  no_groups = {k: v for k, v in encoder_sd.items() if "group" not in k}
  with pytest.raises(ValueError, match=r"residual groups \[\]"):
    weights.dvae_params_from_state_dicts(no_groups, decoder_sd)


def test_uneven_block_counts_are_reported(small_state_dicts):
  encoder_sd, decoder_sd = small_state_dicts
  extra = {
    key.replace("block_1", "block_2"): value
    for key, value in encoder_sd.items()
    if key.startswith("blocks.group_1.block_1.")
  }
  with pytest.raises(ValueError, match=r"different block counts"):
    weights.dvae_params_from_state_dicts({**encoder_sd, **extra}, decoder_sd)
