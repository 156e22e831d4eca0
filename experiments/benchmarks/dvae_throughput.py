"""Times our Flax dVAE against OpenAI's PyTorch one, with the same weights.

Encode is uint8 images -> int32 codes (pixel mapping and argmax included);
decode is int32 codes -> uint8 images (the official path builds the one-hot
input, ours gathers codebook rows). Both run in this process side by side:
Flax jitted (first call = compile, then `block_until_ready`), PyTorch under
`torch.no_grad()` with `torch.set_num_threads(--threads)`. Each reports the
median of `--repeats` timed calls after one warm-up call; the two
implementations' calls are interleaved so both see the same background load.
XLA sizes its own thread pool from the machine (all cores).

Peak memory: jax's `device.memory_stats()` is None on CPU, so each
implementation also runs each direction alone in a subprocess which loads
the weights, resets the kernel's peak-RSS counter (`/proc/self/clear_refs`),
runs one warm-up plus one call and reads `VmHWM` from `/proc/self/status`
(one process per direction: buffers of an earlier call freed during the
next one's measurement made its working memory come out negative). The
table shows that peak minus the RSS held before the call (working memory of
the call, compile included for Flax) and the peak RSS of the whole process.

`--conv_algorithms auto,direct` times one Flax row per
`DVAEConfig.conv_algorithm` in the same interleaved rounds, so the effect of
Winograd 3x3 convs ('auto' picks them per layer) is measured against the
direct convolution in one run. Measured (2026-12-04, 2-core AMD EPYC with
AVX2, jax 0.10.2, torch 2.13.0+cpu, `--batch 4 --repeats 3 --conv_algorithms
auto,direct`), flax / torch img/s: encode auto 0.20 / 0.20 (0.99x), direct
0.17 (0.83x); decode auto 0.22 / 0.18 (1.20x), direct 0.15 (0.83x); encode
+ decode auto 1.09x, direct 0.83x. Working memory auto 2309 / 1597 MiB,
torch 1141 / 1742 MiB (encode / decode).

Weights are random (seeded) unless `--encoder/--decoder` name real files
(anything `dalle_jax.weights.load_state_dict` reads).

Run from the repository root:

  python -m experiments.benchmarks.dvae_throughput --batch 4 \
    --conv_algorithms auto,direct                               # paper size
  python -m experiments.benchmarks.dvae_throughput --batch 1 --image_size 64 \
    --n_hid 64 --vocab_size 512 --repeats 1                     # smoke
"""

import argparse
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from dall_e.decoder import Decoder as OfficialDecoder
from dall_e.encoder import Encoder as OfficialEncoder
from dall_e.utils import map_pixels as official_map_pixels
from dall_e.utils import unmap_pixels as official_unmap_pixels

from dalle_jax import weights
from dalle_jax.models.dvae import CONV_ALGORITHMS, DVAE


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--image_size", type=int, default=256)
  parser.add_argument("--n_hid", type=int, default=256)
  parser.add_argument("--vocab_size", type=int, default=8192)
  parser.add_argument("--n_blk_per_group", type=int, default=2)
  parser.add_argument("--encoder", default="", help="real encoder weights")
  parser.add_argument("--decoder", default="", help="real decoder weights")
  parser.add_argument(
    "--dtype", default="float32", choices=["float32", "bfloat16"]
  )
  parser.add_argument(
    "--conv_algorithms",
    default="auto",
    help="comma-separated DVAEConfig.conv_algorithm values, each timed as "
    f"its own Flax row (of {CONV_ALGORITHMS}); memory is measured for the "
    "first",
  )
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--skip_memory", action="store_true")
  # Internal: run one implementation alone and print its memory as JSON.
  parser.add_argument("--memory_worker", choices=["flax", "torch"])
  parser.add_argument("--memory_direction", choices=["encode", "decode"])
  parser.add_argument("--state_dicts", help=argparse.SUPPRESS)
  return parser.parse_args(argv)


def official_modules(args, state_dicts=None):
  """The official Encoder/Decoder, random unless state dicts are given."""
  torch.manual_seed(0)
  if state_dicts is not None:
    config = weights.infer_dvae_config(*state_dicts)
    sizes = dict(
      n_hid=config.n_hid,
      vocab_size=config.vocab_size,
      n_blk_per_group=config.n_blk_per_group,
    )
  else:
    sizes = dict(
      n_hid=args.n_hid,
      vocab_size=args.vocab_size,
      n_blk_per_group=args.n_blk_per_group,
    )
  encoder = OfficialEncoder(**sizes).eval()
  decoder = OfficialDecoder(**sizes, n_init=_n_init(state_dicts)).eval()
  if state_dicts is not None:
    for module, state_dict in zip((encoder, decoder), state_dicts, strict=True):
      module.load_state_dict(
        {k: torch.from_numpy(v) for k, v in state_dict.items()}
      )
  return encoder, decoder


def _n_init(state_dicts):
  if state_dicts is None:
    return 128
  return state_dicts[1]["blocks.input.w"].shape[0]


def numpy_state_dicts(encoder, decoder):
  return tuple(
    {name: t.detach().numpy().copy() for name, t in m.state_dict().items()}
    for m in (encoder, decoder)
  )


def conv_algorithms(args) -> list[str]:
  """The `--conv_algorithms` list, checked."""
  algorithms = args.conv_algorithms.split(",")
  for algorithm in algorithms:
    if algorithm not in CONV_ALGORITHMS:
      raise SystemExit(
        f"--conv_algorithms: {algorithm!r} is not one of {CONV_ALGORITHMS}."
      )
  return algorithms


def flax_functions(args, state_dicts, conv_algorithm="auto"):
  """Flax encode/decode on converted params, jitted with params as inputs.

  Params are arguments, not closed-over constants, so XLA does not embed
  (and constant-fold) 100M weights into the executable.
  """
  config, params = weights.dvae_params_from_state_dicts(
    *state_dicts, args.image_size
  )
  config = dataclasses.replace(
    config, dtype=args.dtype, conv_algorithm=conv_algorithm
  )
  model = DVAE(config)
  variables = jax.device_put({"params": params})
  encode = jax.jit(functools.partial(model.apply, method=DVAE.encode))
  decode = jax.jit(functools.partial(model.apply, method=DVAE.decode))
  return (
    config,
    functools.partial(encode, variables),
    functools.partial(decode, variables),
  )


def torch_functions(encoder, decoder, vocab_size):
  """Official-usage encode/decode (as in the dall_e notebook)."""

  def encode(images_nchw_uint8):
    with torch.no_grad():
      pixels = official_map_pixels(images_nchw_uint8.float() / 255)
      return torch.argmax(encoder(pixels), dim=1)

  def decode(codes):
    with torch.no_grad():
      one_hot = torch.nn.functional.one_hot(codes, vocab_size)
      stats = decoder(one_hot.permute(0, 3, 1, 2).float())
      pixels = official_unmap_pixels(torch.sigmoid(stats[:, :3]))
      return (pixels * 255).round().to(torch.uint8)

  return encode, decode


def _timed(function, argument, sync):
  start = time.perf_counter()
  sync(function(argument))
  return time.perf_counter() - start


def time_side_by_side(calls, repeats):
  """Times several `(function, argument, sync)` calls, interleaved.

  Interleaving exposes every implementation to the same background load.

  Returns:
    One `(first call seconds, median seconds of the next repeats)` per call.
  """
  first = [_timed(*call) for call in calls]
  times = [[] for _ in calls]
  for _ in range(repeats):
    for index, call in enumerate(calls):
      times[index].append(_timed(*call))
  return [
    (first_s, statistics.median(call_times))
    for first_s, call_times in zip(first, times, strict=True)
  ]


def _status_kib(field):
  with open("/proc/self/status") as handle:
    for line in handle:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  raise RuntimeError(f"{field} not in /proc/self/status")


def _measure_peak(function, argument, sync):
  """(RSS before, peak RSS during 2 calls) in MiB, peak counter reset first."""
  before = _status_kib("VmRSS")
  with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # resets VmHWM to the current RSS
  sync(function(argument))
  sync(function(argument))
  return before / 1024, _status_kib("VmHWM") / 1024


def memory_worker(args):
  """Runs one implementation's one direction alone; prints a JSON line."""
  with np.load(args.state_dicts) as archive:
    state_dicts = _split_state_dicts(archive)
  images, codes = example_inputs(args)
  direction = args.memory_direction
  jax_input, torch_input = direction_inputs(images, codes)[direction]
  # Resetting VmHWM also resets ru_maxrss, so the whole-run peak is the
  # larger of the peaks seen before and after the reset.
  setup_peak_mib = _status_kib("VmHWM") / 1024
  if args.memory_worker == "flax":
    algorithm = conv_algorithms(args)[0]
    _, encode, decode = flax_functions(args, state_dicts, algorithm)
    del state_dicts
    call = {"encode": encode, "decode": decode}[direction]
    before_and_peak = _measure_peak(call, jax_input, jax.block_until_ready)
  else:
    torch.set_num_threads(args.threads)
    encoder, decoder = official_modules(args, state_dicts)
    del state_dicts
    encode, decode = torch_functions(encoder, decoder, encoder.vocab_size)
    call = {"encode": encode, "decode": decode}[direction]
    before_and_peak = _measure_peak(call, torch_input, lambda x: x)
  result = {
    direction: before_and_peak,
    "process_peak_mib": max(setup_peak_mib, before_and_peak[1]),
  }
  print(json.dumps(result))


def direction_inputs(images, codes):
  """`{direction: (jax input, torch input)}` for encode and decode.

  Args:
    images: `[B, S, S, 3]` uint8 (torch gets them as NCHW).
    codes: `[B, S/8, S/8]` int32 (torch gets int64).
  """
  return {
    "encode": (
      jnp.asarray(images),
      torch.from_numpy(images).permute(0, 3, 1, 2),
    ),
    "decode": (jnp.asarray(codes), torch.from_numpy(codes).long()),
  }


def _split_state_dicts(archive):
  encoder = {k[len("e/") :]: archive[k] for k in archive.files if k[0] == "e"}
  decoder = {k[len("d/") :]: archive[k] for k in archive.files if k[0] == "d"}
  return encoder, decoder


def example_inputs(args):
  rng = np.random.default_rng(0)
  size = args.image_size
  images = rng.integers(0, 256, (args.batch, size, size, 3), np.uint8)
  grid = size // 8  # the official models always have 4 groups
  codes = rng.integers(0, args.vocab_size, (args.batch, grid, grid))
  return images, codes.astype(np.int32)


def run_memory_workers(args, state_dicts, argv):
  """Peak memory per implementation, each in its own subprocess."""
  results = {}
  with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, "state_dicts.npz")
    encoder_sd, decoder_sd = state_dicts
    np.savez(
      path,
      **{f"e/{k}": v for k, v in encoder_sd.items()},
      **{f"d/{k}": v for k, v in decoder_sd.items()},
    )
    for name in ("flax", "torch"):
      results[name] = {"process_peak_mib": 0.0}
      for direction in ("encode", "decode"):
        command = [
          sys.executable,
          "-m",
          "experiments.benchmarks.dvae_throughput",
          *argv,
          "--memory_worker",
          name,
          "--memory_direction",
          direction,
          "--state_dicts",
          path,
        ]
        output = subprocess.run(
          command, check=True, capture_output=True, text=True
        ).stdout
        result = json.loads(output.strip().splitlines()[-1])
        results[name][direction] = result[direction]
        results[name]["process_peak_mib"] = max(
          results[name]["process_peak_mib"], result["process_peak_mib"]
        )
  return results


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  if args.memory_worker:
    memory_worker(args)
    return
  torch.set_num_threads(args.threads)
  if args.encoder:
    state_dicts = (
      weights.load_state_dict(args.encoder),
      weights.load_state_dict(args.decoder),
    )
    args.vocab_size = weights.infer_dvae_config(*state_dicts).vocab_size
    encoder, decoder = official_modules(args, state_dicts)
  else:
    encoder, decoder = official_modules(args)
    state_dicts = numpy_state_dicts(encoder, decoder)

  algorithms = conv_algorithms(args)
  flax_sides = {
    algorithm: flax_functions(args, state_dicts, algorithm)
    for algorithm in algorithms
  }
  config = flax_sides[algorithms[0]][0]
  torch_encode, torch_decode = torch_functions(
    encoder, decoder, config.vocab_size
  )
  inputs = direction_inputs(*example_inputs(args))
  torch_calls = {"encode": torch_encode, "decode": torch_decode}

  sync_jax, sync_torch = jax.block_until_ready, lambda x: x
  rows = {}
  for index, direction in enumerate(("encode", "decode")):
    jax_input, torch_input = inputs[direction]
    # torch last: its time is the denominator of every Flax row.
    calls = [
      (flax_sides[algorithm][1 + index], jax_input, sync_jax)
      for algorithm in algorithms
    ]
    calls.append((torch_calls[direction], torch_input, sync_torch))
    *flax_timings, torch_timing = time_side_by_side(calls, args.repeats)
    for algorithm, timing in zip(algorithms, flax_timings, strict=True):
      rows[direction, algorithm] = (timing, torch_timing)
  memory = (
    None if args.skip_memory else run_memory_workers(args, state_dicts, argv)
  )
  print_table(args, config, rows, memory, algorithms[0])


def print_table(args, config, rows, memory, measured_algorithm):
  """One row per (direction, Flax conv algorithm); memory for the first."""
  print(
    f"dVAE {config.image_size}px n_hid={config.n_hid} "
    f"K={config.vocab_size} blocks/group={config.n_blk_per_group} "
    f"batch={args.batch} flax dtype={args.dtype} threads={args.threads} "
    f"jax {jax.__version__} torch {torch.__version__}"
  )
  header = (
    f"{'':16} {'flax img/s':>11} {'torch img/s':>12} {'flax/torch':>11} "
    f"{'flax 1st s':>11} {'flax MiB':>9} {'torch MiB':>10}"
  )
  print(header)
  rates = {}
  for (direction, algorithm), timings in rows.items():
    (flax_first, flax_s), (_, torch_s) = timings
    flax_rate, torch_rate = args.batch / flax_s, args.batch / torch_s
    rates.setdefault(algorithm, []).append((flax_s, torch_s))
    if memory and algorithm == measured_algorithm:
      flax_mib = _working_mib(memory["flax"][direction])
      torch_mib = _working_mib(memory["torch"][direction])
    else:
      flax_mib = torch_mib = float("nan")
    label = f"{direction} {algorithm}"
    print(
      f"{label:16} {flax_rate:11.2f} {torch_rate:12.2f} "
      f"{flax_rate / torch_rate:11.2f} {flax_first:11.2f} "
      f"{flax_mib:9.0f} {torch_mib:10.0f}"
    )
  for algorithm, seconds in rates.items():
    flax_total = sum(flax_s for flax_s, _ in seconds)
    torch_total = sum(torch_s for _, torch_s in seconds)
    print(
      f"encode + decode {algorithm}: flax/torch "
      f"{torch_total / flax_total:.2f} (same images, one call each way)"
    )
  if memory:
    print(
      "MiB = peak RSS during the calls minus RSS before them, each "
      "implementation alone in a subprocess (/proc VmHWM after clear_refs); "
      f"whole-process peak RSS (VmHWM, set-up included) flax "
      f"{memory['flax']['process_peak_mib']:.0f} MiB, torch "
      f"{memory['torch']['process_peak_mib']:.0f} MiB."
    )


def _working_mib(before_and_peak):
  before, peak = before_and_peak
  return peak - before


if __name__ == "__main__":
  main()
