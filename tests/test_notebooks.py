"""The Colab notebooks of experiments/notebooks/: files, and released weights.

The committed .ipynb files must equal what their generator writes. The
released-weights notebook runs here at tiny size (tests/notebook_kernels.py
runs it). The quick start and zero-shot notebooks need a trained pipeline:
they run in tests/test_pipeline_e2e.py, on the one that module trains.
"""

import os
import re

import pytest
from notebook_kernels import (
  NUMBER,
  execute_all,
  image_count,
  make_notebooks,
  notebook_run,
  printed,
)

nbformat = pytest.importorskip("nbformat")
notebooks = make_notebooks()


@pytest.mark.parametrize("name", sorted(notebooks.NOTEBOOKS))
def test_notebook_files_match_their_generator(name):
  with open(os.path.join(notebooks.NOTEBOOK_DIR, name)) as handle:
    text = handle.read()
  assert text == notebooks.render(name), (
    f"{name} is stale: run python -m experiments.notebooks.make_notebooks"
  )
  notebook = nbformat.reads(text, as_version=4)
  code = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert all(not cell.outputs for cell in code)
  # Installs on Colab only, then the parameters cell papermill looks for.
  assert 'if "google.colab" in sys.modules:' in code[0].source
  assert "!pip install" in code[0].source
  assert code[1].metadata["tags"] == ["parameters"]


def test_released_weights_convert_to_matching_models(tmp_path):
  workdir = str(tmp_path / "released_weights")
  notebook_name = notebooks.RELEASED_WEIGHTS
  results = execute_all(
    {notebook_name: {"DALLE_JAX_NOTEBOOK_WORKDIR": workdir}}
  )
  notebook = notebook_run(results, notebook_name)
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
  for path in ("encoder.pkl", "decoder.pkl", "clip_hf/model.safetensors"):
    assert os.path.isfile(os.path.join(workdir, path))
  for export in ("dvae_openai", "clip_openai"):
    assert os.path.isfile(os.path.join(workdir, export, "config.json"))
    assert os.path.isdir(os.path.join(workdir, export, "params"))
