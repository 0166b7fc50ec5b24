"""ECGAN's training iteration: gradient routing (the discriminators' step leaves the generators
and the reverse; LightCNN-29 is never updated), every term on, the variants' terms, the
recognition stage, and equality of 1 and 4 devices."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fergan import methods
from fergan.methods.ecgan import model as ecgan_model
from fergan.methods.ecgan import step as ecgan_step
from fergan.methods.ecgan.networks import PatchDiscriminator, ResnetGenerator
from fergan.models import LightCNN29, RecognizerHead
from fergan.training.parallel import data_parallel_step, select_devices

SIZE, CHANNELS, K, BATCH, WIDTH = 32, 1, 4, 8, 0.125
GAN_STEPS, RECOGNIZER_STEPS = 4, 3
METHOD = methods.get("ecgan")


def tiny_model(variant="ECGAN", mask_loss="weighted") -> ecgan_model.EcganModel:
    hp = ecgan_model.EcganHParams(
        variant=ecgan_model.VARIANTS[variant],
        gan_steps=GAN_STEPS,
        recognizer_steps=RECOGNIZER_STEPS,
        learning_rate=1e-3,
        recognizer_learning_rate=1e-3,
        mask_loss=mask_loss,
    )
    return ecgan_model.EcganModel(
        generator=ResnetGenerator(WIDTH, CHANNELS, K),
        d_x=PatchDiscriminator(WIDTH),
        d_y=PatchDiscriminator(WIDTH, K),
        hp=hp,
        identity=LightCNN29(WIDTH, 10),
        recognizer=RecognizerHead(WIDTH, K),
        image_size=SIZE,
        channels=CHANNELS,
        num_classes=K,
    )


def random_batch(seed=0) -> dict:
    rng = np.random.default_rng(seed)
    face = lambda: rng.uniform(-1, 1, (BATCH, SIZE, SIZE, CHANNELS)).astype(np.float32)
    mask = np.zeros((BATCH, SIZE, SIZE, 1), np.float32)
    mask[:, 8:24, 8:24] = 1.0
    return {
        "x": face(),
        "y": rng.integers(K, size=BATCH).astype(np.int32),
        "mask": mask,
        "x_neutral": face(),
        "mask_neutral": mask,
    }


def same(a, b) -> bool:
    return all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def body_at(model, step: int):
    return next(b for first, end, b in METHOD.iterations(model) if first <= step < end)


# Eager init is slow (a compile per parameter shape).
init = jax.jit(ecgan_step.init_state, static_argnums=0)


@pytest.fixture(scope="module")
def setup():
    model = tiny_model()
    return model, init(model, 0), random_batch()


@functools.cache
def runner(num_devices: int, first: int):
    """The training loop's driver of the iteration from `first` on `num_devices`, compiled once
    for every test here."""
    devices = select_devices(num_devices, BATCH)
    return data_parallel_step(body_at(tiny_model(), first), devices, "shard_map")


@pytest.fixture(scope="module")
def step(setup):
    """Both stages' iterations on one device as the training loop runs them (the programs
    `test_both_stages_agree_on_one_and_four_devices` runs too); the state's step picks one."""

    def call(state, batch):
        run = runner(1, 0 if state.step < GAN_STEPS else GAN_STEPS)
        return run(run.place_state(state), run.place_batch(batch))

    return call


def test_each_update_moves_its_own_networks_only(setup):
    model, state, batch = setup
    after_d, d_metrics = jax.jit(lambda st: ecgan_step.d_update(model, st, batch, None))(state)
    assert same(after_d.g_xy, state.g_xy) and same(after_d.g_yx, state.g_yx)
    assert not same(after_d.d_x.params, state.d_x.params)
    assert not same(after_d.d_y.params, state.d_y.params)
    after_g, _ = jax.jit(lambda st: ecgan_step.g_update(model, st, batch, None))(state)
    assert same(after_g.d_x, state.d_x) and same(after_g.d_y, state.d_y)
    assert not same(after_g.g_xy.params, state.g_xy.params)
    assert not same(after_g.g_yx.params, state.g_yx.params)
    assert np.isfinite(float(d_metrics["loss/d_total"]))


def test_stage_one_runs_every_term_and_leaves_lightcnn_and_recognizers(setup, step):
    _, state, batch = setup
    new, metrics = step(state, batch)
    assert same(new.identity, state.identity)
    assert same(new.r, state.r) and same(new.r_original, state.r_original)
    for name in ("g_adv", "cycle", "identity", "context", "mask", "g_total", "d_x", "d_y"):
        assert np.isfinite(float(metrics[f"loss/{name}"])), name
    assert float(metrics["stage"]) == 1.0 and float(metrics["loss/r_cls"]) == 0.0
    assert int(new.step) == 1


@pytest.mark.parametrize("variant,dropped", [("ECGAN-M", "loss/mask"), ("ECGAN-C", "loss/context")])
def test_variants_drop_their_term(variant, dropped):
    model = tiny_model(variant)
    state = jax.eval_shape(lambda: ecgan_step.init_state(model, 0))
    _, metrics = jax.eval_shape(body_at(model, 0), state, random_batch())
    assert dropped not in metrics and "loss/cycle" in metrics


def test_mask_loss_forms_differ_and_the_mask_matters(setup):
    model, state, batch = setup
    g = {"g_xy": state.g_xy.params, "g_yx": state.g_yx.params}
    value = lambda m, b: float(
        jax.jit(lambda p: ecgan_step.generator_objective(m, state, p, b)[1]["loss/mask"])(g)
    )
    weighted = value(model, batch)
    assert weighted != value(tiny_model(mask_loss="masked_input"), batch)
    everywhere = batch | {"mask": np.ones_like(batch["mask"]),
                          "mask_neutral": np.ones_like(batch["mask"])}  # fmt: skip
    assert weighted != value(model, everywhere)


def test_stage_two_trains_both_recognizers_on_their_faces(setup, step):
    model, state, batch = setup
    late = state.replace(step=jnp.asarray(GAN_STEPS, jnp.int32))
    after, metrics = step(late, batch)
    assert float(metrics["stage"]) == 2.0 and float(metrics["loss/g_total"]) == 0.0
    for name in ("g_xy", "g_yx", "d_x", "d_y", "identity"):
        assert same(getattr(after, name), getattr(late, name)), name
    assert not same(after.r.params, late.r.params)
    assert not same(after.r_original.params, late.r_original.params)
    # `r` reads G_XY's renders of the neutral faces; `r_original` does not.
    other = late.replace(g_xy=init(model, 1).g_xy)
    moved, _ = step(other, batch)
    assert not same(moved.r.params, after.r.params)
    assert same(moved.r_original.params, after.r_original.params)


def run(num_devices, first_steps=(0, GAN_STEPS)):
    initial = init(tiny_model(), 0)
    out = []
    for first in first_steps:
        step_fn = runner(num_devices, first)
        state = step_fn.place_state(initial.replace(step=jnp.asarray(first, jnp.int32)))
        state, metrics = step_fn(state, step_fn.place_batch(random_batch()))
        out.append((step_fn.host_state(state), jax.device_get(metrics)))
    return out


def max_diff(a, b) -> float:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in pairs)


def test_both_stages_agree_on_one_and_four_devices():
    (one, m1), (one_r, r1) = run(1)
    (four, m4), (four_r, r4) = run(4)
    lr = tiny_model().hp.learning_rate
    # Instance norm and LSGAN are per sample, so the split changes float rounding only.
    assert max_diff(one, four) <= 2 * lr
    for name in m1:
        np.testing.assert_allclose(m1[name], m4[name], rtol=1e-3, atol=1e-4, err_msg=name)
    assert max_diff(one_r.r.params, four_r.r.params) <= 2 * lr
    np.testing.assert_allclose(r1["loss/r_cls"], r4["loss/r_cls"], rtol=1e-5)


def test_rates_decay_to_zero_at_the_end_of_each_stage():
    hp = tiny_model().hp
    rate = lambda f, t: float(f(jnp.asarray(t)))
    assert rate(hp.learning_rate_at, 0) == pytest.approx(hp.learning_rate)
    assert rate(hp.learning_rate_at, GAN_STEPS) == 0.0
    assert rate(hp.recognizer_rate_at, GAN_STEPS) == pytest.approx(hp.recognizer_learning_rate)
    assert rate(hp.recognizer_rate_at, GAN_STEPS + RECOGNIZER_STEPS) == 0.0


def test_cycle_loss_falls_over_a_few_iterations(setup, step):
    # The cycle term of a fixed batch falls as the generators train on it.
    _, state, batch = setup
    cycles = []
    for _ in range(4):
        state, metrics = step(state, batch)
        cycles.append(float(metrics["loss/cycle"]))
    assert cycles[-1] < cycles[0], cycles
