"""Tiny convolutional autoencoder on Shapes: the harness's proof model.

Run (the embedded default until the dVAE replaces it):
  python -m dalle_jax.train --config dalle_jax/configs/autoencoder.py \
    --workdir runs/autoencoder

Expected (variant=shapes64, 2 CPU cores): about 5 minutes including building
the 64 px Shapes set; validation PSNR above 25 dB; `images/` shows originals
(top) over reconstructions (bottom). `variant=tiny` runs in seconds (tests).
"""

from dalle_jax import config as config_lib

VARIANTS = ("tiny", "shapes64")


def get_config(arg: str | None = None):
  variant = config_lib.parse_variant(arg, VARIANTS)
  config = config_lib.base_config()
  config.task = "autoencoder"
  config.model.widths = (16, 32)
  config.optim.lr = 2e-3
  config.optim.warmup_steps = 100
  config.train.num_steps = 1_000
  config.train.log_every = 50
  config.train.eval_every = 500
  config.train.checkpoint_every = 500
  if variant == "tiny":
    config_lib.shrink_to_tiny(config)
    config.model.widths = (8, 16)
  return config.lock()
