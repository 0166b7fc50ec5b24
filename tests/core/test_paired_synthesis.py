"""FESR's paired synthesis losses (`loss.lambda_pair`, `loss.lambda_neutral`; a departure from the
paper, off by default): the loss, what it trains, its batch features and its device invariance."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fergan import losses, methods
from fergan.data import noise_batch
from fergan.methods.fesr import step as step_lib
from fergan.methods.fesr.hparams import make_hparams, paired_features
from fergan.methods.fesr.networks import build_networks
from fergan.methods.fesr.state import init_state
from fergan.training.parallel import select_devices
from tests.core.helpers import parallel_runner, setup, tiny_config

FEATURES = ("pair", "own_neutral")


def paired_config(variant="FESR_JL", lambda_pair=10.0, lambda_neutral=10.0, **kwargs):
    config = tiny_config(variant, **kwargs)
    config.loss.lambda_pair = lambda_pair
    config.loss.lambda_neutral = lambda_neutral
    config.data.neutral_first_frames = True
    return config


def paired_batch(config, seed=0):
    """A noise batch with the paired features; the last quarter has no pair and no neutral."""
    batch = noise_batch.random_batch(config, np.random.default_rng(seed), FEATURES)
    b = config.train.batch_size
    valid = (np.arange(b) < b - b // 4).astype(np.float32)
    return batch | {"pair_valid": valid, "own_neutral_valid": valid.copy()}


def test_paired_loss_is_the_mean_over_the_batch_of_valid_samples_errors():
    target = jnp.zeros((4, 2, 2, 1))
    rendered = jnp.stack([jnp.full((2, 2, 1), v) for v in (0.5, -1.0, 2.0, 4.0)])
    valid = jnp.array([1.0, 1.0, 1.0, 0.0])
    # (0.5 + 1 + 2 + 0) / 4: an invalid sample adds 0 but still counts in the batch size.
    assert float(losses.paired_loss(target, rendered, valid)) == pytest.approx(0.875)
    assert float(losses.paired_loss(target, rendered, jnp.zeros(4))) == 0.0


def test_the_features_follow_the_config_and_bad_values_name_the_key():
    assert paired_features(tiny_config()) == ()  # The paper's setting reads no pair.
    assert paired_features(paired_config()) == FEATURES
    assert paired_features(paired_config(lambda_neutral=0.0)) == ("pair",)
    assert paired_features(paired_config("BASELINE")) == ()  # No generator to pair.
    assert methods.of(paired_config()).features(paired_config()) == FEATURES
    config = paired_config()
    config.data.neutral_first_frames = False
    with pytest.raises(ValueError, match=r"loss.lambda_neutral=10.0 needs data.neutral_first"):
        make_hparams(config, 1)
    with pytest.raises(ValueError, match=r"loss.lambda_pair=-1.0 must be >= 0"):
        make_hparams(paired_config(lambda_pair=-1.0), 1)


def reads(config, names):
    """Which of the batch entries `names` the traced iteration of `config` consumes."""
    nets, hp, state = setup(config)
    batch = paired_batch(config)
    jaxpr = jax.make_jaxpr(functools.partial(step_lib.train_step, nets, hp))(state, batch).jaxpr
    leaves = jax.tree.leaves((state, batch))
    position = {n: next(i for i, a in enumerate(leaves) if a is batch[n]) for n in names}
    used = {id(v) for eqn in jaxpr.eqns for v in eqn.invars} | {id(v) for v in jaxpr.outvars}
    return {n for n, i in position.items() if id(jaxpr.invars[i]) in used}


def test_only_the_paired_setting_reads_the_paired_faces():
    names = ("x_pair", "pair_valid", "x_own_neutral", "own_neutral_valid")
    assert reads(tiny_config(), names) == set()  # The paper's iteration is untouched.
    assert reads(paired_config(), names) == set(names)
    assert reads(paired_config(lambda_neutral=0.0), names) == {"x_pair", "pair_valid"}


def test_paired_terms_fall_and_pull_g_to_the_targets():
    # G's other terms off (no Dimg, zero weights), so the paired terms alone move G.
    config = paired_config("FG-Dimg", pre_epochs=100, max_epochs=200)
    config.loss.lambda_rec = config.loss.lambda_id = config.loss.lambda_z = 0.0
    config.optim.learning_rate = 1e-3
    nets, hp, state = setup(config, steps_per_epoch=1)
    rng = np.random.default_rng(0)
    # Blocky targets (4x4 random levels): learnable through the 64-d bottleneck, unlike noise.
    smooth = lambda: np.kron(rng.uniform(-1, 1, (8, 4, 4, 1)), np.ones((1, 8, 8, 1)))
    batch = paired_batch(config) | {
        name: smooth().astype(np.float32) for name in ("x", "x_pair", "x_own_neutral")
    }
    step = jax.jit(functools.partial(step_lib.train_step, nets, hp), donate_argnums=0)
    history = []
    for _ in range(60):
        state, metrics = step(state, batch)
        history.append(jax.device_get(metrics))
    for name in ("loss/pair", "loss/pair_neutral"):
        curve = [m[name] for m in history]
        assert np.mean(curve[-5:]) < 0.8 * np.mean(curve[:5]), (name, curve[:5], curve[-5:])
    # Only the valid samples are pulled: the invalid quarter's renders stay as far as they were.
    valid = batch["pair_valid"] > 0
    ctx = step_lib.prepare(nets, hp, state, batch)
    error = np.abs(np.asarray(ctx.outputs["x_pair_hat"]) - batch["x_pair"]).mean(axis=(1, 2, 3))
    assert error[valid].mean() < 0.8 * error[~valid].mean()


def test_paired_synthesis_agrees_on_one_and_four_devices():
    config = paired_config(batch_size=8)
    nets = build_networks(config.model)
    hp = make_hparams(config, steps_per_epoch=1)
    states = {}
    for n in (1, 4):
        runner = parallel_runner(nets, hp, select_devices(n, 8), "shard_map")
        state = runner.place_state(init_state(nets, config.seed, hp.b1, hp.b2))
        for i in range(3):
            state, metrics = runner(state, runner.place_batch(paired_batch(config, seed=i)))
        states[n] = runner.host_state(state)
        assert metrics["loss/pair"] > 0 and metrics["loss/pair_neutral"] > 0
    for a, b in zip(jax.tree.leaves(states[1]), jax.tree.leaves(states[4]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
