"""A tiny training config for program tests (32 px, narrow networks, 4 synthetic subjects), the
held-out evaluation of a finished run recomputed from its files, and the stop-and-resume check
every method's run is held to."""

import json
import os

import jax
import ml_collections
import numpy as np

from configs import demo_paper
from fergan.data import pipeline
from fergan.experiments import train


def tiny_config(variant: str = "FESR_JL", data_dir: str = ""):
    config = demo_paper.get_config(variant)
    config.model.width = 0.125
    config.data.num_subjects = 4
    config.data.num_folds = 2
    config.data.data_dir = data_dir
    config.train.batch_size = 8
    config.train.pre_epochs = 1
    config.train.max_epochs = 2  # 5 steps per epoch: 10 steps, 5 in each stage.
    config.train.log_every = 2
    config.train.eval_every = 0
    config.train.checkpoint_every = 4
    config.identity.pretrain = False
    config.judge.kind = "none"  # The judge's own test trains one (tests/program/test_judge_eval).
    return config


def recomputed_accuracy(workdir: str, config: ml_collections.ConfigDict | None = None) -> float:
    """Held-out accuracy of the run in `workdir`, recomputed from its latest checkpoint: R's
    predictions on the test split counted against the labels. `config` defaults to the run's
    own `config.json`."""
    if config is None:
        with open(os.path.join(workdir, "config.json")) as f:
            config = ml_collections.ConfigDict(json.load(f))
    setup = train.Setup(config, workdir)
    try:
        state = setup.checkpoints.restore(setup.initial_state)[0]
    finally:
        setup.checkpoints.close()
    test = pipeline.eval_arrays(setup.datasets, "test")
    preds = setup.held_out(state, test)[1]["prediction"]
    return float(np.mean(preds == test["y"]))


def restored_state(config: ml_collections.ConfigDict, workdir: str):
    """The latest checkpointed state of the run of `config` in `workdir`."""
    setup = train.Setup(config, workdir)
    try:
        return setup.checkpoints.restore(setup.initial_state)[0]
    finally:
        setup.checkpoints.close()


def assert_resume_is_bit_identical(config, workdir: str, resumed_dir: str, stop_after: int):
    """Runs `config` in `resumed_dir` stopped after `stop_after` steps, resumes it to the end,
    and asserts its final state equals, bit for bit, that of the uninterrupted run in
    `workdir`; returns that state."""
    train.train_and_evaluate(config, resumed_dir, stop_after=stop_after)
    train.train_and_evaluate(config, resumed_dir)
    expected, resumed = restored_state(config, workdir), restored_state(config, resumed_dir)
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    return expected
