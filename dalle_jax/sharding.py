"""Device mesh and the map from logical axis names to mesh partition specs.

Model code names only logical axes (the constants below); which mesh axis, if
any, carries each one is decided here by an ordered rule table that a config
can override. One code path serves 1 CPU, 8 simulated CPU devices and a pod.

Three families of names, as in large JAX codebases: parameters, activations
and the KV cache, so that e.g. a batch of activations and an embedding table
can be sharded independently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# Parameter axes.
EMBED = "embed"
MLP = "mlp"
HEADS = "heads"
HEAD_DIM = "head_dim"
VOCAB = "vocab"
CODEBOOK = "codebook"
# Names must be distinct within one array (flax checks), hence two spatial.
KERNEL_HEIGHT = "kernel_height"
KERNEL_WIDTH = "kernel_width"
CHANNELS_IN = "channels_in"
CHANNELS_OUT = "channels_out"
NORM = "norm"

# Activation axes.
ACT_BATCH = "act_batch"
ACT_LENGTH = "act_length"
ACT_EMBED = "act_embed"
ACT_HEADS = "act_heads"
ACT_HEIGHT = "act_height"
ACT_WIDTH = "act_width"
ACT_CHANNELS = "act_channels"

# KV-cache axes.
CACHE_BATCH = "cache_batch"
CACHE_LENGTH = "cache_length"
CACHE_HEADS = "cache_heads"

MESH_AXES = ("data", "fsdp", "tensor")

# Ordered (logical name, mesh axes) rules. A logical name absent from the table
# is replicated. Batch-like axes spread over both data-parallel axes; weights
# are split over `fsdp` along their input/embedding side and over `tensor`
# along their output/hidden side (Megatron-style).
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
  (ACT_BATCH, ("data", "fsdp")),
  (CACHE_BATCH, ("data", "fsdp")),
  (ACT_HEADS, "tensor"),
  (CACHE_HEADS, "tensor"),
  (EMBED, "fsdp"),
  (CHANNELS_IN, "fsdp"),
  (MLP, "tensor"),
  (HEADS, "tensor"),
  (VOCAB, "tensor"),
  (CODEBOOK, "tensor"),
  (CHANNELS_OUT, "tensor"),
)


def make_mesh(
  shape: Sequence[tuple[str, int]],
  devices: Sequence[jax.Device] | None = None,
) -> Mesh:
  """Builds a device mesh from `((axis_name, size), ...)`.

  One size may be -1: it takes all the devices the others leave.

  Args:
    shape: axis names and sizes, e.g. `(("data", -1), ("fsdp", 1),
      ("tensor", 1))`.
    devices: the devices to use; all of `jax.devices()` by default.

  Returns:
    A `Mesh` with auto (classic GSPMD) axis types.
  """
  devices = list(jax.devices() if devices is None else devices)
  names = tuple(name for name, _ in shape)
  sizes = [int(size) for _, size in shape]
  unknown = [name for name in names if name not in MESH_AXES]
  if unknown:
    raise ValueError(
      f"Unknown mesh axis {unknown}; the mesh axes are {MESH_AXES}. "
      "Fix config.mesh.shape."
    )
  if sizes.count(-1) > 1:
    raise ValueError(
      f"config.mesh.shape={tuple(shape)} has more than one -1; at most one "
      "axis can take the remaining devices."
    )
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % known:
      raise ValueError(
        f"config.mesh.shape={tuple(shape)} cannot fill {len(devices)} "
        f"devices: {len(devices)} is not divisible by {known}."
      )
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise ValueError(
      f"config.mesh.shape={tuple(shape)} needs {math.prod(sizes)} devices "
      f"but {len(devices)} are available. Use -1 for one axis to fill in."
    )
  device_grid = np.asarray(devices).reshape(sizes)
  axis_types = (jax.sharding.AxisType.Auto,) * len(names)
  return Mesh(device_grid, names, axis_types=axis_types)


def logical_to_spec(
  logical_axes: Sequence[str | None],
  shape: Sequence[int],
  mesh: Mesh,
  rules: Sequence[tuple[str, str | Sequence[str] | None]] = DEFAULT_RULES,
) -> PartitionSpec:
  """Maps one array's logical axis names to a mesh `PartitionSpec`.

  A dimension stays replicated when its rule names mesh axes that are already
  used by an earlier dimension, or when its size does not divide evenly over
  them (e.g. 3 RGB channels over 2 devices), so every rule table works for
  every model and mesh.

  Args:
    logical_axes: one logical name (or None) per array dimension.
    shape: the array's shape.
    mesh: the device mesh.
    rules: ordered `(logical name, mesh axes)` pairs; the first match wins.

  Returns:
    The partition spec, one entry per dimension.
  """
  if len(logical_axes) != len(shape):
    raise ValueError(
      f"Logical axes {tuple(logical_axes)} do not match an array of shape "
      f"{tuple(shape)}: one name per dimension is needed."
    )
  table = {}
  for name, axes in rules:
    table.setdefault(name, axes)
  used: set[str] = set()
  spec = []
  for name, size in zip(logical_axes, shape, strict=True):
    axes = table.get(name) if name is not None else None
    if axes is None:
      spec.append(None)
      continue
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    axes = tuple(a for a in axes if a in mesh.shape and mesh.shape[a] > 1)
    count = math.prod(mesh.shape[a] for a in axes)
    if not axes or used.intersection(axes) or size % count:
      spec.append(None)
      continue
    used.update(axes)
    spec.append(axes[0] if len(axes) == 1 else axes)
  return PartitionSpec(*spec)


def _is_boxed(leaf) -> bool:
  return isinstance(leaf, nn.LogicallyPartitioned)


def tree_shardings(abstract_tree, mesh: Mesh, rules=DEFAULT_RULES):
  """Shardings for every leaf of a (possibly boxed) abstract pytree.

  Leaves wrapped in `nn.LogicallyPartitioned` (parameters made with
  `nn.with_logical_partitioning`, and optimizer moments derived from them) get
  their logical names resolved by `rules`; every other leaf (step counters,
  scalars) is replicated explicitly, so nothing is left on a single device.

  Args:
    abstract_tree: output of `jax.eval_shape`, boxes included.
    mesh: the device mesh.
    rules: logical-to-mesh rule table.

  Returns:
    A pytree of `NamedSharding` with the structure of the unboxed tree.
  """

  def leaf_sharding(leaf):
    if _is_boxed(leaf):
      value = leaf.value
      spec = logical_to_spec(leaf.names, value.shape, mesh, rules)
    else:
      spec = PartitionSpec()
    return NamedSharding(mesh, spec)

  return jax.tree.map(leaf_sharding, abstract_tree, is_leaf=_is_boxed)


def unbox(tree):
  """Replaces each `nn.LogicallyPartitioned` box by its value.

  Unlike `nn.unbox`, it adds no sharding constraint, so it also works on
  abstract trees inside a mesh context; placement comes from the shardings
  that `tree_shardings` resolved.
  """
  return jax.tree.map(
    lambda leaf: leaf.value if _is_boxed(leaf) else leaf,
    tree,
    is_leaf=_is_boxed,
  )


def batch_sharding(mesh: Mesh, rules=DEFAULT_RULES) -> NamedSharding:
  """Sharding of a data batch: leading dimension over the batch axes."""
  table = dict(reversed(list(rules)))
  axes = table.get(ACT_BATCH)
  axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
  axes = tuple(a for a in axes if a in mesh.shape)
  return NamedSharding(mesh, PartitionSpec(axes or None))


def batch_divisor(mesh: Mesh, rules=DEFAULT_RULES) -> int:
  """How many devices share a batch's leading dimension."""
  spec = batch_sharding(mesh, rules).spec[0]
  if spec is None:
    return 1
  axes = (spec,) if isinstance(spec, str) else spec
  return math.prod(mesh.shape[a] for a in axes)


def rules_from_config(rules) -> tuple[tuple[str, object], ...]:
  """Normalises a rule table from a config (lists become tuples)."""
  normalised = []
  for entry in rules:
    name, axes = entry
    if isinstance(axes, list):
      axes = tuple(axes)
    normalised.append((name, axes))
  return tuple(normalised)
