"""Test set-up: 8 simulated CPU devices, so sharded code paths run everywhere.

XLA reads the flag when the backend starts, so it is set here, before any test
module imports jax. Tests that want one device build a mesh of
`jax.devices()[:1]`.
"""

import os

os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

# Tests compile many tiny programs once each; XLA's optimisation passes cost
# more time than they save here (as in flax's own example tests).
jax.config.update("jax_disable_most_optimizations", True)
