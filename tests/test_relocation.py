"""Rebasing a copied pipeline root's recorded paths (`dalle_jax.relocation`)."""

import json

from dalle_jax import relocation


def test_rebase_moves_only_paths_inside_the_old_root():
  tree = {
    "tokenizer": {"path": "/old/run/tokenizer.model", "vocab_size": 256},
    "dvae": {"workdir": "/old/run/dvae"},
    "root": "/old/run",
    "data": {"folder": "/old/run-images", "name": "folder"},
    "splits": ["/old/run/a", "relative/path", 3],
    "sizes": (1, 2),
  }
  assert relocation.rebase(tree, "/old/run", "/new/place") == {
    "tokenizer": {"path": "/new/place/tokenizer.model", "vocab_size": 256},
    "dvae": {"workdir": "/new/place/dvae"},
    "root": "/new/place",
    # A sibling whose name starts with the root's is not inside it.
    "data": {"folder": "/old/run-images", "name": "folder"},
    "splits": ["/new/place/a", "relative/path", 3],
    "sizes": (1, 2),
  }
  assert relocation.rebase(tree, None, "/new/place") is tree
  assert relocation.rebase(tree, "/new/place", "/new/place") is tree
  assert relocation.rebase(None, "/old/run", "/new/place") is None


def test_made_in_reads_each_steps_root(tmp_path):
  assert relocation.made_in(str(tmp_path), "dvae") is None  # no stages.json
  record = {"steps": {"dvae": {"root": "/old/run"}, "clip": {"seconds": 1.0}}}
  (tmp_path / relocation.STAGES_FILE).write_text(json.dumps(record))
  assert relocation.made_in(str(tmp_path), "dvae") == "/old/run"
  assert relocation.made_in(str(tmp_path), "clip") is None  # made before roots
  assert relocation.made_in(str(tmp_path), "transformer") is None
