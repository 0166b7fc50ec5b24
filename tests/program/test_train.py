"""The training program end to end: outputs, exact resume (also after SIGKILL), overrides, NaN."""

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import pytest

from fergan.checkpointing import Checkpoints
from fergan.data import pipeline
from fergan.experiments import train
from tests.program.helpers import recomputed_accuracy, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(tempfile.gettempdir(), "fergan-jax-cache")


@pytest.fixture(scope="module")
def full_run(data_dir, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("full"))
    config = tiny_config(data_dir=data_dir)
    config.train.eval_every = 5
    return workdir, train.train_and_evaluate(config, workdir)


def final_state(workdir, config):
    setup = train.Setup(config, workdir)
    state, data = setup.checkpoints.restore(setup.initial_state)
    setup.checkpoints.close()
    return state, data


def assert_bit_identical(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))


def test_run_writes_checkpoints_events_summary_and_samples(full_run, data_dir):
    workdir, summary = full_run
    assert summary["steps"] == 10 and summary["stage1_steps"] == 5
    with open(os.path.join(workdir, "summary.json")) as f:
        on_disk = json.load(f)
    assert on_disk["variant"] == "FESR_JL" and on_disk["config"] == "demo_paper"
    # The final checkpoint's predictions on the test split give the reported accuracy.
    config = tiny_config(data_dir=data_dir)
    assert on_disk["eval"]["accuracy"] == recomputed_accuracy(workdir, config)
    assert on_disk["train_last_step"]["stage"] == 2.0
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10", "4", "8"]
    assert os.listdir(os.path.join(workdir, "best"))  # best by held-out accuracy
    assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
    for name in ("expressions.png", "intensity_sweep.png", "prior_faces.png"):
        assert os.path.getsize(os.path.join(workdir, "samples", name)) > 1000
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["model"]["width"] == 0.125


def test_resume_is_bit_identical(full_run, data_dir, tmp_path):
    full_dir, full_summary = full_run
    config = tiny_config(data_dir=data_dir)
    config.train.eval_every = 5
    stopped = train.train_and_evaluate(config, str(tmp_path), stop_after=6)
    assert stopped["stopped_at"] == 6
    resumed = train.train_and_evaluate(config, str(tmp_path))
    assert resumed["resumed_from_step"] == 6
    assert resumed["train_last_step"] == full_summary["train_last_step"]
    a, data_a = final_state(full_dir, config)
    b, data_b = final_state(str(tmp_path), config)
    assert int(a.step) == int(b.step) == 10
    assert data_a == data_b
    assert_bit_identical(a, b)


def test_sigkill_while_writing_a_checkpoint_then_resume(full_run, data_dir, tmp_path):
    full_dir, _ = full_run
    workdir, marker = str(tmp_path / "run"), str(tmp_path / "stalled")
    env = dict(
        os.environ, FERGAN_TEST_JAX_CACHE=os.path.join(tempfile.gettempdir(), "fergan-jax-cache")
    )
    driver = os.path.join(ROOT, "tests", "program", "checkpoint_driver.py")
    # Stall the save after step 8 (the iterator has served 8 batches), then kill.
    proc = subprocess.Popen(
        [sys.executable, driver, workdir, data_dir, "8", marker],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.time() + 300
    while not os.path.exists(marker):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Step 8's checkpoint was mid-write: the complete ones end at step 4.
    manager = Checkpoints(workdir, keep=3)
    assert manager.latest_step() == 4
    manager.close()
    done = subprocess.run(
        [sys.executable, driver, workdir, data_dir, "-1", marker], env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    config = tiny_config(data_dir=data_dir)
    assert_bit_identical(final_state(full_dir, config)[0], final_state(workdir, config)[0])


def test_resume_refuses_a_shape_changing_config(full_run, data_dir):
    workdir, _ = full_run
    config = tiny_config(data_dir=data_dir)
    config.model.width = 0.25
    with pytest.raises(ValueError, match=r"model\.width=0\.125.*model\.width=0\.25"):
        train.train_and_evaluate(config, workdir)


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    make = pipeline.make_train_iterator

    class Poisoned:
        """Serves batches like the real iterator, with a NaN image in the 7th batch."""

        def __init__(self, *args, **kwargs):
            self.inner, self.served = make(*args, **kwargs), 0

        def __next__(self):
            batch = next(self.inner)
            self.served += 1
            if self.served == 7:
                batch["x"] = np.full_like(batch["x"], np.nan)
            return batch

        def get_state(self):
            return self.inner.get_state()

        def set_state(self, state):
            self.inner.set_state(state)

    monkeypatch.setattr(pipeline, "make_train_iterator", Poisoned)
    config = tiny_config(data_dir=data_dir)
    with pytest.raises(train.NonFiniteLossError, match=r"non-finite loss loss/\S+ = nan at step 6"):
        train.train_and_evaluate(config, str(tmp_path))
    manager = Checkpoints(str(tmp_path), keep=3)
    assert manager.latest_step() == 4
    manager.close()


def run_main(*args, timeout=600):
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=CACHE)
    command = [sys.executable, "-m", "fergan.main", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, timeout=timeout, env=env)


TINY_FLAGS = (
    "--config.model.width=0.125", "--config.data.num_subjects=4", "--config.data.num_folds=2",
    "--config.train.batch_size=8", "--config.train.pre_epochs=1", "--config.train.max_epochs=2",
    "--config.train.eval_every=0", "--config.identity.pretrain=False", "--config.judge.kind=none",
)  # fmt: skip


def test_command_line_override_reaches_the_step_and_unknown_keys_fail(data_dir, tmp_path):
    done = run_main(
        "--config", "configs/demo_paper.py:BASELINE", "--workdir", str(tmp_path), *TINY_FLAGS,
        f"--config.data.data_dir={data_dir}", "--config.loss.lambda_intra=0.5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    # BASELINE from the config argument: only R trains, from step 0, for P_max - P_pre steps.
    assert summary["variant"] == "BASELINE" and summary["steps"] == 5
    assert "loss/g_total" not in summary["train_last_step"]
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["loss"]["lambda_intra"] == 0.5
    # What a person sees: a header, progress, a closing summary; library noise in the log file.
    stdout = done.stdout.decode()
    lines = [line for line in stdout.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[0].startswith("fergan train | config demo_paper | method fesr | variant BASELINE")
    assert any(line.startswith("data: synthetic_faces fold 1/2") for line in lines)
    assert any(line.startswith("train 5/5 100%") for line in lines)
    assert f"tensorboard --logdir {tmp_path}" in stdout and "(chance 14.3%" in stdout
    assert "orbax" not in stdout.lower() and not done.stderr.strip(), done.stderr.decode()
    assert "orbax" in (tmp_path / "fergan.log").read_text().lower()
    bad = run_main("--config", "configs/demo_paper.py", "--workdir", str(tmp_path / "x"),
                   "--config.train.bogus_key=1")  # fmt: skip
    assert bad.returncode != 0 and b"bogus_key" in bad.stderr


def test_evaluate_writes_beside_the_training_run(full_run, data_dir):
    workdir, _ = full_run
    with open(os.path.join(workdir, "summary.json"), "rb") as f:
        training_summary = f.read()
    samples = os.path.join(workdir, "samples")
    sample_times = {n: os.stat(os.path.join(samples, n)).st_mtime_ns for n in os.listdir(samples)}
    result = train.evaluate_checkpoint(tiny_config(data_dir=data_dir), workdir, step=8)
    assert result["path"] == os.path.join(workdir, "evaluations", "step_8.json")
    with open(result["path"]) as f:
        on_disk = json.load(f)
    assert on_disk["steps"] == 8 and on_disk["eval"] == result["eval"]
    assert os.path.getsize(
        os.path.join(workdir, "evaluations", "step_8_samples", "expressions.png")
    )
    # The training run's own summary and samples are untouched.
    with open(os.path.join(workdir, "summary.json"), "rb") as f:
        assert f.read() == training_summary
    assert {n: os.stat(os.path.join(samples, n)).st_mtime_ns for n in os.listdir(samples)} == (
        sample_times
    )
