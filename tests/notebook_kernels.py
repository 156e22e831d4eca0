"""Runs the Colab notebooks of experiments/notebooks/ headlessly, and reads them.

Shared by tests/test_notebooks.py (the released-weights notebook) and
tests/test_pipeline_e2e.py (the quick start and zero-shot notebooks, on the
pipeline that module trains). Each notebook runs in a fresh kernel
(nbclient), shrunk by the environment variables its parameters cell reads;
a cell that raises fails the test. Checks read the outputs: displayed
images and printed figures.
"""

import asyncio
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def make_notebooks():
  """The notebooks' generator module; skips the test without nbclient."""
  pytest.importorskip("nbformat")
  pytest.importorskip("nbclient")
  from experiments.notebooks import make_notebooks as module

  return module


async def execute(name, **env):
  """Runs notebook `name` in a fresh kernel; returns it with its outputs."""
  import nbclient
  import nbformat

  path = os.path.join(make_notebooks().NOTEBOOK_DIR, name)
  notebook = nbformat.read(path, as_version=4)
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


def execute_all(runs: dict[str, dict[str, str]]) -> dict:
  """Runs {notebook name: env} at the same time, one kernel each.

  On two cores, one kernel compiling leaves the other core idle.

  Returns:
    {notebook name: executed notebook, or the exception it raised}.
  """
  results = {}

  async def all_of_them():
    await asyncio.gather(
      *(execute_into(results, name, **env) for name, env in runs.items())
    )

  asyncio.run(all_of_them())
  return results


def notebook_run(results, name):
  """The executed notebook `name`; re-raises what stopped it."""
  if isinstance(results[name], Exception):
    raise results[name]
  return results[name]


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
