"""Geometry's training iteration: gradient routing (the discriminators' update leaves G, E and
C; the G step leaves the discriminators and their statistics; C's update reaches only C), the
variants' terms, the template stage, and equality of 1 and 4 devices, batch norm included."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fergan import methods
from fergan.methods.geometry import evaluation as geo_evaluation
from fergan.methods.geometry import model as geo_model
from fergan.methods.geometry import networks
from fergan.methods.geometry import step as geo_step
from fergan.methods.geometry.templates import random_templates
from fergan.models import LightCNN29, RecognizerHead
from fergan.training.parallel import data_parallel_step, select_devices

SIZE, CHANNELS, K, BATCH, WIDTH = 32, 1, 4, 8, 0.125
SYNTHESIS_STEPS, SYNTHETIC_STEPS, PER_REAL = 4, 3, 2
METHOD = methods.get("geometry")


def tiny_model(variant="GEO", **hp) -> geo_model.GeometryModel:
    hparams = geo_model.GeometryHParams(
        variant=geo_model.VARIANTS[variant],
        synthesis_steps=SYNTHESIS_STEPS,
        synthetic_steps=SYNTHETIC_STEPS,
        learning_rate=1e-3,
        recognizer_learning_rate=1e-3,
        synthetic_per_real=PER_REAL,
        **hp,
    )
    return geo_model.GeometryModel(
        embedding=networks.GeometryEmbedding(),
        encoder=networks.Encoder(WIDTH),
        decoder=networks.Decoder(SIZE, CHANNELS, WIDTH),
        d_att=networks.AttributeDiscriminator(WIDTH),
        d_i=networks.IdentityDiscriminator(),
        hp=hparams,
        identity=LightCNN29(WIDTH, 10),
        recognizer=RecognizerHead(WIDTH, K),
        templates=random_templates(6, K, 0),
        image_size=SIZE,
        channels=CHANNELS,
        num_classes=K,
    )


def random_batch(seed=0) -> dict:
    rng = np.random.default_rng(seed)
    face = lambda: rng.uniform(-1, 1, (BATCH, SIZE, SIZE, CHANNELS)).astype(np.float32)
    labels = lambda: rng.integers(K, size=BATCH).astype(np.int32)
    return {
        "x": face(),
        "y": labels(),
        "x_target": face(),
        "g_target": rng.uniform(-0.8, 0.8, (BATCH, 136)).astype(np.float32),
        "y_t": labels(),
    }


def same(a, b) -> bool:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all(np.array_equal(x, y) for x, y in pairs)


def body_at(model, step: int):
    return next(b for first, end, b in METHOD.iterations(model) if first <= step < end)


@pytest.fixture(scope="module")
def setup():
    # Eager, as the training program inits: the per-shape compiles it leaves in this process
    # serve the other inits here (another seed, the ResNet-50 classifier's model).
    model = tiny_model()
    return model, geo_step.init_state(model, 0), random_batch()


@functools.cache
def runner(variant: str, num_devices: int, first: int):
    """The training loop's driver of `variant`'s iteration from `first` on `num_devices`,
    compiled once for every test here."""
    devices = select_devices(num_devices, BATCH)
    return data_parallel_step(body_at(tiny_model(variant), first), devices, "shard_map")


def step(variant: str, first: int, state, batch):
    """One iteration of `variant` from `first` on one device, as the training loop runs it."""
    run = runner(variant, 1, first)
    return run(run.place_state(state), run.place_batch(batch))


def test_the_discriminators_update_leaves_g_e_and_c(setup):
    model, state, batch = setup
    after, metrics = jax.jit(lambda st: geo_step.d_update(model, st, batch, None))(state)
    for name in ("g", "e", "e_stats", "c", "identity"):
        assert same(getattr(after, name), getattr(state, name)), name
    for name in ("d_att", "d_i", "d_att_stats", "d_i_stats"):
        assert not same(getattr(after, name), getattr(state, name)), name
    assert np.isfinite(float(metrics["loss/d_total"]))


def test_the_generator_update_moves_g_and_e_only(setup):
    model, state, batch = setup
    after, metrics, fake = jax.jit(lambda st: geo_step.g_update(model, st, batch, None))(state)
    for name in ("d_att", "d_i", "d_att_stats", "d_i_stats", "c", "identity"):
        assert same(getattr(after, name), getattr(state, name)), name
    for name in ("g", "e", "e_stats"):
        assert not same(getattr(after, name), getattr(state, name)), name
    assert fake.shape == batch["x"].shape
    for term in ("g_att", "g_i", "con", "gr", "tv", "g_cls"):
        assert np.isfinite(float(metrics[f"loss/{term}"])), term


@functools.partial(jax.jit, static_argnums=0)
def objective_gradients(model, state, batch, weights):
    """d objective / d (G, E) with Eq. 10's weights set to `weights` (arguments, not constants:
    one program serves every choice of weights)."""
    model = dataclasses.replace(model, hp=dataclasses.replace(model.hp, **weights))
    params = {"g": state.g.params, "e": state.e.params}
    objective = lambda p: geo_step.generator_objective(model, state, p, batch, None)[0]
    return jax.grad(objective)(params)


def e_gradient(model, state, batch, **weights):
    """|d objective / d E| summed, with Eq. 10's weights replaced by `weights` (others 0)."""
    zero = dict.fromkeys(
        ("lambda_att", "lambda_i", "lambda_cls", "lambda_con", "lambda_gr", "lambda_tv"), 0.0
    )
    grads = objective_gradients(model, state, batch, zero | weights)
    total = lambda tree: sum(float(jnp.abs(leaf).sum()) for leaf in jax.tree.leaves(tree))
    return total(grads["e"]), total(grads["g"])


def test_e_learns_from_l_gr_and_the_rendering_terms(setup):
    model, state, batch = setup
    # L_gr trains E alone; L_con reaches E through the code it gives G_dec; D_i's term
    # reads f(x) only, so it leaves E.
    e_gr, g_gr = e_gradient(model, state, batch, lambda_gr=1.0)
    assert e_gr > 0 and g_gr == 0
    assert e_gradient(model, state, batch, lambda_con=1.0)[0] > 0
    assert e_gradient(model, state, batch, lambda_i=1.0)[0] == 0
    # C's loss on x' reaches G end to end, and not at all without E2E.
    assert e_gradient(model, state, batch, lambda_cls=1.0)[1] > 0
    no_e2e = tiny_model("GEO-No_E2E")
    assert e_gradient(no_e2e, state, batch, lambda_cls=1.0)[1] == 0


def test_c_update_reaches_only_c_and_smoothing_changes_it(setup):
    model, state, batch = setup
    fakes, labels = batch["x_target"], batch["y_t"]
    update = lambda m: jax.jit(lambda st: geo_step.c_update(m, st, batch, fakes, labels, None))
    after, metrics = update(model)(state)
    assert not same(after.c, state.c)
    for name in ("g", "e", "e_stats", "d_att", "d_i", "identity"):
        assert same(getattr(after, name), getattr(state, name)), name
    plain, plain_metrics = update(tiny_model("GEO-No_LS"))(state)
    assert not same(plain.c, after.c)
    assert float(metrics["loss/r_cls"]) != float(plain_metrics["loss/r_cls"])


@pytest.mark.parametrize(
    "variant,trains_c,has_g",
    [("GEO", True, True), ("GEO-No_E2E", False, True), ("BASELINE", True, False)],
)
def test_stage_one_of_each_variant(setup, variant, trains_c, has_g):
    _, state, batch = setup
    after, metrics = step(variant, 0, state, batch)
    assert same(after.c, state.c) != trains_c
    assert same(after.g, state.g) != has_g and same(after.e_stats, state.e_stats) != has_g
    assert float(metrics["stage"]) == 1.0 and int(after.step) == 1
    assert ("loss/g_cls" in metrics) == (variant == "GEO")


@pytest.mark.parametrize("variant", ["GEO", "GEO-No_SynFI"])
def test_stage_two_trains_c_alone_on_its_faces(setup, variant):
    model, state, batch = setup
    late = state.replace(step=jnp.asarray(SYNTHESIS_STEPS, jnp.int32))
    after, metrics = step(variant, SYNTHESIS_STEPS, late, batch)
    assert float(metrics["stage"]) == 2.0 and not same(after.c, late.c)
    for name in ("g", "e", "e_stats", "d_att", "d_i", "d_att_stats", "d_i_stats"):
        assert same(getattr(after, name), getattr(late, name)), name
    # With SynFI, C reads G's template renders: another G changes C's update (the variants
    # share G's architecture).
    other = late.replace(g=geo_step.init_state(model, 1).g)
    moved, _ = step(variant, SYNTHESIS_STEPS, other, batch)
    assert same(moved.c, after.c) == (variant == "GEO-No_SynFI")


def test_template_renders_take_their_templates_labels(setup):
    model, state, batch = setup
    faces, labels = jax.jit(lambda st: geo_step.template_renders(model, st, batch, None))(state)
    assert faces.shape == (PER_REAL * BATCH, SIZE, SIZE, CHANNELS)
    _, chosen = geo_step.template_landmarks(model, state, batch, None)
    expected = np.asarray(model.templates.labels)[np.asarray(chosen)]
    np.testing.assert_array_equal(labels, expected)
    assert len(set(np.asarray(chosen).tolist())) > 1  # Per-sample draws, not one template.


def run(initial, num_devices, first_steps=(0, SYNTHESIS_STEPS)):
    """Two iterations of GEO from each of `first_steps` on `num_devices`, from `initial`."""
    out = []
    for first in first_steps:
        step_fn = runner("GEO", num_devices, first)
        state = step_fn.place_state(initial.replace(step=jnp.asarray(first, jnp.int32)))
        states = []
        for seed in range(2):
            state, metrics = step_fn(state, step_fn.place_batch(random_batch(seed)))
            states.append(step_fn.host_state(state))
        out.append((*states, jax.device_get(metrics)))
    return out


def max_diff(a, b) -> float:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in pairs)


def test_both_stages_and_batch_norm_agree_on_one_and_four_devices(setup):
    initial = setup[1]  # GEO's initial state.
    (first_one, one, m1), (_, one_late, _) = run(initial, 1)
    (first_four, four, m4), (_, four_late, _) = run(initial, 4)
    # Batch norm takes its moments over all devices, so one iteration's statistics match the
    # one-device batch's up to float rounding; two iterations of every network agree to
    # within Adam's step (its normalised update turns rounding-level gradients into lr-size
    # moves).
    for name in ("e_stats", "d_att_stats", "d_i_stats"):
        assert max_diff(getattr(first_one, name), getattr(first_four, name)) < 1e-5, name
    lr = tiny_model().hp.learning_rate
    assert max_diff(one, four) <= 4 * lr
    assert max_diff(one_late.c.params, four_late.c.params) <= 4 * lr
    for name in m1:
        np.testing.assert_allclose(m1[name], m4[name], rtol=1e-3, atol=1e-4, err_msg=name)


def test_resnet50_classifier_trains_with_its_batch_statistics(setup):
    _, state, batch = setup
    model = dataclasses.replace(tiny_model(), recognizer=networks.ResNet50Classifier(K, WIDTH))
    fresh = geo_step.init_state(model, 0)
    assert jax.tree.leaves(fresh.c_stats) and not jax.tree.leaves(state.c_stats)
    update = jax.jit(lambda st: geo_step.c_update(model, st, batch, None, None, None))
    after, metrics = update(fresh)
    assert not same(after.c, fresh.c) and not same(after.c_stats, fresh.c_stats)
    assert same(after.g, fresh.g) and np.isfinite(float(metrics["loss/r_cls"]))
    # Evaluation reads the running statistics: a face's output ignores the rest of its batch.
    out = geo_evaluation.evaluate_batch(model, after, batch["x"], batch["y"])
    others = batch["x"].copy()
    others[1:] = batch["x_target"][1:]
    mixed = geo_evaluation.evaluate_batch(model, after, others, batch["y"])
    np.testing.assert_array_equal(out["feature"][0], mixed["feature"][0])


def test_landmark_noise_moves_the_templates_by_at_most_its_amplitude(setup):
    model, state, batch = setup
    noisy = dataclasses.replace(model, hp=dataclasses.replace(model.hp, landmark_noise=8.0))
    # 8 px at 224 px is 8 * 32 / 224 px at 32 px: 2 * that / 31 in [-1, 1] units.
    amplitude = geo_step.landmark_noise_amplitude(8.0, SIZE)
    assert amplitude == pytest.approx(2 * (8 * 32 / 224) / 31)
    clean, chosen = geo_step.template_landmarks(model, state, batch, None)
    moved, noisy_chosen = geo_step.template_landmarks(noisy, state, batch, None)
    np.testing.assert_array_equal(chosen, noisy_chosen)  # The same templates drawn.
    shift = np.abs(np.asarray(moved) - np.asarray(clean))
    assert shift.max() <= amplitude + 1e-6 and shift.mean() > amplitude / 4
    np.testing.assert_array_equal(clean, model.templates.landmark_array()[np.asarray(chosen)])
