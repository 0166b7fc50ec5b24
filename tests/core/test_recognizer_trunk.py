"""recognizer.trunk: 'finetune' gives R its own trained copy of the LightCNN trunk; the identity
network stays frozen, and every place that runs R (training, G's R loss, evaluation) uses it."""

import dataclasses
import functools
import json

import jax
import numpy as np
import pytest

from fergan.evaluation import heldout
from fergan.experiments import checks
from fergan.methods.fesr import evaluation as fesr_evaluation
from fergan.methods.fesr import step as step_lib
from fergan.methods.fesr.hparams import make_hparams
from fergan.methods.fesr.model import FesrModel
from fergan.methods.fesr.state import init_state, trunk_params
from fergan.training.parallel import select_devices
from tests.core.helpers import networks, parallel_runner, random_batch, setup, tiny_config


def tree_equal(a, b):
    return all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def finetune_config(**kwargs):
    config = tiny_config(**kwargs)
    config.recognizer.trunk = "finetune"
    return config


@pytest.fixture(scope="module")
def finetune():
    config = finetune_config()
    nets, hp, state = setup(config)
    return nets, hp, state, random_batch(config)


def at_step(state, t):
    return state.replace(step=jax.numpy.asarray(t, jax.numpy.int32))


def scaled_trunk(state, factor):
    """`state` with R's own trunk parameters multiplied by `factor`."""
    r = state.r.params | {"trunk": jax.tree.map(lambda a: a * factor, state.r.params["trunk"])}
    return state.replace(r=state.r.replace(params=r))


def test_frozen_keeps_r_as_the_head_alone():
    nets, _, state = setup(tiny_config())
    assert not nets.finetune_trunk
    assert set(state.r.params) == {"conv1", "conv2", "fc1", "fc2", "cls"}


def test_finetune_starts_from_a_copy_of_the_identity_trunk(finetune):
    nets, _, state, _ = finetune
    own = state.r.params["trunk"]
    assert set(own) == {"conv1", "block1_0", "group1", "block2_0", "block2_1", "group2"}
    assert tree_equal(own, trunk_params(nets, state.identity))
    frozen = init_state(networks(tiny_config()), 0, 0.5, 0.999)
    assert tree_equal(state.r.params["head"], frozen.r.params)  # Same head draw either way.


@pytest.mark.parametrize("gate_by_select", [False, True])
def test_trunk_copy_trains_in_stage_two_only_and_identity_stays_frozen(finetune, gate_by_select):
    nets, hp, state, batch = finetune
    hp = dataclasses.replace(hp, gate_by_select=gate_by_select)
    step = jax.jit(functools.partial(step_lib.train_step, nets, hp))
    s1, metrics = step(state, batch)
    assert float(metrics["stage"]) == 1.0
    assert tree_equal(s1.r, state.r)
    s2, metrics = step(at_step(s1, hp.pre_steps), batch)
    assert float(metrics["stage"]) == 2.0 and float(metrics["loss/r_total"]) > 0.0
    for part in ("trunk", "head"):
        new, old = jax.tree.leaves(s2.r.params[part]), jax.tree.leaves(s1.r.params[part])
        leaves = zip(new, old, strict=True)
        assert all(not np.array_equal(a, b) for a, b in leaves), part
    assert tree_equal(s2.identity, state.identity)


def test_generator_r_loss_reads_r_own_trunk(finetune):
    nets, hp, state, batch = finetune
    s2 = at_step(state, hp.pre_steps)
    step = jax.jit(functools.partial(step_lib.train_step, nets, hp))
    base = float(step(s2, batch)[1]["loss/g_cls_r"])
    moved = float(step(scaled_trunk(s2, 1.5), batch)[1]["loss/g_cls_r"])
    assert base > 0.0 and moved != base


def test_evaluation_runs_r_on_its_own_trunk(finetune):
    nets, hp, state, batch = finetune
    x, y = batch["x"], batch["y"]
    model = FesrModel(nets, hp)

    def predict(s):
        outputs_of = functools.partial(fesr_evaluation.evaluate_batch, model, s)
        return heldout.predict(outputs_of, x, y, batch_size=8)

    out = predict(state)
    other_identity = state.replace(identity=jax.tree.map(lambda a: a * 1.5, state.identity))
    same = predict(other_identity)
    np.testing.assert_array_equal(same["feature"], out["feature"])
    moved = predict(scaled_trunk(state, 1.5))
    assert not np.array_equal(moved["feature"], out["feature"])


def run_parallel(config, num_devices, steps=3):
    nets = networks(config)
    hp = make_hparams(config, steps_per_epoch=1)
    runner = parallel_runner(
        nets, hp, select_devices(num_devices, config.train.batch_size), "shard_map"
    )
    state = runner.place_state(init_state(nets, config.seed, hp.b1, hp.b2))
    for i in range(steps):
        state, _ = runner(state, runner.place_batch(random_batch(config, seed=i)))
    return runner.host_state(state)


def test_finetune_agrees_on_one_and_four_devices():
    # pre_epochs=1 at one step per epoch: the last two of the three steps train R's trunk.
    config = finetune_config(batch_size=8)
    four, single = run_parallel(config, 4), run_parallel(config, 1)
    assert not tree_equal(four.r.params["trunk"], trunk_params(networks(config), four.identity))
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(four), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_resume_refuses_another_trunk_and_reads_old_workdirs_as_frozen(tmp_path):
    saved = checks.flat_config(tiny_config())
    saved.pop("recognizer.trunk")  # A workdir written before the key existed.
    (tmp_path / checks.CONFIG_FILE).write_text(json.dumps(saved))
    checks.check_same_shapes(tiny_config(), str(tmp_path))
    with pytest.raises(ValueError, match=r"recognizer\.trunk='frozen'.*'finetune'"):
        checks.check_same_shapes(finetune_config(), str(tmp_path))


def test_unknown_trunk_names_the_key():
    config = tiny_config()
    config.recognizer.trunk = "partial"
    with pytest.raises(ValueError, match=r"recognizer\.trunk='partial'.*allowed"):
        networks(config)
