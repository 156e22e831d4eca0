"""The train entry point end to end on tiny Shapes: logs, resume, bad input."""

import glob
import logging
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from dalle_jax import checkpoint, summaries
from dalle_jax import config as config_lib
from dalle_jax import train as train_lib
from dalle_jax.train import NonFiniteLossError, run

CONFIG = os.path.join(
  os.path.dirname(config_lib.__file__), "configs", "autoencoder.py"
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("datasets"))


def tiny_config(data_dir, **overrides):
  values = {"data.data_dir": data_dir, "train.progress_bar": False}
  values.update(overrides)
  return config_lib.load_config(f"{CONFIG}:variant=tiny", values)


def test_tiny_run_end_to_end(tmp_path, data_dir):
  workdir = str(tmp_path / "run")
  config = tiny_config(data_dir, **{"train.num_steps": 12})
  metrics = run(config, workdir)
  assert np.isfinite(metrics["loss"]) and metrics["psnr"] > 0
  records = summaries.read_metrics(workdir)
  train = [r for r in records if r["split"] == "train"]
  evals = [r for r in records if r["split"] == "eval"]
  # Logged every 2 steps, and before each evaluation (every 3).
  assert [r["step"] for r in train] == [2, 3, 4, 6, 8, 9, 10, 12]
  assert [r["step"] for r in evals] == [3, 6, 9, 12]
  assert train[-1]["loss"] < train[0]["loss"]
  assert {"grad_norm", "examples_per_second", "learning_rate"} <= set(train[0])
  pngs = sorted(glob.glob(os.path.join(workdir, "images", "*.png")))
  assert len(pngs) == 4
  assert glob.glob(os.path.join(workdir, "tensorboard", "events.out.*"))
  steps = sorted(os.listdir(os.path.join(workdir, checkpoint.CHECKPOINT_DIR)))
  assert steps == ["10", "12", "8"]  # keep_checkpoints=3
  assert os.path.exists(os.path.join(workdir, "tokenizer.model"))
  params = checkpoint.load_params(workdir)
  assert params["to_rgb"]["kernel"].shape == (3, 3, 8, 3)


def _train_cli(workdir, data_dir, num_steps):
  return [
    sys.executable,
    "-m",
    "dalle_jax.train",
    f"--config={CONFIG}:variant=tiny",
    f"--workdir={workdir}",
    f"--config.data.data_dir={data_dir}",
    f"--config.train.num_steps={num_steps}",
    "--config.train.checkpoint_every=2",
    "--config.train.progress_bar=False",
  ]


def test_killed_run_resumes_to_same_parameters(tmp_path, data_dir):
  num_steps = 24
  reference_dir = str(tmp_path / "uninterrupted")
  run(tiny_config(data_dir, **{"train.num_steps": num_steps}), reference_dir)

  workdir = str(tmp_path / "killed")
  process = subprocess.Popen(
    _train_cli(workdir, data_dir, num_steps),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  checkpoints = os.path.join(workdir, checkpoint.CHECKPOINT_DIR)
  deadline = time.time() + 120
  while time.time() < deadline and process.poll() is None:
    done = (
      [d for d in os.listdir(checkpoints)] if os.path.isdir(checkpoints) else []
    )
    if any(d.isdigit() and int(d) >= 4 for d in done):
      break
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  killed_at = max(int(d) for d in os.listdir(checkpoints) if d.isdigit())
  assert killed_at < num_steps, "the run finished before it could be killed"

  resumed = subprocess.run(
    _train_cli(workdir, data_dir, num_steps), capture_output=True, text=True
  )
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f"Resumed from checkpoint at step {killed_at}" in resumed.stderr
  expected = checkpoint.load_params(reference_dir)
  actual = checkpoint.load_params(workdir)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
    actual,
    expected,
  )


def test_corrupt_checkpoint_falls_back_to_previous(tmp_path, data_dir, caplog):
  workdir = str(tmp_path / "run")
  run(tiny_config(data_dir), workdir)  # saves steps 2, 4, 6
  newest = os.path.join(workdir, checkpoint.CHECKPOINT_DIR, "6")
  for path in glob.glob(
    os.path.join(newest, "state", "**", "*"), recursive=True
  ):
    if os.path.isfile(path):
      with open(path, "wb") as handle:
        handle.write(b"\0garbage")
  with caplog.at_level(logging.INFO):
    run(tiny_config(data_dir, **{"train.num_steps": 8}), workdir)
  assert "Checkpoint at step 6 is unreadable" in caplog.text
  assert "Resumed from checkpoint at step 4" in caplog.text
  # Nothing is deleted: the bad checkpoint is kept aside for inspection.
  assert os.path.isdir(os.path.join(workdir, checkpoint.CORRUPT_DIR, "6"))
  steps = os.listdir(os.path.join(workdir, checkpoint.CHECKPOINT_DIR))
  assert "8" in steps


def test_workdir_of_another_config_is_refused(tmp_path, data_dir):
  workdir = str(tmp_path / "run")
  run(tiny_config(data_dir), workdir)
  before = sorted(os.listdir(os.path.join(workdir, checkpoint.CHECKPOINT_DIR)))
  other = tiny_config(data_dir, **{"model.widths": (4, 8)})
  with pytest.raises(checkpoint.ConfigMismatchError, match="model"):
    run(other, workdir)
  after = sorted(os.listdir(os.path.join(workdir, checkpoint.CHECKPOINT_DIR)))
  assert before == after


def test_non_finite_loss_stops_with_step(tmp_path, data_dir):
  workdir = str(tmp_path / "run")
  config = tiny_config(
    data_dir,
    **{
      "optim.lr": float("nan"),
      "optim.warmup_steps": 0,
      "train.checkpoint_every": 1,
      "train.log_every": 1,
    },
  )
  with pytest.raises(NonFiniteLossError) as error:
    run(config, workdir)
  message = str(error.value)
  assert "at step 2" in message
  assert "Last good checkpoint: step 1" in message
  steps = os.listdir(os.path.join(workdir, checkpoint.CHECKPOINT_DIR))
  assert steps == ["1"]


def test_dvae_stage_runs_end_to_end(tmp_path, data_dir):
  dvae_config = os.path.join(os.path.dirname(CONFIG), "dvae.py")
  config = config_lib.load_config(
    f"{dvae_config}:variant=tiny",
    {"data.data_dir": data_dir, "train.progress_bar": False},
  )
  workdir = str(tmp_path / "dvae")
  metrics = run(config, workdir)
  for name in ("psnr", "codebook_usage", "dead_codes", "kl_per_cell"):
    assert np.isfinite(metrics[name])
  assert 0.0 <= metrics["zero_shot_judged_correct"] <= 1.0
  assert metrics["dead_codes"] == pytest.approx(
    config.model.vocab_size * (1.0 - metrics["codebook_usage"])
  )
  train = [r for r in summaries.read_metrics(workdir) if r["split"] == "train"]
  assert train[0]["temperature"] > train[-1]["temperature"]
  assert train[0]["kl_weight"] < train[-1]["kl_weight"]
  assert len(glob.glob(os.path.join(workdir, "images", "*.png"))) == 2


def test_evaluation_logs_the_task_s_warnings(tmp_path, caplog):
  from dalle_jax.tasks import dvae as dvae_task
  from dalle_jax.train import Loop, Steps

  def eval_step(params, batch, rng):
    return {"code_perplexity": 1.0, "codebook_usage": 1 / 32}

  loop = Loop(
    config=tiny_config(str(tmp_path)),
    workdir=str(tmp_path),
    steps=Steps(train=None, eval=eval_step, preview=None),
    batches=None,
    eval_data=[{}],
    writer=summaries.MetricWriter(str(tmp_path)),
    checkpointer=None,
    step_rng=None,
    eval_rng=None,
    sources=None,
    eval_warnings=lambda m: dvae_task.collapse_warnings(m, 32),
  )
  with caplog.at_level(logging.WARNING):
    metrics = loop.evaluate(500, params=None)
  loop.writer.close()
  assert metrics["code_perplexity"] == 1.0
  warnings = [r.getMessage() for r in caplog.records]
  assert len(warnings) == 1
  assert warnings[0].startswith("Step 500: the dVAE's codebook has collapsed")
  assert "use 1 of 32 codes" in warnings[0]


class _Collect(logging.Handler):
  def __init__(self):
    super().__init__()
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def test_logging_drops_third_party_chatter_but_keeps_warnings():
  train_lib.configure_logging()
  train_lib.configure_logging()  # twice, as tests and notebooks do
  assert logging.getLogger("absl").filters.count(train_lib.TFDS_NOTICES) == 1
  collect = _Collect()
  logging.getLogger().addHandler(collect)  # after basicConfig(force=True)
  try:
    logging.getLogger("absl").warning("OpenCV is not installed. We recommend")
    logging.getLogger("absl").warning("Using custom data configuration: X")
    logging.getLogger("absl").warning("a checkpoint could not be read")
    logging.getLogger("jax._src.xla_bridge").info("Unable to initialize 'tpu'")
    logging.getLogger("jax._src.xla_bridge").warning("no GPU found")
    logging.getLogger("dalle_jax.train").info("step 10")
  finally:
    logging.getLogger().removeHandler(collect)
  assert collect.messages == [
    "a checkpoint could not be read",
    "no GPU found",
    "step 10",
  ]


def test_metrics_are_shown_to_four_significant_digits():
  metrics = {
    "loss": 0.022502902895212173,
    "top1": np.float32(0.99609375),
    "psnr": 27.0812,
    "step": 1200,
    "split": "eval",
  }
  assert summaries.format_metrics(metrics) == (
    "loss 0.0225, top1 0.9961, psnr 27.08, step 1200, split eval"
  )
