"""`python -m dalle_jax.sample`: a labelled PNG grid, or a one-line error."""

import os
import re
import subprocess
import sys

import pytest
from PIL import Image
from test_generator import CHUNK, shared_stage_root

from dalle_jax import sample

# add_labels draws 12 px text in a 16 px strip; make_grid pads by 2 px.
LABEL_STRIP, PADDING = 19, 2  # images.LABEL_LINE_HEIGHT + 4
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def stage_root(tmp_path_factory):
  return shared_stage_root(tmp_path_factory)


def test_writes_a_labelled_grid_and_exits_0(stage_root, tmp_path, capsys):
  out = str(tmp_path / "grids" / "grid.png")
  code = sample.main(
    [
      "--workdir", stage_root,
      "--prompt", "a red circle above a blue square",
      "--prompt", "",
      "--num-candidates", "5",
      "--keep", "3",
      "--chunk-size", str(CHUNK),
      "--out", out,
    ]
  )  # fmt: skip
  assert code == 0
  assert out in capsys.readouterr().out
  # 32 px tiles are enlarged 4x to 128; each row has a prompt and a score
  # line under it.
  tile = 128
  with Image.open(out) as grid:
    assert grid.size == (
      3 * (tile + PADDING) + PADDING,
      2 * (tile + 2 * PADDING + 2 * LABEL_STRIP),
    )
    assert grid.mode == "RGB"


def test_separate_workdirs_and_no_rerank(stage_root, tmp_path, capsys):
  out = str(tmp_path / "grid.png")
  code = sample.main(
    [
      "--dvae", os.path.join(stage_root, "dvae"),
      "--transformer", os.path.join(stage_root, "transformer"),
      "--prompt", "a red circle",
      "--num-candidates", "3",
      "--keep", "3",
      "--no-rerank",
      "--scorer", "likelihood",
      "--chunk-size", str(CHUNK),
      "--out", out,
    ]
  )  # fmt: skip
  assert code == 0 and "scored by likelihood" in capsys.readouterr().out
  with Image.open(out) as grid:
    assert grid.size[0] == 3 * (128 + PADDING) + PADDING


@pytest.mark.parametrize(
  "arguments, message",
  [
    (["--keep", "9", "--num-candidates", "8"], r"keep=9 .* \[1, 8\]"),
    (["--temperature", "0"], "temperature=0.0 must be a finite"),
    (["--top-p", "2"], "top_p=2.0"),
    (["--top-k", "0"], "top_k=0"),
    (["--scorer", "bleu"], "invalid choice: 'bleu'"),
    (["--num-candidates", "many"], "invalid int value: 'many'"),
    (["--colour", "red"], "unrecognized arguments: --colour red"),
    (["--dvae", "x"], "either --workdir ROOT or --dvae"),
    (["--clip-image-shift", "-1"], "--clip-image-shift=-1 must be >= 0"),
  ],
)
def test_bad_arguments_exit_2_with_one_line(
  stage_root, capsys, arguments, message
):
  argv = ["--workdir", stage_root, "--prompt", "a", *arguments]
  assert sample.main(argv) == 2
  error = capsys.readouterr().err
  assert error.startswith("python -m dalle_jax.sample: error: ")
  assert re.search(message, error)
  assert error.count("\n") == 1 and "Traceback" not in error


def test_missing_stages_exit_2_naming_what_is_missing(tmp_path, capsys):
  assert sample.main(["--prompt", "a", "--keep", "1"]) == 2
  assert "pass --workdir ROOT" in capsys.readouterr().err
  empty = str(tmp_path)
  assert sample.main(["--workdir", empty, "--prompt", "a"]) == 2
  error = capsys.readouterr().err
  assert os.path.join(empty, "dvae", "config.json") in error
  assert "dalle_jax/configs/dvae.py" in error and error.count("\n") == 1


def test_module_entry_point_exits_2_without_a_traceback():
  result = subprocess.run(
    [sys.executable, "-m", "dalle_jax.sample", "--keep", "2"],
    capture_output=True,
    text=True,
    cwd=REPO,
    timeout=120,
  )
  assert result.returncode == 2
  assert result.stderr.strip() == (
    "python -m dalle_jax.sample: error: the following arguments are"
    " required: --prompt"
  )
