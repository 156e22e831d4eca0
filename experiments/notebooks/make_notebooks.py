"""Writes the Colab notebooks of experiments/notebooks/ from their cells.

The notebooks' source lives here, as plain strings, so that a change to a
notebook is a readable diff and the .ipynb files never hold outputs:
  python -m experiments.notebooks.make_notebooks

tests/test_notebooks.py checks the committed .ipynb files equal what this
writes and executes the released-weights notebook headlessly at tiny size;
tests/test_pipeline_e2e.py executes the other two on the tiny pipeline it
trains.

Every notebook starts with the same two cells: one that installs dalle_jax
when it runs on Colab, and a "parameters" cell (papermill's tag) whose
values default to environment variables, which is how the tests shrink
them: DALLE_JAX_NOTEBOOK_TINY=1, DALLE_JAX_NOTEBOOK_ROOT (a finished
pipeline work directory) and DALLE_JAX_NOTEBOOK_WORKDIR.
"""

from __future__ import annotations

import os
import sys

import nbformat

NOTEBOOK_DIR = os.path.dirname(os.path.abspath(__file__))
QUICK_START = "quick_start.ipynb"
ZERO_SHOT = "zero_shot.ipynb"
RELEASED_WEIGHTS = "released_weights.ipynb"
# Where Colab installs the package from; point it at your clone or fork.
SOURCE_URL = "git+https://github.com/OWNER/dalle_jax.git"

INSTALL = f'''\
# On Colab, install dalle_jax first. Elsewhere, install the repository
# beforehand (`pip install -e .` in its root) and this cell does nothing.
import sys

if "google.colab" in sys.modules:
  DALLE_JAX_SOURCE = "{SOURCE_URL}"  # your clone or fork
  !pip install -q "dalle_jax @ {{DALLE_JAX_SOURCE}}"
'''

# Shared by the quick start and zero-shot notebooks: the pipeline config.
LOAD_CONFIG = """\
import logging

import dalle_jax
from dalle_jax import config as config_lib
from dalle_jax import report, train

# The pipeline's progress, without orbax's and tfds's file-by-file logging
# (absl) or jax's backend search.
logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
for noisy in ("absl", "jax"):
  logging.getLogger(noisy).setLevel(logging.WARNING)

CONFIG_FILE = os.path.join(
  os.path.dirname(dalle_jax.__file__), "configs", "default.py"
)
config = config_lib.load_config(f"{CONFIG_FILE}:variant={VARIANT}", OVERRIDES)
print(f"{VARIANT}: {config.data.image_size} px images, "
      f"{config.transformer.model.grid_side}^2 codes, steps per stage: "
      f"{[config[s].train.num_steps for s in ('dvae', 'clip', 'transformer')]}")
"""

TRAIN = """\
# Trains every stage into `root`. Run again, it skips finished stages and
# resumes an interrupted one; it writes root/report.md at the end.
if PIPELINE_ROOT:
  root = PIPELINE_ROOT  # trained already: nothing to do
else:
  root = WORKDIR
  train.run(config, root)
for line in report.summary_lines(root):
  print(line)
"""

SHOW = """\
import numpy as np
from IPython.display import display
from PIL import Image

from dalle_jax import images


def show(rows, labels=None, scale=4):
  \"\"\"Displays [R, C, S, S, 3] uint8 images as a grid, `scale` times larger.

  labels: None, or one label per column of a one-row grid.
  \"\"\"
  rows = np.asarray(rows).repeat(scale, axis=2).repeat(scale, axis=3)
  grid = images.make_grid(rows)
  if labels is not None:
    grid = images.add_labels(grid, labels, tile_width=rows.shape[3])
  display(Image.fromarray(grid))
"""


def _quick_start() -> list[tuple[str, str]]:
  return [
    (
      "markdown",
      """\
# dalle_jax quick start: train on Shapes, then generate with reranking

This notebook trains the whole pipeline on the procedural Shapes data set
(the dVAE, CLIP and the transformer, see `dalle_jax/configs/default.py`)
and then turns prompts into images: for each prompt the transformer samples
`NUM_CANDIDATES` images, CLIP scores them against the prompt, and the best
`KEEP` are shown (the paper's reranking, section 2.6).

`VARIANT = "tiny"` trains in about a minute on a CPU, but its models are
far too small and short-trained to draw shapes: the images are noise. Set
`VARIANT = "shapes64"` for models that draw what the prompt says (about 45
minutes on 2 CPU cores, much less on a GPU runtime).""",
    ),
    ("code", INSTALL),
    (
      "parameters",
      """\
import os

# TINY: the smallest settings, for a quick check (the tests set it).
TINY = os.environ.get("DALLE_JAX_NOTEBOOK_TINY", "0") == "1"
# A finished pipeline work directory; '' trains one in WORKDIR.
PIPELINE_ROOT = os.environ.get("DALLE_JAX_NOTEBOOK_ROOT", "")
WORKDIR = os.environ.get("DALLE_JAX_NOTEBOOK_WORKDIR", "runs/quick_start")
VARIANT = "tiny"  # or "shapes64", see above
NUM_CANDIDATES = 4 if TINY else 32  # images sampled per prompt
# Config fields to change, e.g. {"transformer.train.num_steps": 2000}.
OVERRIDES = {}
if TINY:  # the shortest run through every step of the pipeline
  OVERRIDES = {"evaluation.splits": ("zero_shot",)}
  for stage in ("dvae", "clip", "transformer"):
    OVERRIDES[f"{stage}.train.num_steps"] = 2
KEEP = 2 if TINY else 4  # best images shown per prompt
""",
    ),
    (
      "markdown",
      """\
## Train

The first run builds the Shapes data set (in `$DALLE_JAX_DATA_DIR`, by
default `~/.cache/dalle_jax/datasets`), trains a BPE tokenizer on its
captions, then each stage in turn, and evaluates zero-shot generation. The
command-line equivalent is
`python -m dalle_jax.train --config dalle_jax/configs/default.py:variant=tiny --workdir runs/quick_start`.""",
    ),
    ("code", LOAD_CONFIG),
    ("code", TRAIN),
    (
      "markdown",
      """\
## Generate

`Generator.from_workdir` loads the three trained stages. Calling it samples
`num_candidates` images per prompt, scores each with CLIP and returns the
`keep` best, best first; the same `seed` gives the same images.""",
    ),
    (
      "code",
      """\
from dalle_jax import Generator

generator = Generator.from_workdir(root)
prompts = [
  "a large red circle in the center",
  "a blue square to the left of a yellow triangle",
  "a small green plus in the top right",
]
if TINY:
  prompts = prompts[:2]
samples = generator(
  prompts, num_candidates=NUM_CANDIDATES, keep=KEEP, rerank=True, seed=0
)
print(f"scored by {samples.scorer}; images {samples.images.shape} "
      f"{samples.images.dtype}; scores {samples.scores.shape}")
""",
    ),
    ("code", SHOW),
    (
      "code",
      """\
# One row per prompt: the KEEP best of NUM_CANDIDATES, labelled with their
# CLIP scores (higher is better).
for prompt, row, scores in zip(
  samples.prompts, samples.images, samples.scores, strict=True
):
  print(prompt)
  show(row[None], labels=[f"{score:.2f}" for score in scores])
""",
    ),
    (
      "markdown",
      """\
`root/report.md` holds the full evaluation: accuracy judged on held-out
colour-shape pairs against the number of candidates, per-attribute
accuracy, training curves and sample grids. The zero-shot notebook does
that evaluation by hand.""",
    ),
  ]


def _zero_shot() -> list[tuple[str, str]]:
  return [
    (
      "markdown",
      """\
# Zero-shot generation on Shapes, judged, with and without reranking

Eight colour-shape pairs (a red triangle, a green circle, ...) never occur
in the Shapes training set; the `zero_shot` split holds scenes made only of
them. This notebook asks a trained pipeline for such scenes, then scores
the images with the Shapes judge, which reads an image and checks every
attribute the caption states (count, colour, shape, size, position,
relation). It compares one sample per prompt with the best of
`NUM_CANDIDATES` by CLIP score (paper section 2.6 and figure 9).""",
    ),
    ("code", INSTALL),
    (
      "parameters",
      """\
import os

# TINY: the smallest settings, for a quick check (the tests set it).
TINY = os.environ.get("DALLE_JAX_NOTEBOOK_TINY", "0") == "1"
# A finished pipeline work directory; '' trains one in WORKDIR.
PIPELINE_ROOT = os.environ.get("DALLE_JAX_NOTEBOOK_ROOT", "")
WORKDIR = os.environ.get("DALLE_JAX_NOTEBOOK_WORKDIR", "runs/zero_shot")
# "tiny" trains in about a minute but draws noise; "shapes64" draws shapes.
VARIANT = "tiny"
NUM_PROMPTS = 4 if TINY else 32
NUM_CANDIDATES = 4 if TINY else 32
# Config fields to change, e.g. {"transformer.train.num_steps": 2000}.
OVERRIDES = {}
if TINY:  # the shortest run through every step of the pipeline
  OVERRIDES = {"evaluation.splits": ("zero_shot",)}
  for stage in ("dvae", "clip", "transformer"):
    OVERRIDES[f"{stage}.train.num_steps"] = 2
""",
    ),
    ("code", LOAD_CONFIG),
    ("code", TRAIN),
    (
      "markdown",
      """\
## The held-out compositions

The prompts are the canonical captions of the first distinct scenes of the
`zero_shot` split; every object in them is a held-out pair.""",
    ),
    (
      "code",
      """\
import numpy as np

from dalle_jax.data import shapes

print("held-out pairs:", sorted(shapes.HELD_OUT_PAIRS))
image_size = config.data.image_size
prompts, real_images = [], []
index = 0
while len(prompts) < NUM_PROMPTS:
  example = shapes.generate_example(
    "zero_shot", index, image_size, config.data.shapes.seed
  )
  if example["canonical_caption"] not in prompts:
    prompts.append(example["canonical_caption"])
    real_images.append(example["image"])
  index += 1
real_images = np.stack(real_images)
for prompt in prompts:
  print(" ", prompt)
""",
    ),
    ("code", SHOW),
    (
      "markdown",
      """\
## Generate, with and without reranking

Both calls sample the same `NUM_CANDIDATES` candidates per prompt (same
seed). Without reranking the first candidate is kept; with reranking, the
one CLIP scores highest.""",
    ),
    (
      "code",
      """\
from dalle_jax import Generator

generator = Generator.from_workdir(root)
options = dict(num_candidates=NUM_CANDIDATES, keep=1, seed=0)
first = generator(prompts, rerank=False, **options)
best = generator(prompts, rerank=True, **options)
print(f"scored by {best.scorer}")
""",
    ),
    (
      "markdown",
      """\
## Judge

`judge_images` returns the share of images where every stated attribute
holds (`judged_correct`) and, per attribute, the share where it fails. The
real images of the split are judged too: the judge should find them all
correct.""",
    ),
    (
      "code",
      """\
from dalle_jax.evaluate import judge_images

judged = {
  "real images": judge_images(prompts, real_images),
  "without reranking": judge_images(prompts, first.images[:, 0]),
  f"CLIP best of {NUM_CANDIDATES}": judge_images(prompts, best.images[:, 0]),
}
for name, metrics in judged.items():
  print(f"accuracy {name}: {metrics['judged_correct']:.3f}")
print()
attributes = [key for key in judged["real images"] if key.startswith("wrong_")]
print(f"{'share wrong':22}" + "".join(f"{a[6:]:>10}" for a in attributes))
for name, metrics in judged.items():
  print(f"{name:22}" + "".join(f"{metrics[a]:10.2f}" for a in attributes))
""",
    ),
    (
      "code",
      """\
# Per prompt: the real image, the first sample, the CLIP-best sample.
for p, prompt in enumerate(prompts):
  print(prompt)
  row = np.stack([real_images[p], first.images[p, 0], best.images[p, 0]])
  show(row[None], labels=["real", "first", "reranked"])
""",
    ),
  ]


def _released_weights() -> list[tuple[str, str]]:
  return [
    (
      "markdown",
      """\
# Loading released weights: OpenAI's dVAE and CLIP

`dalle_jax.weights` converts OpenAI's released dVAE (from the DALL-E
paper) and `dalle_jax.clip_weights` a released ViT CLIP into this
package's parameters. This notebook converts both, checks the converted
models compute what the originals compute, and saves them.

### Where the files come from

* **dVAE**: `encoder.pkl` and `decoder.pkl`, published in the README of
  [openai/DALL-E](https://github.com/openai/DALL-E) at
  `https://cdn.openai.com/dall-e/encoder.pkl` and
  `https://cdn.openai.com/dall-e/decoder.pkl`. The official package
  (`pip install DALL-E`, for the reference model) defines the modules.
* **CLIP**: a Hugging Face `CLIPModel` snapshot such as
  [openai/clip-vit-base-patch32](https://huggingface.co/openai/clip-vit-base-patch32):
  its `model.safetensors` with the `config.json` beside it (give the
  directory, or the file). OpenAI-layout state dicts (`visual.*`,
  `transformer.resblocks.*`) load too.

**Warning.** `encoder.pkl` and `decoder.pkl` are whole pickled PyTorch
modules: loading them unpickles, which can run any code stored in the file.
Only load files you trust (from the URLs above), or convert them once to
`.safetensors`/`.npz` state dicts, which hold tensors only. CLIP's
safetensors files are always safe to read.

Set the paths in the parameters cell. When they are empty (as in the
tests, where nothing can be downloaded), the notebook builds the official
modules with random weights as stand-ins and writes them in the same file
formats, so every step below runs the same way.""",
    ),
    (
      "code",
      INSTALL
      + """\
  !pip install -q --no-deps DALL-E  # OpenAI's dVAE modules, the reference
""",
    ),
    (
      "parameters",
      """\
import os

# TINY: the smallest settings, for a quick check (the tests set it).
TINY = os.environ.get("DALLE_JAX_NOTEBOOK_TINY", "0") == "1"
ENCODER_PATH = ""  # encoder.pkl; '' builds a random stand-in
DECODER_PATH = ""  # decoder.pkl; '' builds a random stand-in
CLIP_PATH = ""  # HF snapshot directory or model.safetensors; '' stand-in
WORKDIR = os.environ.get(
  "DALLE_JAX_NOTEBOOK_WORKDIR", "runs/released_weights"
)
# The dVAE's image side: 256 for the released model (it works at any
# multiple of 8); the tiny stand-in uses 64.
IMAGE_SIZE = 64 if TINY and not ENCODER_PATH else 256
""",
    ),
    ("markdown", "## The dVAE"),
    (
      "code",
      """\
import numpy as np
import torch
from dall_e import Decoder, Encoder, map_pixels

os.makedirs(WORKDIR, exist_ok=True)
if not (ENCODER_PATH and DECODER_PATH):
  # Stand-ins: the official modules, random weights, saved as whole pickled
  # modules like the released files. Their biases start at zero, which
  # would hide a misplaced bias: fill them with noise.
  torch.manual_seed(0)
  sizes = dict(n_hid=64, vocab_size=512, n_blk_per_group=1) if TINY else {}
  ENCODER_PATH = os.path.join(WORKDIR, "encoder.pkl")
  DECODER_PATH = os.path.join(WORKDIR, "decoder.pkl")
  for module, path in ((Encoder(**sizes), ENCODER_PATH),
                       (Decoder(**sizes), DECODER_PATH)):
    with torch.no_grad():
      for name, parameter in module.named_parameters():
        if name.endswith(".b"):
          parameter.normal_(std=0.1)
    torch.save(module, path)

# The reference: the official modules, unpickled (trusted files only).
official_encoder = torch.load(ENCODER_PATH, weights_only=False,
                              map_location="cpu").eval()
official_decoder = torch.load(DECODER_PATH, weights_only=False,
                              map_location="cpu").eval()
""",
    ),
    (
      "code",
      """\
from dalle_jax import weights

# The same as `python -m dalle_jax.weights dvae --encoder ENCODER_PATH
# --decoder DECODER_PATH --out DIR`, which also saves the result.
dvae_config, dvae_params = weights.load_openai_dvae(
  ENCODER_PATH, DECODER_PATH, IMAGE_SIZE
)
print(dvae_config)
""",
    ),
    (
      "code",
      """\
import jax

from dalle_jax.data import shapes
from dalle_jax.models.dvae import DVAE


def relative_difference(ours, reference):
  \"\"\"max |ours - reference| / max |reference|.\"\"\"
  ours, reference = np.asarray(ours), np.asarray(reference)
  return float(np.abs(ours - reference).max() / np.abs(reference).max())


# Two Shapes images as input.
pictures = np.stack([
  shapes.generate_example("validation", i, IMAGE_SIZE, 0)["image"]
  for i in range(2)
])
dvae = DVAE(dvae_config)
our_logits = jax.jit(
  lambda p, x: dvae.apply({"params": p}, x, method=DVAE.encode_logits)
)(dvae_params, pictures)
codes = np.asarray(our_logits).argmax(-1)  # [B, W, W] int
our_stats = jax.jit(
  lambda p, c: dvae.apply({"params": p}, c, method=DVAE.decode_logits)
)(dvae_params, codes)

with torch.no_grad():
  pixels = torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 255
  official_logits = official_encoder(map_pixels(pixels))
  one_hot = torch.nn.functional.one_hot(
    torch.from_numpy(codes), dvae_config.vocab_size
  ).permute(0, 3, 1, 2).float()
  official_stats = official_decoder(one_hot)
dvae_differences = {
  "encoder logits": relative_difference(
    our_logits, official_logits.permute(0, 2, 3, 1).numpy()
  ),
  "decoder outputs": relative_difference(
    our_stats, official_stats.permute(0, 2, 3, 1).numpy()
  ),
}
for name, difference in dvae_differences.items():
  print(f"dVAE {name}: max relative difference {difference:.2e}")
assert max(dvae_differences.values()) < 1e-4
""",
    ),
    (
      "code",
      """\
from IPython.display import display
from PIL import Image

from dalle_jax import images

# Originals over reconstructions (noise with the random stand-ins).
reconstructions = jax.jit(
  lambda p, c: dvae.apply({"params": p}, c, method=DVAE.decode)
)(dvae_params, codes)
display(Image.fromarray(
  images.make_grid(np.stack([pictures, np.asarray(reconstructions)]))
))
dvae_dir = os.path.join(WORKDIR, "dvae_openai")
print("saved", weights.save_dvae(dvae_dir, dvae_config, dvae_params))
""",
    ),
    (
      "markdown",
      """\
## CLIP

The stand-in is a Hugging Face `CLIPModel` from a tiny `CLIPConfig`,
saved with `save_pretrained`: `model.safetensors` plus `config.json`, the
layout of a snapshot downloaded from the Hub.""",
    ),
    (
      "code",
      """\
import transformers

if not CLIP_PATH:
  torch.manual_seed(0)
  vocab = 100
  hf_config = transformers.CLIPConfig(
    text_config=dict(
      vocab_size=vocab, hidden_size=64, intermediate_size=256,
      num_hidden_layers=2, num_attention_heads=4,
      max_position_embeddings=16, hidden_act="quick_gelu",
      bos_token_id=0, pad_token_id=1, eos_token_id=vocab - 1,
    ),
    vision_config=dict(
      image_size=32, patch_size=8, hidden_size=64, intermediate_size=256,
      num_hidden_layers=2, num_attention_heads=4, hidden_act="quick_gelu",
    ),
    projection_dim=32,
  )
  stand_in = transformers.CLIPModel(hf_config)
  with torch.no_grad():  # random everything, LayerNorms included
    for parameter in stand_in.parameters():
      parameter.copy_(torch.randn_like(parameter) * 0.2)
  CLIP_PATH = os.path.join(WORKDIR, "clip_hf")
  stand_in.save_pretrained(CLIP_PATH)
  print(sorted(os.listdir(CLIP_PATH)))

snapshot = CLIP_PATH if os.path.isdir(CLIP_PATH) else os.path.dirname(CLIP_PATH)
official_clip = transformers.CLIPModel.from_pretrained(snapshot).eval()
""",
    ),
    (
      "code",
      """\
from dalle_jax import clip_weights
from dalle_jax.models.clip import CLIP, preprocess_images

# The same as `python -m dalle_jax.clip_weights --checkpoint CLIP_PATH
# --out DIR`, which also saves the result.
clip_config, clip_params = clip_weights.load_clip_checkpoint(CLIP_PATH)
print(clip_config)
""",
    ),
    (
      "code",
      """\
side, length = clip_config.image_size, clip_config.text_length
eos = official_clip.config.text_config.eos_token_id
rng = np.random.default_rng(0)
clip_pictures = np.stack([
  shapes.generate_example("validation", i, 32, 0)["image"] for i in range(2)
])
clip_pictures = np.asarray(
  jax.image.resize(clip_pictures, (2, side, side, 3), "nearest")
).astype(np.uint8)
# Captions of random tokens, each ended by the end-of-text token.
tokens = rng.integers(2, min(eos, clip_config.text_vocab_size), (2, length))
tokens[0, 5], tokens[1, -1] = eos, eos
pixels = np.asarray(preprocess_images(clip_pictures))

clip_model = CLIP(clip_config)
our_image = clip_model.apply(
  {"params": clip_params}, pixels, method=CLIP.embed_image
)
our_text = clip_model.apply(
  {"params": clip_params}, tokens.astype(np.int32), method=CLIP.embed_text
)
with torch.no_grad():
  official = official_clip(
    input_ids=torch.from_numpy(tokens),
    pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()),
  )
clip_differences = {
  "image embeddings": relative_difference(
    our_image, official.image_embeds.numpy()
  ),
  "text embeddings": relative_difference(
    our_text, official.text_embeds.numpy()
  ),
}
for name, difference in clip_differences.items():
  print(f"CLIP {name}: max relative difference {difference:.2e}")
assert max(clip_differences.values()) < 1e-4
clip_dir = os.path.join(WORKDIR, "clip_openai")
print("saved", clip_weights.save_clip(clip_dir, clip_config, clip_params))
""",
    ),
    (
      "markdown",
      """\
The saved directories hold `params/` (orbax) and `config.json`:
`dalle_jax.checkpoint.load_params(DIR)` reads the params back and
`config.json`'s `model` section rebuilds the `DVAEConfig` or
`CLIPConfig`.""",
    ),
  ]


NOTEBOOKS = {
  QUICK_START: _quick_start,
  ZERO_SHOT: _zero_shot,
  RELEASED_WEIGHTS: _released_weights,
}


def _cell(kind: str, source: str):
  source = source.rstrip("\n")
  if kind == "markdown":
    return nbformat.v4.new_markdown_cell(source)
  cell = nbformat.v4.new_code_cell(source)
  if kind == "parameters":
    cell.metadata["tags"] = ["parameters"]
  return cell


def build(name: str) -> nbformat.NotebookNode:
  """The notebook `name` (a key of NOTEBOOKS), without outputs."""
  notebook = nbformat.v4.new_notebook()
  notebook.cells = [_cell(kind, source) for kind, source in NOTEBOOKS[name]()]
  # Fixed ids keep the files stable from one generation to the next.
  for index, cell in enumerate(notebook.cells):
    cell.id = f"cell-{index:02d}"
  notebook.metadata = {
    "kernelspec": {
      "name": "python3",
      "display_name": "Python 3",
      "language": "python",
    },
    "language_info": {"name": "python"},
    "colab": {"provenance": []},
  }
  return notebook


def render(name: str) -> str:
  """The .ipynb text of notebook `name`, as written to disk."""
  notebook = build(name)
  nbformat.validate(notebook)
  return nbformat.writes(notebook) + "\n"


def main() -> int:
  for name in NOTEBOOKS:
    path = os.path.join(NOTEBOOK_DIR, name)
    with open(path, "w") as handle:
      handle.write(render(name))
    print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
