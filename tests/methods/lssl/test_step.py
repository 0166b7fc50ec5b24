"""LSSL's training iteration: gradient routing, the frozen parser, variants, and equality of 1
and 4 devices with five per-sample keyed critic updates."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fergan import methods
from fergan.methods.lssl import model as lssl_model
from fergan.methods.lssl import step as lssl_step
from fergan.methods.lssl.networks import LsslDiscriminator, LsslGenerator
from fergan.methods.lssl.parser import FaceParser
from fergan.models import LightCNN29, RecognizerHead
from fergan.training.parallel import data_parallel_step, select_devices

SIZE, CHANNELS, K, BATCH, WIDTH = 32, 1, 4, 8, 0.125
METHOD = methods.get("lssl")
GAN_STEPS = 10


def tiny_model(variant="LSSL", n_critic=5, recognizer="r") -> lssl_model.LsslModel:
    v = lssl_model.VARIANTS[variant]
    hp = lssl_model.LsslHParams(
        variant=v,
        gan_steps=GAN_STEPS if v.gan else 0,
        recognizer_steps=5,
        learning_rate=1e-3,
        recognizer_learning_rate=1e-3,
        n_critic=n_critic,
    )
    return lssl_model.LsslModel(
        generator=LsslGenerator(SIZE, WIDTH, CHANNELS, K, side=v.side),
        discriminator=LsslDiscriminator(SIZE, WIDTH, K),
        parser=FaceParser(width=4) if v.parsing else None,
        hp=hp,
        identity=LightCNN29(WIDTH, 10),
        recognizer=RecognizerHead(WIDTH, K)
        if recognizer == "r"
        else LsslDiscriminator(SIZE, WIDTH, K),
    )


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


# Eager init is slow (a compile per parameter shape); the state does not depend on n_critic.
init = jax.jit(lssl_step.init_state, static_argnums=0)


@pytest.fixture(scope="module")
def setup():
    model = tiny_model(n_critic=2)
    return model, init(model, 0), random_batch()


def body_at(model, step: int):
    """The per-device iteration the training loop runs at `step` (`Method.iterations`)."""
    return next(b for first, end, b in METHOD.iterations(model) if first <= step < end)


@functools.cache
def runner(num_devices: int, first: int):
    """The training loop's driver of the iteration from `first` of the five-critic model on
    `num_devices`, compiled once for every test here."""
    model = tiny_model(n_critic=5)
    devices = select_devices(num_devices, BATCH)
    return data_parallel_step(body_at(model, first), devices, "shard_map")


@pytest.fixture(scope="module")
def step(setup):
    """The iterations on one device as the training loop runs them (the program
    `test_both_stages_agree_on_one_and_four_devices` runs too); the state's step picks one."""
    gan_steps = setup[0].hp.gan_steps

    def call(state, batch):
        run = runner(1, 0 if state.step < gan_steps else GAN_STEPS)
        return run(run.place_state(state), run.place_batch(batch))

    return call


def test_one_compiled_iteration_per_stage():
    stages = lambda model: [
        (a, b, body.keywords["stage"]) for a, b, body in METHOD.iterations(model)
    ]
    assert stages(tiny_model()) == [(0, GAN_STEPS, 0), (GAN_STEPS, GAN_STEPS + 5, 1)]
    assert stages(tiny_model("BASELINE")) == [(0, 5, 1)]  # No GAN stage.


def test_d_update_leaves_g_and_g_update_leaves_d(setup):
    model, state, batch = setup
    context = lambda st: lssl_step._context(model, st, batch, None)
    after_d, d_metrics = jax.jit(lambda st: lssl_step.d_update(context(st), st))(state)
    assert same(after_d.g, state.g) and not same(after_d.d.params, state.d.params)
    after_g, _ = jax.jit(lambda st: lssl_step.g_update(context(st), st))(state)
    assert same(after_g.d, state.d) and not same(after_g.g.params, state.g.params)
    assert np.isfinite(float(d_metrics["loss/gp"]))


def test_parser_gets_no_update_and_every_term_is_on(setup, step):
    _, state, batch = setup
    new, metrics = step(state, batch)
    assert same(new.parser, state.parser)
    for name in ("g_adv", "g_cls", "id", "bi", "parsing", "g_total"):
        assert np.isfinite(float(metrics[f"loss/{name}"])), name
    assert int(new.step) == 1
    assert float(metrics["stage"]) == 1.0 and float(metrics["loss/r_cls"]) == 0.0


@pytest.mark.parametrize("variant", ["LSSL-P", "LSSL-BI", "LSSL-S"])
def test_variants_drop_their_term(variant):
    model = tiny_model(variant, n_critic=1)
    state = jax.eval_shape(lambda: lssl_step.init_state(model, 0))
    batch = random_batch()
    if variant == "LSSL-S":
        del batch["s"]  # No side image anywhere.
    # Traced, not compiled: the terms an iteration computes are the metrics it returns.
    _, metrics = jax.eval_shape(body_at(model, 0), state, batch)
    dropped = {"LSSL-P": "loss/parsing", "LSSL-BI": "loss/bi", "LSSL-S": None}[variant]
    assert dropped is None or dropped not in metrics
    assert "loss/id" in metrics and "loss/g_adv" in metrics
    assert (state.parser is None) == (variant == "LSSL-P")


def test_penalty_points_are_keyed_per_sample():
    key = jax.random.PRNGKey(3)
    t = lssl_step.penalty_points(key, jnp.arange(8), 5)
    assert t.shape == (5, 8) and len(np.unique(np.asarray(t))) == 40
    # Sample 5's draws do not depend on which other samples are in the call.
    np.testing.assert_array_equal(lssl_step.penalty_points(key, jnp.array([5]), 5)[:, 0], t[:, 5])


def run(num_devices, iterations=((0, 0),)):
    """One iteration from each (first step, batch seed) of `iterations` on `num_devices`:
    [(host state, metrics)]."""
    initial = init(tiny_model(n_critic=5), 0)
    out = []
    for first, batch_seed in iterations:
        step_fn = runner(num_devices, first)
        state = step_fn.place_state(initial.replace(step=jnp.asarray(first, jnp.int32)))
        state, metrics = step_fn(state, step_fn.place_batch(random_batch(batch_seed)))
        out.append((step_fn.host_state(state), jax.device_get(metrics)))
    return out


def max_diff(a, b) -> float:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in pairs)


def test_both_stages_agree_on_one_and_four_devices():
    # Stage 1: five critic updates, each with per-sample interpolation points; stage 2: R's
    # dropout masks per sample. Neither depends on the split over devices.
    (one, m1), (one_r, r1), (other, _) = run(1, [(0, 0), (GAN_STEPS, 0), (0, 7)])
    (four, m4), (four_r, r4) = run(4, [(0, 0), (GAN_STEPS, 0)])
    hp = tiny_model().hp
    # Float rounding only: Adam can turn a rounding difference in a near-zero gradient into a
    # fraction of a learning-rate step per update, and D makes five. Another batch moves the
    # parameters by whole steps.
    assert max_diff(one, four) <= 2 * hp.learning_rate
    assert max_diff(one, other) > 4 * hp.learning_rate
    for name in m1:
        np.testing.assert_allclose(m1[name], m4[name], rtol=1e-3, atol=1e-4, err_msg=name)
    assert float(r1["stage"]) == 2.0
    assert max_diff(one_r.r.params, four_r.r.params) <= 2 * hp.recognizer_learning_rate
    np.testing.assert_allclose(r1["loss/r_cls"], r4["loss/r_cls"], rtol=1e-5)


def test_stage_two_trains_the_recognizer_only(setup, step):
    model, state, batch = setup
    in_gan, m_gan = step(state, batch)
    assert same(in_gan.r, state.r) and not same(in_gan.g.params, state.g.params)
    late = state.replace(step=jnp.asarray(model.hp.gan_steps, jnp.int32))
    after, metrics = step(late, batch)
    assert float(metrics["stage"]) == 2.0 and float(metrics["loss/g_total"]) == 0.0
    assert same(after.g, late.g) and same(after.d, late.d) and same(after.identity, late.identity)
    assert not same(after.r.params, late.r.params)
    # R saw B real faces and B of G's renders with their targets.
    assert 0.0 <= float(metrics["acc/r_synthetic"]) <= 1.0
    assert float(m_gan["acc/r_real"]) == 0.0


def test_recognizer_reads_the_synthetic_faces(setup, step):
    # The recognizer's gradient depends on G's renders: another G, another update.
    model, state, batch = setup
    late = state.replace(step=jnp.asarray(model.hp.gan_steps, jnp.int32))
    other_g = init(model, 1).g
    a, _ = step(late, batch)
    b, _ = step(late.replace(g=other_g), batch)
    assert not same(a.r.params, b.r.params)


@pytest.mark.parametrize("recognizer", ["r", "discriminator"])
def test_baseline_has_no_generator_and_its_recognizer_learns(recognizer):
    model = tiny_model("BASELINE", recognizer=recognizer)
    state = lssl_step.init_state(model, 0)
    assert state.g is None and state.d is None and state.parser is None
    batch = random_batch()
    del batch["s"]
    step = jax.jit(body_at(model, 0))
    losses = []
    for _ in range(5):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss/r_cls"]))
    assert losses[-1] < losses[0], losses
    assert "acc/r_synthetic" not in metrics


def test_recognizer_rate_decays_to_zero_over_stage_two():
    hp = tiny_model().hp
    rates = [float(hp.recognizer_rate_at(jnp.asarray(t))) for t in range(hp.total_steps + 1)]
    assert rates[GAN_STEPS] == pytest.approx(hp.recognizer_learning_rate) and rates[-1] == 0.0
    assert float(hp.learning_rate_at(jnp.asarray(GAN_STEPS))) == 0.0
