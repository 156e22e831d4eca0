"""Executes the Colab notebooks of experiments/notebooks/ at tiny size.

Each notebook runs headlessly in a fresh kernel (nbclient), shrunk by the
environment variables its parameters cell reads; a cell that raises fails
the test. The quick start trains the tiny pipeline itself (it is given no
root), and the zero-shot notebook samples from that same pipeline, whose
root it gets as DALLE_JAX_NOTEBOOK_ROOT: one training serves both. The
released-weights notebook runs at the same time in its own kernel (on two
cores, one notebook compiling leaves the other core idle). Checks read the
notebooks' outputs: displayed images, printed accuracies, parity figures.
"""

import asyncio
import os
import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from experiments.notebooks import make_notebooks  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = make_notebooks.NOTEBOOK_DIR
# Per cell; generous because the machine may be shared.
CELL_TIMEOUT = 600
NUMBER = r"([0-9.]+(?:e[-+]?[0-9]+)?)"
# The kernels run on one device, as on a laptop or Colab (not the 8
# simulated devices of conftest.py), and compile as the tests' own
# processes do (conftest.py's other XLA flags, optimisations off): the tiny
# models spend their time compiling.
KERNEL_ENV = {
  "XLA_FLAGS": " ".join(
    flag
    for flag in os.environ.get("XLA_FLAGS", "").split()
    if not flag.startswith("--xla_force_host_platform_device_count")
  ),
  "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
  "DALLE_JAX_NOTEBOOK_TINY": "1",
}


async def execute(name, **env):
  """Runs notebook `name` in a fresh kernel; returns it with its outputs."""
  notebook = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
  client = nbclient.NotebookClient(
    notebook,
    timeout=CELL_TIMEOUT,
    kernel_name="python3",
    resources={"metadata": {"path": REPO}},
  )
  await client.async_execute(env={**os.environ, **KERNEL_ENV, **env})
  return notebook


async def execute_into(results, name, **env):
  """Executes `name` into results[name]: the notebook, or its exception."""
  try:
    results[name] = await execute(name, **env)
  except Exception as error:  # reported by the notebook's own test
    results[name] = error


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  """{notebook name: executed notebook, or the exception it raised}."""
  data_dir = str(tmp_path_factory.mktemp("datasets"))
  root = str(tmp_path_factory.mktemp("quick_start") / "root")
  weights_dir = str(tmp_path_factory.mktemp("released_weights"))
  results = {"root": root, "weights_dir": weights_dir}

  async def pipeline_notebooks():
    shared = {"DALLE_JAX_DATA_DIR": data_dir}
    await execute_into(
      results,
      make_notebooks.QUICK_START,
      DALLE_JAX_NOTEBOOK_WORKDIR=root,
      **shared,
    )
    if isinstance(results[make_notebooks.QUICK_START], Exception):
      results[make_notebooks.ZERO_SHOT] = RuntimeError(
        "not run: the quick start notebook, which trains its pipeline, failed"
      )
      return
    await execute_into(
      results,
      make_notebooks.ZERO_SHOT,
      DALLE_JAX_NOTEBOOK_ROOT=root,
      DALLE_JAX_NOTEBOOK_WORKDIR=root + "-unused",
      **shared,
    )

  async def both():
    await asyncio.gather(
      pipeline_notebooks(),
      execute_into(
        results,
        make_notebooks.RELEASED_WEIGHTS,
        DALLE_JAX_NOTEBOOK_WORKDIR=weights_dir,
      ),
    )

  asyncio.run(both())
  return results


def notebook_run(executed, name):
  """The executed notebook `name`; re-raises what stopped it."""
  if isinstance(executed[name], Exception):
    raise executed[name]
  return executed[name]


def outputs(notebook):
  return [
    output
    for cell in notebook.cells
    if cell.cell_type == "code"
    for output in cell.outputs
  ]


def printed(notebook) -> str:
  return "".join(
    output.text
    for output in outputs(notebook)
    if output.output_type == "stream" and output.name == "stdout"
  )


def image_count(notebook) -> int:
  return sum(
    "image/png" in output.get("data", {}) for output in outputs(notebook)
  )


@pytest.mark.parametrize("name", sorted(make_notebooks.NOTEBOOKS))
def test_notebook_files_match_their_generator(name):
  with open(os.path.join(NOTEBOOK_DIR, name)) as handle:
    text = handle.read()
  assert text == make_notebooks.render(name), (
    f"{name} is stale: run python -m experiments.notebooks.make_notebooks"
  )
  notebook = nbformat.reads(text, as_version=4)
  code = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert all(not cell.outputs for cell in code)
  # Installs on Colab only, then the parameters cell papermill looks for.
  assert 'if "google.colab" in sys.modules:' in code[0].source
  assert "!pip install" in code[0].source
  assert code[1].metadata["tags"] == ["parameters"]


def test_quick_start_trains_samples_and_shows_grids(executed):
  notebook = notebook_run(executed, make_notebooks.QUICK_START)
  text = printed(notebook)
  root = executed["root"]
  # The notebook trained every stage and the evaluation into its WORKDIR.
  for stage in ("dvae", "clip", "transformer"):
    assert os.path.isdir(os.path.join(root, stage, "params"))
  assert os.path.isfile(os.path.join(root, "report.md"))
  assert "zero_shot: one sample" in text  # the pipeline's summary
  # TINY: 2 prompts, the best 2 of 4 candidates each, scored by CLIP.
  assert "scored by clip; images (2, 2, 32, 32, 3) uint8" in text
  assert image_count(notebook) == 2  # one grid per prompt


def test_zero_shot_judges_with_and_without_reranking(executed):
  notebook = notebook_run(executed, make_notebooks.ZERO_SHOT)
  text = printed(notebook)
  accuracies = {
    name: float(value)
    for name, value in re.findall(rf"accuracy ([^:\n]+): {NUMBER}", text)
  }
  assert set(accuracies) == {
    "real images",
    "without reranking",
    "CLIP best of 4",
  }
  # The judge finds every real zero-shot image correct; samples of 4
  # prompts score a multiple of 1/4.
  assert accuracies["real images"] == 1.0
  for name in ("without reranking", "CLIP best of 4"):
    assert accuracies[name] * 4 == pytest.approx(round(accuracies[name] * 4))
  assert "('red', 'triangle')" in text  # the held-out pairs
  assert image_count(notebook) == 4  # real, first, reranked per prompt
  # It sampled from the quick start's pipeline and trained nothing.
  assert not os.path.exists(executed["root"] + "-unused")


def test_released_weights_convert_to_matching_models(executed):
  notebook = notebook_run(executed, make_notebooks.RELEASED_WEIGHTS)
  differences = dict(
    re.findall(rf"(.+): max relative difference {NUMBER}", printed(notebook))
  )
  assert set(differences) == {
    "dVAE encoder logits",
    "dVAE decoder outputs",
    "CLIP image embeddings",
    "CLIP text embeddings",
  }
  for name, value in differences.items():
    assert float(value) < 1e-4, name
  assert image_count(notebook) == 1  # originals over reconstructions
  # The stand-ins in the released formats, and the converted exports.
  workdir = executed["weights_dir"]
  for path in ("encoder.pkl", "decoder.pkl", "clip_hf/model.safetensors"):
    assert os.path.isfile(os.path.join(workdir, path))
  for export in ("dvae_openai", "clip_openai"):
    assert os.path.isfile(os.path.join(workdir, export, "config.json"))
    assert os.path.isdir(os.path.join(workdir, export, "params"))
