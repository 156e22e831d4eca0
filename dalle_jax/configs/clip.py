"""The CLIP reranker (paper §2.6), trained from scratch on the run's data.

Run the CPU Shapes model (64 px, conv stem then a ViT over 8x8 patches,
128 wide):
  python -m dalle_jax.train --config dalle_jax/configs/clip.py \
    --workdir runs/clip

Convolutional stem (`model.stem_widths`, (32, 64, 128) here; Xiao et al.
2021): three 3x3 stride-2 convs with ReLU take the 64 px image to 8x8 x
128 before a 1x1 patch embedding, so the tower still sees 8x8 patches, but
each is read through overlapping non-linear filters instead of one linear
map of 8x8 pixels. Measured on a 2-core AMD EPYC (2026-12-05):
- step time in one process, batch 64: 0.98 s against 0.76 s with linear
  8-px patches (1.29x; 29.5 against 25.9 GFLOP), so the 1,200 steps took
  24 min 51 s (runs/clip_s18_stem, the machine at 1.1-1.4 s a step);
- retrieval top-1 among 64 pairs (image->text / text->image): 99.6 /
  99.2% on validation and 92.2 / 90.6% on the held-out `zero_shot` pairs,
  against 94.5 / 94.5% and 75.4 / 73.4% for the same CLIP with linear
  patches (runs/pipeline_s17/clip.s17_patch8); it passed 91% on
  validation by step 400, where the linear one was at 77%;
- as the reranker of one default run's candidates (runs/pipeline_s17,
  `experiments/rerank_scorers.py`), best of 64 on seen pairs 100%
  against 92.2% (gain over one sample +7.4 +- 1.5 points against -0.4 +-
  2.9), on held-out pairs 81.2% against 79.7%: held-out prompts with a
  plus fail either way, because most of their candidates show a blob
  where the plus should be (9-44% of the candidates of the failing "white
  plus" and "blue plus" prompts are judged correct).
`model.stem_widths=()` restores the linear patch embedding (OpenAI's
layout, which `variant=paper` keeps for released weights).

Linear 8-px patches, the default until 2026-12-05 (variant=shapes64 with
`model.stem_widths=()`): about 0.5 s a step on idle cores of the Intel
machine (30 GFLOP; 0.87 CPU-seconds measured), so the 1,200 steps took
about 11 minutes (10 min 54 s in the default pipeline with one hard
negative per image, 10 min 24 s without). One run without hard negatives
ended with top-1 retrieval among 64 validation pairs (chance 1.6%) of 91%
image->text and 89% text->image, and 67% / 70% on the held-out
`zero_shot` pairs (eval metrics `zero_shot_*`); it passed 50% after 100
steps. The log temperature rose from 2.66 only to 3.06 (a scale
of 21), far from the clamp. The experiments below (hard negatives aside)
used linear patches.

Hard negatives (`data.hard_negatives` K; on by default on Shapes, K=1):
each image also meets K captions of its own with one object's shape
swapped (a seen pair still), so the image->text side must tell shapes
apart at equal colours and layout, which reranking one prompt's
candidates asks. Measured (2026-11-22) as rerankers of the same default
run's candidates (`experiments/rerank_scorers.py --clip_workdir`; best of
64 on 64 prompts, zero_shot / validation): without 81.2 / 98.4%; K=1 89.1 /
96.9%; K=4 85.9 / 98.4%; K=2 swapping shape or colour
(`hard_negative_attributes=('shape', 'colour')`) 78.1 / 93.8%. Retrieval
hardly moves (K=1: 93 / 74% image->text on validation / zero_shot).
`--config.data.hard_negatives=0` turns them off; a folder of images gets
none (its captions have no swap rule).

Reconstructions (`dvae.reconstruct`, off by default; `dvae.workdir` a
finished dVAE run, which the pipeline sets to its own): CLIP trains and
evaluates on the frozen dVAE's reconstructions of its images, the domain
of the decoded candidates it reranks. On renderings CLIP tells a plus from
a shape-swapped caption for 95-100% of images, on the dVAE's
reconstructions of the same images for 71-86%
(`experiments/clip_domain_gap.py`), and every wrong pick of the default
run's reranking is a plus. Each step then also runs the dVAE's encoder and
decoder on the batch (about 0.3 s more a step on 2 cores). Measured
(2026-11-22, runs/clip_s9_recon, the default run's dVAE and tokenizer, one
hard negative): retrieval top-1 image->text 95.7% on validation and 85.2%
on zero_shot (on reconstructions; 93 / 74% for the default CLIP on
renderings), but as the reranker of the default run's candidates best of
64 is 84.4 / 93.8% (zero_shot / validation) against 85.9 / 92.2% for the
default CLIP: no better, so it stays off.

Image hard negatives (`data.negative_images`, off by default; Shapes):
each image also brings its twin with one object redrawn as another shape
(same colour and box, a seen pair), a negative for its caption on the
text->image side, the direction in which reranking compares one prompt's
candidates. The image tower then runs over twice the images: a step took
0.97 s instead of about 0.5. Measured (2026-11-22, runs/clip_s10_negimg,
text length 16, one hard negative caption too) as the reranker of the
default run's candidates, best of 64 zero_shot / validation: 87.5 / 93.8%
against 85.9 / 92.2% for the default CLIP, one prompt each, within the
noise of 64 prompts, for twice CLIP's time: it stays off.

Training jitter (`data.image_jitter` j, 0 by default): each training image
(and image negative) is moved by its own random (dy, dx) in {-j..j}^2,
edge pixels repeated (`tasks.clip.jittered_images`). It was tried as a
cheaper stand-in for the evaluation's scoring over shifted copies
(`evaluation.clip_image_shift` 1 costs 9 passes of the image tower per
candidate): a CLIP that has seen every 1-px phase might score one view as
well. It does not. Measured (2026-12-06; the default run's tokenizer,
runs/clip_jit1_1200 and runs/clip_jit1_800, reranking the default run's
candidates at temperature 0.8 on the report's 64 prompts and on 64 fresh
held-back prompts, the sampling sweep's prompts 65-128, which chose
nothing), prompts right of 64 with CLIP's best of 64, held-out report +
fresh / seen report + fresh:
- default CLIP, shift 1 (the evaluation's): 59 + 58 / 64 + 62;
- default CLIP, shift 0: 57 + 56 / 64 + 60;
- jitter 1, 1,200 steps, shift 0: 56 + 54 / 63 + 61 (shift 1, fresh
  prompts only: 55 / 60);
- jitter 1, 800 steps, shift 0: 58 + 51 / 63 + 60 (shift 1, report's
  prompts only: 54 / 61).
The rule set before the results (adopt at shift 0 if held-out comes within
one prompt of the default at shift 1 and seen reaches 63 of 64 in each
set) rejects both. Retrieval at 1,200 steps matched the default's (top-1
image->text 99.6% / 91.8% on validation / zero_shot, against 99.6 /
92.2%); at 800 steps it fell to 97.7 / 84.8%.

Patch size (`model.patch_size`, 8 here): at 4 px the step costs 4.2x the
FLOPs (110 against 26 GFLOP, XLA cost analysis), 2.2x with 2 vision
layers. Measured (2026-12-05, runs/clip_s17_patch4_l2_600: 4 px, 2 vision
layers, 600 steps, against the default run runs/pipeline_s17 on an AMD
2-core machine): it reads the dVAE's decoded pluses as well as rendered
ones (`experiments/clip_domain_gap.py`, plus swapped, validation: 94%
originals / 96% reconstructions, against 100 / 86% at 8 px) but is weaker
elsewhere (retrieval top-1 84 / 58% on validation / zero_shot; triangles
65% on held-out reconstructions); as the reranker of that run's candidates
best of 64 is 82.8 / 93.8% (zero_shot / validation) against 79.7 / 92.2%
for the default CLIP, within the noise of 64 prompts. The full 4-px model
(4 layers, 1,200 steps, about 80 min on that machine) is untried.

Repainting (`data.recolour` p; None, the default, is 0.5 on Shapes and 0 on
a folder): each training example has, with probability p, every object
repainted in a random colour off the palette whose nearest palette entry
still makes a seen pair with its shape, and its caption's colour words
renamed to those entries (`shapes.recoloured_example`). Shapes then meet
many more colours, and no held-out pair is ever drawn or named (SHAPES.md
asks for augmentations of that kind). Measured (2026-12-06,
runs/clip_recolour50, the default run's tokenizer, 1,200 steps): a step
about 5% slower (the pipeline's CLIP stage took 13 min 13 s at a median 1.59
steps a second, against 12 min 24-26 s at 1.67 without; repainting runs on
the host, beside the step, on the same 2 cores); retrieval top-1 99.6 /
99.6% on validation and 92.2 / 92.2% on zero_shot (without: 99.6 / 99.2% and
92.2 / 90.6%), zero_shot loss 0.30 (0.35). As the reranker of the same
candidates, best of 64, zero_shot / validation: on the report's 64 prompts
89.1 / 100% either way (3 prompts each way on zero_shot); on 64 held-back
prompts (sampling_sweep, never used to choose anything; `python -m
experiments.rerank_scorers --workdir runs/default --clip_workdir
runs/clip_recolour50 --candidates
'runs/default/sampling_sweep/{split}/temperature=0.8.npz'`) **87.5 / 100%**
against 78.1 / 96.9% (7 prompts gained and 1 lost on zero_shot, 2 gained on
validation). Over all 128 held-out prompts it gains 10 and loses 4 (exact
McNemar p = 0.18): a likely gain, not a proven one.
`--config.data.recolour=0` turns it off.

`images/` shows, for each of the first validation captions, its own image
and then the batch ranked by CLIP score, best first. `variant=tiny` runs in
seconds (tests); `variant=paper` is OpenAI's ViT-B/32 (Radford et al. 2021)
on 256 px images with CLIP's optimiser, for accelerators.

The text side matches the transformer stage's (`data.text_length`,
`tokenizer.vocab_size`), so both stages train the same tokenizer on the same
captions. The model initialises its log temperature at ln(1 / 0.07) and the
task clamps it to [0, ln 100] after every update.
"""

from ml_collections import ConfigDict, config_dict

from dalle_jax import config as config_lib

VARIANTS = ("tiny", "shapes64", "paper")


def get_config(arg: str | None = None):
  variant = config_lib.parse_variant(arg, VARIANTS)
  config = config_lib.base_config()
  config.task = "clip"

  config.data.image_size = 64
  config.data.text_length = 16  # as the transformer's (see its config)
  config.tokenizer.vocab_size = 256

  config.model.patch_size = 8
  # Three 3x3 stride-2 convs (64 -> 8 px) before a 1x1 patch embedding: the
  # tower reads decoded shapes far better than from linear 8-px patches
  # (see "Convolutional stem" above), for 1.3x the step time.
  config.model.stem_widths = (32, 64, 128)
  config.model.vision_width = 128
  config.model.vision_layers = 4
  config.model.vision_heads = 4
  config.model.text_width = 128
  config.model.text_layers = 3
  config.model.text_heads = 4
  config.model.embed_dim = 128
  config.model.mlp_ratio = 4
  config.model.activation = "quick_gelu"

  # CLIP (Radford et al. 2021, §2.5 and App. F): AdamW with beta2 0.98,
  # eps 1e-6, decoupled weight decay 0.2, warm-up then cosine decay.
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 100
  config.optim.schedule = "cosine"
  config.optim.end_lr_factor = 0.01
  config.optim.b1 = 0.9
  config.optim.b2 = 0.98
  config.optim.eps = 1e-6
  # Decay only kernels and embeddings (CLIP: "all weights that are not gains
  # or biases"); the log temperature is exempt and can reach its clamp.
  config.optim.decay = "matrices"
  config.optim.weight_decay = 0.2
  config.optim.grad_clip_norm = 1.0
  config.optim.ema_decay = 0.0

  # 64 pairs a step: 29.5 GFLOP with the stem, 1.0-1.4 s on the AMD
  # machine's 2 cores, so 1,200 steps take 20-25 minutes there.
  config.data.batch_size = 64
  config.data.eval_batch_size = 64
  # Swapped captions per image (tasks/clip.py), each swapping one object's
  # attribute drawn from hard_negative_attributes. None: the data set's
  # default (config.DEFAULT_HARD_NEGATIVES: 1 on Shapes, 0 on a folder,
  # whose captions have no swap rule); an explicit K > 0 needs Shapes.
  config.data.hard_negatives = config_dict.placeholder(int)
  config.data.hard_negative_attributes = ("shape",)
  # Each image also brings its twin with one object redrawn as another
  # shape (same colour and box, a seen pair), a negative for its caption
  # on the text->image side (Shapes only): the direction reranking uses.
  config.data.negative_images = False
  # Random moves of training images by up to this many pixels: tried as a
  # stand-in for the evaluation's shifted copies, no better (docstring).
  config.data.image_jitter = 0
  # Share of training examples repainted in random colours that still read
  # as seen pairs, their captions renamed to match (Shapes only; see the
  # docstring). None: the data set's default (config.DEFAULT_RECOLOUR: 0.5
  # on Shapes, 0 on a folder, and 0 beside negative_images).
  config.data.recolour = config_dict.placeholder(float)
  # CLIP reranks the dVAE's decodings; with `reconstruct` it trains and
  # evaluates on the frozen dVAE's reconstructions of its images instead of
  # the renderings (experiments/clip_domain_gap.py measures the gap). The
  # pipeline points `workdir` at its own dVAE.
  config.dvae = ConfigDict()
  config.dvae.workdir = "runs/dvae"
  config.dvae.reconstruct = False
  # Neither fewer nor more steps rerank better. 800 steps (2026-12-06,
  # runs/budget_c800_t1600/clip) kept retrieval but picked 85.9 / 95.3%
  # (zero_shot / validation, best of 64) against 89.1 / 100%. 1,600 steps
  # with repainting (runs/clip_rc1600: zero_shot loss 0.25 against 0.30,
  # retrieval 91.8 / 92.6%) picked right for 112 of 128 held-out prompts
  # (the report's and the held-back ones) against 1,200's 113, and 126 of
  # 128 seen ones against 128, at 4 more minutes.
  config.train.num_steps = 1_200
  config.train.log_every = 50
  config.train.eval_every = 200
  config.train.checkpoint_every = 200
  config.train.eval_batches = 4

  if variant == "tiny":
    config_lib.shrink_to_tiny(config)
    config.data.text_length = 8
    config.model.patch_size = 8
    config.model.stem_widths = (4,)  # the stem's code path, at little cost
    config.model.vision_width = 16
    config.model.vision_layers = 1
    config.model.vision_heads = 2
    config.model.text_width = 16
    config.model.text_layers = 1
    config.model.text_heads = 2
    config.model.embed_dim = 8
    config.optim.lr = 3e-3
  elif variant == "paper":
    # ViT-B/32 (Radford et al. 2021, Table 20) on DALL-E's 256 px images: an
    # 8 x 8 patch grid; 77 text positions as CLIP, with DALL-E's BPE size.
    config.data.image_size = 256
    config.data.text_length = 77
    config.tokenizer.vocab_size = 16384
    config.model.patch_size = 32
    config.model.stem_widths = ()  # OpenAI's linear patch embedding
    config.model.vision_width = 768
    config.model.vision_layers = 12
    config.model.vision_heads = 12
    config.model.text_width = 512
    config.model.text_layers = 12
    config.model.text_heads = 8
    config.model.embed_dim = 512
    config.optim.lr = 5e-4
    config.optim.warmup_steps = 2_000
    config.optim.grad_clip_norm = 0.0
    config.optim.end_lr_factor = 0.0
    # CLIP's batch of 32,768 for 32 epochs of 400M pairs.
    config.data.batch_size = 32_768
    config.data.eval_batch_size = 1_024
    config.train.num_steps = 390_000
    config.train.eval_every = 5_000
    config.train.checkpoint_every = 5_000
  return config.lock()
