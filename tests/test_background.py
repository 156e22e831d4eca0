"""A step in a second process: its log, its failure, stopping it.

The targets are stdlib functions: the second process imports a target's
module by name, and a test module is not importable there.
"""

import operator
import time

import pytest

from dalle_jax import background


def test_output_goes_to_the_log_and_wait_returns_the_time(tmp_path):
  log_path = str(tmp_path / "train.log")
  run = background.start("greeting", print, ("hello from the child",), log_path)
  run.ended.wait()
  ended_at = time.perf_counter()
  time.sleep(1.0)
  # The time it ran, not the time until something waited for it.
  assert 0 < run.wait() <= ended_at - run.started
  with open(log_path) as handle:
    assert "hello from the child" in handle.read()


def test_a_failure_names_the_step_and_quotes_its_log(tmp_path, caplog):
  log_path = str(tmp_path / "train.log")
  with caplog.at_level("ERROR"):
    run = background.start("clip", operator.truediv, (1, 0), log_path)
    # Told as soon as it fails, before anything waits for the step.
    deadline = time.perf_counter() + 60
    while "clip failed" not in caplog.text and time.perf_counter() < deadline:
      time.sleep(0.05)
  assert (
    "clip failed in its second process (exit code 1); the pipeline "
    f"stops before the step that reads it. Its log: {log_path}" in caplog.text
  )
  with pytest.raises(background.BackgroundStepError) as failure:
    run.wait()
  message = str(failure.value)
  assert "clip failed in its second process (exit code 1)" in message
  assert log_path in message
  assert "ZeroDivisionError: division by zero" in message


def test_stop_ends_a_running_step_without_calling_it_a_failure(
  tmp_path, caplog
):
  run = background.start("sleeper", time.sleep, (120,), str(tmp_path / "log"))
  start = time.perf_counter()
  with caplog.at_level("ERROR"):
    run.stop()
    time.sleep(0.5)  # time for the watcher to see the exit
  assert not run.process.is_alive()
  assert time.perf_counter() - start < 30
  assert "sleeper failed" not in caplog.text


def test_log_tail_splits_progress_redraws(tmp_path):
  path = tmp_path / "train.log"
  path.write_text("first\nbar 1%\rbar 50%\rbar 100%\nlast\n")
  assert background.log_tail(str(path), lines=3) == "bar 50%\nbar 100%\nlast"
  assert (
    background.log_tail(str(tmp_path / "missing")) == "(no log was written)"
  )
