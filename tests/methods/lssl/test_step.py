"""LSSL's training iteration: gradient routing, the frozen parser, variants, and equality of 1
and 4 devices with five per-sample keyed critic updates."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fergan.methods.lssl import model as lssl_model
from fergan.methods.lssl import step as lssl_step
from fergan.methods.lssl.parser import FaceParser
from fergan.training.parallel import data_parallel_step, select_devices

SIZE, CHANNELS, K, BATCH = 32, 1, 4, 8


def tiny_model(variant="LSSL", n_critic=5) -> lssl_model.LsslModel:
    v = lssl_model.VARIANTS[variant]
    hp = lssl_model.LsslHParams(variant=v, total_steps=10, learning_rate=1e-3, n_critic=n_critic)
    g, d, p = lssl_model.build_networks(SIZE, 0.125, CHANNELS, K, v, FaceParser(width=4))
    return lssl_model.LsslModel(g, d, p, hp)


def random_batch(seed=0) -> dict:
    rng = np.random.default_rng(seed)
    y = rng.integers(K, size=BATCH).astype(np.int32)
    return {
        "x": rng.uniform(-1, 1, (BATCH, SIZE, SIZE, CHANNELS)).astype(np.float32),
        "s": rng.uniform(-1, 1, (BATCH, SIZE, SIZE, CHANNELS)).astype(np.float32),
        "y": y,
        "y_target": ((y + 1 + rng.integers(K - 1, size=BATCH)) % K).astype(np.int32),
    }


def same(a, b) -> bool:
    return all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.fixture(scope="module")
def setup():
    model = tiny_model(n_critic=2)
    return model, lssl_step.init_state(model, 0), random_batch()


def test_d_update_leaves_g_and_g_update_leaves_d(setup):
    model, state, batch = setup
    ctx = lssl_step._context(model, state, batch, None)
    after_d, d_metrics = lssl_step.d_update(ctx, state)
    assert same(after_d.g, state.g) and not same(after_d.d.params, state.d.params)
    after_g, _ = lssl_step.g_update(ctx, state)
    assert same(after_g.d, state.d) and not same(after_g.g.params, state.g.params)
    assert np.isfinite(float(d_metrics["loss/gp"]))


def test_parser_gets_no_update_and_every_term_is_on(setup):
    model, state, batch = setup
    new, metrics = jax.jit(functools.partial(lssl_step.train_step, model))(state, batch)
    assert same(new.parser, state.parser)
    for name in ("g_adv", "g_cls", "id", "bi", "parsing", "g_total"):
        assert np.isfinite(float(metrics[f"loss/{name}"])), name
    assert int(new.step) == 1


@pytest.mark.parametrize("variant", ["LSSL-P", "LSSL-BI", "LSSL-S"])
def test_variants_drop_their_term(variant):
    model = tiny_model(variant, n_critic=1)
    state = lssl_step.init_state(model, 0)
    batch = random_batch()
    if variant == "LSSL-S":
        del batch["s"]  # No side image anywhere.
    _, metrics = jax.jit(functools.partial(lssl_step.train_step, model))(state, batch)
    dropped = {"LSSL-P": "loss/parsing", "LSSL-BI": "loss/bi", "LSSL-S": None}[variant]
    assert dropped is None or dropped not in metrics
    assert (state.parser is None) == (variant == "LSSL-P")
    assert np.isfinite(float(metrics["loss/g_total"]))


def test_penalty_points_are_keyed_per_sample():
    key = jax.random.PRNGKey(3)
    t = lssl_step.penalty_points(key, jnp.arange(8), 5)
    assert t.shape == (5, 8) and len(np.unique(np.asarray(t))) == 40
    # Sample 5's draws do not depend on which other samples are in the call.
    np.testing.assert_array_equal(lssl_step.penalty_points(key, jnp.array([5]), 5)[:, 0], t[:, 5])


def run(num_devices, steps=1, first_batch=0):
    model = tiny_model(n_critic=5)
    devices = select_devices(num_devices, BATCH)
    runner = data_parallel_step(
        functools.partial(lssl_step.train_step, model), devices, "shard_map"
    )
    state = runner.place_state(lssl_step.init_state(model, 0))
    for i in range(steps):
        state, metrics = runner(state, runner.place_batch(random_batch(first_batch + i)))
    return runner.host_state(state), jax.device_get(metrics)


def max_diff(a, b) -> float:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in pairs)


def test_five_critic_updates_agree_on_one_and_four_devices():
    one, m1 = run(1)
    four, m4 = run(4)
    lr = tiny_model().hp.learning_rate
    # Float rounding only: Adam can turn a rounding difference in a near-zero gradient into a
    # fraction of a learning-rate step per update, and D makes five. Another batch moves the
    # parameters by whole steps.
    assert max_diff(one, four) <= 2 * lr
    assert max_diff(one, run(1, first_batch=7)[0]) > 4 * lr
    for name in m1:
        np.testing.assert_allclose(m1[name], m4[name], rtol=1e-3, atol=1e-4, err_msg=name)
