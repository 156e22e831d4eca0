"""Reading a pipeline root that was copied or moved since it was made.

The pipeline gives each stage the absolute paths of files it owns (its
tokenizer, its dVAE), because the stage's training reads them there, so the
stage's record (`<stage>/config.json`, `tokenizer.json`) holds those paths.
`stages.json` records, per step, the root the step's output was made in.
Reading a record from a root that has since moved rebases every path under
the old root onto the new one. So a copied run directory is neither trained
again nor unable to find its tokenizer, and a path outside the root (a
folder of the user's images, a tokenizer of their own) reads as written.
"""

from __future__ import annotations

import os
from typing import Any

from dalle_jax import checkpoint

STAGES_FILE = "stages.json"
# The key of a step's entry in stages.json that names its root.
ROOT_KEY = "root"


def made_in(root: str, step: str) -> str | None:
  """The absolute root that `step`'s output in `root` was made in.

  Args:
    root: a pipeline root (holding stages.json).
    step: a step name ('tokenizer', 'dvae', 'clip', ...).

  Returns:
    The recorded root; None without stages.json or without a record of the
    root (runs made before roots were recorded), i.e. nothing to rebase.
  """
  stages = checkpoint.read_json(os.path.join(root, STAGES_FILE), {})
  return recorded_root(stages, step)


def recorded_root(stages: dict, step: str) -> str | None:
  """The root in the parsed stages.json `stages` for `step`, if any."""
  return stages.get("steps", {}).get(step, {}).get(ROOT_KEY)


def rebase(tree: Any, old_root: str | None, new_root: str) -> Any:
  """`tree` with every path inside `old_root` moved into `new_root`.

  Args:
    tree: JSON-like values (dicts, lists, strings, numbers).
    old_root: the absolute root the paths were written in; None leaves the
      tree as it is.
    new_root: the absolute root they are read in now.

  Returns:
    A copy in which each string equal to `old_root` or beginning with
    `old_root` and a separator starts with `new_root` instead. Other
    strings (relative paths, paths elsewhere, text) are unchanged.
  """
  if old_root is None or old_root == new_root:
    return tree
  if isinstance(tree, dict):
    return {
      key: rebase(value, old_root, new_root) for key, value in tree.items()
    }
  if isinstance(tree, (list, tuple)):
    return type(tree)(rebase(value, old_root, new_root) for value in tree)
  if isinstance(tree, str):
    if tree == old_root:
      return new_root
    prefix = old_root.rstrip(os.sep) + os.sep
    if tree.startswith(prefix):
      return os.path.join(new_root, tree[len(prefix) :])
  return tree
