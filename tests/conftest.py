"""Test set-up: 8 simulated CPU devices, so sharded code paths run everywhere.

XLA reads the flag when the backend starts, so it is set here, before any test
module imports jax. Tests that want one device build a mesh of
`jax.devices()[:1]`.
"""

import os
import subprocess
import sys
import tempfile

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count=8"
# XLA:CPU's newer fusion emitters take longer to compile, and the tests
# spend most of their time compiling tiny programs: the tiny pipeline's 29
# programs compiled in 48-53 s of XLA time with them and 25-34 s without
# (8 devices, optimisations off, fresh processes side by side).
FAST_COMPILE_FLAG = "--xla_cpu_use_fusion_emitters=false"


def _xla_accepts(flag: str) -> bool:
  """Whether this jaxlib starts with `flag` (it aborts on unknown flags)."""
  probe = subprocess.run(
    [sys.executable, "-c", "import jax; jax.devices()"],
    env={**os.environ, "XLA_FLAGS": flag, "JAX_PLATFORMS": "cpu"},
    capture_output=True,
  )
  return probe.returncode == 0


def _with_test_xla_flags(flags: str) -> str:
  """`flags` plus 8 devices and, where accepted, the faster compile flag.

  The device count always ends at 8 (the last flag wins). The xdist
  workers and the commands tests start inherit the result, so the probe
  runs once, in the first pytest process.
  """
  given = flags.split()
  extra = [] if DEVICE_COUNT_FLAG in given else [DEVICE_COUNT_FLAG]
  # A fusion-emitter setting the user gave is kept; an unknown flag would
  # abort every test, hence the probe.
  fusion_flag_name = FAST_COMPILE_FLAG.split("=")[0]
  if not any(flag.split("=")[0] == fusion_flag_name for flag in given):
    if _xla_accepts(FAST_COMPILE_FLAG):
      extra.append(FAST_COMPILE_FLAG)
  return " ".join([flags, *extra]).strip()


os.environ["XLA_FLAGS"] = _with_test_xla_flags(os.environ.get("XLA_FLAGS", ""))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests compile many tiny programs once each; XLA's optimisation passes cost
# more time than they save here (as in flax's own example tests). Set in the
# environment, not with jax.config, so the training and sampling commands
# that tests start as subprocesses compile the same way.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# One XLA compilation cache for the whole run: many tests, both pytest-xdist
# workers (which inherit this environment from the main process) and the
# commands tests start compile the same tiny train and sample steps. Made
# by the first process to load this file, removed when it ends.
_OWN_CACHE_DIR = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _OWN_CACHE_DIR = tempfile.mkdtemp(prefix="dalle_jax_tests_xla_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE_DIR
# Cache every program, however fast it compiled (the default is 1 s and up).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import shutil  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402


def pytest_unconfigure(config):
  if _OWN_CACHE_DIR is not None:
    shutil.rmtree(_OWN_CACHE_DIR, ignore_errors=True)


@pytest.fixture
def regenerate_report(tmp_path):
  """Runs the report command on a copy of a finished work directory.

  The copy loses its report.md and figures first, so everything the
  command returns was written by it. Returns `regenerate(root) -> (copy's
  root, report.md's text)`.
  """
  from dalle_jax import report

  def regenerate(source_root: str) -> tuple[str, str]:
    root = str(tmp_path / "copy")
    shutil.copytree(source_root, root)
    shutil.rmtree(os.path.join(root, "figures"))
    os.remove(os.path.join(root, "report.md"))
    assert report.main(["--workdir", root]) == 0
    with open(os.path.join(root, "report.md")) as handle:
      return root, handle.read()

  return regenerate


@pytest.fixture(scope="session")
def dvae_workdir(tmp_path_factory):
  """A tiny dVAE work directory (32 px) as the dVAE stage leaves it.

  Its config.json and exported params, written by the functions the stage
  uses; the params are a random initialisation, whose codes are as good as
  trained ones for training a prior on them (and it takes a second, not the
  20 s of a dVAE run).
  """
  import numpy as np

  from dalle_jax import checkpoint, sharding
  from dalle_jax import config as config_lib
  from dalle_jax.configs import dvae as dvae_configs
  from dalle_jax.models.dvae import DVAE
  from dalle_jax.tasks import dvae as dvae_task

  workdir = str(tmp_path_factory.mktemp("dvae"))
  config = config_lib.load_config(f"{dvae_configs.__file__}:variant=tiny")
  model = DVAE(dvae_task.model_config(config))
  images = np.zeros((1, 32, 32, 3), np.uint8)
  rng = jax.random.key(0)
  params = jax.jit(model.init)(rng, images, rng, 1.0)["params"]
  checkpoint.check_or_write_config(workdir, config)
  checkpoint.export_params(workdir, sharding.unbox(params))
  return workdir
